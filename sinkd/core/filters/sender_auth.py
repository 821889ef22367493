"""Sender authentication as a whole: does the message pass SPF or DKIM (either one will do)?

Owns the ``sender_auth`` filter kind, the rule of receivers that refuse mail no check
authenticates: Gmail requires every sender to pass SPF or DKIM and refuses a message that
passes neither with ``550 5.7.26`` at the end of DATA (support.google.com/mail/answer/81126,
"Requirements for all senders"; Gmail SMTP errors, support.google.com/a/answer/3726730).
Alignment with the From domain is not asked (that is DMARC's business).

It reads the findings of the filters before it (``ctx.earlier``), so a profile lists it after
``spf`` and ``dkim``: the SPF result for the MAIL FROM identity (the HELO one only when MAIL FROM
is null, as RFC 7489 §3.1.2 does for DMARC) and every DKIM signature's result. It gives one
finding at DATA:

- ``SENDER_AUTH_PASS``: SPF or a DKIM signature passed (``on.pass``);
- ``SENDER_AUTH_FAIL``: neither passed, and both were judged (``on.fail``);
- ``SENDER_AUTH_TEMPERROR``: neither passed and one of them had a temporary DNS error
  (``on.temperror``): refusing permanently on it would punish the sender for DNS trouble;
- ``SENDER_AUTH_UNJUDGED``: neither passed and SPF or DKIM could not be judged (offline DNS
  without data, a live lookup unanswered): the rule cannot be judged either, so it records
  only, with the same ``unjudged`` as its inputs and their ``detail["dns_names"]``; it never
  refuses on missing data;
- ``SENDER_AUTH_NONE``: no SPF or no DKIM check ran before it (a profile that lists
  ``sender_auth`` without them): recorded only.

```yaml
- kind: sender_auth
  name: spf-or-dkim
  on:
    fail: {action: reject, reply: gmail.unauthenticated}
    temperror: {}               # recorded only (the default for every result)
```
Pure: reads earlier findings only; no DNS of its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from pydantic import ConfigDict, Field

from sinkd.core.filters.base import Filter, MessageContext, reply_variables
from sinkd.core.model import Action, Category, Envelope, Finding, FindingCode, Unjudged
from sinkd.core.ports import no_dns_data_reason
from sinkd.core.schema import (
    RECORD_ONLY,
    CompileContext,
    FilterSpecBase,
    ReplyTemplate,
    RuleOutcome,
    Spec,
)

Result = Literal["pass", "fail", "temperror", "unjudged", "none"]
_JUDGED: tuple[Result, ...] = ("pass", "fail", "temperror")
# When inputs could not be judged for different reasons, the finding carries the gravest:
# a filter error or an unanswered lookup makes the verdict incomplete, missing fixtures do not.
_GRAVITY = (Unjudged.ERROR, Unjudged.UNAVAILABLE, Unjudged.NO_DNS_DATA)


class SenderAuthOutcomes(Spec):
    """What each judged result does; every one is recorded only unless the profile says so."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    pass_: RuleOutcome = Field(default=RECORD_ONLY, alias="pass")
    fail: RuleOutcome = RECORD_ONLY
    temperror: RuleOutcome = RECORD_ONLY

    def of(self, result: Result) -> RuleOutcome:
        if result == "pass":
            return self.pass_
        if result in ("fail", "temperror"):
            outcome: RuleOutcome = getattr(self, result)
            return outcome
        return RECORD_ONLY  # unjudged and none never act


class SenderAuthSpec(FilterSpecBase):
    kind: Literal["sender_auth"]
    on: SenderAuthOutcomes = SenderAuthOutcomes()


@dataclass
class _Inputs:
    """What the earlier SPF and DKIM findings say, for this rule."""

    spf: list[Finding] = field(default_factory=list)
    dkim: list[Finding] = field(default_factory=list)

    @property
    def all(self) -> list[Finding]:
        return self.spf + self.dkim


def _result_of(finding: Finding) -> str:
    result = finding.detail.get("result")
    return str(result) if result else finding.code.rpartition("_")[2].lower()


def gather(earlier: Sequence[Finding], envelope: Envelope) -> _Inputs:
    """The SPF findings for MAIL FROM (HELO when MAIL FROM is null) and every DKIM finding."""
    inputs = _Inputs()
    for finding in earlier:
        # A filter that raised leaves <KIND>_ERROR (the engine's contract): an unjudged input.
        if finding.code == "SPF_ERROR":
            inputs.spf.append(finding)
        elif finding.code.startswith("DKIM_"):  # DKIM_ERROR included
            inputs.dkim.append(finding)
        elif finding.code.startswith("SPF_"):
            identity = finding.detail.get("identity")
            if identity == "mail_from" or (identity == "helo" and envelope.mail_from == ""):
                inputs.spf.append(finding)
    return inputs


class SenderAuthFilter(Filter):
    kind = "sender_auth"
    Spec = SenderAuthSpec
    category = Category.AUTHENTICATION
    codes = (
        FindingCode("SENDER_AUTH_PASS", "SPF or a DKIM signature passed"),
        FindingCode("SENDER_AUTH_FAIL", "neither SPF nor DKIM passed, and both were judged"),
        FindingCode("SENDER_AUTH_TEMPERROR", "neither passed, and a lookup failed for now"),
        FindingCode(
            "SENDER_AUTH_UNJUDGED",
            "neither passed, and SPF or DKIM could not be judged (recorded only)",
        ),
        FindingCode("SENDER_AUTH_NONE", "no SPF or DKIM filter ran before it (recorded only)"),
    )

    def __init__(self, spec: SenderAuthSpec, ctx: CompileContext) -> None:
        super().__init__(spec, ctx)
        self.spec = spec
        self.replies: dict[Result, ReplyTemplate] = ctx.outcome_replies("on", spec.on.of, _JUDGED)

    async def check_message(self, ctx: MessageContext) -> list[Finding]:
        inputs = gather(ctx.earlier, ctx.envelope)
        spf_pass = [f for f in inputs.spf if f.unjudged is None and _result_of(f) == "pass"]
        dkim_pass = [f for f in inputs.dkim if f.unjudged is None and _result_of(f) == "pass"]
        detail: dict[str, object] = {
            "spf": [_summary(f) for f in inputs.spf],
            "dkim": [_summary(f) for f in inputs.dkim],
        }
        mail_from = ctx.envelope.mail_from or ""
        spf_domain = str(inputs.spf[0].detail.get("domain") or "") if inputs.spf else ""
        if spf_pass or dkim_pass:
            how = []
            if spf_pass:
                how.append(f"SPF for {spf_pass[0].detail.get('domain') or mail_from}")
            if dkim_pass:
                domains = sorted({str(f.detail.get("domain") or "") for f in dkim_pass} - {""})
                how.append(f"DKIM for {', '.join(domains) or 'a signing domain'}")
            reason = f"The message is authenticated: it passes {' and '.join(how)}."
            return [self._finding(ctx, "pass", reason, detail, spf_domain)]
        unjudged = [f for f in inputs.all if f.unjudged is not None]
        if unjudged:
            return [self._unjudged(unjudged, detail)]
        if not inputs.spf or not inputs.dkim:
            missing = " and ".join(
                name for name, got in (("SPF", inputs.spf), ("DKIM", inputs.dkim)) if not got
            )
            reason = (
                f"No {missing} check ran before this rule, so whether the message passes SPF or "
                f"DKIM cannot be told; list the {missing.lower()} filter before it."
            )
            return [self._finding(ctx, "none", reason, detail, spf_domain)]
        spf_said = _spf_sentence(inputs.spf, mail_from)
        dkim_said = _dkim_sentence(inputs.dkim)
        temporary = [f for f in inputs.all if _result_of(f) == "temperror"]
        if temporary:
            reason = (
                f"Neither SPF nor DKIM passes ({spf_said}; {dkim_said}), but a DNS lookup failed "
                "for now, so the sender may pass when it tries again."
            )
            return [self._finding(ctx, "temperror", reason, detail, spf_domain)]
        reason = (
            f"The message is not authenticated: {spf_said} and {dkim_said}. Receivers such as "
            "Gmail require every sender to pass SPF or DKIM."
        )
        return [self._finding(ctx, "fail", reason, detail, spf_domain)]

    def _unjudged(self, inputs: Sequence[Finding], detail: dict[str, object]) -> Finding:
        why = min((f.unjudged for f in inputs if f.unjudged), key=_GRAVITY.index)
        names: list[str] = []
        for finding in inputs:
            for name in finding.detail.get("dns_names") or ():
                if str(name) not in names:
                    names.append(str(name))
        checks = " and ".join(sorted({f.code.partition("_")[0] for f in inputs}))
        check = "The rule that a message must pass SPF or DKIM"
        if why is Unjudged.NO_DNS_DATA:
            reason = no_dns_data_reason(check, names)
        elif why is Unjudged.UNAVAILABLE:
            reason = (
                f"{check} could not be judged: a lookup it needed did not answer, so the verdict "
                "was reached without it."
            )
        else:
            reason = (
                f"{check} could not be judged: the {checks} check failed on this message, so "
                "the verdict was reached without it."
            )
        return self.finding(
            code="SENDER_AUTH_UNJUDGED",
            action=Action.NONE,
            reason=reason,
            detail={"result": "unjudged", **detail, "not_judged": checks, "dns_names": names},
            unjudged=why,
        )

    def _finding(
        self,
        ctx: MessageContext,
        result: Result,
        reason: str,
        detail: dict[str, object],
        spf_domain: str,
    ) -> Finding:
        outcome = self.spec.on.of(result)
        reply = None
        if outcome.action.refuses and result in self.replies:
            variables = reply_variables(ctx.envelope, text=reason, spf_domain=spf_domain)
            reply = self.replies[result].render(variables)
        return self.finding(
            code=f"SENDER_AUTH_{result.upper()}",
            action=outcome.action,
            score=outcome.score,
            reason=reason,
            detail={"result": result, **detail},
            reply=reply,
        )


def _summary(finding: Finding) -> dict[str, object]:
    return {
        "code": finding.code,
        "result": _result_of(finding),
        "domain": finding.detail.get("domain"),
        "unjudged": None if finding.unjudged is None else finding.unjudged.value,
    }


def _spf_sentence(spf: Sequence[Finding], mail_from: str) -> str:
    first = spf[0]
    domain = first.detail.get("domain") or mail_from.rpartition("@")[2] or "the sender"
    ip = first.detail.get("client_ip")
    at = f" with the IP {ip}" if ip else ""
    return f"SPF for {domain} gives {_result_of(first)}{at}"


def _dkim_sentence(dkim: Sequence[Finding]) -> str:
    if all(_result_of(f) == "none" for f in dkim):
        return "the message carries no DKIM signature"
    results = sorted({_result_of(f) for f in dkim if _result_of(f) != "none"})
    return f"no DKIM signature passes ({', '.join(results)})"


__all__ = ["SenderAuthFilter", "SenderAuthOutcomes", "SenderAuthSpec", "gather"]
