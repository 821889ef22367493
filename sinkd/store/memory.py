"""An in-memory message store: the full ``Store`` contract in a dict, for tests and for
embedding sinkd in a program that keeps nothing.

Owns its records and nothing else: no file, no persistence (everything is gone at ``close``
or when the process ends), so "durable" here means "visible to every later read". It answers
exactly as ``SqliteStore`` does (``tests/store/test_contract.py`` runs both): the same JSON
(stored as the same text, read back as a fresh copy), storage order by ``seq`` that is never
reused, the same filters (it matches on ``sinkd.store.columns``' values, which the SQLite
writer stores), ``NotFound`` and ``StoreError`` in the same cases. Lists scan every record, so
it is meant for thousands of messages, not millions. It must not decide anything about mail.
"""

from __future__ import annotations

import copy
import itertools
import json
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sinkd.errors import NotFound, StoreError
from sinkd.store import (
    RELAY_QUEUED,
    MessageRecord,
    Query,
    RelayEntry,
    StoredMessage,
    iso,
    relay_queued,
)
from sinkd.store.columns import PreparedSave, fold, prepare

__all__ = ["MemoryStore"]


@dataclass(slots=True)
class _Entry:
    seq: int
    prepared: PreparedSave
    released_at: str | None = None
    relay: dict[str, Any] | None = None  # the relay queue's row (sinkd.store.relay_queued)


class MemoryStore:
    """A ``Store`` held in this process's memory. Usable from any thread and event loop: each
    call runs to completion under one lock, so a ``save`` is visible once it returns."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[str, _Entry] = {}  # by id, in storage order (dicts keep it)
        self._seqs = itertools.count(1)  # as SQLite's AUTOINCREMENT: never reused
        self._closed = False

    @property
    def writable(self) -> bool:
        return not self._closed

    # -- VerdictSink -------------------------------------------------------------------------

    async def save(self, record: MessageRecord) -> None:
        prepared = prepare(record)  # StoreError when it has no JSON, as SQLite's save
        with self._lock:
            self._check_open()
            if prepared.message_id in self._entries:
                raise StoreError(f"message {prepared.message_id!r} is already stored")
            relay = None if prepared.relay is None else json.loads(prepared.relay)
            self._entries[prepared.message_id] = _Entry(next(self._seqs), prepared, relay=relay)

    async def close(self) -> None:
        with self._lock:
            self._closed = True
            self._entries.clear()

    # -- Repository --------------------------------------------------------------------------

    async def get(self, message_id: str, *, with_raw: bool = False) -> StoredMessage:
        with self._lock:
            self._check_open()
            entry = self._find(message_id)
        prepared = entry.prepared
        data = _data(prepared.row.data, entry.released_at, entry.relay)
        if not with_raw:
            return StoredMessage(data=data)
        # SQLite keeps the filtered bytes beside the original, so none without an original.
        filtered = None if prepared.raw is None else prepared.filtered
        return StoredMessage(data=data, raw=prepared.raw, filtered=filtered)

    async def list(self, query: Query) -> Sequence[StoredMessage]:
        with self._lock:
            self._check_open()
            matching = self._matching(query)
        if query.after is not None:
            matching = matching[::-1]  # anchored at ``after``: the oldest of the newer first
        start = max(0, query.offset)
        # A negative limit is no limit, as SQLite's LIMIT reads it.
        page = matching[start:] if query.limit < 0 else matching[start : start + query.limit]
        if query.after is not None:
            page = page[::-1]  # and shown newest first, as every page is
        return [
            StoredMessage(data=_data(e.prepared.row.data, e.released_at, e.relay), seq=e.seq)
            for e in page
        ]

    async def count(
        self, query: Query | None = None, *, at_most: int | None = None, cursors: bool = False
    ) -> int:
        with self._lock:
            self._check_open()
            # The total of a filter: the page (offset, limit) does not change it, nor do the
            # cursors unless asked (a page's position).
            n = len(self._matching(query or Query(), paged=cursors))
        return n if at_most is None or at_most < 0 else min(n, at_most)

    async def release(self, message_id: str, released_at: datetime, *, relay: bool = False) -> bool:
        with self._lock:
            self._check_open()
            entry = self._find(message_id)
            if entry.released_at is not None:
                return False
            entry.released_at = iso(released_at.astimezone(UTC))
            if relay and entry.relay is None and entry.prepared.raw is not None:
                rcpt_to = json.loads(entry.prepared.row.data)["envelope"]["rcpt_to"] or []
                entry.relay = relay_queued([str(r) for r in rcpt_to], entry.released_at)
            return True

    async def relay_queue(self, limit: int) -> Sequence[RelayEntry]:
        with self._lock:
            self._check_open()
            queued = [e for e in self._entries.values() if _queued(e)]
            # Soonest due first, then storage order (the dict's), as SQLite orders them.
            queued.sort(key=lambda e: str(e.relay["next_attempt_at"]) if e.relay else "")
            return [
                RelayEntry(e.prepared.message_id, copy.deepcopy(e.relay))
                for e in queued[: max(0, limit)]
                if e.relay is not None
            ]

    async def relay_depth(self) -> int:
        with self._lock:
            self._check_open()
            return sum(1 for e in self._entries.values() if _queued(e))

    async def relay_update(self, message_id: str, state: dict[str, Any]) -> bool:
        with self._lock:
            self._check_open()
            entry = self._entries.get(message_id)
            if entry is None or not _queued(entry):
                return False
            # Through JSON, as SQLite keeps it: the caller's dict stays the caller's.
            entry.relay = json.loads(json.dumps(state))  # stored as SQLite stores it: JSON
            return True

    async def delete(self, message_id: str) -> None:
        with self._lock:
            self._check_open()
            self._find(message_id)
            del self._entries[message_id]

    async def clear(self) -> int:
        with self._lock:
            self._check_open()
            removed = len(self._entries)
            self._entries.clear()  # the seq counter goes on: a cursor never sees a reused one
            return removed

    async def __aenter__(self) -> MemoryStore:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- under the lock ----------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError("message store :memory: is closed")

    def _find(self, message_id: str) -> _Entry:
        entry = self._entries.get(message_id)
        if entry is None:
            raise NotFound(f"no message with id {message_id!r}")
        return entry

    def _matching(self, query: Query, *, paged: bool = True) -> Sequence[_Entry]:
        """Every entry ``query`` matches, newest first (the page's cursor applies if
        ``paged``)."""
        match = _matcher(query, paged=paged)
        return [e for e in reversed(self._entries.values()) if match(e)]


def _matcher(query: Query, *, paged: bool) -> Callable[[_Entry], bool]:
    """The test of one entry against ``query``: the rules ``Query`` documents, on the values
    ``prepare`` made (what SQLite's columns, search table and finding codes hold)."""
    before = query.before if paged else None
    after = query.after if paged else None
    since = None if query.since is None else iso(query.since.astimezone(UTC))
    until = None if query.until is None else iso(query.until.astimezone(UTC))
    subject = None if query.subject is None else fold(query.subject)
    mail_from = None if query.mail_from is None else fold(query.mail_from)
    to = None if query.to is None else fold(query.to)

    def match(entry: _Entry) -> bool:
        row, search = entry.prepared.row, entry.prepared.search
        if before is not None and entry.seq >= before:
            return False
        if after is not None and entry.seq <= after:
            return False
        if query.verdict is not None and row.verdict != query.verdict:
            return False
        if query.profile is not None and row.profile != query.profile:
            return False
        if subject is not None and subject not in search.subject:
            return False
        if mail_from is not None and mail_from not in search.mail_from:
            return False
        # Recipients are stored one a line; a needle never spans two of them.
        if to is not None and ("\n" in to or to not in search.rcpt_to):
            return False
        if query.code is not None and query.code not in entry.prepared.codes:
            return False
        if since is not None and row.received_at < since:
            return False
        return until is None or row.received_at < until

    return match


def _queued(entry: _Entry) -> bool:
    return entry.relay is not None and entry.relay["status"] == RELAY_QUEUED


def _data(text: str, released_at: str | None, relay: dict[str, Any] | None) -> dict[str, Any]:
    """The stored JSON shape (a fresh copy) with ``released_at`` and ``relay`` set."""
    data: dict[str, Any] = json.loads(text)
    data["released_at"] = released_at
    data["relay"] = copy.deepcopy(relay)
    return data
