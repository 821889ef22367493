"""The SQLite message store: one database file, one writer (a thread, or a process of its own
for ``sinkd serve``), group commit.

Owns the schema and every SQL statement sinkd runs. It must not acknowledge a ``save`` before
the record is committed with ``synchronous=FULL``, and it must not let a raw ``sqlite3`` error
escape: failures become ``StoreError`` naming the database file.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import json
import queue
import sqlite3
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, TypeVar

from sinkd.errors import NotFound, StoreError
from sinkd.store import MessageRecord, Query, StoredMessage, iso

if TYPE_CHECKING:
    from sinkd.store.writer import WriterProcess

__all__ = ["SCHEMA_VERSION", "PreparedSave", "SqliteStore", "bulk_load", "open_sqlite", "prepare"]

SCHEMA_VERSION = 5
# How to bring an older store up to SCHEMA_VERSION, one step per version: SQL statements, or a
# function of the write connection for a backfill that SQL alone cannot express. Each step runs
# inside the start-up transaction, so a failed migration leaves the store as it was.
_MIGRATIONS: dict[int, tuple[str | Callable[[sqlite3.Connection], None], ...]] = {
    # 2: the filtered message (after strip actions) is kept beside the original.
    1: ("ALTER TABLE raw ADD COLUMN filtered BLOB",),
    # 3: finding codes in their own indexed table (the API filters on them), filled from data.
    2: (
        "CREATE TABLE IF NOT EXISTS finding_codes (code TEXT NOT NULL, message_id TEXT NOT NULL"
        " REFERENCES messages(id) ON DELETE CASCADE, PRIMARY KEY (code, message_id))"
        " WITHOUT ROWID",
        "INSERT OR IGNORE INTO finding_codes (code, message_id)"
        " SELECT json_extract(f.value, '$.code'), m.id FROM messages m,"
        " json_each(m.data, '$.findings') f WHERE json_extract(f.value, '$.code') IS NOT NULL",
        "CREATE INDEX IF NOT EXISTS finding_codes_message ON finding_codes(message_id)",
    ),
    # 4: when a quarantined message was released (HTTP API); NULL while it was not.
    3: ("ALTER TABLE messages ADD COLUMN released_at TEXT",),
    # 5: every list filter indexed for keyset paging (newest first by seq): finding codes keyed
    # by (code, seq); subject, sender and recipients case-folded in message_search with a
    # trigram FTS5 index over them; received_max (see _TimeBounds) for time ranges.
    4: (
        "CREATE TABLE finding_codes_v5 (code TEXT NOT NULL, seq INTEGER NOT NULL"
        " REFERENCES messages(seq) ON DELETE CASCADE, PRIMARY KEY (code, seq)) WITHOUT ROWID",
        "INSERT OR IGNORE INTO finding_codes_v5 (code, seq)"
        " SELECT f.code, m.seq FROM finding_codes f JOIN messages m ON m.id = f.message_id",
        "DROP TABLE finding_codes",
        "ALTER TABLE finding_codes_v5 RENAME TO finding_codes",
        "CREATE INDEX finding_codes_seq ON finding_codes(seq)",
        "ALTER TABLE messages ADD COLUMN received_max TEXT",
        "UPDATE messages SET received_max = w.high FROM (SELECT seq,"
        " max(received_at) OVER (ORDER BY seq) AS high FROM messages) AS w"
        " WHERE w.seq = messages.seq",
        "DROP INDEX IF EXISTS messages_received_at",
        "CREATE INDEX messages_received_max ON messages(received_max)",
        "CREATE TABLE message_search (seq INTEGER PRIMARY KEY, subject TEXT NOT NULL,"
        " mail_from TEXT NOT NULL, rcpt_to TEXT NOT NULL)",
        "INSERT INTO message_search (seq, subject, mail_from, rcpt_to)"
        " SELECT seq, sinkd_fold(subject), sinkd_fold(mail_from), sinkd_fold((SELECT"
        " group_concat(r.value, char(10)) FROM json_each(messages.data, '$.envelope.rcpt_to') r))"
        " FROM messages",
        "CREATE VIRTUAL TABLE message_text USING fts5(subject, mail_from, rcpt_to,"
        " content='message_search', content_rowid='seq', tokenize='trigram case_sensitive 1')",
        "INSERT INTO message_text (message_text) VALUES ('rebuild')",
        # One merged segment out of the way of automerge (see bulk_load).
        "INSERT INTO message_text (message_text) VALUES ('optimize')",
        lambda conn: _backfill_lag(conn),
    ),
}

# How many queued operations one transaction may take. Large enough that a burst of sessions
# shares one fsync, small enough that one transaction never holds the write lock for long.
MAX_BATCH = 256

# Idle read connections kept for reuse; more than this are closed when a read finishes.
MAX_IDLE_READERS = 4

_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    received_at TEXT NOT NULL,
    transaction_id TEXT NOT NULL,
    profile TEXT NOT NULL,
    verdict TEXT NOT NULL,
    disposition TEXT NOT NULL,
    score REAL NOT NULL,
    stage TEXT NOT NULL,
    subject TEXT,
    mail_from TEXT,
    client_ip TEXT,
    size INTEGER,
    data TEXT NOT NULL,
    released_at TEXT,
    received_max TEXT
);
CREATE TABLE IF NOT EXISTS raw (
    id TEXT PRIMARY KEY REFERENCES messages(id) ON DELETE CASCADE,
    bytes BLOB NOT NULL,
    filtered BLOB
);
CREATE TABLE IF NOT EXISTS finding_codes (
    code TEXT NOT NULL,
    seq INTEGER NOT NULL REFERENCES messages(seq) ON DELETE CASCADE,
    PRIMARY KEY (code, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS finding_codes_seq ON finding_codes(seq);
CREATE INDEX IF NOT EXISTS messages_received_max ON messages(received_max);
CREATE INDEX IF NOT EXISTS messages_verdict ON messages(verdict, seq);
CREATE INDEX IF NOT EXISTS messages_profile ON messages(profile, seq);
CREATE TABLE IF NOT EXISTS message_search (
    seq INTEGER PRIMARY KEY,
    subject TEXT NOT NULL,
    mail_from TEXT NOT NULL,
    rcpt_to TEXT NOT NULL
);
CREATE VIRTUAL TABLE IF NOT EXISTS message_text USING fts5(
    subject, mail_from, rcpt_to,
    content='message_search', content_rowid='seq', tokenize='trigram case_sensitive 1'
)
"""

_INSERT_MESSAGE = (
    "INSERT INTO messages (id, received_at, transaction_id, profile, verdict, disposition,"
    " score, stage, subject, mail_from, client_ip, size, data, received_max)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)

_INSERT_MESSAGE_SEQ = (
    "INSERT INTO messages (seq, id, received_at, transaction_id, profile, verdict, disposition,"
    " score, stage, subject, mail_from, client_ip, size, data, received_max)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)

T = TypeVar("T")

# Where a store's writes run (see open_sqlite).
WriterKind = Literal["thread", "process"]


@dataclass(slots=True)
class _Op:
    """One queued write and the future its caller awaits."""

    kind: str  # "save" | "delete" | "clear" | "release"
    loop: asyncio.AbstractEventLoop | None  # None (with future) for bulk_load's ops
    future: asyncio.Future[Any] | None
    message_id: str | None = None
    row: tuple[Any, ...] = ()
    raw: bytes | None = None
    filtered: bytes | None = None
    codes: tuple[str | None, ...] = ()  # the record's finding codes, each once
    received: datetime | None = None  # a save's received_at, whole milliseconds, UTC
    search: tuple[str, str, str] = ("", "", "")  # a save's case-folded subject, sender, rcpts
    # Filled in by the writer thread once the op has run inside the batch transaction.
    result: Any = None
    error: BaseException | None = field(default=None)


_STOP = object()  # queued by close(); everything queued before it is still written


class SqliteStore:
    """A ``Store`` on one SQLite file. Create it with ``open_sqlite``."""

    def __init__(
        self, path: Path, *, busy_timeout: float = 5.0, writer: WriterKind = "thread"
    ) -> None:
        self._path = path
        self._writer_kind = writer
        self._remote: WriterProcess | None = None  # writer="process": set by _start
        self._busy_timeout = busy_timeout
        self._queue: queue.SimpleQueue[_Op | object] = queue.SimpleQueue()
        # Guards the closed flag together with enqueueing, so nothing can be queued behind
        # the stop marker (it would never be answered).
        self._lock = threading.Lock()
        self._closed = False
        self._commits = 0
        self._readers: list[sqlite3.Connection] = []
        self._ready: asyncio.Future[None] | None = None
        self._thread = threading.Thread(
            target=self._run_writer, name=f"sinkd-store-writer:{path.name}", daemon=True
        )

    @property
    def path(self) -> Path:
        return self._path

    @property
    def writer_process(self) -> WriterProcess | None:
        """The writer process (``writer="process"``), which SMTP workers connect to."""
        return self._remote

    @property
    def commits(self) -> int:
        """How many write transactions the writer has committed (for tests and stats)."""
        return self._commits if self._remote is None else self._remote.commits

    # -- writes: all go through the writer thread, so they are serialized ------------------

    async def save(self, record: MessageRecord) -> None:
        await self._enqueue(_save_op(record, asyncio.get_running_loop()))

    async def save_prepared(self, prepared: PreparedSave) -> None:
        """``save`` for a record ``prepare`` already turned into values (a worker's)."""
        await self._enqueue(_op_of(prepared, asyncio.get_running_loop()))

    async def release(self, message_id: str, released_at: datetime) -> bool:
        released: bool = await self._submit(
            "release", message_id=message_id, row=(iso(released_at.astimezone(UTC)),)
        )
        return released

    async def delete(self, message_id: str) -> None:
        await self._submit("delete", message_id=message_id)

    async def clear(self) -> int:
        removed: int = await self._submit("clear")
        return removed

    async def _submit(
        self, kind: str, *, message_id: str | None = None, row: tuple[Any, ...] = ()
    ) -> Any:
        loop = asyncio.get_running_loop()
        return await self._enqueue(_Op(kind, loop, loop.create_future(), message_id, row))

    async def _enqueue(self, op: _Op) -> Any:
        if self._remote is not None:
            if self._closed:
                raise StoreError(f"message store {self._path} is closed")
            return await self._remote.submit(op)
        with self._lock:
            if self._closed:
                raise StoreError(f"message store {self._path} is closed")
            self._queue.put(op)
        assert op.future is not None
        # If the caller is cancelled the write still happens; only the answer is dropped.
        return await op.future

    # -- reads: any thread from asyncio's pool, each on a connection it holds alone ---------

    async def get(self, message_id: str, *, with_raw: bool = False) -> StoredMessage:
        def read(conn: sqlite3.Connection) -> StoredMessage:
            if with_raw:
                row = conn.execute(
                    "SELECT m.data, r.bytes, r.filtered, m.released_at FROM messages m"
                    " LEFT JOIN raw r ON r.id = m.id WHERE m.id = ?",
                    (message_id,),
                ).fetchone()
            else:
                row = conn.execute(
                    "SELECT data, NULL, NULL, released_at FROM messages WHERE id = ?",
                    (message_id,),
                ).fetchone()
            if row is None:
                raise NotFound(f"no message with id {message_id!r}")
            raw = None if row[1] is None else bytes(row[1])
            filtered = None if row[2] is None else bytes(row[2])
            return StoredMessage(data=_data(row[0], row[3]), raw=raw, filtered=filtered)

        return await self._read(read)

    async def count(self, query: Query | None = None, *, at_most: int | None = None) -> int:
        """How many records match, counting no further than ``at_most`` when given (so the
        cost stays bounded however many match)."""

        def read(conn: sqlite3.Connection) -> int:
            # The total of a filter: the page (cursor, offset, limit) does not change it.
            plan = _plan(conn, dataclasses.replace(query or Query(), before=None))
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
            sql, params = plan.select("m.seq, m.data, m.released_at", limit=True)
            params = (*params, query.limit, max(0, query.offset))
            return [
                StoredMessage(data=_data(text, released_at), seq=seq)
                for seq, text, released_at in conn.execute(sql, params)
            ]

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
        if self._writer_kind == "process":
            from sinkd.store.writer import WriterProcess  # it imports this module

            remote = WriterProcess(self._path, self._busy_timeout)
            await remote.start()
            self._remote = remote
            return
        loop = asyncio.get_running_loop()
        self._ready = loop.create_future()
        self._thread.start()
        try:
            await self._ready
        except BaseException:
            with self._lock:
                self._closed = True
                # If the thread did open (we were cancelled meanwhile), this stops it.
                self._queue.put(_STOP)
            await asyncio.to_thread(self._thread.join)
            raise

    async def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._queue.put(_STOP)
        if self._remote is not None:
            # The process answers everything sent before the stop, then ends.
            await self._remote.close()
        elif self._thread.is_alive():
            # Joining waits for every write queued before the stop marker to be committed.
            await asyncio.to_thread(self._thread.join)
        with self._lock:
            readers, self._readers = self._readers, []
        for conn in readers:
            conn.close()

    async def __aenter__(self) -> SqliteStore:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- the writer thread -------------------------------------------------------------------

    def _run_writer(self) -> None:
        ready = self._ready
        assert ready is not None
        try:
            writer = _Writer(self._path, self._busy_timeout)
        except StoreError as exc:
            _settle(ready.get_loop(), ready, None, exc)
            return
        _settle(ready.get_loop(), ready, None, None)
        try:
            stop = False
            while not stop:
                batch = [self._queue.get()]  # block for the first item only
                while len(batch) < MAX_BATCH:
                    try:
                        batch.append(self._queue.get_nowait())
                    except queue.Empty:
                        break
                ops = [item for item in batch if isinstance(item, _Op)]
                stop = len(ops) != len(batch)
                if ops:
                    writer.write(ops)
                    self._commits = writer.commits
                    for op in ops:
                        if op.loop is not None and op.future is not None:
                            _settle(op.loop, op.future, op.result, op.error)
        finally:
            writer.close()


class _Writer:
    """The write connection and the SQL of every write: one batch of queued operations per
    transaction (group commit). Synchronous; run by the writer thread or, for ``sinkd serve``,
    by the writer process (``sinkd.store.writer``). Fills in each op's result or error and
    never settles futures itself."""

    def __init__(self, path: Path, busy_timeout: float) -> None:
        self.path = path
        self.conn = _open_writer(path, busy_timeout)
        try:
            self.clock = _Clock.load(self.conn)
        except sqlite3.Error as exc:
            self.conn.close()
            raise StoreError(f"cannot open {path}: {exc}") from exc
        self.commits = 0

    def close(self) -> None:
        self.conn.close()

    def write(self, ops: Sequence[_Op]) -> None:
        """Commit ``ops`` in one transaction; each op's ``result`` or ``error`` is set."""
        conn = self.conn
        if len(ops) > 1 and all(op.kind == "save" for op in ops) and self._write_saves(ops):
            self.commits += 1
            return
        try:
            conn.execute("BEGIN IMMEDIATE")
            for op in ops:
                self._run_op(op)
            conn.execute("COMMIT")
        except Exception as exc:
            # The transaction as a whole failed (lock timeout, disk full, I/O error): nothing
            # of it is durable, so every op that had not already failed on its own fails now.
            _rollback(conn)
            failure = StoreError(f"writing message store {self.path} failed: {exc}")
            failure.__cause__ = exc
            for op in ops:
                if op.error is None:
                    op.error = failure
            # The clock may have advanced for rows that are gone; read back what is stored.
            with contextlib.suppress(sqlite3.Error):
                self.clock = _Clock.load(conn)
        else:
            self.commits += 1

    def _write_saves(self, ops: Sequence[_Op]) -> bool:
        """Commit a batch of saves with one statement per table (``executemany``); False, with
        nothing written, when any row fails (the caller then writes op by op to find it).

        Under load every batch is saves. Each statement releases the GIL and must take it back
        from the event loop, which may hold it for a switch interval (5 ms) when busy; one
        statement per table instead of six per record cut a batch from ~6 ms to well under 1.
        Sequence numbers are assigned here (the writer is the only one, inside BEGIN IMMEDIATE)
        so that every table's rows can be written at once.
        """
        conn, clock = self.conn, self.clock
        try:
            conn.execute("BEGIN IMMEDIATE")
            row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'messages'").fetchone()
            last = 0 if row is None else int(row[0])
            messages: list[tuple[Any, ...]] = []
            raws: list[tuple[str | None, bytes, bytes | None]] = []
            codes: list[tuple[str, int]] = []
            search: list[tuple[int, str, str, str]] = []
            for seq, op in enumerate(ops, start=last + 1):
                assert op.received is not None
                high = clock.advance(conn, op.received)
                clock.commit(op.received)
                messages.append((seq, *op.row, high))
                if op.raw is not None:
                    raws.append((op.message_id, op.raw, op.filtered))
                codes.extend((code, seq) for code in op.codes if code is not None)
                search.append((seq, *op.search))
            conn.executemany(_INSERT_MESSAGE_SEQ, messages)
            conn.executemany("INSERT INTO raw (id, bytes, filtered) VALUES (?, ?, ?)", raws)
            conn.executemany("INSERT INTO finding_codes (code, seq) VALUES (?, ?)", codes)
            conn.executemany(
                "INSERT INTO message_search (seq, subject, mail_from, rcpt_to) VALUES (?, ?, ?, ?)",
                search,
            )
            conn.executemany(
                "INSERT INTO message_text (rowid, subject, mail_from, rcpt_to) VALUES (?, ?, ?, ?)",
                search,
            )
            conn.execute("COMMIT")
        except Exception:  # a duplicate id, an odd value, a full disk: retry op by op
            _rollback(conn)
            with contextlib.suppress(sqlite3.Error):
                self.clock = _Clock.load(conn)
            return False
        return True

    def _run_op(self, op: _Op) -> None:
        conn = self.conn
        # A savepoint per op keeps one bad record (a duplicate id) from failing the other
        # sessions that share its transaction; errors raised by SAVEPOINT/ROLLBACK TO escape
        # to the batch level, since then the transaction itself is gone.
        conn.execute("SAVEPOINT op")
        try:
            op.result = _apply(conn, op, self.clock)
        except NotFound as exc:
            op.error = exc
        except sqlite3.IntegrityError as exc:
            op.error = StoreError(f"message {op.message_id!r} is already stored ({exc})")
            op.error.__cause__ = exc
        except (sqlite3.InterfaceError, sqlite3.DataError, ValueError, TypeError) as exc:
            op.error = StoreError(f"message {op.message_id!r} cannot be stored: {exc}")
            op.error.__cause__ = exc
        if op.error is not None:
            conn.execute("ROLLBACK TO op")
        conn.execute("RELEASE op")


def _apply(conn: sqlite3.Connection, op: _Op, clock: _Clock) -> Any:
    """Run one queued operation's SQL on the writer connection (inside the batch's savepoint)."""
    if op.kind == "save":
        assert op.received is not None
        high = clock.advance(conn, op.received)
        seq = conn.execute(_INSERT_MESSAGE, (*op.row, high)).lastrowid
        if op.raw is not None:
            conn.execute(
                "INSERT INTO raw (id, bytes, filtered) VALUES (?, ?, ?)",
                (op.message_id, op.raw, op.filtered),
            )
        conn.executemany(
            "INSERT INTO finding_codes (code, seq) VALUES (?, ?)",
            [(code, seq) for code in op.codes if code is not None],
        )
        conn.execute(
            "INSERT INTO message_search (seq, subject, mail_from, rcpt_to) VALUES (?, ?, ?, ?)",
            (seq, *op.search),
        )
        conn.execute(
            "INSERT INTO message_text (rowid, subject, mail_from, rcpt_to) VALUES (?, ?, ?, ?)",
            (seq, *op.search),
        )
        clock.commit(op.received)  # last: had anything above failed, the clock stays put
        return None
    if op.kind == "delete":
        found = conn.execute("SELECT seq FROM messages WHERE id = ?", (op.message_id,)).fetchone()
        if found is None:
            raise NotFound(f"no message with id {op.message_id!r}")
        (seq,) = found
        # Dependents first and explicitly, so correctness does not hang on the foreign_keys
        # pragma; the external-content FTS index is told which text it drops.
        conn.execute("DELETE FROM raw WHERE id = ?", (op.message_id,))
        conn.execute("DELETE FROM finding_codes WHERE seq = ?", (seq,))
        conn.execute(
            "INSERT INTO message_text (message_text, rowid, subject, mail_from, rcpt_to)"
            " SELECT 'delete', seq, subject, mail_from, rcpt_to FROM message_search"
            " WHERE seq = ?",
            (seq,),
        )
        conn.execute("DELETE FROM message_search WHERE seq = ?", (seq,))
        conn.execute("DELETE FROM messages WHERE seq = ?", (seq,))
        return None
    if op.kind == "release":
        changed = conn.execute(
            "UPDATE messages SET released_at = ? WHERE id = ? AND released_at IS NULL",
            (*op.row, op.message_id),
        ).rowcount
        if changed:
            return True
        if conn.execute("SELECT 1 FROM messages WHERE id = ?", (op.message_id,)).fetchone():
            return False
        raise NotFound(f"no message with id {op.message_id!r}")
    if op.kind == "clear":
        conn.execute("DELETE FROM raw")
        conn.execute("DELETE FROM finding_codes")
        conn.execute("INSERT INTO message_text (message_text) VALUES ('delete-all')")
        conn.execute("DELETE FROM message_search")
        return conn.execute("DELETE FROM messages").rowcount
    raise AssertionError(f"unknown store operation {op.kind!r}")


async def open_sqlite(
    path: str | Path, *, busy_timeout: float = 5.0, writer: WriterKind = "thread"
) -> SqliteStore:
    """Open (creating when missing) the store at ``path``; raise ``StoreError`` naming it.

    ``busy_timeout`` is how many seconds a statement waits for another process's lock.
    ``writer`` is where the writes run: a thread of this process, or a process of its own
    (``sinkd.store.writer``; what ``sinkd serve`` uses, so that the SMTP event loop never
    shares the interpreter lock with SQLite work).
    """
    store = SqliteStore(Path(path), busy_timeout=busy_timeout, writer=writer)
    await store._start()
    return store


def _open_writer(path: Path, busy_timeout: float) -> sqlite3.Connection:
    """Open the write connection and create or check the schema; runs in the writer thread."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"cannot create the directory for message store {path}: {exc}") from exc
    try:
        # isolation_level=None: the writer issues BEGIN/COMMIT itself, so the module's
        # implicit transactions never split or merge a batch behind its back.
        conn = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open message store {path}: {exc}") from exc
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
        # WAL lets readers run during a commit; FULL fsyncs the WAL on every commit, which is
        # what makes a 250 reply survive kill -9 and power loss alike.
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
        # The v5 migration's backfill folds text exactly as save() does.
        conn.create_function("sinkd_fold", 1, _fold, deterministic=True)
        _ensure_schema(conn, path)
    except sqlite3.Error as exc:
        conn.close()
        raise StoreError(f"cannot open message store {path}: {exc}") from exc
    except BaseException:
        conn.close()
        raise
    return conn


def _ensure_schema(conn: sqlite3.Connection, path: Path) -> None:
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if row is None:
            # One statement at a time: executescript would COMMIT the open transaction first.
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(
                "INSERT INTO meta (key, value) VALUES ('schema_version', ?)",
                (str(SCHEMA_VERSION),),
            )
        else:
            try:
                version = int(row[0])
            except ValueError:
                version = -1
            while version in _MIGRATIONS and version < SCHEMA_VERSION:
                for step in _MIGRATIONS[version]:
                    if isinstance(step, str):
                        conn.execute(step)
                    else:
                        step(conn)
                version += 1
                conn.execute(
                    "UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(version),)
                )
            if version != SCHEMA_VERSION:
                newer = version > SCHEMA_VERSION
                raise StoreError(
                    f"message store {path} has schema version {row[0]}, "
                    + (
                        f"newer than this sinkd supports ({SCHEMA_VERSION}); upgrade sinkd "
                        "or point it at another file"
                        if newer
                        else f"which this sinkd cannot read (it expects {SCHEMA_VERSION})"
                    )
                )
        conn.execute("COMMIT")
    except BaseException:
        _rollback(conn)
        raise


def _data(text: str, released_at: str | None) -> dict[str, Any]:
    """The stored JSON shape with ``released_at`` from its column (the JSON holds null)."""
    data: dict[str, Any] = json.loads(text)
    data["released_at"] = released_at
    return data


class PreparedSave(NamedTuple):
    """A record's writes as plain values, computed off the writer thread: on the caller's,
    or (``--workers``) in the worker process that judged it, which sends them to the primary
    (a tuple of strings and bytes pickles several times faster than the record)."""

    message_id: str
    row: tuple[Any, ...]  # the messages columns of _INSERT_MESSAGE; row[12] is the JSON text
    raw: bytes | None
    filtered: bytes | None
    codes: tuple[str | None, ...]
    received: datetime  # whole milliseconds, UTC
    search: tuple[str, str, str]

    @property
    def json_text(self) -> str:
        """The record's JSON (the API's message object), as stored."""
        return str(self.row[12])


def _save_op(record: MessageRecord, loop: asyncio.AbstractEventLoop | None) -> _Op:
    return _op_of(prepare(record), loop)


def _op_of(prepared: PreparedSave, loop: asyncio.AbstractEventLoop | None) -> _Op:
    """The queued write for a prepared record."""
    return _Op(
        "save",
        loop,
        None if loop is None else loop.create_future(),
        prepared.message_id,
        prepared.row,
        raw=prepared.raw,
        filtered=prepared.filtered,
        codes=prepared.codes,
        received=prepared.received,
        search=prepared.search,
    )


def prepare(record: MessageRecord) -> PreparedSave:
    """One record's column values, search text and JSON; ``StoreError`` if it has no JSON."""
    data = record.to_json()
    try:
        text = json.dumps(data, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise StoreError(f"message {record.id!r} cannot be stored as JSON: {exc}") from exc
    received = record.received_at.astimezone(UTC)
    # Whole milliseconds, as stored: the clock's arithmetic must agree with the stored text.
    received = received.replace(microsecond=received.microsecond // 1000 * 1000)
    envelope = data["envelope"]
    row = (
        record.id,
        iso(received),
        record.transaction_id,
        _text(data["profile"]),
        data["verdict"],
        data["disposition"],
        float(data["score"]),
        data["stage"],
        _text(data["subject"]),
        _text(envelope["mail_from"]),
        _text(envelope["client_ip"]),
        data["size"],
        text,
    )
    return PreparedSave(
        record.id,
        row,
        record.raw,
        record.verdict.filtered,
        tuple(dict.fromkeys(_text(f["code"]) for f in data["findings"])),
        received,
        (
            _fold(data["subject"]),
            _fold(envelope["mail_from"]),
            "\n".join(_fold(r) for r in envelope["rcpt_to"] or ()),
        ),
    )


def bulk_load(path: str | Path, records: Iterable[MessageRecord], *, batch: int = 20_000) -> int:
    """Store ``records`` straight into the file at ``path`` (creating or migrating it) with the
    writer's own SQL, ``batch`` records per transaction and ``synchronous=OFF``; return how
    many. For benchmarks and imports only: nothing is durable until it returns, and no
    ``SqliteStore`` may have the file open meanwhile. Raises ``StoreError`` on any failure."""
    target = Path(path)
    conn = _open_writer(target, 5.0)
    stored = 0
    try:
        conn.execute("PRAGMA synchronous = OFF")
        clock = _Clock.load(conn)
        ops = (_save_op(record, None) for record in records)
        while True:
            chunk = list(itertools.islice(ops, batch))
            if not chunk:
                break
            conn.execute("BEGIN IMMEDIATE")
            try:
                for op in chunk:
                    _apply(conn, op, clock)
                conn.execute("COMMIT")
            except BaseException:
                _rollback(conn)
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


@dataclass(slots=True)
class _Clock:
    """The writer's view of received times, which turns a time range into a seq range.

    ``high`` is the latest ``received_at`` stored so far; every saved row stores it (its own
    included) as ``received_max``, so ``received_max`` never decreases with ``seq`` and its
    index finds seq bounds in one seek. ``lag_ms`` (meta ``received_lag_ms``) is the most any
    row was received before the ``high`` of the rows stored ahead of it (sessions end out of
    order). Hence a row stored after one whose ``received_max`` is H was received at
    H - lag_ms or later; ``_time_bounds`` relies on exactly that."""

    high: datetime | None = None
    lag_ms: int = 0

    @classmethod
    def load(cls, conn: sqlite3.Connection) -> _Clock:
        row = conn.execute("SELECT received_max FROM messages ORDER BY seq DESC LIMIT 1").fetchone()
        lag = conn.execute("SELECT value FROM meta WHERE key = 'received_lag_ms'").fetchone()
        return cls(
            None if row is None or row[0] is None else _moment(row[0]),
            0 if lag is None else int(lag[0]),
        )

    def advance(self, conn: sqlite3.Connection, received: datetime) -> str:
        """``received_max`` for a row received at ``received``; records a larger lag in meta
        (in the caller's savepoint)."""
        if self.high is None or received >= self.high:
            return iso(received)
        lag = (self.high - received) // timedelta(milliseconds=1)
        if lag > self.lag_ms:
            _store_lag(conn, lag)
        return iso(self.high)

    def commit(self, received: datetime) -> None:
        """The row received at ``received`` is in the transaction: move the clock past it."""
        if self.high is None or received > self.high:
            self.high = received
        else:
            self.lag_ms = max(self.lag_ms, (self.high - received) // timedelta(milliseconds=1))


def _store_lag(conn: sqlite3.Connection, lag_ms: int) -> None:
    conn.execute(
        "INSERT INTO meta (key, value) VALUES ('received_lag_ms', ?)"
        " ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        (str(lag_ms),),
    )


def _backfill_lag(conn: sqlite3.Connection) -> None:
    """Schema 5 migration: ``received_lag_ms`` over the rows already stored (see ``_Clock``)."""
    high: datetime | None = None
    lag = 0
    for (text,) in conn.execute("SELECT received_at FROM messages ORDER BY seq"):
        received = _moment(text)
        if high is None or received > high:
            high = received
        else:
            lag = max(lag, (high - received) // timedelta(milliseconds=1))
    _store_lag(conn, lag)


def _moment(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _fold(value: Any) -> str:
    """Text as the substring filters compare it: case-folded (Unicode), never None."""
    folded = _text(value)
    return "" if folded is None else folded.casefold()


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

    def select(self, columns: str, *, limit: bool) -> tuple[str, tuple[Any, ...]]:
        sql = f"SELECT {columns} FROM {self.source}"
        if self.where:
            sql += " WHERE " + " AND ".join(self.where)
        sql += f" ORDER BY {self.key} DESC"
        if limit:
            sql += " LIMIT ? OFFSET ?"
        return sql, tuple(self.params)


def _plan(conn: sqlite3.Connection, query: Query) -> _Plan | None:
    """How to answer ``query`` without scanning what it does not match; None when nothing can
    match. The driver is, in order: the trigram index (a substring of 3+ characters), the
    finding-code index, a scan of the narrow message_search table (shorter substrings), the
    messages table with its verdict and profile indexes (SQLite picks)."""
    low, high = 1, None if query.before is None else query.before - 1
    if query.since is not None or query.until is not None:
        bounds = _time_bounds(conn, query.since, query.until)
        if bounds is None:
            return None
        low = max(low, bounds[0])
        if bounds[1] is not None:
            high = bounds[1] if high is None else min(high, bounds[1])
    if high is not None and high < low:
        return None

    needles: list[tuple[str, str]] = []
    for field_name, column in _TEXT_COLUMNS:
        value = getattr(query, field_name)
        if value is not None:
            needle = _fold(value)
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
    ``_Clock``), found with two seeks on received_max; None when no row can match."""
    low, high = 1, None
    first_at = "SELECT seq FROM messages WHERE received_max >= ? ORDER BY received_max, seq LIMIT 1"
    if since is not None:
        row = conn.execute(first_at, (iso(since.astimezone(UTC)),)).fetchone()
        if row is None:
            return None  # nothing was received that late
        low = int(row[0])
    if until is not None:
        stored = conn.execute("SELECT value FROM meta WHERE key = 'received_lag_ms'").fetchone()
        lag = timedelta(milliseconds=0 if stored is None else int(stored[0]))
        edge = until.astimezone(UTC)
        edge = edge.replace(microsecond=edge.microsecond // 1000 * 1000) + lag
        # Rows after the first whose received_max reaches until + lag were received at or
        # after until; that first row itself may still match.
        row = conn.execute(first_at, (iso(edge),)).fetchone()
        high = None if row is None else int(row[0])
    return low, high


def _text(value: Any) -> str | None:
    """A column copy of a JSON string; lone surrogates (undecodable header bytes) would make
    sqlite3 refuse the whole row, so they are replaced here (``data`` keeps them escaped)."""
    if value is None:
        return None
    return str(value).encode("utf-8", "replace").decode("utf-8")


def _rollback(conn: sqlite3.Connection) -> None:
    # An error here means there is no transaction left (SQLite may already have rolled back).
    with contextlib.suppress(sqlite3.Error):
        conn.execute("ROLLBACK")


def _settle(
    loop: asyncio.AbstractEventLoop,
    future: asyncio.Future[Any],
    result: Any,
    error: BaseException | None,
) -> None:
    """Resolve ``future`` on its own loop from the writer thread."""

    def resolve() -> None:
        if future.done():  # the awaiting task was cancelled; the write stands regardless
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)

    # RuntimeError: the loop is closed, so nobody is waiting for the answer any more.
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(resolve)
