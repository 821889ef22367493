"""Store records for the store tests: ``make_record(n)`` is message ``n`` received ``n`` seconds
after ``T0``, with one finding and the disposition of its verdict."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sinkd.core.model import (
    Action,
    Category,
    ClientIdentity,
    Disposition,
    Envelope,
    Finding,
    Reply,
    Stage,
    Verdict,
    VerdictAction,
)
from sinkd.store import MessageRecord

T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)

DISPOSITIONS = {
    VerdictAction.ACCEPT: Disposition.INBOX,
    VerdictAction.QUARANTINE: Disposition.QUARANTINED,
    VerdictAction.REJECT: Disposition.REJECTED,
}


def make_record(
    n: int,
    *,
    verdict: VerdictAction = VerdictAction.ACCEPT,
    profile: str = "default",
    raw: bytes | None = b"Subject: hi\r\n\r\nbody\r\n",
    message_id: str | None = None,
) -> MessageRecord:
    finding = Finding(
        code="CONTENT_SPAM_WORD",
        filter="content",
        category=Category.CONTENT,
        action=Action.SCORE,
        reason="The body uses a phrase spam filters look for.",
        score=1.5,
        detail={"word": "free"},
    )
    v = Verdict(
        profile=profile,
        verdict=verdict,
        disposition=DISPOSITIONS[verdict],
        score=1.5,
        stage=Stage.DATA,
        reply=Reply(250, "2.0.0", "OK"),
        findings=(finding,),
        envelope=Envelope(
            client=ClientIdentity(ip="192.0.2.7", helo="mx.example"),
            mail_from="sender@example.com",
            rcpt_to=("rcpt@example.org",),
        ),
        subject=f"message {n}",
    )
    return MessageRecord(
        id=message_id or f"m{n:04d}",
        received_at=T0 + timedelta(seconds=n),
        transaction_id=f"t{n:04d}",
        verdict=v,
        raw=raw,
    )
