"""What the ``Recorder`` tests commit: a sink that saves in memory (or fails like a full disk)
and verdicts judged by typical-corporate for a message from alice."""

from __future__ import annotations

from sinkd.core.model import ClientIdentity, Verdict
from sinkd.core.profiles import ProfileSet
from sinkd.services.judge import Identity, Judge, MailEnvelope
from sinkd.store import MessageRecord

SENDER = Identity(ClientIdentity(ip="192.0.2.10", helo="mail.sender.example"))


class Sink:
    """A ``VerdictSink`` in memory."""

    def __init__(self, *, fail: bool = False) -> None:
        self.saved: list[MessageRecord] = []
        self.fail = fail

    async def save(self, record: MessageRecord) -> None:
        if self.fail:
            raise OSError("disk full")
        self.saved.append(record)

    @property
    def writable(self) -> bool:
        return not self.fail

    async def close(self) -> None:
        pass


async def verdicts(raw: bytes, *rcpts: str) -> list[Verdict]:
    judge = Judge(ProfileSet(), profile="typical-corporate")
    return await judge.evaluate(raw, MailEnvelope("alice@sender.example", rcpts), SENDER)
