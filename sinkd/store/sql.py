"""The SQL of the message store's writes: schema, migrations, and one batch of writes per
transaction.

Owns every statement that changes the database and the schema they assume. Synchronous and
light on imports (``sqlite3`` and the standard library): it runs in the store's writer thread
(``sinkd.store.sqlite``) and in the writer process (``sinkd.store.writer_main``), which must
start fast and stay small. It must not commit a save it was not given, acknowledge anything
(the callers settle), or let a raw ``sqlite3`` error escape from ``Writer``: failures become
``StoreError`` naming the database file.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from sinkd.errors import NotFound, StoreError
from sinkd.store import StoredMessage, iso, moment, relay_queued
from sinkd.store.columns import NO_SEARCH, MessageRow, PreparedSave, SearchText, fold

if TYPE_CHECKING:
    import asyncio

SCHEMA_VERSION = 7


# How to bring an older store up to SCHEMA_VERSION, one step per version: SQL statements, or a
# function of the write connection for a backfill that SQL alone cannot express. Each step runs
# inside the start-up transaction, so a failed migration leaves the store as it was.
MIGRATIONS: dict[int, tuple[str | Callable[[sqlite3.Connection], None], ...]] = {
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
    # trigram FTS5 index over them; received_max (see ReceivedClock) for time ranges.
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
    # 6: a large filtered message that ends like the original (an Authentication-Results
    # field added to the header block) is kept as its head and where in the original the
    # rest starts (raw_values): not the same megabytes twice.
    5: ("ALTER TABLE raw ADD COLUMN filtered_from INTEGER",),
    # 7: the relay queue (sinkd serve --relay): one row per message to relay onward, queued in
    # the same transaction as the message (or its release); messages stored before are not
    # relayed.
    6: (
        "CREATE TABLE IF NOT EXISTS relay (message_id TEXT PRIMARY KEY REFERENCES messages(id)"
        " ON DELETE CASCADE, status TEXT NOT NULL, attempts INTEGER NOT NULL, queued_at TEXT"
        " NOT NULL, last_attempt_at TEXT, next_attempt_at TEXT, done_at TEXT, last_reply TEXT,"
        " recipients TEXT NOT NULL)",
        "CREATE INDEX IF NOT EXISTS relay_due ON relay(status, next_attempt_at)",
    ),
}


# How many queued operations one transaction may take. Large enough that a burst of sessions
# shares one fsync, small enough that one transaction never holds the write lock for long.
MAX_BATCH = 256


SQL_SCHEMA = """
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
    filtered BLOB,
    filtered_from INTEGER
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
);
CREATE TABLE IF NOT EXISTS relay (
    message_id TEXT PRIMARY KEY REFERENCES messages(id) ON DELETE CASCADE,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    queued_at TEXT NOT NULL,
    last_attempt_at TEXT,
    next_attempt_at TEXT,
    done_at TEXT,
    last_reply TEXT,
    recipients TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS relay_due ON relay(status, next_attempt_at)
"""


# A relay row from its state's JSON text (``sinkd.store.relay_queued``'s shape): parameters
# (message id, state).
INSERT_RELAY = (
    "INSERT OR IGNORE INTO relay (message_id, status, attempts, queued_at, last_attempt_at,"
    " next_attempt_at, done_at, last_reply, recipients) SELECT ?1, json_extract(?2, '$.status'),"
    " json_extract(?2, '$.attempts'), json_extract(?2, '$.queued_at'),"
    " json_extract(?2, '$.last_attempt_at'), json_extract(?2, '$.next_attempt_at'),"
    " json_extract(?2, '$.done_at'), json(json_extract(?2, '$.last_reply')),"
    " json(json_extract(?2, '$.recipients'))"
)
# A queued relay's new state (parameters: state, message id).
UPDATE_RELAY = (
    "UPDATE relay SET status = json_extract(?1, '$.status'),"
    " attempts = json_extract(?1, '$.attempts'),"
    " last_attempt_at = json_extract(?1, '$.last_attempt_at'),"
    " next_attempt_at = json_extract(?1, '$.next_attempt_at'),"
    " done_at = json_extract(?1, '$.done_at'),"
    " last_reply = json(json_extract(?1, '$.last_reply')),"
    " recipients = json(json_extract(?1, '$.recipients'))"
    " WHERE message_id = ?2 AND status = 'queued'"
)
# A relay row back in its JSON shape (``q`` is the relay table; NULL when there is no row).
RELAY_JSON = (
    "json_object('status', q.status, 'attempts', q.attempts, 'queued_at', q.queued_at,"
    " 'last_attempt_at', q.last_attempt_at, 'next_attempt_at', q.next_attempt_at,"
    " 'done_at', q.done_at, 'last_reply', json(q.last_reply), 'recipients', json(q.recipients))"
)
# The relay state of message ``m`` as one column (a subquery any read can select).
RELAY_OF_MESSAGE = f"(SELECT {RELAY_JSON} FROM relay q WHERE q.message_id = m.id)"


INSERT_MESSAGE = (
    "INSERT INTO messages (id, received_at, transaction_id, profile, verdict, disposition,"
    " score, stage, subject, mail_from, client_ip, size, data, received_max)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


INSERT_MESSAGE_SEQ = (
    "INSERT INTO messages (seq, id, received_at, transaction_id, profile, verdict, disposition,"
    " score, stage, subject, mail_from, client_ip, size, data, received_max)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


# What a queued write does.
# (release_relay: a release that also queues the message for relaying; relay_update: a queued
# relay's state after an attempt.)
OpKind = Literal["save", "delete", "clear", "release", "release_relay", "relay_update"]


@dataclass(slots=True)
class Op:
    """One queued write and the future its caller awaits."""

    kind: OpKind
    loop: asyncio.AbstractEventLoop | None  # None (with future) for bulk_load's ops
    future: asyncio.Future[Any] | None
    message_id: str | None = None
    row: MessageRow | None = None  # a save's columns
    raw: bytes | None = None
    filtered: bytes | None = None
    codes: tuple[str | None, ...] = ()  # the record's finding codes, each once
    received: datetime | None = None  # a save's received_at, whole milliseconds, UTC
    search: SearchText = NO_SEARCH  # a save's case-folded subject, sender, rcpts
    released_at: str | None = None  # a release's time (RFC 3339, UTC)
    relay: str | None = None  # a save's relay state to queue, a relay_update's new state (JSON)
    # Filled in by the writer (thread or process) once the op has run in the batch transaction.
    result: Any = None
    error: BaseException | None = field(default=None)

    @classmethod
    def of_prepared(cls, prepared: PreparedSave, loop: asyncio.AbstractEventLoop | None) -> Op:
        """The queued write for a prepared record (its future on ``loop``, if given)."""
        return cls(
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
            relay=prepared.relay,
        )

    def save_values(self) -> tuple[MessageRow, datetime]:
        """A save's columns and received time (both set for every save)."""
        if self.row is None or self.received is None:
            raise AssertionError(f"a {self.kind} operation is not a save")
        return self.row, self.received


class Writer:
    """The write connection and the SQL of every write: one batch of queued operations per
    transaction (group commit). Synchronous; run by the writer thread or, for ``sinkd serve``,
    by the writer process (``sinkd.store.writer_main``). Fills in each op's result or error and
    never settles futures itself."""

    def __init__(self, path: Path, busy_timeout: float) -> None:
        self.path = path
        self.conn = open_writer(path, busy_timeout)
        try:
            self.clock = ReceivedClock.load(self.conn)
        except sqlite3.Error as exc:
            self.conn.close()
            raise StoreError(f"cannot open {path}: {exc}") from exc
        self.commits = 0

    def close(self) -> None:
        self.conn.close()

    def write(self, ops: Sequence[Op]) -> None:
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
            rollback(conn)
            failure = StoreError(f"writing message store {self.path} failed: {exc}")
            failure.__cause__ = exc
            for op in ops:
                if op.error is None:
                    op.error = failure
            # The clock may have advanced for rows that are gone; read back what is stored.
            with contextlib.suppress(sqlite3.Error):
                self.clock = ReceivedClock.load(conn)
        else:
            self.commits += 1

    def _write_saves(self, ops: Sequence[Op]) -> bool:
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
            found = conn.execute(
                "SELECT seq FROM sqlite_sequence WHERE name = 'messages'"
            ).fetchone()
            (last,) = found or (0,)
            messages: list[tuple[Any, ...]] = []
            raws: list[tuple[str | None, bytes, bytes | None, int | None]] = []
            codes: list[tuple[str, int]] = []
            search: list[tuple[int, str, str, str]] = []
            relays: list[tuple[str | None, str]] = []
            for seq, op in enumerate(ops, start=last + 1):
                columns, received = op.save_values()
                high = clock.advance(conn, received)
                clock.commit(received)
                messages.append((seq, *columns, high))
                if op.raw is not None:
                    raws.append(raw_values(op.message_id, op.raw, op.filtered))
                codes.extend((code, seq) for code in op.codes if code is not None)
                search.append((seq, *op.search))
                if op.relay is not None:
                    relays.append((op.message_id, op.relay))
            conn.executemany(INSERT_MESSAGE_SEQ, messages)
            conn.executemany(INSERT_RAW, raws)
            conn.executemany("INSERT INTO finding_codes (code, seq) VALUES (?, ?)", codes)
            conn.executemany(
                "INSERT INTO message_search (seq, subject, mail_from, rcpt_to) VALUES (?, ?, ?, ?)",
                search,
            )
            conn.executemany(
                "INSERT INTO message_text (rowid, subject, mail_from, rcpt_to) VALUES (?, ?, ?, ?)",
                search,
            )
            # The relay queue rows in the same transaction: a 250 for a message to relay
            # promises its relay too (kill -9 after the commit loses neither).
            conn.executemany(INSERT_RELAY, relays)
            conn.execute("COMMIT")
        except Exception:  # a duplicate id, an odd value, a full disk: retry op by op
            rollback(conn)
            with contextlib.suppress(sqlite3.Error):
                self.clock = ReceivedClock.load(conn)
            return False
        return True

    def _run_op(self, op: Op) -> None:
        conn = self.conn
        # A savepoint per op keeps one bad record (a duplicate id) from failing the other
        # sessions that share its transaction; errors raised by SAVEPOINT/ROLLBACK TO escape
        # to the batch level, since then the transaction itself is gone.
        conn.execute("SAVEPOINT op")
        try:
            op.result = apply_op(conn, op, self.clock)
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


INSERT_RAW = "INSERT INTO raw (id, bytes, filtered, filtered_from) VALUES (?, ?, ?, ?)"
# A filtered message at least this large is stored as a delta of the original when it can be.
FILTERED_DELTA_BYTES = 64 * 1024


def raw_values(
    message_id: str | None, raw: bytes, filtered: bytes | None
) -> tuple[str | None, bytes, bytes | None, int | None]:
    """The ``raw`` row of a message: its original bytes and its filtered ones, the latter as
    ``(head, start)`` when the filtered message is ``head`` followed by the original from
    ``start`` on (``filtered_message`` puts it back together), else whole (``start`` None).

    A message judged with authentication findings is delivered with an Authentication-
    Results field added at the top of its header block (RFC 8601 §5), forged ones removed:
    stored whole, a 20 MiB message's filtered copy doubled its commit (~100 ms of the writer
    process that every other message's 250 waited for). Only the header block can differ
    for the delta; strip actions that rewrite the body store the filtered message whole."""
    if filtered is None or len(filtered) < FILTERED_DELTA_BYTES:
        return message_id, raw, filtered, None
    for start in (0, _body_start(raw)):
        rest = len(raw) - start
        if start >= 0 and rest <= len(filtered):
            with memoryview(raw) as view:
                same = filtered.endswith(view[start:])
            if same:
                return message_id, raw, filtered[: len(filtered) - rest], start
    return message_id, raw, filtered, None


def filtered_message(raw: bytes, head: bytes, start: int | None) -> bytes:
    """The filtered message ``raw_values`` stored as ``head`` and ``start``."""
    if start is None:
        return bytes(head)
    with memoryview(raw) as view:
        return b"".join((head, view[start:]))


def stored_message(
    data: dict[str, Any], raw: bytes | None, head: bytes | None, start: int | None
) -> StoredMessage:
    """A record read back with its bytes: the original, and the filtered message from its
    stored ``head`` and ``start`` (``raw_values``), when there are bytes."""
    return StoredMessage(
        data=data,
        raw=None if raw is None else bytes(raw),
        filtered=None if head is None or raw is None else filtered_message(raw, head, start),
    )


def _body_start(raw: bytes) -> int:
    """Where the body begins (after the blank line ending the header block), or -1."""
    crlf = raw.find(b"\r\n\r\n")
    lf = raw.find(b"\n\n")
    ends = [at + size for at, size in ((crlf, 4), (lf, 2)) if at >= 0]
    return min(ends, default=-1)


def apply_op(conn: sqlite3.Connection, op: Op, clock: ReceivedClock) -> Any:
    """Run one queued operation's SQL on the writer connection (inside the batch's savepoint)."""
    if op.kind == "save":
        columns, received = op.save_values()
        high = clock.advance(conn, received)
        seq = conn.execute(INSERT_MESSAGE, (*columns, high)).lastrowid
        if op.raw is not None:
            conn.execute(INSERT_RAW, raw_values(op.message_id, op.raw, op.filtered))
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
        if op.relay is not None:
            conn.execute(INSERT_RELAY, (op.message_id, op.relay))
        clock.commit(received)  # last: had anything above failed, the clock stays put
        return None
    if op.kind == "delete":
        found = conn.execute("SELECT seq FROM messages WHERE id = ?", (op.message_id,)).fetchone()
        if found is None:
            raise NotFound(f"no message with id {op.message_id!r}")
        (seq,) = found
        # Dependents first and explicitly, so correctness does not hang on the foreign_keys
        # pragma; the external-content FTS index is told which text it drops.
        conn.execute("DELETE FROM raw WHERE id = ?", (op.message_id,))
        conn.execute("DELETE FROM relay WHERE message_id = ?", (op.message_id,))
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
    if op.kind in ("release", "release_relay"):
        changed = conn.execute(
            "UPDATE messages SET released_at = ? WHERE id = ? AND released_at IS NULL",
            (op.released_at, op.message_id),
        ).rowcount
        if changed:
            if op.kind == "release_relay":
                _queue_released(conn, op)
            return True
        if conn.execute("SELECT 1 FROM messages WHERE id = ?", (op.message_id,)).fetchone():
            return False
        raise NotFound(f"no message with id {op.message_id!r}")
    if op.kind == "relay_update":
        return conn.execute(UPDATE_RELAY, (op.relay, op.message_id)).rowcount > 0
    if op.kind == "clear":
        conn.execute("DELETE FROM raw")
        conn.execute("DELETE FROM relay")
        conn.execute("DELETE FROM finding_codes")
        conn.execute("INSERT INTO message_text (message_text) VALUES ('delete-all')")
        conn.execute("DELETE FROM message_search")
        return conn.execute("DELETE FROM messages").rowcount
    raise AssertionError(f"unknown store operation {op.kind!r}")


def _queue_released(conn: sqlite3.Connection, op: Op) -> None:
    """Queue a message just released for relaying (in its release's savepoint), unless it has
    no bytes or is queued already (its verdict was relayed at its commit)."""
    found = conn.execute(
        "SELECT m.data FROM messages m JOIN raw r ON r.id = m.id WHERE m.id = ?",
        (op.message_id,),
    ).fetchone()
    if found is None or op.released_at is None:
        return
    rcpt_to = json.loads(found[0])["envelope"]["rcpt_to"] or []
    state = relay_queued([str(r) for r in rcpt_to], op.released_at)
    conn.execute(INSERT_RELAY, (op.message_id, json.dumps(state, separators=(",", ":"))))


def open_writer(path: Path, busy_timeout: float) -> sqlite3.Connection:
    """Open the write connection and create or check the schema (in the writer thread or
    process)."""
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
        conn.create_function("sinkd_fold", 1, fold, deterministic=True)
        ensure_schema(conn, path)
    except sqlite3.Error as exc:
        conn.close()
        raise StoreError(f"cannot open message store {path}: {exc}") from exc
    except BaseException:
        conn.close()
        raise
    return conn


def ensure_schema(conn: sqlite3.Connection, path: Path) -> None:
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        stored = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if stored is None:
            # One statement at a time: executescript would COMMIT the open transaction first.
            for statement in SQL_SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(
                "INSERT INTO meta (key, value) VALUES ('schema_version', ?)",
                (str(SCHEMA_VERSION),),
            )
        else:
            (stored_version,) = stored
            try:
                version = int(stored_version)
            except ValueError:
                version = -1
            while version in MIGRATIONS and version < SCHEMA_VERSION:
                for step in MIGRATIONS[version]:
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
                    f"message store {path} has schema version {stored_version}, "
                    + (
                        f"newer than this sinkd supports ({SCHEMA_VERSION}); upgrade sinkd "
                        "or point it at another file"
                        if newer
                        else f"which this sinkd cannot read (it expects {SCHEMA_VERSION})"
                    )
                )
        conn.execute("COMMIT")
    except BaseException:
        rollback(conn)
        raise


@dataclass(slots=True)
class ReceivedClock:
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
    def load(cls, conn: sqlite3.Connection) -> ReceivedClock:
        last = conn.execute(
            "SELECT received_max FROM messages ORDER BY seq DESC LIMIT 1"
        ).fetchone()
        lag = conn.execute("SELECT value FROM meta WHERE key = 'received_lag_ms'").fetchone()
        (high,) = last or (None,)
        (lag_ms,) = lag or (0,)
        return cls(None if high is None else moment(high), int(lag_ms))

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
    """Schema 5 migration: ``received_lag_ms`` over the rows already stored (see
    ``ReceivedClock``)."""
    high: datetime | None = None
    lag = 0
    for (text,) in conn.execute("SELECT received_at FROM messages ORDER BY seq"):
        received = moment(text)
        if high is None or received > high:
            high = received
        else:
            lag = max(lag, (high - received) // timedelta(milliseconds=1))
    _store_lag(conn, lag)


def rollback(conn: sqlite3.Connection) -> None:
    # An error here means there is no transaction left (SQLite may already have rolled back).
    with contextlib.suppress(sqlite3.Error):
        conn.execute("ROLLBACK")
