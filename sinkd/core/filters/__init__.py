"""The filter registry and the interface every filter kind implements.

Owns ``Filter`` (the base class), the evaluation contexts handed to filters and ``REGISTRY``
(kind → filter class). Adding a kind is one module in this package plus one entry below; the
profile schema's discriminated union is built from the same registry, so they cannot drift.
Filters are pure: no sockets, no disk, no SMTP formatting, no logging of decisions.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from sinkd.core.message import ParsedMessage
from sinkd.core.model import Category, Envelope, Finding, Stage
from sinkd.core.ports import Lookups
from sinkd.core.schema import CompileContext, Spec


@dataclass(frozen=True, slots=True)
class EnvelopeContext:
    """What an envelope-stage check sees: the envelope so far and, at RCPT, the recipient."""

    envelope: Envelope
    rcpt: str | None
    lookups: Lookups
    # Findings so far: at RCPT the MAIL stage's, then those of the filters before this one.
    earlier: tuple[Finding, ...] = field(default=())


@dataclass(frozen=True, slots=True)
class MessageContext:
    """What an end-of-DATA check sees: the envelope of this profile's recipients and the message."""

    envelope: Envelope
    message: ParsedMessage
    lookups: Lookups
    # Findings so far: the envelope stages', then those of the filters before this one.
    earlier: tuple[Finding, ...] = field(default=())


class Filter:
    """Base class of every filter kind.

    Subclasses set ``kind`` (equal to their module name), ``Spec`` (a pydantic model with
    ``kind: Literal[...]`` and ``name``) and override the checks they need. ``answers_at_mail``
    marks kinds whose MAIL-stage findings are answered at MAIL FROM even when the profile
    delays envelope decisions to RCPT (the SIZE check of RFC 1870 §6.1).
    """

    kind: ClassVar[str]
    Spec: ClassVar[type[Spec]]
    category: ClassVar[Category]  # an allowlist's ``skip`` names categories of later filters
    # Every category the filter's findings may carry (mime: content and attachments). A filter
    # is skipped only when all of them are; otherwise only the skipped categories' findings go.
    categories: ClassVar[tuple[Category, ...]] = ()
    answers_at_mail: ClassVar[bool] = False
    # Remembers senders across messages in ``ctx.lookups.state`` (greylist, rate_limit): such
    # memory lives in one process, so a server running it must run one SMTP process.
    keeps_state: ClassVar[bool] = False

    def __init__(self, spec: Any, ctx: CompileContext) -> None:
        self.name: str = spec.name

    async def check_envelope(self, stage: Stage, ctx: EnvelopeContext) -> list[Finding]:
        """Findings at MAIL (``ctx.rcpt`` is None) or at RCPT (once per recipient)."""
        return []

    async def check_message(self, ctx: MessageContext) -> list[Finding]:
        """Findings at the end of DATA."""
        return []


def reply_variables(
    envelope: Envelope, rcpt: str | None = None, **extra: object
) -> dict[str, object]:
    """The ``${var}`` values a reply template may use (see profiles/replies.yaml)."""
    mail_from = envelope.mail_from or ""
    variables: dict[str, object] = {
        "client_ip": envelope.client.ip,
        "client_name": envelope.client.name or "unknown",
        "helo": envelope.client.helo or "",
        "mail_from": mail_from,
        "mail_from_domain": mail_from.rpartition("@")[2] if "@" in mail_from else "",
        "rcpt": rcpt or (envelope.rcpt_to[0] if envelope.rcpt_to else ""),
    }
    variables["rcpt_domain"] = str(variables["rcpt"]).rpartition("@")[2]
    variables.update(extra)
    return variables


def _registry() -> Mapping[str, type[Filter]]:
    from sinkd.core.filters.content import ContentFilter
    from sinkd.core.filters.dkim import DkimFilter
    from sinkd.core.filters.dmarc import DmarcFilter
    from sinkd.core.filters.dnsbl import DnsblFilter
    from sinkd.core.filters.envelope import EnvelopeFilter
    from sinkd.core.filters.format import FormatFilter
    from sinkd.core.filters.greylist import GreylistFilter
    from sinkd.core.filters.mime import MimeFilter
    from sinkd.core.filters.rate_limit import RateLimitFilter
    from sinkd.core.filters.sender_auth import SenderAuthFilter
    from sinkd.core.filters.sender_id import SenderIdFilter
    from sinkd.core.filters.size import SizeFilter
    from sinkd.core.filters.spamassassin import SpamAssassinFilter
    from sinkd.core.filters.spf import SpfFilter

    kinds: list[type[Filter]] = [
        EnvelopeFilter,
        SizeFilter,
        SpfFilter,
        SenderIdFilter,
        DkimFilter,
        SenderAuthFilter,
        DmarcFilter,
        DnsblFilter,
        ContentFilter,
        MimeFilter,
        SpamAssassinFilter,
        FormatFilter,
        GreylistFilter,
        RateLimitFilter,
    ]
    return {cls.kind: cls for cls in kinds}


REGISTRY: Mapping[str, type[Filter]] = _registry()
