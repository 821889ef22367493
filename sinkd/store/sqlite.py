"""The SQLite message store: one database file, one writer thread, group commit.

Owns the schema and every SQL statement sinkd runs. It must not acknowledge a ``save`` before
the record is committed with ``synchronous=FULL``, and it must not let a raw ``sqlite3`` error
escape: failures become ``StoreError`` naming the database file.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import queue
import sqlite3
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from sinkd.errors import NotFound, StoreError
from sinkd.store import MessageRecord, Query, StoredMessage, iso

__all__ = ["SCHEMA_VERSION", "SqliteStore", "open_sqlite"]

SCHEMA_VERSION = 4
# How to bring an older store up to SCHEMA_VERSION, one step per version (ALTERs only, so a
# migration never rewrites stored messages).
_MIGRATIONS: dict[int, tuple[str, ...]] = {
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
    released_at TEXT
);
CREATE TABLE IF NOT EXISTS raw (
    id TEXT PRIMARY KEY REFERENCES messages(id) ON DELETE CASCADE,
    bytes BLOB NOT NULL,
    filtered BLOB
);
CREATE TABLE IF NOT EXISTS finding_codes (
    code TEXT NOT NULL,
    message_id TEXT NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
    PRIMARY KEY (code, message_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS finding_codes_message ON finding_codes(message_id);
CREATE INDEX IF NOT EXISTS messages_received_at ON messages(received_at);
CREATE INDEX IF NOT EXISTS messages_verdict ON messages(verdict, seq);
CREATE INDEX IF NOT EXISTS messages_profile ON messages(profile, seq);
"""

_INSERT_MESSAGE = (
    "INSERT INTO messages (id, received_at, transaction_id, profile, verdict, disposition,"
    " score, stage, subject, mail_from, client_ip, size, data)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)

T = TypeVar("T")


@dataclass(slots=True)
class _Op:
    """One queued write and the future its caller awaits."""

    kind: str  # "save" | "delete" | "clear" | "release"
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]
    message_id: str | None = None
    row: tuple[Any, ...] = ()
    raw: bytes | None = None
    filtered: bytes | None = None
    codes: tuple[str | None, ...] = ()  # the record's finding codes, each once
    # Filled in by the writer thread once the op has run inside the batch transaction.
    result: Any = None
    error: BaseException | None = field(default=None)


_STOP = object()  # queued by close(); everything queued before it is still written


class SqliteStore:
    """A ``Store`` on one SQLite file. Create it with ``open_sqlite``."""

    def __init__(self, path: Path, *, busy_timeout: float = 5.0) -> None:
        self._path = path
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
    def commits(self) -> int:
        """How many write transactions the writer thread has committed (for tests and stats)."""
        return self._commits

    # -- writes: all go through the writer thread, so they are serialized ------------------

    async def save(self, record: MessageRecord) -> None:
        data = record.to_json()
        try:
            text = json.dumps(data, separators=(",", ":"))
        except (TypeError, ValueError) as exc:
            raise StoreError(f"message {record.id!r} cannot be stored as JSON: {exc}") from exc
        envelope = data["envelope"]
        row = (
            record.id,
            iso(record.received_at),
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
        await self._submit(
            "save",
            message_id=record.id,
            row=row,
            raw=record.raw,
            filtered=record.verdict.filtered,
            codes=tuple(dict.fromkeys(_text(f["code"]) for f in data["findings"])),
        )

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
        self,
        kind: str,
        *,
        message_id: str | None = None,
        row: tuple[Any, ...] = (),
        raw: bytes | None = None,
        filtered: bytes | None = None,
        codes: tuple[str | None, ...] = (),
    ) -> Any:
        loop = asyncio.get_running_loop()
        op = _Op(
            kind,
            loop,
            loop.create_future(),
            message_id=message_id,
            row=row,
            raw=raw,
            filtered=filtered,
            codes=codes,
        )
        with self._lock:
            if self._closed:
                raise StoreError(f"message store {self._path} is closed")
            self._queue.put(op)
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

    async def count(self, query: Query | None = None) -> int:
        where, params = _where(query)

        def read(conn: sqlite3.Connection) -> int:
            (n,) = conn.execute(f"SELECT count(*) FROM messages{where}", params).fetchone()
            return int(n)

        return await self._read(read)

    async def list(self, query: Query) -> Sequence[StoredMessage]:
        where, params = _where(query)
        sql = f"SELECT data, released_at FROM messages{where} ORDER BY seq DESC LIMIT ? OFFSET ?"
        params = (*params, query.limit, max(0, query.offset))

        def read(conn: sqlite3.Connection) -> Sequence[StoredMessage]:
            return [
                StoredMessage(data=_data(text, released_at))
                for text, released_at in conn.execute(sql, params)
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
        if self._thread.is_alive():
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
            conn = _open_writer(self._path, self._busy_timeout)
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
                    self._write_batch(conn, ops)
        finally:
            conn.close()

    def _write_batch(self, conn: sqlite3.Connection, ops: Sequence[_Op]) -> None:
        try:
            conn.execute("BEGIN IMMEDIATE")
            for op in ops:
                self._run_op(conn, op)
            conn.execute("COMMIT")
        except Exception as exc:
            # The transaction as a whole failed (lock timeout, disk full, I/O error): nothing
            # of it is durable, so every op that had not already failed on its own fails now.
            _rollback(conn)
            failure = StoreError(f"writing message store {self._path} failed: {exc}")
            failure.__cause__ = exc
            for op in ops:
                if op.error is None:
                    op.error = failure
        else:
            self._commits += 1
        for op in ops:
            _settle(op.loop, op.future, op.result, op.error)

    def _run_op(self, conn: sqlite3.Connection, op: _Op) -> None:
        # A savepoint per op keeps one bad record (a duplicate id) from failing the other
        # sessions that share its transaction; errors raised by SAVEPOINT/ROLLBACK TO escape
        # to the batch level, since then the transaction itself is gone.
        conn.execute("SAVEPOINT op")
        try:
            op.result = self._apply(conn, op)
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

    @staticmethod
    def _apply(conn: sqlite3.Connection, op: _Op) -> Any:
        if op.kind == "save":
            conn.execute(_INSERT_MESSAGE, op.row)
            if op.raw is not None:
                conn.execute(
                    "INSERT INTO raw (id, bytes, filtered) VALUES (?, ?, ?)",
                    (op.message_id, op.raw, op.filtered),
                )
            conn.executemany(
                "INSERT INTO finding_codes (code, message_id) VALUES (?, ?)",
                [(code, op.message_id) for code in op.codes if code is not None],
            )
            return None
        if op.kind == "delete":
            # raw first and explicitly, so correctness does not hang on the foreign_keys pragma.
            conn.execute("DELETE FROM raw WHERE id = ?", (op.message_id,))
            conn.execute("DELETE FROM finding_codes WHERE message_id = ?", (op.message_id,))
            if conn.execute("DELETE FROM messages WHERE id = ?", (op.message_id,)).rowcount == 0:
                raise NotFound(f"no message with id {op.message_id!r}")
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
            return conn.execute("DELETE FROM messages").rowcount
        raise AssertionError(f"unknown store operation {op.kind!r}")


async def open_sqlite(path: str | Path, *, busy_timeout: float = 5.0) -> SqliteStore:
    """Open (creating when missing) the store at ``path``; raise ``StoreError`` naming it.

    ``busy_timeout`` is how many seconds a statement waits for another process's lock.
    """
    store = SqliteStore(Path(path), busy_timeout=busy_timeout)
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
                for statement in _MIGRATIONS[version]:
                    conn.execute(statement)
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


def _where(query: Query | None) -> tuple[str, tuple[Any, ...]]:
    """The WHERE clause of ``query``. Indexed: verdict, profile, received_at and finding codes;
    the substring filters (instr, so no LIKE wildcards to escape) scan what those leave."""
    clauses: list[str] = []
    params: list[Any] = []
    if query is None:
        return "", ()
    if query.verdict is not None:
        clauses.append("verdict = ?")
        params.append(query.verdict)
    if query.profile is not None:
        clauses.append("profile = ?")
        params.append(query.profile)
    if query.mail_from is not None:
        clauses.append("instr(lower(coalesce(mail_from, '')), lower(?)) > 0")
        params.append(query.mail_from)
    if query.subject is not None:
        clauses.append("instr(lower(coalesce(subject, '')), lower(?)) > 0")
        params.append(query.subject)
    if query.to is not None:
        clauses.append(
            "EXISTS (SELECT 1 FROM json_each(messages.data, '$.envelope.rcpt_to') r"
            " WHERE instr(lower(r.value), lower(?)) > 0)"
        )
        params.append(query.to)
    if query.code is not None:
        clauses.append("id IN (SELECT message_id FROM finding_codes WHERE code = ?)")
        params.append(query.code)
    if query.since is not None:
        clauses.append("received_at >= ?")
        params.append(iso(query.since.astimezone(UTC)))
    if query.until is not None:
        clauses.append("received_at < ?")
        params.append(iso(query.until.astimezone(UTC)))
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), tuple(params)


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
