"""SPF (RFC 7208): may the sending server use the MAIL FROM domain and the HELO name?

Owns the ``spf`` filter kind. At MAIL FROM it runs ``check_host()`` (``sinkd.core.spf_eval``, pyspf
over the injected resolver) for each identity: the MAIL FROM domain (§2.4; the null sender
``<>`` is checked as ``postmaster@<HELO>``) and the HELO name (§2.3; an address literal such
as ``[192.0.2.1]`` has no SPF record: ``none``). Every result is a finding, ``pass`` included,
so that DMARC and the reports can read it; each result's outcome comes from ``on``. By default
``fail`` is refused with RFC 7372's ``550 5.7.23`` and ``temperror`` deferred with RFC 7208
§8.6's ``451 4.4.3``; the others are recorded only (§8.5: softfail "SHOULD NOT" be rejected
on its own). A missing resolver is a ``temperror``. Pure: DNS only through ``ctx.lookups``.

```yaml
- kind: spf
  name: spf
  identities: [mail_from, helo]      # the default; [mail_from] as Exchange Online checks
  timeout: 20                        # seconds for one whole check (RFC 7208 §4.6.4)
  on:                                # a result given here replaces its default outright
    fail: {action: reject, reply: spf.rfc7372_fail}   # the default (550 5.7.23)
    softfail: {score: 1.0}           # action defaults to score when a score is given
    temperror: {action: tempfail, reply: spf.temperror}  # the default (451 4.4.3)
    permerror: {action: reject}      # reply defaults to spf.permerror (550 5.5.2)
```

Codes: ``SPF_PASS``, ``SPF_FAIL``, ``SPF_SOFTFAIL``, ``SPF_NEUTRAL``, ``SPF_NONE``,
``SPF_TEMPERROR``, ``SPF_PERMERROR`` for MAIL FROM and ``SPF_HELO_*`` for HELO. Without an
explicit reply a refusal uses the result's catalogue reply when its class fits the action
(5xx for reject, 4xx for tempfail), else ``generic.policy`` / ``generic.tempfail``.

A check that could not be judged records only, whatever ``on`` says: offline DNS without data
for a name the evaluation needed gives ``SPF_NONE`` with ``unjudged=no-dns-data`` and
``detail["dns_names"]``; a lookup live DNS did not answer in time gives ``SPF_TEMPERROR`` with
``unjudged=unavailable`` (a fixture's forced TIMEOUT or SERVFAIL stays the profile's own
temperror outcome: it models the gateway's DNS trouble). ``detail["result"]`` always holds the
RFC 7208 result (``pass``, ``fail``, ``softfail``, ``neutral``, ``none``, ``temperror``,
``permerror``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from pydantic import Field, field_validator

from sinkd.core.filters.base import EnvelopeContext, Filter, reply_variables
from sinkd.core.model import Action, Category, Envelope, Finding, FindingCode, Stage, Unjudged
from sinkd.core.ports import Lookups, Resolver, no_dns_data_reason
from sinkd.core.schema import (
    CompileContext,
    FilterSpecBase,
    ReplyRef,
    ReplyTemplate,
    Score,
    Spec,
)
from sinkd.core.spf_eval import SpfResult, SpfResultCode, check_host, is_checkable_domain

SpfIdentity = Literal["mail_from", "helo"]
RESULTS: tuple[SpfResultCode, ...] = (
    "pass",
    "fail",
    "softfail",
    "neutral",
    "none",
    "temperror",
    "permerror",
)


class ResultOutcome(Spec):
    """What one SPF result does. ``action`` defaults to ``score`` when a score is given, else
    ``none`` (recorded only)."""

    action: Action | None = None
    score: Score = 0.0
    reply: ReplyRef | None = None


DEFAULT_OUTCOMES: Mapping[SpfResultCode, ResultOutcome] = {
    "fail": ResultOutcome(action=Action.REJECT, reply="spf.rfc7372_fail"),
    "temperror": ResultOutcome(action=Action.TEMPFAIL, reply="spf.temperror"),
}
# The catalogue reply a result's refusal uses when the profile names none (if its class fits).
RESULT_REPLIES: Mapping[SpfResultCode, str] = {
    "fail": "spf.rfc7372_fail",
    "softfail": "spf.rfc7372_fail",
    "temperror": "spf.temperror",
    "permerror": "spf.permerror",
}


@dataclass(frozen=True, slots=True)
class CompiledOutcome:
    action: Action
    score: float
    reply: ReplyTemplate | None


def compile_outcomes(
    given: Mapping[SpfResultCode, ResultOutcome],
    ctx: CompileContext,
    *,
    defaults: Mapping[SpfResultCode, ResultOutcome] = DEFAULT_OUTCOMES,
    result_replies: Mapping[SpfResultCode, str] = RESULT_REPLIES,
) -> dict[SpfResultCode, CompiledOutcome]:
    """Each result's outcome: the profile's, else the default; replies resolved now."""
    compiled: dict[SpfResultCode, CompiledOutcome] = {}
    for result in RESULTS:
        outcome = given.get(result) or defaults.get(result) or ResultOutcome()
        action = outcome.action or (Action.SCORE if outcome.score else Action.NONE)
        here = ctx.at("on", result)
        reply: ReplyTemplate | None = None
        if outcome.reply is not None:
            reply = here.reply(outcome.reply)
        elif action.refuses:
            wanted = 4 if action is Action.TEMPFAIL else 5
            own = result_replies.get(result)
            candidate = here.reply(own) if own else None
            if candidate is not None and candidate.code // 100 == wanted:
                reply = candidate
            else:
                reply = here.reply("generic.tempfail" if wanted == 4 else "generic.policy")
        compiled[result] = CompiledOutcome(action, outcome.score, reply)
    return compiled


class SpfSpec(FilterSpecBase):
    kind: Literal["spf"]
    identities: list[SpfIdentity] = Field(default=["mail_from", "helo"], min_length=1)
    on: dict[SpfResultCode, ResultOutcome] = {}
    timeout: float = Field(default=20.0, gt=0, le=300)

    @field_validator("identities")
    @classmethod
    def _unique(cls, value: list[SpfIdentity]) -> list[SpfIdentity]:
        if len(set(value)) != len(value):
            raise ValueError("each identity may be listed once")
        return value


def mechanism_text(outcome: SpfResult) -> str:
    return f" ({outcome.mechanism})" if outcome.mechanism else ""


def unjudged(outcome: SpfResult) -> Unjudged | None:
    """Why an SPF or Sender ID result is no judgement, or None when it is one."""
    if outcome.unknown:
        return Unjudged.NO_DNS_DATA
    if outcome.unanswered:
        return Unjudged.UNAVAILABLE
    return None


def unjudged_detail(outcome: SpfResult) -> dict[str, object]:
    """The detail keys of a result that is no judgement (the contract of ``Unjudged``)."""
    if outcome.unknown:
        return {"dns_names": list(outcome.unknown)}
    if outcome.unanswered:
        return {"dns_names": list(outcome.unanswered)}
    return {}


def spf_reason(identity: SpfIdentity, ip: str, outcome: SpfResult) -> str:
    """One plain sentence for a marketer."""
    domain = outcome.domain
    result = outcome.result
    if outcome.unknown:
        what = "SPF of the HELO name" if identity == "helo" else "SPF"
        return no_dns_data_reason(f"{what} for {domain}", outcome.unknown)
    if outcome.unanswered:
        return (
            f"SPF for {domain} could not be judged: live DNS did not answer in time "
            f"({', '.join(outcome.unanswered)}), so the verdict was reached without it."
        )
    said = f"its SPF record says {result}{mechanism_text(outcome)}"
    if identity == "helo":
        use = f"use the name {domain} it introduced itself with"
        subject = f"The name {domain} the sending server introduced itself with"
    else:
        use = f"send mail for {domain}"
        subject = domain
    if result == "pass":
        return f"The sending server {ip} is allowed to {use}: {said}."
    if result == "fail":
        return f"The sending server {ip} is not allowed to {use}: {said}."
    if result == "softfail":
        return f"The sending server {ip} is probably not allowed to {use}: {said}."
    if result == "neutral":
        return f"{subject} makes no claim about the sending server {ip}: {said}."
    if result == "temperror":
        return (
            f"The SPF record of {domain or 'the sender'} could not be checked because of a "
            f"temporary DNS problem ({outcome.explanation}), so the sender should try again."
        )
    if result == "permerror":
        return (
            f"The SPF record of {domain} is broken ({outcome.explanation}), so the sending "
            f"server {ip} can be neither confirmed nor refused."
        )
    # none
    if not domain:
        return "The sending server gave no HELO name, so there is no SPF record to check."
    if not is_checkable_domain(domain):
        if identity == "helo":
            return (
                f"The sending server introduced itself as {domain}, which is not a domain name, "
                "so there is no SPF record to check."
            )
        return (
            f"The sender's domain {domain} is not a domain name that can publish SPF, so there "
            "is no SPF record to check."
        )
    return (
        f"{subject} publishes no SPF record, so the sending server {ip} can be neither "
        "confirmed nor refused."
    )


class SpfMemo:
    """``check_host()`` results kept for as long as the DNS answers they rest on hold (their
    smallest TTL, ``SpfResult.ttl``), as a caching resolver would keep the answers themselves.

    Campaign mail repeats the same (client, sender, HELO) over and over; evaluating SPF again
    gives the same result until a record expires, at a cost of ~0.4 ms each (pyspf in a worker
    thread). Results are kept per resolver (a routing change brings a new one); temperrors and
    results on answers without a TTL are never kept. Pure: time comes from the caller.
    """

    LIMIT = 4096  # entries; past it the memo starts afresh (a sink sees few distinct senders)

    def __init__(self) -> None:
        self._entries: dict[tuple[str, ...], tuple[Resolver, float, SpfResult]] = {}

    def get(self, resolver: Resolver, key: tuple[str, ...], now: float) -> SpfResult | None:
        entry = self._entries.get(key)
        if entry is None or entry[0] is not resolver or entry[1] <= now:
            return None
        return entry[2]

    def put(self, resolver: Resolver, key: tuple[str, ...], now: float, result: SpfResult) -> None:
        if result.result == "temperror" or result.ttl <= 0:
            return
        if len(self._entries) >= self.LIMIT:
            self._entries.clear()
        self._entries[key] = (resolver, now + result.ttl, result)


def no_resolver(domain: str) -> SpfResult:
    return SpfResult("temperror", "no DNS resolver is available", None, 0, None, domain)


class SpfFilter(Filter):
    kind = "spf"
    Spec = SpfSpec
    category = Category.AUTHENTICATION
    codes = (
        FindingCode("SPF_PASS", "the MAIL FROM identity is authorised by the domain's SPF record"),
        FindingCode(
            "SPF_FAIL",
            "the domain's SPF record says the MAIL FROM identity is not authorised (-all)",
        ),
        FindingCode(
            "SPF_SOFTFAIL",
            "the domain's SPF record says the MAIL FROM identity is probably not authorised (~all)",
        ),
        FindingCode(
            "SPF_NEUTRAL", "the domain's SPF record makes no assertion about this sender (?all)"
        ),
        FindingCode("SPF_NONE", "no SPF record to judge by (or no DNS data for it: unjudged)"),
        FindingCode("SPF_TEMPERROR", "a DNS lookup failed for now"),
        FindingCode("SPF_PERMERROR", "the SPF record is broken (syntax, too many lookups)"),
        FindingCode("SPF_HELO_<RESULT>", "the same results (PASS, FAIL, …) for the HELO identity"),
    )

    def __init__(self, spec: SpfSpec, ctx: CompileContext) -> None:
        super().__init__(spec, ctx)
        self.spec = spec
        self.outcomes = compile_outcomes(spec.on, ctx)
        self.memo = SpfMemo()

    def _known(
        self, lookups: Lookups, envelope: Envelope, identity: SpfIdentity
    ) -> SpfResult | None:
        """The result when it needs no evaluation: no resolver, or one the memo holds."""
        client = envelope.client
        helo = (client.helo or "").strip()
        sender = (envelope.mail_from or "") if identity == "mail_from" else ""
        resolver = lookups.resolver
        if resolver is None:
            domain = sender.rpartition("@")[2] if sender else helo
            return no_resolver(domain.lower())
        key = (client.ip, sender.lower(), helo.lower(), identity)
        return self.memo.get(resolver, key, lookups.clock.now())

    async def _check(
        self, lookups: Lookups, envelope: Envelope, identity: SpfIdentity
    ) -> SpfResult:
        known = self._known(lookups, envelope, identity)
        if known is not None:
            return known
        client = envelope.client
        helo = (client.helo or "").strip()
        sender = (envelope.mail_from or "") if identity == "mail_from" else ""
        resolver = lookups.resolver
        assert resolver is not None  # _known answers for a missing resolver
        key = (client.ip, sender.lower(), helo.lower(), identity)
        now = lookups.clock.now()
        outcome = await check_host(
            resolver,
            client.ip,
            sender,
            helo,
            identity="mfrom" if identity == "mail_from" else "helo",
            timeout=self.spec.timeout,
        )
        self.memo.put(resolver, key, now, outcome)
        return outcome

    def _finding(self, envelope: Envelope, identity: SpfIdentity, outcome: SpfResult) -> Finding:
        compiled = self.outcomes[outcome.result]
        why = unjudged(outcome)
        if why is not None:  # no judgement: recorded only, whatever the profile does with it
            compiled = CompiledOutcome(Action.NONE, 0.0, None)
        prefix = "SPF_HELO_" if identity == "helo" else "SPF_"
        variables = reply_variables(envelope, spf_expl=outcome.explanation)
        checked = envelope.mail_from if identity == "mail_from" else ""
        sender = checked or f"postmaster@{outcome.domain}"  # RFC 7208 §2.3, §2.4
        return self.finding(
            code=prefix + outcome.result.upper(),
            action=compiled.action,
            score=compiled.score,
            reason=spf_reason(identity, envelope.client.ip, outcome),
            stage=Stage.MAIL,
            detail={
                "identity": identity,
                "sender": sender,
                "domain": outcome.domain,
                "result": outcome.result,
                "mechanism": outcome.mechanism,
                "explanation": outcome.explanation,
                "record": outcome.record,
                "lookups": outcome.lookups,
                "client_ip": envelope.client.ip,
                **unjudged_detail(outcome),
            },
            reply=compiled.reply.render(variables) if compiled.reply else None,
            unjudged=why,
        )

    async def check_envelope(self, stage: Stage, ctx: EnvelopeContext) -> list[Finding]:
        envelope = ctx.envelope
        if ctx.rcpt is not None or envelope.mail_from is None:
            return []
        identities = list(self.spec.identities)
        # RFC 7208 §2.4: a null sender is checked as postmaster@<HELO>, which is the HELO check
        # itself; run it once and report it for both identities.
        if envelope.mail_from == "" and set(identities) == {"mail_from", "helo"}:
            outcomes = [await self._check(ctx.lookups, envelope, "mail_from")] * 2
        else:
            # Results already known (the memo) need no task each; only the rest run together.
            known = [self._known(ctx.lookups, envelope, i) for i in identities]
            todo = [i for i, outcome in zip(identities, known, strict=True) if outcome is None]
            if len(todo) <= 1:  # nothing to run beside it: no task, no loop iteration
                checked = [await self._check(ctx.lookups, envelope, i) for i in todo]
            else:
                checked = list(
                    await asyncio.gather(*(self._check(ctx.lookups, envelope, i) for i in todo))
                )
            fresh = iter(checked)
            outcomes = [outcome if outcome is not None else next(fresh) for outcome in known]
        return [
            self._finding(envelope, identity, outcome)
            for identity, outcome in zip(identities, outcomes, strict=True)
        ]
