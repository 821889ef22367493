"""Sender ID (RFC 4406, RFC 4407; Historic since 2020): may the sending server send for the
address the reader is shown as responsible?

Owns the ``sender_id`` filter kind, as Exchange's Sender ID agent runs it. At the end of DATA
it extracts the Purported Responsible Address (PRA, RFC 4407 §2: the first Resent-Sender, else
the first Resent-From, else the one Sender, else the one From, each a single mailbox with a
domain) and runs ``check_host()`` against the PRA domain's ``spf2.0/pra`` record (also written
``spf2.0/mfrom,pra``); the ``mfrom`` scope checks the MAIL FROM domain against ``spf2.0/mfrom``.
``spf1_fallback`` reads a domain's ``v=spf1`` record as ``spf2.0/mfrom,pra`` when it has no
``spf2.0`` record at all (RFC 4406 §3.4, and Exchange); Perl's Mail::SPF refuses that (false).
A PRA domain that does not exist fails (``pra_nxdomain``; Exchange and ARSoft do so); a
message without a determinable PRA is ill-formed (RFC 4407 §2 step 6) and gets ``no_pra``.
Outcomes per result as for ``spf``; ``fail`` is refused by default with Exchange's
``550 5.7.1 Sender ID (PRA) Not Permitted``. Pure: DNS only through ``ctx.lookups``.

```yaml
- kind: sender_id
  name: sender-id
  scopes: [pra]                      # the default; [pra, mfrom] checks MAIL FROM too
  spf1_fallback: true                # Exchange; false as Mail::SPF 2.9
  pra_nxdomain: fail                 # or none, as RFC 7208 §4.3 treats a missing domain
  no_pra: permerror                  # or fail, as Exchange's MalformedDomain
  timeout: 20
  on:
    fail: {action: reject, reply: senderid.exchange}  # the default; SpoofedDomainAction Reject
    softfail: {score: 2.0}
    temperror: {action: none}        # Exchange's TempErrorAction StampStatus
```

Codes: ``SENDERID_PASS``, ``SENDERID_FAIL``, ``SENDERID_SOFTFAIL``, ``SENDERID_NEUTRAL``,
``SENDERID_NONE``, ``SENDERID_TEMPERROR``, ``SENDERID_PERMERROR`` for the PRA and
``SENDERID_MFROM_*`` for the mfrom scope.

Only DNS that says so makes a domain "not exist": offline DNS without data for a name the
check needs (no fixture) gives ``SENDERID_NONE`` recorded only, with ``unjudged=no-dns-data``
and ``detail["dns_names"]``, never a refusal; a live DNS timeout gives ``SENDERID_TEMPERROR``
recorded only, with ``unjudged=unavailable``.

Results are remembered for the smallest TTL of the answers they rest on (the spf filter's
``SpfMemo``, keyed on the exact client, PRA or MAIL FROM, HELO and scope): a campaign repeats
the same question, and the answer cannot change before the DNS data does.
"""

from __future__ import annotations

import asyncio
import email.utils
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from pydantic import Field, field_validator

from sinkd.core.filters.base import Filter, MessageContext, reply_variables
from sinkd.core.filters.spf import (
    CompiledOutcome,
    ResultOutcome,
    SpfMemo,
    compile_outcomes,
    mechanism_text,
    no_resolver,
    unjudged,
    unjudged_detail,
)
from sinkd.core.model import Action, Category, Envelope, Finding, FindingCode
from sinkd.core.ports import Lookups, no_dns_data_reason
from sinkd.core.schema import CompileContext, FilterSpecBase
from sinkd.core.spf_eval import SpfResult, SpfResultCode, check_host

Scope = Literal["pra", "mfrom"]

DEFAULT_OUTCOMES: Mapping[SpfResultCode, ResultOutcome] = {
    "fail": ResultOutcome(action=Action.REJECT, reply="senderid.exchange"),
    "temperror": ResultOutcome(action=Action.TEMPFAIL, reply="spf.temperror"),
}
RESULT_REPLIES: Mapping[SpfResultCode, str] = {
    "fail": "senderid.exchange",
    "softfail": "senderid.exchange",
    "temperror": "spf.temperror",
    "permerror": "spf.permerror",
}
_LINE_BREAK = re.compile(r"\r?\n")
_RESENT_BLOCK_END = ("received", "return-path")


@dataclass(frozen=True, slots=True)
class Pra:
    """The Purported Responsible Address, or why there is none (``address`` None)."""

    address: str | None
    header: str | None  # the header it came from, as RFC 4407 names it ("Resent-Sender", ...)
    problem: str | None = None  # why the message has no PRA


_CANONICAL = {
    "resent-sender": "Resent-Sender",
    "resent-from": "Resent-From",
    "sender": "Sender",
    "from": "From",
}


def _mailbox(value: str) -> str | None:
    """The single mailbox of a header value, or None when it is malformed (RFC 4407 §2 step
    5: several mailboxes, a hopelessly malformed one, or one without a domain)."""
    try:
        addresses = [addr for _, addr in email.utils.getaddresses([value]) if addr]
    except Exception:
        return None
    if len(addresses) != 1:
        return None
    local, at, domain = addresses[0].rpartition("@")
    domain = domain.strip().rstrip(".")
    if not at or not local or not domain or any(c.isspace() for c in addresses[0]):
        return None
    if not domain.isascii():  # an internationalized domain (RFC 6532) is looked up as A-labels
        try:
            domain = domain.encode("idna").decode("ascii")
        except UnicodeError:
            return None
    return f"{local}@{domain}"


def purported_responsible_address(headers: Iterable[tuple[str, str]]) -> Pra:
    """RFC 4407 §2 over the header fields in message order (names as written, values raw)."""
    fields = [
        (name.strip().lower(), _LINE_BREAK.sub("", str(value)).strip()) for name, value in headers
    ]

    def first(name: str) -> int | None:
        return next((i for i, (n, v) in enumerate(fields) if n == name and v), None)

    chosen: int | None = None
    # Step 1: the first non-empty Resent-Sender, unless it belongs to an older resent block: a
    # non-empty Resent-From precedes it with a Received or Return-Path in between.
    resent_sender = first("resent-sender")
    if resent_sender is not None:
        resent_from = first("resent-from")
        older_block = (
            resent_from is not None
            and resent_from < resent_sender
            and any(n in _RESENT_BLOCK_END for n, _ in fields[resent_from + 1 : resent_sender])
        )
        if not older_block:
            chosen = resent_sender
    # Step 2: the first non-empty Resent-From.
    if chosen is None:
        chosen = first("resent-from")
    # Steps 3 and 4: exactly one non-empty Sender, else exactly one non-empty From.
    if chosen is None:
        for name in ("sender", "from"):
            found = [i for i, (n, v) in enumerate(fields) if n == name and v]
            if len(found) > 1:
                header = _CANONICAL[name]
                return Pra(None, header, f"the message has {len(found)} {header} headers")
            if found:
                chosen = found[0]
                break
            if name == "from":
                return Pra(None, None, "the message has no From header")
    assert chosen is not None
    name, value = fields[chosen]
    header = _CANONICAL[name]
    address = _mailbox(value)
    if address is None:
        return Pra(None, header, f"its {header} header does not hold exactly one valid mailbox")
    return Pra(address, header)


class SenderIdSpec(FilterSpecBase):
    kind: Literal["sender_id"]
    scopes: list[Scope] = Field(default=["pra"], min_length=1)
    spf1_fallback: bool = True
    pra_nxdomain: Literal["fail", "none"] = "fail"
    no_pra: Literal["permerror", "fail"] = "permerror"
    on: dict[SpfResultCode, ResultOutcome] = {}
    timeout: float = Field(default=20.0, gt=0, le=300)

    @field_validator("scopes")
    @classmethod
    def _unique(cls, value: list[Scope]) -> list[Scope]:
        if len(set(value)) != len(value):
            raise ValueError("each scope may be listed once")
        return value


def _reason(scope: Scope, ip: str, outcome: SpfResult, pra: Pra | None) -> str:
    domain = outcome.domain
    if scope == "pra":
        assert pra is not None
        if pra.address is None:
            return f"The sender shown to the reader cannot be determined: {pra.problem}."
        whose = f"{domain}, the domain of the sender shown to the reader ({pra.header} header)"
    else:
        whose = f"{domain}, the envelope sender's domain"
    if outcome.unknown:
        return no_dns_data_reason(f"Sender ID for {whose},", outcome.unknown)
    if outcome.unanswered:
        return (
            f"Sender ID for {whose}, could not be judged: live DNS did not answer in time "
            f"({', '.join(outcome.unanswered)}), so the verdict was reached without it."
        )
    said = f"its Sender ID record says {outcome.result}{mechanism_text(outcome)}"
    result = outcome.result
    if result == "pass":
        return f"The sending server {ip} is allowed to send mail for {whose}: {said}."
    if result == "fail":
        if outcome.nxdomain and not outcome.record:
            return (
                f"The sending server {ip} sends mail for {whose}, but that domain does not exist."
            )
        return f"The sending server {ip} is not allowed to send mail for {whose}: {said}."
    if result == "softfail":
        return f"The sending server {ip} is probably not allowed to send mail for {whose}: {said}."
    if result == "neutral":
        return f"The Sender ID record of {whose} makes no claim about the server {ip}: {said}."
    if result == "temperror":
        return (
            f"The Sender ID record of {whose} could not be checked because of a temporary DNS "
            f"problem ({outcome.explanation}), so the sender should try again."
        )
    if result == "permerror":
        return (
            f"The Sender ID record of {whose} is broken ({outcome.explanation}), so the server "
            f"{ip} can be neither confirmed nor refused."
        )
    return (
        f"There is no Sender ID or SPF record for {whose}, so the server {ip} can be neither "
        "confirmed nor refused."
    )


class SenderIdFilter(Filter):
    kind = "sender_id"
    Spec = SenderIdSpec
    category = Category.AUTHENTICATION
    codes = (
        FindingCode(
            "SENDERID_<RESULT>",
            "the Sender ID result (PASS, FAIL, SOFTFAIL, NEUTRAL, NONE, TEMPERROR, PERMERROR) "
            "for the Purported Responsible Address",
        ),
        FindingCode("SENDERID_MFROM_<RESULT>", "the same results for the MAIL FROM (mfrom) scope"),
    )

    def __init__(self, spec: SenderIdSpec, ctx: CompileContext) -> None:
        super().__init__(spec, ctx)
        self.spec = spec
        self.outcomes = compile_outcomes(
            spec.on, ctx, defaults=DEFAULT_OUTCOMES, result_replies=RESULT_REPLIES
        )
        # As the spf filter's: a campaign repeats (client, PRA, HELO); the result holds for as
        # long as the answers it rests on (their TTL). Keyed on the exact strings (macros).
        self.memo = SpfMemo()

    def _prefixes(self, scope: Scope) -> tuple[str, ...]:
        own = f"spf2.0/{scope}"
        return (own, "v=spf1") if self.spec.spf1_fallback else (own,)

    def _question(self, envelope: Envelope, scope: Scope, pra: Pra) -> tuple[str, ...]:
        sender = (pra.address or "") if scope == "pra" else (envelope.mail_from or "")
        return (envelope.client.ip, sender, (envelope.client.helo or "").strip(), scope)

    def _known(
        self, lookups: Lookups, envelope: Envelope, scope: Scope, pra: Pra
    ) -> SpfResult | None:
        """The result when it needs no evaluation: no PRA, no resolver, or one the memo holds."""
        helo = (envelope.client.helo or "").strip()
        if scope == "pra":
            if pra.address is None:
                explanation = f"no Purported Responsible Address: {pra.problem}"
                return SpfResult(self.spec.no_pra, explanation, None, 0, None, "")
            sender = pra.address
        else:
            sender = envelope.mail_from or ""
        if lookups.resolver is None:
            return no_resolver((sender.rpartition("@")[2] if sender else helo).lower())
        key = self._question(envelope, scope, pra)
        return self.memo.get(lookups.resolver, key, lookups.clock.now())

    async def _check(
        self, lookups: Lookups, envelope: Envelope, scope: Scope, pra: Pra
    ) -> SpfResult:
        known = self._known(lookups, envelope, scope, pra)
        if known is not None:
            return known
        resolver = lookups.resolver
        assert resolver is not None  # _known answers for a missing resolver
        key = self._question(envelope, scope, pra)
        now = lookups.clock.now()
        _ip, sender, helo, _scope = key
        outcome = await check_host(
            resolver,
            envelope.client.ip,
            sender,
            helo,
            identity="pra" if scope == "pra" else "mfrom",
            record_prefix=self._prefixes(scope),
            timeout=self.spec.timeout,
            nxdomain=self.spec.pra_nxdomain if scope == "pra" else "none",
        )
        self.memo.put(resolver, key, now, outcome)
        return outcome

    def _finding(self, envelope: Envelope, scope: Scope, outcome: SpfResult, pra: Pra) -> Finding:
        compiled = self.outcomes[outcome.result]
        why = unjudged(outcome)
        if why is not None:  # no judgement: recorded only, whatever the profile does with it
            compiled = CompiledOutcome(Action.NONE, 0.0, None)
        prefix = "SENDERID_" if scope == "pra" else "SENDERID_MFROM_"
        variables = reply_variables(envelope, spf_expl=outcome.explanation)
        detail: dict[str, object] = {"scope": scope}
        if scope == "pra":
            detail |= {"pra": pra.address, "pra_header": pra.header}
            if pra.problem:
                detail["pra_problem"] = pra.problem
        detail |= {
            "domain": outcome.domain,
            "result": outcome.result,
            "mechanism": outcome.mechanism,
            "explanation": outcome.explanation,
            "record": outcome.record,
            "lookups": outcome.lookups,
            "spf1_fallback": self.spec.spf1_fallback,
            "client_ip": envelope.client.ip,
            **unjudged_detail(outcome),
        }
        return self.finding(
            code=prefix + outcome.result.upper(),
            action=compiled.action,
            score=compiled.score,
            reason=_reason(scope, envelope.client.ip, outcome, pra if scope == "pra" else None),
            detail=detail,
            reply=compiled.reply.render(variables) if compiled.reply else None,
            unjudged=why,
        )

    async def check_message(self, ctx: MessageContext) -> list[Finding]:
        envelope = ctx.envelope
        try:
            headers = list(ctx.parsed.message.raw_items())
        except Exception:
            headers = []
        pra = purported_responsible_address(headers)
        scopes = list(self.spec.scopes)
        lookups = ctx.lookups
        # Results already known (the memo) need no task each; only the rest run together.
        known = [self._known(lookups, envelope, scope, pra) for scope in scopes]
        todo = [scope for scope, outcome in zip(scopes, known, strict=True) if outcome is None]
        if len(todo) <= 1:  # nothing to run beside it: no task, no loop iteration
            checked = [await self._check(lookups, envelope, scope, pra) for scope in todo]
        else:
            checked = list(
                await asyncio.gather(*(self._check(lookups, envelope, s, pra) for s in todo))
            )
        fresh = iter(checked)
        outcomes = [outcome if outcome is not None else next(fresh) for outcome in known]
        return [
            self._finding(envelope, scope, outcome, pra)
            for scope, outcome in zip(scopes, outcomes, strict=True)
        ]
