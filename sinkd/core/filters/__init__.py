"""The filter registry: every filter kind, and what is built from that one list.

Owns ``REGISTRY`` (kind → filter class) and what must name every kind: the profile schema's
discriminated union (``FilterSpec``) and the compile step (``compile_filters``). Adding a kind
is one module in this package (importing ``sinkd.core.filters.base``, never this package) plus
one line in ``_KINDS`` below. It evaluates no mail itself and never imports the engine or the
profile loader.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Annotated, TypeAlias, Union

from pydantic import Field

from sinkd.core.filters import (
    content,
    dkim,
    dmarc,
    dnsbl,
    envelope,
    format,
    greylist,
    mime,
    postfix_cleanup,
    postfix_smtpd,
    rate_limit,
    sender_auth,
    sender_id,
    size,
    spamassassin,
    spamassassin_rules,
    spf,
    transport_rules,
)
from sinkd.core.filters.base import (
    EnvelopeContext,
    Filter,
    MessageContext,
    reply_variables,
)
from sinkd.core.limits import DEFAULT_SCAN_LIMITS, ScanLimits
from sinkd.core.schema import CompileContext, FilterSpecBase, ListValue, ReplyTemplate

__all__ = [
    "REGISTRY",
    "EnvelopeContext",
    "Filter",
    "FilterSpec",
    "MessageContext",
    "compile_filters",
    "reply_variables",
]

# One line per kind, in the order ``sinkd profiles`` documents them.
_KINDS: tuple[type[Filter], ...] = (
    envelope.EnvelopeFilter,
    size.SizeFilter,
    spf.SpfFilter,
    sender_id.SenderIdFilter,
    dkim.DkimFilter,
    sender_auth.SenderAuthFilter,
    dmarc.DmarcFilter,
    dnsbl.DnsblFilter,
    content.ContentFilter,
    mime.MimeFilter,
    spamassassin.SpamAssassinFilter,
    spamassassin_rules.SpamAssassinRulesFilter,
    format.FormatFilter,
    greylist.GreylistFilter,
    rate_limit.RateLimitFilter,
    transport_rules.TransportRulesFilter,
    postfix_smtpd.PostfixSmtpdFilter,
    postfix_cleanup.PostfixCleanupFilter,
)

REGISTRY: Mapping[str, type[Filter]] = {cls.kind: cls for cls in _KINDS}

if TYPE_CHECKING:
    # A union built at run time is no type to mypy; what code may rely on statically is what
    # every kind's spec shares (kind, name, source/assumption).
    FilterSpec: TypeAlias = FilterSpecBase
else:
    # One member per registered kind, told apart by ``kind:`` (the profile schema's union).
    FilterSpec = Annotated[
        Union[tuple(cls.Spec for cls in _KINDS)],  # noqa: UP007 (a tuple needs Union[...])
        Field(discriminator="kind"),
    ]


def compile_filters(
    specs: Sequence[FilterSpecBase],
    lists: Mapping[str, ListValue],
    replies: Mapping[str, ReplyTemplate],
    limits: ScanLimits = DEFAULT_SCAN_LIMITS,
    profile: str = "",
) -> tuple[Filter, ...]:
    """Instantiate a profile's filters in order, with the profile's scanning limits; errors are
    ``CompileError``s located at ``filters[index]``. ``profile``: the profile's id."""
    return tuple(
        REGISTRY[spec.kind](
            spec,
            CompileContext(
                lists=lists, replies=replies, loc=("filters", i), limits=limits, profile=profile
            ),
        )
        for i, spec in enumerate(specs)
    )
