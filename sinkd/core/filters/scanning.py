"""The refusal of a header block over the profile's header size limit (``scanning:``).

Owns the check a product makes before it scans anything: Exchange's receive connector refuses
a message whose header is over MaxHeaderSize ("552 5.3.4 Header size exceeds fixed maximum
size"), Gmail one whose headers are over its limits (552 5.3.4). It is not a filter kind a
profile lists: the profile loader puts it first in the filters of a profile whose
``scanning.header_size_limit`` says ``action: reject`` (sinkd.core.profiles.compile_loaded),
because the product answers before its filters run. It measures raw octets only (no parse),
so a huge header block costs one search; the cut a product makes instead of refusing is the
parsed message's (``ParsedMessage.within``), and the findings that say a part was only partly
read are the content filter's, which reads them. Pure.
"""

from __future__ import annotations

from sinkd.core.filters.base import Filter, MessageContext, reply_variables
from sinkd.core.limits import HeaderScope, cut_header, header_extent
from sinkd.core.model import Action, Category, Finding, FindingCode
from sinkd.core.schema import ReplyTemplate

__all__ = ["ScanningFilter"]


class ScanningFilter(Filter):
    kind = "scanning"
    category = Category.FORMAT
    ends_judging = True
    codes = (
        FindingCode(
            "SCAN_HEADER_TOO_LARGE",
            "the header is over the profile's header size limit, which the product refuses",
        ),
    )

    def __init__(
        self, limit: int, scope: HeaderScope, reply: ReplyTemplate, source: str | None
    ) -> None:
        self.name = "header-size-limit"
        self.limit = limit
        self.scope = scope
        self.reply = reply
        self.source = source

    async def check_message(self, ctx: MessageContext) -> list[Finding]:
        raw = ctx.parsed.raw
        if self.scope == "block":
            size = header_extent(raw)
            over = size > self.limit
            what = f"The header block is {size:,} bytes"
        else:
            _, cuts = cut_header(raw, self.limit, self.scope)
            over = bool(cuts)
            size = max((c.size for c in cuts), default=0)
            name = cuts[0].name if cuts else ""
            what = f"The {name} header field is {size:,} bytes"
        if not over:
            return []
        reason = f"{what}, over this server's header size limit of {self.limit:,} bytes."
        detail: dict[str, object] = {"size": size, "limit": self.limit, "applies_to": self.scope}
        if self.source:
            detail["source"] = self.source
        return [
            self.finding(
                code="SCAN_HEADER_TOO_LARGE",
                action=Action.REJECT,
                reason=reason,
                detail=detail,
                reply=self.reply.render(
                    reply_variables(ctx.envelope, size=size, limit=self.limit, text=reason)
                ),
            )
        ]
