"""Rate limits: messages per minute from one client IP, and recipients per message.

Owns the ``rate_limit`` filter kind, modelled on Postfix: ``messages_per_minute`` is
``smtpd_client_message_rate_limit`` (anvil counts every MAIL FROM of a client per
``anvil_rate_time_unit``, 60 s, accepted or not; over the limit MAIL FROM gets ``450 4.7.1
Error: too much mail from <ip>``), and ``max_recipients`` is ``smtpd_recipient_limit`` (the
recipient after the limit gets ``452 4.5.3 Error: too many recipients``, RFC 5321
§4.5.3.1.10). Both are temporary refusals a well-behaved sender retries.

Pure: the counts come from ``ctx.lookups.state`` at ``ctx.lookups.clock``'s time; each
``rate_limit`` filter counts on its own. Without a memory (``sinkd check``) a client has sent
just this one message; shared counters (``--store postgresql://...``) that cannot be reached
defer with 451 4.3.5 (``RATE_LIMIT_UNAVAILABLE``). An allowlist rule with
``skip: [delivery]`` (matched at MAIL FROM, so the envelope filter comes first) exempts a
sender.

```yaml
- kind: rate_limit
  name: anvil
  messages_per_minute: 30           # per client IP, answered at MAIL FROM
  max_recipients: 100               # per message, answered at RCPT TO
  message_reply: postfix.message_rate       # 450 4.7.1 Error: too much mail from ${client_ip}
  recipient_reply: postfix.recipient_limit  # 452 4.5.3 Error: too many recipients
```
"""

from __future__ import annotations

import itertools
from typing import Literal

from pydantic import Field, model_validator

from sinkd.core.filters.base import EnvelopeContext, Filter, reply_variables
from sinkd.core.model import Action, Category, Finding, FindingCode, Stage, Unjudged
from sinkd.core.ports import STATE_UNAVAILABLE_REPLY
from sinkd.core.schema import CompileContext, FilterSpecBase, ReplyRef
from sinkd.errors import DeliveryStateUnavailable

WINDOW = 60.0  # seconds: Postfix's anvil_rate_time_unit default
_INSTANCES = itertools.count(1)


class RateLimitSpec(FilterSpecBase):
    kind: Literal["rate_limit"]
    messages_per_minute: int | None = Field(default=None, gt=0, le=100000)
    max_recipients: int | None = Field(default=None, gt=0, le=100000)
    message_reply: ReplyRef = "postfix.message_rate"
    recipient_reply: ReplyRef = "postfix.recipient_limit"

    @model_validator(mode="after")
    def _some_limit(self) -> RateLimitSpec:
        if self.messages_per_minute is None and self.max_recipients is None:
            raise ValueError("set messages_per_minute, max_recipients or both")
        return self


class RateLimitFilter(Filter):
    kind = "rate_limit"
    keeps_state = True
    Spec = RateLimitSpec
    category = Category.DELIVERY
    codes = (
        FindingCode("RATE_LIMIT_MESSAGES", "the client started too many messages within a minute"),
        FindingCode(
            "RATE_LIMIT_RECIPIENTS", "the message has the most recipients the server takes"
        ),
        FindingCode(
            "RATE_LIMIT_UNAVAILABLE", "the shared rate counters could not be reached: try later"
        ),
    )
    # Postfix answers the message rate at MAIL FROM, whatever smtpd_delay_reject says.
    answers_at_mail = True

    def __init__(self, spec: RateLimitSpec, ctx: CompileContext) -> None:
        super().__init__(spec, ctx)
        self.spec = spec
        self.message_reply = ctx.reply(spec.message_reply, "message_reply")
        self.recipient_reply = ctx.reply(spec.recipient_reply, "recipient_reply")
        # Each profile's filter counts on its own: two profiles' limits never add up. The scope
        # is the profile id and the filter's (unique) name, the same in every process and
        # every instance sharing a PostgreSQL store, so that their counts add up; a filter
        # compiled outside a profile (no id) gets a scope of its own.
        self.scope = (
            f"{ctx.profile}/{spec.name}" if ctx.profile else f"{spec.name}#{next(_INSTANCES)}"
        )

    async def check_envelope(self, stage: Stage, ctx: EnvelopeContext) -> list[Finding]:
        if ctx.rcpt is None:
            return await self._messages(ctx)
        return self._recipients(ctx, ctx.rcpt)

    async def _messages(self, ctx: EnvelopeContext) -> list[Finding]:
        limit = self.spec.messages_per_minute
        if limit is None:
            return []
        ip = ctx.envelope.client.ip
        state = ctx.lookups.state
        count = 1
        if state is not None:
            try:
                count = await state.note_message(
                    ip, ctx.lookups.clock.now(), WINDOW, scope=self.scope
                )
            except DeliveryStateUnavailable as error:
                return [self._unavailable(ip, limit, error)]
        if count <= limit:
            return []
        return [
            self.finding(
                code="RATE_LIMIT_MESSAGES",
                action=Action.TEMPFAIL,
                reason=(
                    f"The sending server {ip} started {count} messages within a minute, over "
                    f"the limit of {limit}, so it is asked to slow down and try again later."
                ),
                stage=Stage.MAIL,
                detail={"client_ip": ip, "count": count, "limit": limit, "window": WINDOW},
                reply=self.message_reply.render(
                    reply_variables(ctx.envelope, count=count, limit=limit)
                ),
            )
        ]

    def _unavailable(self, ip: str, limit: int, error: DeliveryStateUnavailable) -> Finding:
        """No message counted as under the limit without the counters: deferred as Postfix
        defers when its policy service does not answer (``ports.STATE_UNAVAILABLE_REPLY``)."""
        return self.finding(
            code="RATE_LIMIT_UNAVAILABLE",
            action=Action.TEMPFAIL,
            reason=(
                f"The message rate of {ip} could not be counted: the shared rate counters are "
                "unreachable, so the sender is asked to try again later."
            ),
            stage=Stage.MAIL,
            detail={"client_ip": ip, "limit": limit, "error": str(error)},
            reply=STATE_UNAVAILABLE_REPLY,
            unjudged=Unjudged.UNAVAILABLE,
        )

    def _recipients(self, ctx: EnvelopeContext, rcpt: str) -> list[Finding]:
        limit = self.spec.max_recipients
        accepted = len(ctx.envelope.rcpt_to)
        if limit is None or accepted < limit:
            return []
        return [
            self.finding(
                code="RATE_LIMIT_RECIPIENTS",
                action=Action.TEMPFAIL,
                reason=(
                    f"The message already has {accepted} recipients, the most this server takes "
                    f"at once, so {rcpt} is refused for now; the sender should send it again to "
                    "the remaining recipients."
                ),
                stage=Stage.RCPT,
                detail={"accepted": accepted, "limit": limit},
                reply=self.recipient_reply.render(
                    reply_variables(ctx.envelope, rcpt, count=accepted, limit=limit)
                ),
            )
        ]
