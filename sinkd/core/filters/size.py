"""Message size limits: the SIZE parameter at MAIL FROM and the real size after DATA.

Owns the ``size`` filter kind, modelled on Postfix's ``message_size_limit`` (default 10240000)
and Gmail's 25 MB limit. Pure: compares numbers it is given.

```yaml
- kind: size
  name: message-size
  max_bytes: 10240000
  action: reject              # the default; reply 552 5.3.4 (RFC 3463 §3.4)
  reply: postfix.size_smtpd
```
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from sinkd.core.filters.base import EnvelopeContext, Filter, MessageContext, reply_variables
from sinkd.core.model import Action, Category, Envelope, Finding, FindingCode, Stage
from sinkd.core.schema import CompileContext, FilterSpecBase, ReplyRef, Score


class SizeSpec(FilterSpecBase):
    kind: Literal["size"]
    max_bytes: int = Field(gt=0)
    action: Action = Action.REJECT
    score: Score = 0.0
    reply: ReplyRef = "postfix.size_smtpd"


class SizeFilter(Filter):
    kind = "size"
    Spec = SizeSpec
    category = Category.ENVELOPE
    codes = (
        FindingCode(
            "SIZE_DECLARED_TOO_BIG", "MAIL FROM's SIZE= is over the limit (answered at MAIL FROM)"
        ),
        FindingCode("SIZE_TOO_BIG", "the message received is over the limit"),
    )
    # RFC 1870 §6.1: a SIZE= value over the limit is refused at MAIL FROM with 552, even by
    # servers that otherwise delay their decisions to RCPT TO.
    answers_at_mail = True

    def __init__(self, spec: SizeSpec, ctx: CompileContext) -> None:
        super().__init__(spec, ctx)
        self.spec = spec
        self.reply = ctx.reply(spec.reply)

    def _finding(self, envelope: Envelope, size: int, stage: Stage, declared: bool) -> Finding:
        limit = self.spec.max_bytes
        how = "declares" if declared else "is"
        return self.finding(
            code="SIZE_DECLARED_TOO_BIG" if declared else "SIZE_TOO_BIG",
            action=self.spec.action,
            score=self.spec.score,
            reason=(
                f"The message {how} {size:,} bytes, over this server's limit of {limit:,} bytes."
            ),
            stage=stage,
            detail={"size": size, "limit": limit, "declared": declared},
            reply=self.reply.render(reply_variables(envelope, size=size, limit=limit)),
        )

    async def check_envelope(self, stage: Stage, ctx: EnvelopeContext) -> list[Finding]:
        declared = ctx.envelope.size_param
        if ctx.rcpt is None and declared is not None and declared > self.spec.max_bytes:
            return [self._finding(ctx.envelope, declared, Stage.MAIL, True)]
        return []

    async def check_message(self, ctx: MessageContext) -> list[Finding]:
        if ctx.parsed.size > self.spec.max_bytes:
            return [self._finding(ctx.envelope, ctx.parsed.size, Stage.DATA, False)]
        return []
