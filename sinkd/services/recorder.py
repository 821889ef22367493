"""The ``Recorder``: the one path from verdicts to stored, logged and published records.

Owns committing a batch of verdicts: saving every record (through a ``VerdictSink``) before
anything else happens, then the one log line per verdict, the verdict log's JSON line and the
live ``verdict`` event, and the reply the client gets; and which records are queued for
relaying onward (``--relay``; the queue row goes in the same commit, and the relayer is woken
after it). SMTP and the API's re-evaluation commit through it, so a stored verdict is logged
and published the same way whoever made it. It judges nothing (``sinkd.services.judge``
does) and speaks no protocol beyond formatting a ``Reply`` as the SMTP reply line it is.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from sinkd.core.engine import data_reply
from sinkd.core.model import Reply, Stage, Verdict
from sinkd.services.ids import new_message_id
from sinkd.services.metrics import Metrics
from sinkd.store import MessageRecord, VerdictSink

# The logger operators filter verdict lines by: the name is part of the log's interface
# (``--log-format json`` consumers select on it), so it stays the SMTP adapter's.
verdict_log_line = logging.getLogger("sinkd.smtp")
log = logging.getLogger(__name__)

TEMPFAIL_STORE = Reply(451, "4.3.5", "Unable to process mail; try again later")


class JsonLines(Protocol):
    """The verdict log (``--verdict-log``): one JSON line per stored record."""

    def write(self, message_id: str, data: dict[str, Any]) -> None: ...


class Events(Protocol):
    """The live event hub: ``subscribers`` says whether anyone listens."""

    @property
    def subscribers(self) -> int: ...

    def publish(self, name: str, data: dict[str, Any]) -> None: ...


@dataclass(frozen=True, slots=True)
class Committed:
    """What a commit did: the records (saved unless ``error``) and the reply to send."""

    records: tuple[MessageRecord, ...]
    reply: Reply
    error: Exception | None = None  # the sink's failure: nothing was promised, reply is 451

    @property
    def stored(self) -> bool:
        return self.error is None


class Recorder:
    """Commits verdicts: ``sink`` saves them, ``verdict_log`` (optional) gets one JSON line
    each and ``events`` (optional) one ``verdict`` event each, after the save and before the
    reply. Neither of those two can fail a commit. ``metrics`` (optional) counts every stored
    record and times every commit (``GET /metrics``). ``relay_verdicts`` (``--relay-verdicts``
    when ``--relay`` is set, else empty) says which records are queued for relaying onward;
    ``on_relay_queued`` is called after a commit that queued one (it wakes the relayer)."""

    def __init__(
        self,
        sink: VerdictSink,
        *,
        verdict_log: JsonLines | None = None,
        events: Events | None = None,
        metrics: Metrics | None = None,
        relay_verdicts: Collection[str] = (),
        on_relay_queued: Callable[[], None] | None = None,
    ) -> None:
        self.sink = sink
        self.verdict_log = verdict_log
        self.events = events
        self.metrics = metrics
        self.relay_verdicts = frozenset(relay_verdicts)
        self.on_relay_queued = on_relay_queued

    @property
    def relaying(self) -> bool:
        """Whether this server relays onward (``--relay``): a release then relays too."""
        return bool(self.relay_verdicts)

    def relay_queued(self) -> None:
        """Something was queued for relaying (a commit, a release): wake the relayer."""
        if self.on_relay_queued is not None:
            try:
                self.on_relay_queued()
            except Exception:  # the relayer's scan at its next timer finds it anyway
                log.exception("relay wake-up failed")

    async def commit(
        self,
        verdicts: Sequence[Verdict],
        raw: bytes | None,
        *,
        transaction_id: str | None = None,
        relay: bool = True,
    ) -> Committed:
        """Save one record per verdict (the bytes go with the verdicts judged at DATA), then
        log and publish them; the reply is the refusal for an envelope verdict, else the one
        reply to DATA (``data_reply``). A sink failure is logged and answered with 451.
        ``relay=False`` queues nothing for relaying (a re-evaluation of a stored message)."""
        records = self.records(
            verdicts,
            raw,
            transaction_id=transaction_id,
            relay=self.relay_verdicts if relay else (),
        )
        started = time.perf_counter()
        try:
            if len(records) == 1:  # the common case, without a task per record
                await self.sink.save(records[0])
            else:
                await asyncio.gather(*(self.sink.save(r) for r in records))
        except Exception as exc:
            log.exception("could not store verdict(s) %s", ", ".join(v.id for v in verdicts))
            return Committed(records, TEMPFAIL_STORE, exc)
        if any(r.relay for r in records):
            self.relay_queued()
        if self.metrics is not None:
            self.metrics.commit_seconds.observe(time.perf_counter() - started)
            self.metrics.count(records)
        for record in records:
            log_verdict(record.verdict, record.raw)
        try:
            self.publish(records)
        except Exception:  # a listener's failure never costs the client its reply
            log.exception("commit listener failed")
        if raw is None or not any(v.stage is Stage.DATA for v in verdicts):
            reply = verdicts[0].reply
        else:
            reply = data_reply(verdicts)
        return Committed(records, reply)

    @staticmethod
    def records(
        verdicts: Sequence[Verdict],
        raw: bytes | None,
        *,
        transaction_id: str | None = None,
        relay: Collection[str] = (),
    ) -> tuple[MessageRecord, ...]:
        """The records ``commit`` would save, received now and sharing one transaction id
        (a new one unless given); the bytes go with the verdicts judged at DATA. A record is
        queued for relaying when its verdict is among ``relay`` and it was delivered: judged at
        DATA, with bytes, and answered 2xx (a refused message was never delivered)."""
        now = datetime.now(UTC)
        tid = transaction_id or new_message_id()
        return tuple(
            MessageRecord(
                v.id,
                now,
                tid,
                v,
                raw if v.stage is Stage.DATA else None,
                relay=(
                    v.verdict.value in relay
                    and v.stage is Stage.DATA
                    and raw is not None
                    and v.reply.code < 400
                ),
            )
            for v in verdicts
        )

    def publish(self, records: Sequence[MessageRecord]) -> None:
        """Append the records to the verdict log, then publish them as ``verdict`` events."""
        events = self.events if self.events is not None and self.events.subscribers else None
        if self.verdict_log is None and events is None:
            return  # the JSON is made only for someone to read it
        for record in records:
            data = record.to_json()
            if self.verdict_log is not None:
                self.verdict_log.write(record.id, data)
            if events is not None:
                events.publish("verdict", data)


def format_reply(reply: Reply) -> str:
    """A ``Reply`` as one SMTP reply line (RFC 5321 §4.2, RFC 3463 §2)."""
    text = " ".join(reply.text.split())  # no CR/LF may reach the wire from a template
    return f"{reply.code} {reply.enhanced} {text}"[:512]


def log_verdict(verdict: Verdict, raw: bytes | None) -> None:
    """The one log line per verdict (JSON fields ride in ``extra`` for --log-format json)."""
    if verdict_log_line.isEnabledFor(logging.INFO):
        _verdict_line(verdict, raw)
    for finding in verdict.incomplete:
        # Not a second verdict line: the operator's pointer to a check that did not answer
        # (a scanner down) or to a sinkd bug (a filter that raised), with the message id.
        verdict_log_line.warning(
            "verdict id=%s: %s could not judge the message (%s): %s",
            verdict.id,
            finding.filter,
            finding.unjudged,
            finding.detail.get("error", finding.reason),
        )


def _verdict_line(verdict: Verdict, raw: bytes | None) -> None:
    env = verdict.envelope
    codes = [f.code for f in verdict.findings]
    fields: dict[str, object] = {
        "id": verdict.id,
        "profile": verdict.profile,
        "verdict": verdict.verdict.value,
        "disposition": verdict.disposition.value,
        "stage": verdict.stage.value,
        "score": round(verdict.score, 3),
        "reply": format_reply(verdict.reply),
        "client_ip": env.client.ip,
        "mail_from": env.mail_from,
        "rcpt_to": list(env.rcpt_to),
        "size": None if raw is None else len(raw),
        "codes": codes,
    }
    args = (
        verdict.id,
        verdict.profile,
        fields["verdict"],
        fields["stage"],
        verdict.score,
        env.client.ip,
        env.mail_from or "",
        ",".join(f"<{r}>" for r in env.rcpt_to),
        ",".join(codes) or "-",
        fields["reply"],
    )
    # The record is made here rather than by Logger.info, which would walk the stack to find
    # its caller on every message (findCaller, a third of the logging's ~10 us); the caller
    # is known: this function. Handlers and filters see the same record either way.
    record = verdict_log_line.makeRecord(
        verdict_log_line.name,
        logging.INFO,
        __file__,
        _LINE,
        _VERDICT_FORMAT,
        args,
        None,
        "log_verdict",
        {"sinkd": fields},
    )
    verdict_log_line.handle(record)


_VERDICT_FORMAT = (
    "verdict id=%s profile=%s verdict=%s stage=%s score=%g client=%s from=<%s> to=%s "
    "codes=%s reply=%r"
)
_LINE = _verdict_line.__code__.co_firstlineno
