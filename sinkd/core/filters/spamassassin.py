"""SpamAssassin scoring through spamd.

Owns the ``spamassassin`` filter kind: it asks the injected ``Spamd`` port for a REPORT and
turns SpamAssassin's score and every rule hit into findings. In ``add`` mode the score joins
sinkd's own total and the profile's ``scoring.thresholds`` decide (as amavisd-new adds
SpamAssassin's score to its own); in ``own`` mode the filter maps the score to
tag/quarantine/reject itself (as spamass-milter's reject threshold does). In both modes the
``SPAMASSASSIN_SCORE`` finding carries SpamAssassin's score, so the verdict's ``score`` shows
it (a GTUBE message scores 1000, not 0). A profile in ``own`` mode therefore sets no
``scoring.thresholds`` of its own: they would judge the same points a second time
(``spamassassin-default`` has none; a test keeps every built-in profile so).

spamd down, slow or talking nonsense becomes a ``SPAMASSASSIN_ERROR`` finding with the
profile's ``on_error`` outcome (what the modelled gateway does: spamass-milter and amavisd-new
pass mail unscored, others defer), never a hung session; it is marked
``unjudged=UNAVAILABLE``, so the verdict is incomplete and ``sinkd check`` exits 5. Pure: all
I/O is behind the port.

```yaml
- kind: spamassassin
  name: spamd
  host: 127.0.0.1            # sinkd serve --spamd HOST:PORT overrides every profile's address
  port: 783
  timeout: 30                # seconds, waiting for a free slot included
  max_concurrency: 4         # requests in flight; more wait (bounded by the timeout)
  max_size: 512000           # bigger messages are not sent (spamc's default limit)
  mode: add                  # add: SpamAssassin's score adds to sinkd's; own: thresholds below
  thresholds: {tag: 5.0, quarantine: null, reject: null}
  on_error: {action: tempfail, reply: generic.tempfail}  # or {action: none}: accept, warn
```
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from sinkd.core.filters.base import Filter, MessageContext, reply_variables
from sinkd.core.model import Action, Category, Finding, FindingCode, Unjudged
from sinkd.core.ports import SpamdTarget, SpamReport
from sinkd.core.schema import CompileContext, FilterSpecBase, ReplyRef, RuleOutcome, Spec
from sinkd.errors import BackendError


class SpamThresholds(Spec):
    tag: float | None = 5.0
    quarantine: float | None = None
    reject: float | None = None

    @model_validator(mode="after")
    def _ascending(self) -> SpamThresholds:
        given = [v for v in (self.tag, self.quarantine, self.reject) if v is not None]
        if given != sorted(given):
            raise ValueError("thresholds must ascend: tag <= quarantine <= reject")
        return self


class SpamAssassinSpec(FilterSpecBase):
    kind: Literal["spamassassin"]
    host: str = "127.0.0.1"
    port: int = Field(default=783, ge=1, le=65535)
    timeout: float = Field(default=30.0, gt=0, le=600)
    max_concurrency: int = Field(default=4, ge=1, le=256)
    max_size: int = Field(default=512_000, gt=0)
    mode: Literal["add", "own"] = "add"
    thresholds: SpamThresholds = SpamThresholds()
    reject_reply: ReplyRef = "generic.spam"
    on_error: RuleOutcome = RuleOutcome(action=Action.TEMPFAIL, reply="generic.tempfail")


class SpamAssassinFilter(Filter):
    kind = "spamassassin"
    Spec = SpamAssassinSpec
    category = Category.SCORE
    codes = (
        FindingCode(
            "SPAMASSASSIN_SCORE", "SpamAssassin's score (and, in own mode, what it decides)"
        ),
        FindingCode(
            "SPAMASSASSIN_<RULE>", "a SpamAssassin rule hit, with its points (recorded only)"
        ),
        FindingCode(
            "SPAMASSASSIN_ERROR", "spamd was down, slow or garbled: the on_error outcome (unjudged)"
        ),
        FindingCode("SPAMASSASSIN_SKIPPED", "the message is over max_size and was not sent"),
    )

    def __init__(self, spec: SpamAssassinSpec, ctx: CompileContext) -> None:
        super().__init__(spec, ctx)
        self.spec = spec
        self.target = SpamdTarget(spec.host, spec.port, spec.timeout, spec.max_concurrency)
        self.reject_reply = ctx.reply(spec.reject_reply, "reject_reply")
        error = spec.on_error
        self.error_reply = ctx.at("on_error").outcome_reply(error.action, error.reply)

    async def check_message(self, ctx: MessageContext) -> list[Finding]:
        message = ctx.parsed
        if message.size > self.spec.max_size:
            return [
                self.finding(
                    code="SPAMASSASSIN_SKIPPED",
                    action=Action.NONE,
                    reason=(
                        f"The message ({message.size:,} bytes) is larger than the "
                        f"{self.spec.max_size:,} bytes this gateway sends to SpamAssassin, so it "
                        "was not scored."
                    ),
                    detail={"size": message.size, "max_size": self.spec.max_size},
                )
            ]
        spamd = ctx.lookups.spamd
        try:
            if spamd is None:
                raise BackendError("no spamd client is configured")
            report = await spamd.report(message.raw, self.target)
        except BackendError as exc:
            return [self._error(ctx, str(exc))]
        return [self._score(ctx, report), *self._rules(report)]

    def _error(self, ctx: MessageContext, problem: str) -> Finding:
        outcome = self.spec.on_error
        if outcome.action is Action.TEMPFAIL:
            tail = "so the server asks the sender to try again later"
        elif outcome.action in (Action.NONE, Action.ALLOW):
            tail = "so the message was judged without it"
        else:
            tail = f"so the message gets the gateway's fallback outcome ({outcome.action.value})"
        reason = f"SpamAssassin could not score the message ({problem}), {tail}."
        return self.finding(
            code="SPAMASSASSIN_ERROR",
            action=outcome.action,
            score=outcome.score,
            reason=reason,
            detail={"error": problem},
            reply=self.error_reply.render(reply_variables(ctx.envelope, text=reason)),
            # The profile needs SpamAssassin's answer and did not get it: the verdict is the
            # gateway's fallback, not a judgement of the message.
            unjudged=Unjudged.UNAVAILABLE,
        )

    def _score(self, ctx: MessageContext, report: SpamReport) -> Finding:
        detail: dict[str, object] = {
            "score": report.score,
            "required": report.required,
            "spamd": report.address,
            "tests": [rule.name for rule in report.rules],
            "report": report.report,
        }
        score = f"{report.score:g}"
        if self.spec.mode == "add":
            return self.finding(
                code="SPAMASSASSIN_SCORE",
                action=Action.SCORE,
                score=report.score,
                reason=f"SpamAssassin scored the message {score} points, added to the total.",
                detail=detail,
            )
        limits = self.spec.thresholds
        action, verdict = Action.NONE, "below every threshold"
        for limit, level, words in (
            (limits.reject, Action.REJECT, "at or above the reject threshold"),
            (limits.quarantine, Action.QUARANTINE, "at or above the quarantine threshold"),
            (limits.tag, Action.TAG, "at or above the spam-tagging threshold"),
        ):
            if limit is not None and report.score >= limit:
                action, verdict = level, f"{words} of {limit:g}"
                break
        reply = None
        if action is Action.REJECT:
            reply = self.reject_reply.render(reply_variables(ctx.envelope, score=score))
        return self.finding(
            code="SPAMASSASSIN_SCORE",
            action=action,
            # The verdict's score is SpamAssassin's here too; this filter's own thresholds
            # decided above, and the profile has none to apply it to again (module docstring).
            score=report.score,
            reason=f"SpamAssassin scored the message {score} points, {verdict}.",
            detail=detail,
            reply=reply,
        )

    def _rules(self, report: SpamReport) -> list[Finding]:
        # Each rule is recorded with its score for people to read; the total is already in
        # SPAMASSASSIN_SCORE, so these add nothing to the sum.
        return [
            self.finding(
                code=f"SPAMASSASSIN_{rule.name}",
                action=Action.NONE,
                reason=(
                    f"SpamAssassin rule {rule.name} ({rule.score or 0.0:+g}): {rule.description}"
                ),
                detail={"rule": rule.name, "points": rule.score, "description": rule.description},
            )
            for rule in report.rules
        ]
