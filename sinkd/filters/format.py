"""Message format hygiene: bare line ends, NUL bytes, over-long lines, smuggling look-alikes and
MIME defects.

Owns the ``format`` filter kind. Real gateways differ here (Postfix 3.9 can refuse bare LF,
Exchange rewraps long lines, most accept broken MIME), so each problem has its own outcome;
by default each is recorded and nothing more. Pure: reads counts the parser already made.

```yaml
- kind: format
  name: rfc-hygiene
  bare_lf: {action: none}                  # RFC 5321 §2.3.8: lines end in CRLF
  smuggling: {action: reject, reply: "550 5.5.2 Message contains bare end-of-data sequences"}
  nul_bytes: {action: score, score: 1.0}
  long_lines: {action: none}               # RFC 5322 §2.1.1: at most 998 octets a line
  mime_defects: {action: none}
```
"""

from __future__ import annotations

from typing import Literal

from sinkd.filters import Filter, MessageContext, reply_variables
from sinkd.model import Action, Category, Finding, Stage
from sinkd.schema import CompileContext, FilterName, Outcome, ReplyTemplate, Spec

_NOTE = Outcome(action=Action.NONE)


class FormatSpec(Spec):
    kind: Literal["format"]
    name: FilterName
    bare_lf: Outcome = _NOTE
    smuggling: Outcome = _NOTE
    nul_bytes: Outcome = _NOTE
    long_lines: Outcome = _NOTE
    mime_defects: Outcome = _NOTE


class FormatFilter(Filter):
    kind = "format"
    Spec = FormatSpec
    category = Category.FORMAT

    def __init__(self, spec: FormatSpec, ctx: CompileContext) -> None:
        super().__init__(spec, ctx)
        self.spec = spec
        self.replies: dict[str, ReplyTemplate] = {}
        for field in ("bare_lf", "smuggling", "nul_bytes", "long_lines", "mime_defects"):
            outcome: Outcome = getattr(spec, field)
            default = (
                "generic.tempfail" if outcome.action is Action.TEMPFAIL else "postfix.content_text"
            )
            self.replies[field] = ctx.at(field).reply(outcome.reply or default)

    def _finding(
        self, ctx: MessageContext, field: str, code: str, reason: str, detail: dict[str, object]
    ) -> Finding:
        outcome: Outcome = getattr(self.spec, field)
        return Finding(
            code=code,
            filter=self.name,
            category=Category.FORMAT,
            action=outcome.action,
            score=outcome.score,
            reason=reason,
            stage=Stage.DATA,
            detail=detail,
            reply=self.replies[field].render(reply_variables(ctx.envelope, text=reason)),
        )

    async def check_message(self, ctx: MessageContext) -> list[Finding]:
        issues = ctx.message.raw_issues
        findings: list[Finding] = []
        if issues.smuggling:
            findings.append(
                self._finding(
                    ctx,
                    "smuggling",
                    "FORMAT_SMUGGLING",
                    "The message contains end-of-data look-alikes (a dot on a line ended by a "
                    "bare CR or LF), the trick behind SMTP smuggling; some servers would split "
                    "the message there.",
                    {"sequences": issues.smuggling},
                )
            )
        if issues.bare_lf or issues.bare_cr:
            findings.append(
                self._finding(
                    ctx,
                    "bare_lf",
                    "FORMAT_BARE_LINE_ENDING",
                    f"{issues.bare_lf + issues.bare_cr} lines end in a bare LF or CR instead of "
                    "CRLF; strict servers refuse such mail.",
                    {"bare_lf": issues.bare_lf, "bare_cr": issues.bare_cr},
                )
            )
        if issues.nul_bytes:
            findings.append(
                self._finding(
                    ctx,
                    "nul_bytes",
                    "FORMAT_NUL_BYTES",
                    f"The message contains {issues.nul_bytes} NUL bytes, "
                    "which mail must not carry.",
                    {"count": issues.nul_bytes},
                )
            )
        if issues.long_lines:
            findings.append(
                self._finding(
                    ctx,
                    "long_lines",
                    "FORMAT_LONG_LINES",
                    f"{issues.long_lines} lines are longer than the 998 characters mail allows "
                    f"(longest {issues.max_line_length}); some servers break or refuse them.",
                    {"count": issues.long_lines, "longest": issues.max_line_length},
                )
            )
        defects = ctx.message.defects
        if defects:
            shown = "; ".join(defects[:3]) + ("; ..." if len(defects) > 3 else "")
            findings.append(
                self._finding(
                    ctx,
                    "mime_defects",
                    "FORMAT_MIME_DEFECTS",
                    f"The message is not well-formed MIME: {shown}.",
                    {"defects": defects[:50], "count": len(defects)},
                )
            )
        return findings
