"""Conditional rules: every condition must hold, no exception may, then one action.

Owns the ``transport_rules`` filter kind, the shape of Exchange Online's mail flow rules
(transport rules, office-docs-powershell New-TransportRule.md): a rule applies when all of its
conditions match and none of its exceptions does, rules run in the profile's order, and a rule
with ``stop: true`` ends the evaluation of the rules after it (``StopRuleProcessing``). The
other kinds match one field each (``envelope``) or score words (``content``); none can say
"from this domain AND with this attachment, UNLESS this header", which a mail flow rule says.
The advanced spam filter (ASF) settings of an anti-spam policy are single-condition rules of the
same shape (an HTML tag, an empty message, a web bug), so they use this kind too.

Everything is judged at the end of DATA: Exchange Online evaluates mail flow rules on the
received message (New-TransportRule.md conditions read headers, body and attachments). Pure: it
reads the envelope and the parsed message and returns findings; it rewrites nothing (a rule that
prepends a subject or sets a header is a ``tag`` finding saying what the product would write).

```yaml
- kind: transport_rules
  name: mail-flow-rules
  rules:
    - id: BLOCK_EXE_FROM_OUTSIDE
      when:
        - {field: attachment_extension, test: is, values: [exe, js]}
      unless:
        - {field: sender_domain, test: is, values: [example.com]}
      action: reject
      reply: "550 5.7.1 Executables are not accepted"
      stop: true
```

Fields and the tests each takes: ``sender`` (is, contains, matches; ``sender_location``
header, envelope or header_or_envelope), ``sender_domain`` (is: the domain or a subdomain),
``recipient`` (is, contains, matches), ``recipient_domain`` (is), ``subject``,
``subject_or_body`` and ``header`` (with ``header:``) (contains: whole words and phrases,
matches: regular expressions, both case-insensitive), ``attachment_extension`` (is),
``attachment_name`` (matches), ``attachment_size`` and ``message_size`` (over: bytes),
``client_ip`` (is: addresses and CIDR ranges), ``html_tag`` (is: element names found in an HTML
part), ``html_class`` (is: what ``sinkd.core.html`` finds, e.g. ``tracking_pixels``) and
``empty_message`` (present: no subject, no body text, no attachment), ``spf_result`` (is: the
MAIL FROM result of an ``spf`` filter earlier in the profile, e.g. ``fail``), ``to_address``,
``cc_address``, ``to_cc_address`` (is: addresses in those header fields) and
``attachment_executable`` (present: an attachment, or an archive member, whose content is an
executable).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from typing import Literal

from pydantic import ConfigDict, Field, model_validator

from sinkd.core.attachments import inspect_file
from sinkd.core.filters.base import Filter, MessageContext, reply_variables
from sinkd.core.matching import WordMatcher, excerpt
from sinkd.core.message import ParsedMessage
from sinkd.core.mimetree import MimeNode
from sinkd.core.model import Action, Category, Finding, FindingCode
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

FieldName = Literal[
    "sender",
    "sender_domain",
    "recipient",
    "recipient_domain",
    "subject",
    "subject_or_body",
    "header",
    "attachment_extension",
    "attachment_name",
    "attachment_size",
    "message_size",
    "client_ip",
    "html_tag",
    "html_class",
    "empty_message",
    "spf_result",
    "to_address",
    "cc_address",
    "to_cc_address",
    "attachment_executable",
]
Test = Literal["is", "contains", "matches", "over", "present"]
SkipCategory = Literal[
    "envelope", "authentication", "content", "attachments", "score", "format", "delivery"
]

# The tests each field takes.
_TESTS: dict[str, tuple[str, ...]] = {
    "sender": ("is", "contains", "matches"),
    "sender_domain": ("is",),
    "recipient": ("is", "contains", "matches"),
    "recipient_domain": ("is",),
    "subject": ("contains", "matches"),
    "subject_or_body": ("contains", "matches"),
    "header": ("contains", "matches"),
    "attachment_extension": ("is",),
    "attachment_name": ("matches",),
    "attachment_size": ("over",),
    "message_size": ("over",),
    "client_ip": ("is",),
    "html_tag": ("is",),
    "html_class": ("is",),
    "empty_message": ("present",),
    "spf_result": ("is",),
    "to_address": ("is",),
    "cc_address": ("is",),
    "to_cc_address": ("is",),
    "attachment_executable": ("present",),
}
# The header fields each address field reads (New-TransportRule.md -AnyOfToHeader,
# -AnyOfCcHeader, -AnyOfToCcHeader).
_ADDRESS_HEADERS = {
    "to_address": ("To",),
    "cc_address": ("Cc",),
    "to_cc_address": ("To", "Cc"),
}


class Condition(Spec):
    """One condition (or exception) of a rule: a field, a test and what it is tested against."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    field: FieldName
    test: Test
    values: list[str] = []
    size: int | None = Field(default=None, ge=0)
    header: str | None = None  # the header field name, for field: header
    sender_location: Literal["header", "envelope", "header_or_envelope"] = "header"

    @model_validator(mode="after")
    def _consistent(self) -> Condition:
        if self.test not in _TESTS[self.field]:
            allowed = ", ".join(_TESTS[self.field])
            raise ValueError(f"field {self.field!r} takes the tests {allowed}, not {self.test!r}")
        if self.test == "over" and self.size is None:
            raise ValueError("test 'over' needs size: (bytes)")
        if self.test in ("is", "contains", "matches") and not self.values:
            raise ValueError(f"test {self.test!r} needs values:")
        if (self.field == "header") != (self.header is not None):
            raise ValueError("header: names the header field, for field: header only")
        return self


class TransportRule(Spec):
    id: RuleId
    describe: str | None = None
    when: list[Condition] = Field(min_length=1)
    unless: list[Condition] = []
    action: Action
    score: Score = 0.0
    reply: ReplyRef | None = None
    skip: list[SkipCategory] = []
    stop: bool = False  # StopRuleProcessing: no later rule of this filter is evaluated
    # What the product would also do, for the reader (PrependSubject, SetHeaderName/Value).
    effects: list[str] = []

    @model_validator(mode="after")
    def _skip_only_with_allow(self) -> TransportRule:
        check_skip(self.action, self.skip)
        return self


class TransportRulesSpec(FilterSpecBase):
    kind: Literal["transport_rules"]
    # The category of the findings, which an allowlist's ``skip`` names: an organisation's mail
    # flow rules still run for a client whose spam filtering an allow list skips (``content``),
    # so a profile may put them in ``envelope``.
    category: Literal["content", "envelope", "attachments"] = "content"
    rules: list[TransportRule]


def _attachment(node: MimeNode) -> bool:
    """A part a mail client shows as an attachment: named, or disposed as one."""
    return bool(node.filename) or node.disposition == "attachment"


class _Networks:
    def __init__(self, values: Iterable[str], loc: tuple[str | int, ...]) -> None:
        self.networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        for value in values:
            try:
                self.networks.append(ipaddress.ip_network(value.strip(), strict=False))
            except ValueError:
                raise CompileError(loc, f"{value!r} is not an IP address or CIDR range") from None

    def contains(self, value: str) -> bool:
        try:
            address = ipaddress.ip_address(value)
        except ValueError:
            return False
        return any(address in net for net in self.networks)


class _Condition:
    """A condition compiled once: its word index, regexes or networks."""

    def __init__(self, spec: Condition, loc: tuple[str | int, ...]) -> None:
        self.spec = spec
        self.words = WordMatcher(spec.values) if spec.test == "contains" else None
        self.regexes: list[re.Pattern[str]] = []
        self.networks: _Networks | None = None
        if spec.test == "matches":
            for i, pattern in enumerate(spec.values):
                try:
                    # Case is ignored, as for the rules' words: an assumption, since Microsoft's
                    # page on regular expressions in mail flow rules offers no case switch and
                    # does not say.
                    self.regexes.append(re.compile(pattern, re.IGNORECASE))
                except re.error as exc:
                    raise CompileError(
                        (*loc, "values", i), f"invalid regular expression: {exc}"
                    ) from None
        if spec.field == "client_ip":
            self.networks = _Networks(spec.values, (*loc, "values"))
        self.lowered = frozenset(v.strip().lower().lstrip(".") for v in spec.values)

    def describe(self) -> str:
        spec = self.spec
        what = f"header {spec.header}" if spec.field == "header" else spec.field.replace("_", " ")
        if spec.test == "over":
            return f"{what} over {spec.size} bytes"
        if spec.test == "present":
            return what
        return f"{what} {spec.test} {', '.join(spec.values)}"

    def match(self, ctx: MessageContext) -> str | None:
        """What matched, quoted for the reason, or None when the condition does not hold."""
        spec = self.spec
        parsed = ctx.parsed
        field = spec.field
        if field in ("sender", "sender_domain"):
            return self._texts(self._senders(ctx), domain=field == "sender_domain")
        if field in ("recipient", "recipient_domain"):
            return self._texts(ctx.envelope.rcpt_to, domain=field == "recipient_domain")
        if field == "subject":
            return self._texts([parsed.subject or ""])
        if field == "subject_or_body":
            return self._texts(
                [parsed.subject or "", *(p.text for p in parsed.body_parts if p.inline)]
            )
        if field == "header":
            assert spec.header is not None
            return self._texts([str(v) for v in parsed.message.get_all(spec.header, [])])
        if field == "message_size":
            assert spec.size is not None
            return f"{parsed.size} bytes" if parsed.size > spec.size else None
        if field == "client_ip":
            assert self.networks is not None
            ip = ctx.envelope.client.ip
            return ip if self.networks.contains(ip) else None
        if field in _ADDRESS_HEADERS:
            return self._texts(_header_addresses(parsed, _ADDRESS_HEADERS[field]))
        if field in (
            "attachment_extension",
            "attachment_name",
            "attachment_size",
            "attachment_executable",
        ):
            return self._attachments(parsed)
        if field in ("html_tag", "html_class"):
            return self._html(parsed)
        if field == "spf_result":
            # The MAIL FROM result an spf filter earlier in the profile found (SPF_FAIL, ...).
            for earlier in ctx.earlier:
                result = earlier.code.removeprefix("SPF_").lower()
                if earlier.code.startswith("SPF_") and result in self.lowered:
                    return f"SPF {result} for {ctx.envelope.mail_from or '<>'}"
            return None
        return _empty(parsed)

    def _senders(self, ctx: MessageContext) -> list[str]:
        # New-TransportRule.md -SenderAddressLocation: Header (the From field, the default),
        # Envelope (MAIL FROM) or HeaderOrEnvelope.
        where = self.spec.sender_location
        out: list[str] = []
        if where in ("header", "header_or_envelope") and ctx.parsed.header_from:
            out.append(ctx.parsed.header_from)
        if where in ("envelope", "header_or_envelope") and ctx.envelope.mail_from:
            out.append(ctx.envelope.mail_from)
        return out

    def _texts(self, texts: Iterable[str], *, domain: bool = False) -> str | None:
        spec = self.spec
        for text in texts:
            if not text:
                continue
            if spec.test == "is":
                value = text.strip().lower()
                if domain:
                    # SenderDomainIs / RecipientDomainIs match the domain and its subdomains
                    # (New-TransportRule.md -SenderDomainIs, -RecipientDomainIs).
                    host = value.rpartition("@")[2]
                    labels = host.split(".")
                    if any(".".join(labels[i:]) in self.lowered for i in range(len(labels))):
                        return text
                elif value in self.lowered:
                    return text
            elif spec.test == "contains":
                assert self.words is not None
                found = self.words.find(text)
                if found:
                    return ", ".join(sorted(found))
            else:
                for regex in self.regexes:
                    hit = regex.search(text)
                    if hit is not None:
                        return excerpt(hit.group(0))
        return None

    def _attachments(self, parsed: ParsedMessage) -> str | None:
        spec = self.spec
        raw = parsed.raw
        for node in parsed.tree.leaves():
            if not _attachment(node):
                continue
            name = node.filename or ""
            if spec.field == "attachment_size":
                assert spec.size is not None
                size = len(node.payload(raw))
                if size > spec.size:
                    return f"{name or 'an attachment'} ({size} bytes)"
                continue
            # New-TransportRule.md -AttachmentExtensionMatchesWords: files nested inside an
            # attachment are inspected too; the names of archive members are read alike.
            inspection = inspect_file(node.filename, node.content_type, node.payload(raw))
            for shown, info in inspection.named(name or "(unnamed)"):
                member = (info.name or "").rpartition("/")[2]  # an archive member's own name
                if spec.field == "attachment_executable":
                    # New-TransportRule.md -AttachmentHasExecutableContent: judged on the file's
                    # properties, not its name; sinkd's true type (magic bytes) says executable
                    # for Windows PE, ELF and Mach-O files.
                    if info.true_kind == "executable":
                        return f"{shown} ({info.true_type})"
                elif spec.field == "attachment_extension":
                    extension = member.rpartition(".")[2].lower() if "." in member else ""
                    if extension and extension in self.lowered:
                        return shown
                elif member and any(regex.search(member) for regex in self.regexes):
                    return shown
        return None

    def _html(self, parsed: ParsedMessage) -> str | None:
        wanted = self.lowered
        for html in parsed.html_bodies:
            if self.spec.field == "html_class":
                report = parsed.html_body(html).inspect()
                for cls in sorted(wanted & report.classes()):
                    return f"{cls.replace('_', ' ')}: {report.of(cls)[0].what}"
                continue
            for tag in sorted(wanted):
                # An element is there when the HTML, parsed, opens it: the message's one parse
                # of that body (HtmlBody), with its depth guard.
                if parsed.html_body(html).has_element(tag):
                    return f"<{tag}>"
        return None


def _header_addresses(parsed: ParsedMessage, names: tuple[str, ...]) -> list[str]:
    out: list[str] = []
    for name in names:
        for value in parsed.message.get_all(name, []):
            try:
                out.extend(address for _, address in parsed.addresses(str(value)) if address)
            except Exception:  # a header no parser reads names no address
                continue
    return out


def _empty(parsed: ParsedMessage) -> str | None:
    """Set-HostedContentFilterPolicy.md -MarkAsSpamEmptyMessages: no subject, no body content
    and no attachment."""
    if (parsed.subject or "").strip():
        return None
    if any(p.text.strip() for p in parsed.body_parts):
        return None
    if any(_attachment(node) for node in parsed.tree.leaves()):
        return None
    return "no subject, no body and no attachment"


class _Rule:
    def __init__(self, rule: TransportRule, index: int, ctx: CompileContext) -> None:
        here = ctx.at("rules", index)
        self.rule = rule
        self.code = f"TRANSPORT_{rule.id}"
        self.when = [_Condition(c, (*here.loc, "when", i)) for i, c in enumerate(rule.when)]
        self.unless = [_Condition(c, (*here.loc, "unless", i)) for i, c in enumerate(rule.unless)]
        self.reply: ReplyTemplate = here.outcome_reply(rule.action, rule.reply)


class TransportRulesFilter(Filter):
    kind = "transport_rules"
    Spec = TransportRulesSpec
    category = Category.CONTENT
    categories = (Category.CONTENT, Category.ENVELOPE, Category.ATTACHMENTS)
    codes = (FindingCode("TRANSPORT_<ID>", "the rule with this id applied"),)

    def __init__(self, spec: TransportRulesSpec, ctx: CompileContext) -> None:
        super().__init__(spec, ctx)
        self.rules = [_Rule(rule, i, ctx) for i, rule in enumerate(spec.rules)]
        self.finding_category = Category(spec.category)

    async def check_message(self, ctx: MessageContext) -> list[Finding]:
        findings: list[Finding] = []
        for compiled in self.rules:
            matched: list[str] = []
            for condition in compiled.when:
                hit = condition.match(ctx)
                if hit is None:
                    break
                matched.append(f"{condition.describe()} ({hit})")
            else:
                if any(e.match(ctx) is not None for e in compiled.unless):
                    continue
                findings.append(self._finding(compiled, matched, ctx))
                if compiled.rule.stop:
                    break  # New-TransportRule.md -StopRuleProcessing
        return findings

    def _finding(self, compiled: _Rule, matched: list[str], ctx: MessageContext) -> Finding:
        rule = compiled.rule
        why = "; ".join(matched)
        reason = (
            f"{rule.describe.rstrip('.')}: {why}."
            if rule.describe
            else f"The rule {rule.id} applies: {why}."
        )
        if rule.effects:
            reason += " The product would also: " + "; ".join(rule.effects) + "."
        detail: dict[str, object] = {"rule": rule.id, "matched": matched}
        if rule.effects:
            detail["effects"] = list(rule.effects)
        if rule.source:
            detail["source"] = rule.source
        elif rule.assumption:
            detail["assumption"] = rule.assumption
        reply = None
        if rule.action.refuses:
            reply = compiled.reply.render(reply_variables(ctx.envelope, text=reason))
        return self.finding(
            code=compiled.code,
            action=rule.action,
            reason=reason,
            score=rule.score,
            detail=detail,
            reply=reply,
            skip=frozenset(rule.skip),
            category=self.finding_category,
        )
