"""The interface every filter kind implements and what the filters share.

Owns ``Filter`` (the base class), the evaluation contexts handed to filters and the reply
variables. Every filter module imports this module, never the package ``sinkd.core.filters``
(which imports every filter module to build the registry). Filters are pure: no sockets, no
disk, no SMTP formatting, no logging of decisions.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from sinkd.core.message import ParsedMessage
from sinkd.core.model import (
    Action,
    Category,
    Envelope,
    Finding,
    FindingCode,
    Reply,
    Stage,
    StripPlan,
    Unjudged,
)
from sinkd.core.ports import Lookups
from sinkd.core.schema import CompileContext, FilterSpecBase
from sinkd.errors import UndeclaredCode


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
    parsed: ParsedMessage  # its ``.message`` is the email package's view of the same message
    lookups: Lookups
    # Findings so far: the envelope stages', then those of the filters before this one.
    earlier: tuple[Finding, ...] = field(default=())


class Filter:
    """Base class of every filter kind.

    Subclasses set ``kind`` (equal to their module name), ``Spec`` (a ``FilterSpecBase``
    narrowing ``kind`` to ``Literal[...]``) and override the checks they need. ``answers_at_mail``
    marks kinds whose MAIL-stage findings are answered at MAIL FROM even when the profile
    delays envelope decisions to RCPT (the SIZE check of RFC 1870 §6.1).
    """

    kind: ClassVar[str]
    Spec: ClassVar[type[FilterSpecBase]]
    category: ClassVar[Category]  # an allowlist's ``skip`` names categories of later filters
    # Every category the filter's findings may carry (mime: content and attachments). A filter
    # is skipped only when all of them are; otherwise only the skipped categories' findings go.
    categories: ClassVar[tuple[Category, ...]] = ()
    answers_at_mail: ClassVar[bool] = False
    # A refusal of this filter ends the evaluation: the product answers it before its content
    # filters run (the scanning filter: a header block over Exchange's MaxHeaderSize or Gmail's
    # header limit is refused as it arrives), so no later filter reads the message.
    ends_judging: ClassVar[bool] = False
    # Remembers senders across messages in ``ctx.lookups.state`` (greylist, rate_limit): such
    # memory lives in one process, so a server running it must run one SMTP process.
    keeps_state: ClassVar[bool] = False
    # Where most of its findings are answered; ``finding(stage=...)`` says otherwise.
    stage: ClassVar[Stage] = Stage.DATA
    # Every code its findings may carry, each with its meaning (the catalogue in docs/filters.md).
    codes: ClassVar[tuple[FindingCode, ...]] = ()
    _declared: ClassVar[re.Pattern[str]] = re.compile("(?!)")  # matches nothing

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        alternatives = "|".join(f"(?:{c.pattern})" for c in cls.codes) or "(?!)"
        cls._declared = re.compile(alternatives)

    def __init__(self, spec: Any, ctx: CompileContext) -> None:
        self.name: str = spec.name

    @classmethod
    def declares(cls, code: str) -> bool:
        """Whether ``code`` is one of this kind's declared codes."""
        return cls._declared.fullmatch(code) is not None

    def finding(
        self,
        code: str,
        action: Action,
        reason: str,
        *,
        score: float = 0.0,
        stage: Stage | None = None,
        category: Category | None = None,
        detail: Mapping[str, Any] | None = None,
        reply: Reply | None = None,
        skip: frozenset[str] = frozenset(),
        strip: StripPlan | None = None,
        unjudged: Unjudged | None = None,
    ) -> Finding:
        """A finding of this filter: its name, its category and its stage unless given.

        Raises ``UndeclaredCode`` for a code missing from ``codes``, so that the catalogue of
        codes cannot fall behind what the filters emit."""
        if not self.declares(code):
            raise UndeclaredCode(f"the {self.kind} filter does not declare the code {code!r}")
        return Finding(
            code=code,
            filter=self.name,
            category=self.category if category is None else category,
            action=action,
            reason=reason,
            score=score,
            stage=self.stage if stage is None else stage,
            detail={} if detail is None else detail,
            reply=reply,
            skip=skip,
            strip=strip,
            unjudged=unjudged,
        )

    async def check_envelope(self, stage: Stage, ctx: EnvelopeContext) -> list[Finding]:
        """Findings at MAIL (``ctx.rcpt`` is None) or at RCPT (once per recipient)."""
        return []

    async def check_connect(self, ctx: EnvelopeContext) -> list[Finding]:
        """Findings when the client connects, answered in place of the greeting (Postfix's
        smtpd_client_restrictions with smtpd_delay_reject = no). Only a refusal is answered
        here: what else a kind finds it finds again at MAIL FROM, where the transaction's
        record begins. ``ctx.envelope`` has the client only."""
        return []

    async def check_helo(self, ctx: EnvelopeContext) -> list[Finding]:
        """Findings at HELO/EHLO, answered as its reply (Postfix's smtpd_helo_restrictions
        with smtpd_delay_reject = no); as ``check_connect``, only a refusal is answered."""
        return []

    async def check_data_command(self, ctx: EnvelopeContext) -> list[Finding]:
        """Findings at the DATA command, before its 354 (``ctx.rcpt`` is None; ``ctx.envelope``
        names this profile's accepted recipients): what a product decides from the envelope
        alone when the client asks to send the message (Postfix's smtpd_data_restrictions).
        A refusal here is the reply to DATA; a kind that keeps this method answers nothing
        there and is never called at that stage."""
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
