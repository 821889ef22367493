"""The message store: what a stored transaction looks like and the interface to keep it.

Owns the record types and the store's contract, split by who needs what: ``VerdictSink`` (the
SMTP path: save, and whether saving works now), ``Repository`` (reads and administration) and
``Store``, both at once, for a full backend; and the relay queue's JSON shape (``relay_queued``,
``RelayEntry``): a message to relay onward (``sinkd serve --relay``) is queued in the same
commit as its verdict, and its delivery state is part of the message's JSON. Implementations
live beside it (``sqlite.py``, ``memory.py``; a worker's ``PipeStore`` in
``sinkd.server.workers`` is only a sink); nothing here evaluates mail or speaks SMTP.
``save`` returns only once the record is durably committed, because a 250 reply promises
exactly that.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from sinkd.core.model import Verdict


@dataclass(frozen=True, slots=True)
class MessageRecord:
    """One verdict to store: a message (or a refused envelope) judged against one profile."""

    id: str
    received_at: datetime  # timezone-aware UTC
    transaction_id: str  # shared by the records of one SMTP transaction
    verdict: Verdict
    raw: bytes | None  # None when the transaction ended before DATA
    # Queue it for relaying onward in the same commit (the Recorder decides: --relay and
    # --relay-verdicts, and a message with bytes that was not refused).
    relay: bool = False

    def to_json(self) -> dict[str, Any]:
        data = self.verdict.to_json(received_at=iso(self.received_at))
        data["id"] = self.id
        data["transaction_id"] = self.transaction_id
        data["size"] = None if self.raw is None else len(self.raw)
        data["released_at"] = None  # set when a quarantined message is released (HTTP API)
        # The relay state as the commit queues it; reads give the queue's current state.
        data["relay"] = (
            relay_queued(self.verdict.envelope.rcpt_to, iso(_whole_ms(self.received_at)))
            if self.relay
            else None
        )
        return data


# The relay queue's states: queued while any recipient is pending, delivered when every one
# was, failed otherwise (some recipient failed for good). A recipient is queued, delivered or
# failed.
RELAY_QUEUED, RELAY_DELIVERED, RELAY_FAILED = "queued", "delivered", "failed"


def relay_queued(rcpt_to: Sequence[str], queued_at: str) -> dict[str, Any]:
    """A message's relay state (its JSON ``relay``) when it is queued at ``queued_at``
    (RFC 3339): due at once, every recipient pending. Every backend queues this shape."""
    return {
        "status": RELAY_QUEUED,
        "attempts": 0,
        "queued_at": queued_at,
        "last_attempt_at": None,
        "next_attempt_at": queued_at,
        "done_at": None,
        "last_reply": None,
        "recipients": [{"address": r, "status": RELAY_QUEUED, "reply": None} for r in rcpt_to],
    }


@dataclass(frozen=True, slots=True)
class RelayEntry:
    """One queued relay as the queue hands it to the relayer: the message and its state (the
    JSON ``relay`` shape, see ``relay_queued``)."""

    message_id: str
    state: dict[str, Any]

    @property
    def next_attempt_at(self) -> str:
        return str(self.state["next_attempt_at"])


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """A record read back: the JSON shape plus the raw bytes when asked for."""

    data: dict[str, Any]
    raw: bytes | None = None
    filtered: bytes | None = None  # the message after strip actions, when any removed something
    seq: int | None = None  # storage order (from ``list``): the paging cursor, see ``Query``

    @property
    def id(self) -> str:
        return str(self.data["id"])


@dataclass(frozen=True, slots=True)
class Query:
    """Filters for listing stored messages, newest first (in storage order). Text filters
    (``to``, ``mail_from``, ``subject``) match a substring, ignoring case (Unicode case
    folding: ``GRÜSSE`` finds ``Grüße``); ``code`` is one finding code; ``since <= received_at
    < until`` (timezone-aware). Paging by key (new arrivals never shift a page): ``before`` is
    the ``seq`` of the last row of the page above (only older messages follow) and ``after``
    the ``seq`` of the first row of the page below (only newer ones follow). With ``after`` the
    page is the ``limit`` matches stored just after it (still newest first), so "newer" from
    an older page shows exactly the rows above it; with both, matches between them, the page
    taken next to ``after``. ``offset`` skips that many matches from the page's anchored end
    (cost grows with it)."""

    verdict: str | None = None
    profile: str | None = None
    to: str | None = None  # a substring of one of the recipients
    mail_from: str | None = None  # a substring of the envelope sender
    subject: str | None = None
    code: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int = 50
    offset: int = 0
    before: int | None = None  # only messages stored before the one with this seq
    after: int | None = None  # only messages stored after the one with this seq

    def counted(self, *, cursors: bool) -> Query:
        """The query ``Repository.count`` counts: without ``before`` and ``after`` unless
        ``cursors`` (the total of a filter does not depend on the page)."""
        return self if cursors else dataclasses.replace(self, before=None, after=None)


class VerdictSink(Protocol):
    """Where the SMTP path commits verdicts: everything an SMTP process needs of a store, and
    all that a worker of ``--workers`` has (``PipeStore``). A 250 reply waits for ``save``."""

    @property
    def writable(self) -> bool:
        """Whether a ``save`` can be committed now (``/readyz`` reports it)."""

    async def save(self, record: MessageRecord) -> None:
        """Commit one record durably; return only after the commit (a later ``get`` or
        ``list`` through the backend's ``Repository`` sees it). A second record with the same
        id fails with ``StoreError``."""

    async def close(self) -> None:
        """Finish pending commits and release what the sink holds."""


class Repository(Protocol):
    """Reading and administering stored records: the HTTP API, the dashboard and the CLI."""

    async def get(self, message_id: str, *, with_raw: bool = False) -> StoredMessage:
        """Read one record (with its original and filtered bytes if ``with_raw``); raise
        ``NotFound`` when there is none."""

    async def list(self, query: Query) -> Sequence[StoredMessage]:
        """Records matching ``query``, newest first, without raw bytes, each with its ``seq``."""

    async def count(
        self, query: Query | None = None, *, at_most: int | None = None, cursors: bool = False
    ) -> int:
        """How many records match (all when ``query`` is None), counting no further than
        ``at_most`` when given; ``limit`` and ``offset`` are ignored, and so are ``before`` and
        ``after`` unless ``cursors`` (how many matches lie beyond a page: its position)."""

    async def release(self, message_id: str, released_at: datetime, *, relay: bool = False) -> bool:
        """Mark one record released at ``released_at``: True, or False when it already was;
        raise ``NotFound`` when there is none. Which verdicts may be released is the caller's
        policy, not the store's. With ``relay`` a record with bytes that is not queued yet is
        queued for relaying in the same transaction (``relay_queued`` at ``released_at``)."""

    async def relay_queue(self, limit: int) -> Sequence[RelayEntry]:
        """Up to ``limit`` queued relays, the soonest due first (``next_attempt_at``, then
        storage order)."""

    async def relay_depth(self) -> int:
        """How many relays are queued (not delivered or failed yet)."""

    async def relay_update(self, message_id: str, state: dict[str, Any]) -> bool:
        """Replace a queued relay's state (after an attempt); False when the message is gone
        (deleted meanwhile), or its relay no longer queued."""

    async def delete(self, message_id: str) -> None:
        """Remove one record; raise ``NotFound`` when there is none."""

    async def clear(self) -> int:
        """Remove every record; return how many there were."""

    async def close(self) -> None:
        """Finish pending commits and release the database."""


class RelayStore(Protocol):
    """What a relayer needs of the store (``sinkd.services.relay``): the queue and the
    messages' bytes. A full ``Repository`` is one; so is a queue read under a lease
    (``sinkd.store.pg_events.LeasedRelayQueue``)."""

    async def get(self, message_id: str, *, with_raw: bool = False) -> StoredMessage: ...

    async def relay_queue(self, limit: int) -> Sequence[RelayEntry]: ...

    async def relay_update(self, message_id: str, state: dict[str, Any]) -> bool: ...


class Store(VerdictSink, Repository, Protocol):
    """A full backend: the sink the SMTP path saves to and the repository that reads it back
    (``SqliteStore``, ``MemoryStore``). ``tests/store/test_contract.py`` is what every one
    must pass."""


def _whole_ms(moment: datetime) -> datetime:
    """``moment`` in UTC cut to whole milliseconds, as the store keeps received times."""
    moment = moment.astimezone(UTC)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def iso(moment: datetime) -> str:
    """RFC 3339 timestamp with milliseconds, as every JSON output writes it."""
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def moment(text: str) -> datetime:
    """A timestamp ``iso`` wrote, read back (timezone-aware)."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))
