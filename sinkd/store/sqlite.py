"""The SQLite message store: one database file, one writer (a thread, or a process of its own
for ``sinkd serve``: ``sinkd.store.writer.StoreWrites``), group commit.

Owns the schema and every SQL statement sinkd runs. It must not acknowledge a ``save`` before
the record is committed with ``synchronous=FULL``, and it must not let a raw ``sqlite3`` error
escape: failures become ``StoreError`` naming the database file.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import sqlite3
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from sinkd.errors import NotFound, StoreError
from sinkd.location import StoreLocation
from sinkd.store import MessageRecord, Query, RelayEntry, StoredMessage, iso
from sinkd.store.columns import PreparedSave, fold, prepare
from sinkd.store.sql import (
    RELAY_JSON,
    RELAY_OF_MESSAGE,
    SCHEMA_VERSION,
    Op,
    ReceivedClock,
    apply_op,
    open_writer,
    rollback,
    stored_message,
)
from sinkd.store.writer import StoreWrites, WriterKind, WritesThrough
from sinkd.store.writer_main import WriterSpec

__all__ = [
    "SCHEMA_VERSION",
    "PreparedSave",
    "SqliteStore",
    "WriterKind",
    "bulk_load",
    "open_sqlite",
    "prepare",
]


# Idle read connections kept for reuse; more than this are closed when a read finishes.
MAX_IDLE_READERS = 4


T = TypeVar("T")


class SqliteStore(WritesThrough):
    """A ``Store`` on one SQLite file. Create it with ``open_sqlite``."""

    def __init__(
        self, path: Path, *, busy_timeout: float = 5.0, writer: WriterKind = "thread"
    ) -> None:
        self._path = path
        self._busy_timeout = busy_timeout
        # Every write goes through the one writer (thread or process), so they are serialized.
        self._writes = StoreWrites(
            WriterSpec(StoreLocation("sqlite", path=path), busy_timeout), writer
        )
        self._lock = threading.Lock()  # guards the idle readers and the closed flag
        self._closed = False
        self._readers: list[sqlite3.Connection] = []

    @property
    def path(self) -> Path:
        return self._path

    @property
    def writable(self) -> bool:
        """Whether writes can be committed now: open, and its writer thread or process there."""
        return not self._closed and self._writes.writable

    # -- reads: any thread from asyncio's pool, each on a connection it holds alone ---------

    async def get(self, message_id: str, *, with_raw: bool = False) -> StoredMessage:
        def read(conn: sqlite3.Connection) -> StoredMessage:
            if with_raw:
                row = conn.execute(
                    "SELECT m.data, r.bytes, r.filtered, r.filtered_from, m.released_at,"
                    f" {RELAY_OF_MESSAGE} FROM messages m"
                    " LEFT JOIN raw r ON r.id = m.id WHERE m.id = ?",
                    (message_id,),
                ).fetchone()
            else:
                row = conn.execute(
                    "SELECT m.data, NULL, NULL, NULL, m.released_at,"
                    f" {RELAY_OF_MESSAGE} FROM messages m WHERE m.id = ?",
                    (message_id,),
                ).fetchone()
            if row is None:
                raise NotFound(f"no message with id {message_id!r}")
            text, raw, filtered, filtered_from, released_at, relay = row
            return stored_message(_data(text, released_at, relay), raw, filtered, filtered_from)

        return await self._read(read)

    async def count(
        self, query: Query | None = None, *, at_most: int | None = None, cursors: bool = False
    ) -> int:
        """How many records match, counting no further than ``at_most`` when given (so the
        cost stays bounded however many match)."""
        counted = (query or Query()).counted(cursors=cursors)

        def read(conn: sqlite3.Connection) -> int:
            plan = _plan(conn, counted)
            if plan is None:
                return 0
            sql, params = plan.select("1", limit=at_most is not None)
            if at_most is not None:
                params = (*params, at_most, 0)
            (n,) = conn.execute(f"SELECT count(*) FROM ({sql})", params).fetchone()
            return int(n)

        return await self._read(read)

    async def list(self, query: Query) -> Sequence[StoredMessage]:
        def read(conn: sqlite3.Connection) -> Sequence[StoredMessage]:
            plan = _plan(conn, query)
            if plan is None:
                return []
            # Anchored at ``after``, the page is read upwards from it along the same index
            # (no OFFSET scan over the newer rows), then turned newest first.
            upwards = query.after is not None
            sql, params = plan.select(
                f"m.seq, m.data, m.released_at, {RELAY_OF_MESSAGE}", limit=True, up=upwards
            )
            params = (*params, query.limit, max(0, query.offset))
            rows = [
                StoredMessage(data=_data(text, released_at, relay), seq=seq)
                for seq, text, released_at, relay in conn.execute(sql, params)
            ]
            return rows[::-1] if upwards else rows

        return await self._read(read)

    async def explain(self, query: Query) -> Sequence[str]:
        """SQLite's plan for ``list(query)`` (the detail column of ``EXPLAIN QUERY PLAN``), so
        a test can show which index answers a page and that no sort or scan is added."""

        def read(conn: sqlite3.Connection) -> Sequence[str]:
            plan = _plan(conn, query)
            if plan is None:
                return []
            sql, params = plan.select(
                "m.seq, m.data, m.released_at", limit=True, up=query.after is not None
            )
            params = (*params, query.limit, max(0, query.offset))
            return [str(row[-1]) for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params)]

        return await self._read(read)

    async def relay_queue(self, limit: int) -> Sequence[RelayEntry]:
        def read(conn: sqlite3.Connection) -> Sequence[RelayEntry]:
            rows = conn.execute(
                f"SELECT q.message_id, {RELAY_JSON} FROM relay q JOIN messages m"
                " ON m.id = q.message_id WHERE q.status = 'queued'"
                " ORDER BY q.next_attempt_at, m.seq LIMIT ?",
                (limit,),
            )
            return [RelayEntry(message_id, json.loads(state)) for message_id, state in rows]

        return await self._read(read)

    async def relay_depth(self) -> int:
        def read(conn: sqlite3.Connection) -> int:
            (n,) = conn.execute("SELECT count(*) FROM relay WHERE status = 'queued'").fetchone()
            return int(n)

        return await self._read(read)

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._closed:
            raise StoreError(f"message store {self._path} is closed")
        return await asyncio.to_thread(self._with_reader, fn)

    def _with_reader(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        conn = self._acquire_reader()
        try:
            result = fn(conn)
        except sqlite3.Error as exc:
            # The connection may be in a bad state; do not hand it to the next reader.
            conn.close()
            raise StoreError(f"reading message store {self._path} failed: {exc}") from exc
        except BaseException:
            self._release_reader(conn)
            raise
        self._release_reader(conn)
        return result

    def _acquire_reader(self) -> sqlite3.Connection:
        with self._lock:
            if self._readers:
                return self._readers.pop()
        try:
            # check_same_thread=False is safe: the pool hands a connection to one thread at a
            # time, and asyncio's pool threads differ from call to call.
            conn = sqlite3.connect(
                self._path,
                timeout=self._busy_timeout,
                isolation_level=None,
                check_same_thread=False,
            )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open message store {self._path}: {exc}") from exc
        try:
            # Readers never write; query_only turns a bug into an error instead of a write
            # that bypasses the writer's serialization.
            conn.execute("PRAGMA query_only = ON")
        except sqlite3.Error as exc:
            conn.close()
            raise StoreError(f"cannot open message store {self._path}: {exc}") from exc
        return conn

    def _release_reader(self, conn: sqlite3.Connection) -> None:
        with self._lock:
            if not self._closed and len(self._readers) < MAX_IDLE_READERS:
                self._readers.append(conn)
                return
        conn.close()

    # -- lifecycle ---------------------------------------------------------------------------

    async def _start(self) -> None:
        try:
            await self._writes.start()
        except BaseException:
            self._closed = True
            raise

    async def close(self) -> None:
        with self._lock:
            self._closed = True
        await self._writes.close()  # commits everything submitted before it
        with self._lock:
            readers, self._readers = self._readers, []
        for conn in readers:
            conn.close()

    async def __aenter__(self) -> SqliteStore:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


async def open_sqlite(
    path: str | Path, *, busy_timeout: float = 5.0, writer: WriterKind = "thread"
) -> SqliteStore:
    """Open (creating when missing) the store at ``path``; raise ``StoreError`` naming it.

    ``busy_timeout`` is how many seconds a statement waits for another process's lock.
    ``writer`` is where the writes run: a thread of this process, or a process of its own
    (``sinkd.store.writer``; what ``sinkd serve`` uses, so that the SMTP event loop never
    shares the interpreter lock with SQLite work).
    """
    if str(path) == ":memory:":
        # Each SQLite connection gets its own :memory: database, and the writer has its own:
        # saves would be acknowledged and never read back. sinkd.store.memory keeps messages in
        # memory properly (``sinkd.store.backends.open_store`` opens it for ``:memory:``).
        raise StoreError(":memory: is no SQLite store sinkd can use; give a file path")
    store = SqliteStore(Path(path), busy_timeout=busy_timeout, writer=writer)
    await store._start()
    return store


def _data(text: str, released_at: str | None, relay: str | None) -> dict[str, Any]:
    """The stored JSON shape with ``released_at`` from its column (the JSON holds null) and
    ``relay`` from the relay queue (the JSON holds the state it was queued with, if any)."""
    data: dict[str, Any] = json.loads(text)
    data["released_at"] = released_at
    data["relay"] = None if relay is None else json.loads(relay)
    return data


def _save_op(record: MessageRecord, loop: asyncio.AbstractEventLoop | None) -> Op:
    return Op.of_prepared(prepare(record), loop)


def bulk_load(path: str | Path, records: Iterable[MessageRecord], *, batch: int = 20_000) -> int:
    """Store ``records`` straight into the file at ``path`` (creating or migrating it) with the
    writer's own SQL, ``batch`` records per transaction and ``synchronous=OFF``; return how
    many. For benchmarks and imports only: nothing is durable until it returns, and no
    ``SqliteStore`` may have the file open meanwhile. Raises ``StoreError`` on any failure."""
    target = Path(path)
    conn = open_writer(target, 5.0)
    stored = 0
    try:
        conn.execute("PRAGMA synchronous = OFF")
        clock = ReceivedClock.load(conn)
        ops = (_save_op(record, None) for record in records)
        while True:
            chunk = list(itertools.islice(ops, batch))
            if not chunk:
                break
            conn.execute("BEGIN IMMEDIATE")
            try:
                for op in chunk:
                    apply_op(conn, op, clock)
                conn.execute("COMMIT")
            except BaseException:
                rollback(conn)
                raise
            stored += len(chunk)
        # Each large transaction left one large FTS segment at the lowest level, where the
        # automerge of the writer's small segments would rewrite it again and again (a 3x
        # slower save() was measured); merged once here, it is out of their way.
        conn.execute("INSERT INTO message_text (message_text) VALUES ('optimize')")
    except sqlite3.Error as exc:
        raise StoreError(f"bulk loading message store {target} failed: {exc}") from exc
    finally:
        conn.close()
    return stored


# The trigram index answers substrings of at least this many characters; shorter needles are
# matched by scanning message_search (small rows, but linear in what it has to scan).
_TRIGRAM = 3
_TEXT_COLUMNS = (("subject", "subject"), ("mail_from", "mail_from"), ("to", "rcpt_to"))


@dataclass(slots=True)
class _Plan:
    """One list query: a driving source that yields seq newest first (an index, the trigram
    index or the table itself), joined to the messages it names and checked for the rest."""

    source: str
    key: str  # the driver's seq, for the range and the order
    where: list[str]
    params: list[Any]

    def select(self, columns: str, *, limit: bool, up: bool = False) -> tuple[str, tuple[Any, ...]]:
        """The statement, newest first (oldest first when ``up``: a page anchored at
        ``after``), with ``LIMIT ? OFFSET ?`` placeholders when ``limit``."""
        sql = f"SELECT {columns} FROM {self.source}"
        if self.where:
            sql += " WHERE " + " AND ".join(self.where)
        sql += f" ORDER BY {self.key} {'ASC' if up else 'DESC'}"
        if limit:
            sql += " LIMIT ? OFFSET ?"
        return sql, tuple(self.params)


def _plan(conn: sqlite3.Connection, query: Query) -> _Plan | None:
    """How to answer ``query`` without scanning what it does not match; None when nothing can
    match. The driver is, in order: the trigram index (a substring of 3+ characters), the
    finding-code index, a scan of the narrow message_search table (shorter substrings), the
    messages table with its verdict and profile indexes (SQLite picks)."""
    low = 1 if query.after is None else max(1, query.after + 1)
    high = None if query.before is None else query.before - 1
    if query.since is not None or query.until is not None:
        bounds = _time_bounds(conn, query.since, query.until)
        if bounds is None:
            return None
        first, last = bounds
        low = max(low, first)
        if last is not None:
            high = last if high is None else min(high, last)
    if high is not None and high < low:
        return None

    needles: list[tuple[str, str]] = []
    for field_name, column in _TEXT_COLUMNS:
        value = getattr(query, field_name)
        if value is not None:
            needle = fold(value)
            if column == "rcpt_to" and "\n" in needle:
                return None  # recipients are stored one per line; none holds a line break
            needles.append((column, needle))
    indexed = [(c, n) for c, n in needles if len(n) >= _TRIGRAM]
    scanned = [(c, n) for c, n in needles if len(n) < _TRIGRAM]

    where: list[str] = []
    params: list[Any] = []
    if indexed:
        source, key = "message_text t CROSS JOIN messages m ON m.seq = t.rowid", "t.rowid"
        where.append("t.message_text MATCH ?")
        # A quoted FTS5 string is one phrase: the trigram tokenizer makes it a substring match.
        params.append(
            " AND ".join(f'{c} : "{n.replace(chr(34), chr(34) * 2)}"' for c, n in indexed)
        )
    elif query.code is not None:
        source, key = "finding_codes f CROSS JOIN messages m ON m.seq = f.seq", "f.seq"
        where.append("f.code = ?")
        params.append(query.code)
    elif scanned:
        source, key = "message_search s CROSS JOIN messages m ON m.seq = s.seq", "s.seq"
    else:
        source, key = "messages m", "m.seq"

    if scanned:
        checks = " AND ".join(f"instr(s.{c}, ?) > 0" for c, _ in scanned)
        if key == "s.seq":
            where.append(checks)
        else:
            where.append(
                f"EXISTS (SELECT 1 FROM message_search s WHERE s.seq = m.seq AND {checks})"
            )
        params.extend(n for _, n in scanned)
    if query.code is not None and key != "f.seq":
        where.append("EXISTS (SELECT 1 FROM finding_codes c WHERE c.code = ? AND c.seq = m.seq)")
        params.append(query.code)
    for column, value in (("verdict", query.verdict), ("profile", query.profile)):
        if value is not None:
            where.append(f"m.{column} = ?")
            params.append(value)
    if query.since is not None:
        where.append("m.received_at >= ?")
        params.append(iso(query.since.astimezone(UTC)))
    if query.until is not None:
        where.append("m.received_at < ?")
        params.append(iso(query.until.astimezone(UTC)))
    if low > 1:
        where.append(f"{key} >= ?")
        params.append(low)
    if high is not None:
        where.append(f"{key} <= ?")
        params.append(high)
    return _Plan(source, key, where, params)


def _time_bounds(
    conn: sqlite3.Connection, since: datetime | None, until: datetime | None
) -> tuple[int, int | None] | None:
    """The seq range that holds every row with ``since <= received_at < until`` (see
    ``ReceivedClock``), found with two seeks on received_max; None when no row can match."""
    low, high = 1, None
    first_at = "SELECT seq FROM messages WHERE received_max >= ? ORDER BY received_max, seq LIMIT 1"
    if since is not None:
        found = conn.execute(first_at, (iso(since.astimezone(UTC)),)).fetchone()
        if found is None:
            return None  # nothing was received that late
        (low,) = found
    if until is not None:
        stored = conn.execute("SELECT value FROM meta WHERE key = 'received_lag_ms'").fetchone()
        (lag_ms,) = stored or (0,)
        lag = timedelta(milliseconds=int(lag_ms))
        edge = until.astimezone(UTC)
        edge = edge.replace(microsecond=edge.microsecond // 1000 * 1000) + lag
        # Rows after the first whose received_max reaches until + lag were received at or
        # after until; that first row itself may still match.
        (high,) = conn.execute(first_at, (iso(edge),)).fetchone() or (None,)
    return low, high
