"""A record as the store keeps it: its column values, its JSON text and the case-folded text
the substring filters search.

Owns ``prepare`` (a ``MessageRecord`` to plain values; ``prepare_json`` from its JSON shape)
and the folding rules of ``Query``'s text filters, shared by every backend: the SQLite writer
(thread or process) stores exactly these values, the writer process prepares the records sent
to it as data, a worker of ``--workers`` prepares them before sending, and ``MemoryStore``
filters on them, so the backends cannot drift apart. Standard library only, as the writer
process must start small; it must not touch a database or decide anything about mail.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, NamedTuple

from sinkd.errors import StoreError
from sinkd.store import MessageRecord, iso


class MessageRow(NamedTuple):
    """A record's columns of the messages table, in INSERT_MESSAGE's order (the writer adds
    ``received_max``, see ``ReceivedClock``)."""

    id: str
    received_at: str  # RFC 3339, whole milliseconds, UTC
    transaction_id: str
    profile: str | None
    verdict: str
    disposition: str
    score: float
    stage: str
    subject: str | None
    mail_from: str | None
    client_ip: str | None
    size: int | None
    data: str  # the record's JSON text, as the API answers it (released_at null)


class SearchText(NamedTuple):
    """A record's case-folded text for the substring filters (``message_search``)."""

    subject: str
    mail_from: str
    rcpt_to: str  # one recipient a line


NO_SEARCH = SearchText("", "", "")


class PreparedSave(NamedTuple):
    """A record's writes as plain values: computed on the caller's loop for the writer
    thread, in the writer process for a record sent to it as its JSON shape (``sinkd.store.
    writer_main.record_to_wire``), or (``--workers``) in the worker process that judged it,
    which sends them to the writer process (a tuple of strings and bytes pickles several
    times faster than the record)."""

    message_id: str
    row: MessageRow
    raw: bytes | None
    filtered: bytes | None
    codes: tuple[str | None, ...]
    received: datetime  # whole milliseconds, UTC
    search: SearchText
    # The relay state to queue in the same transaction (its JSON text; see
    # ``sinkd.store.relay_queued``), None when the record is not relayed.
    relay: str | None = None


def prepare(record: MessageRecord) -> PreparedSave:
    """One record's column values, search text and JSON; ``StoreError`` if it has no JSON."""
    return prepare_json(
        record.to_json(),
        record.id,
        record.transaction_id,
        record.received_at,
        record.raw,
        record.verdict.filtered,
    )


def prepare_json(
    data: dict[str, Any],
    message_id: str,
    transaction_id: str,
    received_at: datetime,
    raw: bytes | None,
    filtered: bytes | None,
) -> PreparedSave:
    """``prepare`` from a record's JSON shape (``MessageRecord.to_json``) and the rest of the
    record: what the writer process runs for a record sent to it as data (``WriterClient.
    submit_record``); ``StoreError`` if ``data`` cannot be JSON."""
    try:
        text = json.dumps(data, separators=(",", ":"))
        relay = data.get("relay")
        relay_text = None if relay is None else json.dumps(relay, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise StoreError(f"message {message_id!r} cannot be stored as JSON: {exc}") from exc
    received = received_at.astimezone(UTC)
    # Whole milliseconds, as stored: the clock's arithmetic must agree with the stored text.
    received = received.replace(microsecond=received.microsecond // 1000 * 1000)
    envelope = data["envelope"]
    row = MessageRow(
        id=message_id,
        received_at=iso(received),
        transaction_id=transaction_id,
        profile=as_text(data["profile"]),
        verdict=data["verdict"],
        disposition=data["disposition"],
        score=float(data["score"]),
        stage=data["stage"],
        subject=as_text(data["subject"]),
        mail_from=as_text(envelope["mail_from"]),
        client_ip=as_text(envelope["client_ip"]),
        size=data["size"],
        data=text,
    )
    return PreparedSave(
        message_id=message_id,
        row=row,
        raw=raw,
        filtered=filtered,
        codes=tuple(dict.fromkeys(as_text(f["code"]) for f in data["findings"])),
        received=received,
        search=SearchText(
            subject=fold(data["subject"]),
            mail_from=fold(envelope["mail_from"]),
            rcpt_to="\n".join(fold(r) for r in envelope["rcpt_to"] or ()),
        ),
        relay=relay_text,
    )


def fold(value: Any) -> str:
    """Text as the substring filters compare it: case-folded (Unicode), never None."""
    folded = as_text(value)
    return "" if folded is None else folded.casefold()


def as_text(value: Any) -> str | None:
    """A column copy of a JSON string; lone surrogates (undecodable header bytes) would make
    sqlite3 refuse the whole row, so they are replaced here (``data`` keeps them escaped)."""
    if value is None:
        return None
    text = str(value)
    if text.isascii():  # nearly every value: nothing to replace, no copy to make
        return text
    return text.encode("utf-8", "replace").decode("utf-8")
