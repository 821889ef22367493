"""Envelope lists: allow and block by client IP/CIDR, HELO, MAIL FROM, recipients and header From.

Owns matching envelope identities against allow and block lists, as Postfix access(5) maps,
rspamd multimap and Exchange's Tenant Allow/Block List do. Pure: it matches strings and
addresses it is given and never resolves anything.

```yaml
- kind: envelope
  name: access-lists
  rules:
    - {id: ALLOW_PARTNER, match: header_from, entries: "@partners", action: allow, skip: [content]}
    - {id: BLOCK_IP, match: client_ip, entries: ["192.0.2.0/24", "2001:db8::/32"], action: reject}
    - {id: BLOCK_SENDER, match: mail_from, entries: ["*@spam.example", "<>"], action: reject}
    - {match: rcpt_to, entries: ["ceo@example.com"], action: quarantine}
```

Address entries: ``user@example.com`` (exact), globs such as ``*@*.example``, ``user@`` (that
local part at any domain), ``example.com`` (the domain and its subdomains, like Postfix's
``parent_domain_matches_subdomains``) and ``<>`` (the null sender).
"""

from __future__ import annotations

import fnmatch
import ipaddress
from collections.abc import Iterable
from typing import Literal

from pydantic import model_validator

from sinkd.core.filters.base import EnvelopeContext, Filter, MessageContext, reply_variables
from sinkd.core.model import Action, Category, Finding, FindingCode, Stage
from sinkd.core.schema import (
    CompileContext,
    CompileError,
    FilterSpecBase,
    ReplyRef,
    ReplyTemplate,
    RuleId,
    Score,
    Spec,
    check_skip,
)

MatchField = Literal[
    "client_ip",
    "helo",
    "mail_from",
    "mail_from_domain",
    "rcpt_to",
    "header_from",
    "header_from_domain",
]
SkipCategory = Literal[
    "envelope", "authentication", "content", "attachments", "score", "format", "delivery"
]

_STAGE: dict[str, Stage] = {
    "client_ip": Stage.CONNECT,
    "helo": Stage.HELO,
    "mail_from": Stage.MAIL,
    "mail_from_domain": Stage.MAIL,
    "rcpt_to": Stage.RCPT,
    "header_from": Stage.DATA,
    "header_from_domain": Stage.DATA,
}
_DEFAULT_REPLY = {
    "client_ip": "postfix.client_access",
    "helo": "postfix.helo_access",
    "mail_from": "postfix.sender_access",
    "mail_from_domain": "postfix.sender_access",
    "rcpt_to": "postfix.recipient_access",
    "header_from": "postfix.content_text",
    "header_from_domain": "postfix.content_text",
}
_WHAT = {
    "client_ip": "The sending server's IP address {value}",
    "helo": "The name the sending server introduced itself with ({value})",
    "mail_from": "The envelope sender {value}",
    "mail_from_domain": "The envelope sender's domain {value}",
    "rcpt_to": "The recipient {value}",
    "header_from": "The From address {value}",
    "header_from_domain": "The From domain {value}",
}
_LIST_KINDS = {
    "client_ip": ("cidr",),
    "helo": ("domain", "hostname_glob"),
    "mail_from": ("address_glob", "domain"),
    "mail_from_domain": ("domain", "hostname_glob"),
    "rcpt_to": ("address_glob", "domain"),
    "header_from": ("address_glob", "domain"),
    "header_from_domain": ("domain", "hostname_glob"),
}


class EnvelopeRule(Spec):
    id: RuleId | None = None
    match: MatchField
    entries: list[str] | str
    action: Action
    score: Score = 0.0
    reply: ReplyRef | None = None
    skip: list[SkipCategory] = []
    describe: str | None = None
    source: str | None = None

    @model_validator(mode="after")
    def _skip_only_with_allow(self) -> EnvelopeRule:
        check_skip(self.action, self.skip)
        return self


class EnvelopeSpec(FilterSpecBase):
    kind: Literal["envelope"]
    rules: list[EnvelopeRule]


class _Matcher:
    """Entries of one rule, split so that exact entries are set lookups, not scans."""

    def __init__(self, field: str, entries: Iterable[str], loc: tuple[str | int, ...]) -> None:
        self.field = field
        self.exact: set[str] = set()
        self.globs: list[str] = []
        self.domains: set[str] = set()
        self.local_parts: set[str] = set()
        self.networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        self.hosts: set[ipaddress.IPv4Address | ipaddress.IPv6Address] = set()
        for entry in entries:
            self._add(entry.strip(), loc)

    def _add(self, entry: str, loc: tuple[str | int, ...]) -> None:
        if not entry:
            return
        if self.field == "client_ip":
            try:
                network = ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise CompileError(loc, f"{entry!r} is not an IP address or CIDR range") from None
            if network.num_addresses == 1:
                self.hosts.add(network.network_address)
            else:
                self.networks.append(network)
            return
        value = entry.lower()
        address_field = self.field in ("mail_from", "rcpt_to", "header_from")
        if any(ch in value for ch in "*?["):
            self.globs.append(value)
        elif address_field and value == "<>":
            self.exact.add("")
        elif address_field and value.endswith("@"):
            self.local_parts.add(value[:-1])
        elif address_field and "@" in value:
            self.exact.add(value)
        else:
            self.domains.add(value.lstrip("."))

    def matches(self, value: str) -> bool:
        if self.field == "client_ip":
            try:
                address = ipaddress.ip_address(value)
            except ValueError:
                return False
            return address in self.hosts or any(address in net for net in self.networks)
        value = value.lower()
        if value in self.exact:
            return True
        local, at, domain = value.rpartition("@")
        if not at:
            domain, local = value, ""
        if local and local in self.local_parts:
            return True
        if domain and self.domains:
            # A listed domain covers its subdomains (Postfix parent_domain_matches_subdomains).
            labels = domain.split(".")
            # The whole name always counts; the bare last label ("com") of a longer one does not.
            for i in range(max(1, len(labels) - 1)):
                if ".".join(labels[i:]) in self.domains:
                    return True
        return any(fnmatch.fnmatchcase(value, glob) for glob in self.globs)


class _CompiledRule:
    def __init__(self, rule: EnvelopeRule, index: int, ctx: CompileContext) -> None:
        here = ctx.at("rules", index)
        self.rule = rule
        entries = here.entries(rule.entries, "entries", kinds=_LIST_KINDS[rule.match])
        self.matcher = _Matcher(rule.match, entries, (*here.loc, "entries"))
        self.stage = _STAGE[rule.match]
        if rule.id:
            suffix = rule.id
        elif rule.action is Action.ALLOW:
            suffix = f"{rule.match.upper()}_ALLOWED"
        elif rule.action in (Action.REJECT, Action.TEMPFAIL, Action.QUARANTINE, Action.DISCARD):
            suffix = f"{rule.match.upper()}_BLOCKED"
        else:
            suffix = f"{rule.match.upper()}_LISTED"
        self.code = f"ENVELOPE_{suffix}"
        default = (
            "generic.tempfail" if rule.action is Action.TEMPFAIL else _DEFAULT_REPLY[rule.match]
        )
        self.reply: ReplyTemplate = here.reply(rule.reply or default)

    def reason(self, value: str) -> str:
        if self.rule.describe:
            return self.rule.describe
        what = _WHAT[self.rule.match].format(value=value or "<>")
        action = self.rule.action
        if action is Action.ALLOW:
            skipped = ", ".join(self.rule.skip)
            tail = f", so these checks are skipped: {skipped}" if skipped else ""
            return f"{what} is on the organisation's allow list{tail}."
        if action is Action.REJECT:
            return f"{what} is on the organisation's block list, so the mail is refused."
        if action is Action.TEMPFAIL:
            return f"{what} is on a list that makes the server ask the sender to try again later."
        if action is Action.QUARANTINE:
            return f"{what} is on a watch list, so the mail is held in quarantine."
        if action is Action.DISCARD:
            return f"{what} is on a list whose mail is silently dropped."
        return f"{what} is on a list that counts against the message."


class EnvelopeFilter(Filter):
    kind = "envelope"
    Spec = EnvelopeSpec
    category = Category.ENVELOPE
    codes = (
        FindingCode("ENVELOPE_<ID>", "the envelope rule with this id matched"),
        FindingCode("ENVELOPE_<FIELD>_ALLOWED", "an allow rule without an id matched this field"),
        FindingCode(
            "ENVELOPE_<FIELD>_BLOCKED",
            "a reject, tempfail, quarantine or discard rule without an id matched",
        ),
        FindingCode(
            "ENVELOPE_<FIELD>_LISTED", "another rule without an id matched (score, tag, …)"
        ),
    )

    def __init__(self, spec: EnvelopeSpec, ctx: CompileContext) -> None:
        super().__init__(spec, ctx)
        rules = [_CompiledRule(rule, i, ctx) for i, rule in enumerate(spec.rules)]
        sender_stages = (Stage.CONNECT, Stage.HELO, Stage.MAIL)
        self.sender_rules = [r for r in rules if r.stage in sender_stages]
        self.rcpt_rules = [r for r in rules if r.stage is Stage.RCPT]
        self.header_rules = [r for r in rules if r.stage is Stage.DATA]

    def _evaluate(
        self,
        rules: Iterable[_CompiledRule],
        values: dict[str, str | None],
        ctx_rcpt: str | None,
        envelope_ctx: EnvelopeContext | MessageContext,
    ) -> list[Finding]:
        findings: list[Finding] = []
        for compiled in rules:
            value = values.get(compiled.rule.match)
            if value is None or not compiled.matcher.matches(value):
                continue
            rule = compiled.rule
            findings.append(
                self.finding(
                    code=compiled.code,
                    action=rule.action,
                    reason=compiled.reason(value),
                    score=rule.score,
                    stage=compiled.stage,
                    detail={"rule": rule.id, "field": rule.match, "value": value}
                    | ({"source": rule.source} if rule.source else {}),
                    reply=compiled.reply.render(reply_variables(envelope_ctx.envelope, ctx_rcpt)),
                    skip=frozenset(rule.skip),
                )
            )
            if rule.action is Action.ALLOW and "envelope" in rule.skip:
                break  # the allowlist entry skips the remaining envelope rules
        return findings

    async def check_envelope(self, stage: Stage, ctx: EnvelopeContext) -> list[Finding]:
        env = ctx.envelope
        if ctx.rcpt is None:
            mail_from = env.mail_from
            values: dict[str, str | None] = {
                "client_ip": env.client.ip,
                "helo": env.client.helo,
                "mail_from": mail_from,
                "mail_from_domain": mail_from.rpartition("@")[2] if mail_from else None,
            }
            return self._evaluate(self.sender_rules, values, None, ctx)
        return self._evaluate(self.rcpt_rules, {"rcpt_to": ctx.rcpt}, ctx.rcpt, ctx)

    async def check_message(self, ctx: MessageContext) -> list[Finding]:
        if not self.header_rules:
            return []
        values = {
            "header_from": ctx.parsed.header_from,
            "header_from_domain": ctx.parsed.header_from_domain,
        }
        return self._evaluate(self.header_rules, values, None, ctx)
