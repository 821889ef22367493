"""The SQL of the PostgreSQL store's writes: schema creation and migration, and one batch of
writes per transaction, on one synchronous psycopg 3 connection.

Owns every statement that changes a PostgreSQL store and the connection they run on, with its
outages: ``PgWriter`` is what the writer process (``sinkd.store.writer_main``) or the writer
thread (``sinkd.store.writer.WriterThread``) runs for ``--store postgresql://``, with the
same per-operation semantics as ``sinkd.store.sql.Writer``. It imports psycopg, so it is only
imported where the ``postgresql`` extra is needed (``sinkd.store.postgres``, and lazily by the
writer process). It must not acknowledge anything (the callers settle), commit a save it was
not given, let a raw psycopg error escape, or show the URL's password anywhere: every message
names the store by ``StoreLocation.shown``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from typing import Any

import psycopg
from psycopg import errors as pg_errors

from sinkd.errors import NotFound, StoreError
from sinkd.location import StoreLocation
from sinkd.store import relay_queued
from sinkd.store.pg_schema import (
    DELIVERY_TABLES,
    EVENTS_CHANNEL,
    FIRST_PG_VERSION,
    LOCK_MIGRATE,
    LOCK_SEQ,
    MESSAGE_TABLES,
    NOTIFY_PAYLOAD_BYTES,
    PG_MIGRATIONS,
    SCHEMA_VERSION,
    TRIGRAM_INDEXES,
)
from sinkd.store.sql import Op, raw_values

log = logging.getLogger(__name__)

# libpq's connect_timeout (PostgreSQL "Parameter Key Words", §34.1.2): seconds a connection
# attempt may take. Short, because the writer tries again once a second while the database is
# away and an SMTP client waits for the answer of a save it cannot commit.
CONNECT_TIMEOUT = 3
# How long the writer process or thread waits, idle, before it checks the connection (a
# cheap query when healthy, a new connection when not): /readyz follows an outage within
# about this long even without traffic.
HEALTH_INTERVAL = 1.0

MESSAGE_COLUMNS = (
    "seq, id, received_at, transaction_id, profile, verdict, disposition, score, stage, subject,"
    " mail_from, client_ip, size, data, codes, search_subject, search_mail_from, search_rcpt_to"
)
INSERT_MESSAGE = (
    f"INSERT INTO messages ({MESSAGE_COLUMNS})"
    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
)
COPY_MESSAGES = f"COPY messages ({MESSAGE_COLUMNS}) FROM STDIN"
INSERT_RAW = "INSERT INTO raw (id, bytes, filtered, filtered_from) VALUES (%s, %s, %s, %s)"
COPY_RAW = "COPY raw (id, bytes, filtered, filtered_from) FROM STDIN"
RELAY_COLUMNS = (
    "status, attempts, queued_at, last_attempt_at, next_attempt_at, done_at, last_reply, recipients"
)
INSERT_RELAY = (
    f"INSERT INTO relay (message_id, {RELAY_COLUMNS})"
    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (message_id) DO NOTHING"
)
UPDATE_RELAY = (
    "UPDATE relay SET status = %s, attempts = %s, last_attempt_at = %s, next_attempt_at = %s,"
    " done_at = %s, last_reply = %s, recipients = %s"
    " WHERE message_id = %s AND status = 'queued'"
)


def relay_row(state_text: str) -> tuple[Any, ...]:
    """A relay state's JSON text (``relay_queued``'s shape) as the relay table's columns."""
    state = json.loads(state_text)
    return (
        state["status"],
        state["attempts"],
        state["queued_at"],
        state.get("last_attempt_at"),
        state.get("next_attempt_at"),
        state.get("done_at"),
        json.dumps(state.get("last_reply"), separators=(",", ":")),
        json.dumps(state.get("recipients"), separators=(",", ":")),
    )


def relay_state(row: Sequence[Any]) -> dict[str, Any]:
    """The relay table's columns (in ``RELAY_COLUMNS``' order) back as the JSON shape."""
    status, attempts, queued_at, last_attempt, next_attempt, done_at, reply, rcpts = row
    return {
        "status": status,
        "attempts": attempts,
        "queued_at": queued_at,
        "last_attempt_at": last_attempt,
        "next_attempt_at": next_attempt,
        "done_at": done_at,
        "last_reply": None if reply is None else json.loads(reply),
        "recipients": json.loads(rcpts),
    }


def text(value: str | None) -> str | None:
    """A column copy of a text value: PostgreSQL text cannot hold NUL ("character with value
    0x00" is refused, §8.3), which a header may carry; the JSON text keeps it escaped."""
    return None if value is None else value.replace("\x00", "\ufffd")


def redact(location: StoreLocation, message: str) -> str:
    """``message`` (a driver's) on one line and without the URL's password, should it appear
    in it (libpq's messages span lines: "...failed: Connection refused\n\tIs the server
    running...")."""
    message = " ".join(message.split())
    url = location.url or ""
    parts = psycopg.conninfo.conninfo_to_dict(url) if url else {}
    secret = parts.get("password")
    if secret:
        message = message.replace(str(secret), "***")
    return message.replace(url, location.shown) if url else message


def connect(location: StoreLocation, *, autocommit: bool = True) -> psycopg.Connection[Any]:
    """A connection to the store's database; ``StoreError`` (without the password) if none."""
    assert location.url is not None
    try:
        return psycopg.connect(location.url, autocommit=autocommit, connect_timeout=CONNECT_TIMEOUT)
    except psycopg.Error as exc:
        raise StoreError(
            f"cannot reach message store {location.shown}: {redact(location, str(exc))}"
        ) from None


def ensure_schema(
    conn: psycopg.Connection[Any], location: StoreLocation, *, migrate: bool
) -> tuple[int | None, int]:
    """Create or migrate the schema (``migrate``), or check it is current; the version found
    (None: there was none) and the version now. One instance at a time (``LOCK_MIGRATE``, a
    session advisory lock: PostgreSQL "Advisory Locks", §13.3.5), each step in the migrating
    transaction. ``StoreError`` telling the user what to run when it is missing or older and
    ``migrate`` is off, or when it is newer than this sinkd."""
    hint = f"run 'sinkd store migrate --store {location.shown}' or start sinkd with --migrate"
    try:
        conn.execute("SELECT pg_advisory_lock(%s)", (LOCK_MIGRATE,))
        try:
            found = _stored_version(conn)
            if found is not None and found > SCHEMA_VERSION:
                raise StoreError(
                    f"message store {location.shown} has schema version {found}, newer than"
                    f" this sinkd supports ({SCHEMA_VERSION}); upgrade sinkd or point it at"
                    " another database"
                )
            if found == SCHEMA_VERSION:
                return found, found
            if not migrate:
                state = "has no sinkd schema" if found is None else f"has schema {found}"
                raise StoreError(
                    f"message store {location.shown} {state} (this sinkd needs"
                    f" {SCHEMA_VERSION}); {hint}"
                )
            if found is not None and found < FIRST_PG_VERSION:
                raise StoreError(
                    f"message store {location.shown} has schema version {found}, which"
                    " no PostgreSQL store ever had"
                )
            with conn.transaction():
                if found is None:
                    for statement in (*MESSAGE_TABLES, *DELIVERY_TABLES):
                        conn.execute(statement.encode())
                    _trigram_indexes(conn, location)
                    conn.execute(
                        "INSERT INTO sinkd_meta (key, value) VALUES ('schema_version', %s)",
                        (str(SCHEMA_VERSION),),
                    )
                else:
                    version = found
                    while version < SCHEMA_VERSION:
                        for step in PG_MIGRATIONS[version]:
                            conn.execute(step.encode())
                        version += 1
                    conn.execute(
                        "UPDATE sinkd_meta SET value = %s WHERE key = 'schema_version'",
                        (str(version),),
                    )
            return found, SCHEMA_VERSION
        finally:
            if not conn.broken:
                conn.execute("SELECT pg_advisory_unlock(%s)", (LOCK_MIGRATE,))
    except psycopg.Error as exc:
        raise StoreError(
            f"preparing message store {location.shown} failed: {redact(location, str(exc))}"
        ) from None


def _stored_version(conn: psycopg.Connection[Any]) -> int | None:
    exists = conn.execute("SELECT to_regclass('sinkd_meta') IS NOT NULL").fetchone()
    if not exists or not exists[0]:
        return None
    row = conn.execute("SELECT value FROM sinkd_meta WHERE key = 'schema_version'").fetchone()
    if row is None:
        return None
    try:
        return int(row[0])
    except ValueError:
        return -1


def _trigram_indexes(conn: psycopg.Connection[Any], location: StoreLocation) -> None:
    """The pg_trgm indexes when the extension is there or may be created; else a warning
    (once: the schema is created once) and plain scans for the substring filters."""
    try:
        with conn.transaction():  # a savepoint: a refused extension leaves the rest standing
            conn.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
            for statement in TRIGRAM_INDEXES:
                conn.execute(statement.encode())
    except psycopg.errors.Error as exc:
        if conn.broken:
            raise
        log.warning(
            "message store %s: no pg_trgm (%s); substring filters will scan",
            location.shown,
            redact(location, str(exc)).strip(),
        )


class PgWriter:
    """The write connection of a PostgreSQL store and the SQL of every write: one batch of
    operations per transaction (group commit), as ``sinkd.store.sql.Writer`` does for
    SQLite. Fills in each op's result or error and never settles futures itself.

    Outages: a batch that cannot reach the database, or whose connection breaks before its
    COMMIT was answered, fails as a whole with ``StoreError`` (its SMTP clients get 451, never
    250). A COMMIT whose answer was lost may still have committed: the client retries, as an
    MTA does after a 4xx, and the message is then stored twice under two ids; that is the
    price of never answering 250 for what may not be stored. The writer connects again by
    itself (``tick`` once a second while idle and unhealthy, and before the next batch);
    ``healthy`` says whether it is connected now (``/readyz``'s ``store``)."""

    idle_interval: float | None = HEALTH_INTERVAL

    def __init__(self, location: StoreLocation, *, migrate: bool, instance: str) -> None:
        self.location = location
        self.instance = instance
        self.commits = 0
        self.conn: psycopg.Connection[Any] | None = connect(location)
        try:
            ensure_schema(self.conn, location, migrate=migrate)
        except BaseException:
            self.conn.close()
            raise
        self.healthy = True

    def committed(self, ops: Sequence[Op]) -> None:
        """Nothing to do after the answers (PostgreSQL checkpoints by itself)."""

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    # -- health --------------------------------------------------------------------------

    def tick(self) -> None:
        """Idle: check the connection (a query on it when healthy, a new one when not)."""
        if self.conn is None:
            self._reconnect()
            return
        try:
            self.conn.execute("SELECT 1")
        except psycopg.Error as exc:
            self._lost(exc)

    def _reconnect(self) -> bool:
        try:
            self.conn = connect(self.location)
        except StoreError:
            self.healthy = False
            return False
        if not self.healthy:
            log.warning("message store %s is reachable again", self.location.shown)
        self.healthy = True
        return True

    def _lost(self, exc: BaseException) -> None:
        if self.healthy:
            log.error(
                "message store %s is unreachable: %s",
                self.location.shown,
                redact(self.location, str(exc)).strip(),
            )
        self.healthy = False
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    # -- writes --------------------------------------------------------------------------

    def write(self, ops: Sequence[Op]) -> None:
        """Commit ``ops`` in one transaction; each op's ``result`` or ``error`` is set."""
        if self.conn is None and not self._reconnect():
            self._fail(ops, f"message store {self.location.shown} is unreachable")
            return
        conn = self.conn
        assert conn is not None
        try:
            saves = len(ops) > 1 and all(op.kind == "save" for op in ops)
            if saves and self._write_saves(conn, ops):
                self.commits += 1
                return
            with conn.transaction():
                self._lock_seq(conn)
                for op in ops:
                    self._run_op(conn, op)
                self._notify(conn, ops)
        except Exception as exc:
            # The transaction as a whole failed, COMMIT included (its outcome unknown when the
            # connection broke during it; see the class): no op of it counts as committed. Not
            # only driver errors: an odd value that fails outside an op's savepoint must fail
            # its batch, never end the writer.
            for op in ops:
                op.result = None
            if conn.broken or isinstance(exc, psycopg.OperationalError):
                self._lost(exc)
            self._fail(
                ops,
                f"writing message store {self.location.shown} failed:"
                f" {redact(self.location, str(exc)).strip()}",
                every=True,
            )
        else:
            self.commits += 1

    def _fail(self, ops: Sequence[Op], text: str, *, every: bool = False) -> None:
        failure = StoreError(text)
        for op in ops:
            if every or op.error is None:
                op.error = failure

    def _lock_seq(self, conn: psycopg.Connection[Any]) -> None:
        # First in every write transaction, held until its end (pg_advisory_xact_lock, §9.27.10):
        # the writers of every instance commit one at a time, so seq grows in commit order.
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_SEQ,))

    def _write_saves(self, conn: psycopg.Connection[Any], ops: Sequence[Op]) -> bool:
        """A batch of saves in a few round trips: the seqs in one query, then one COPY per
        table (psycopg "Using COPY TO and COPY FROM": rows streamed in one statement). False,
        with nothing written, when any row fails (the caller then goes op by op to find it);
        a lost connection raises.

        Measured on batches of 20 1 KB saves (fsync on): COPY ~92-95 us of the writer's CPU
        per save, executemany (pipelined) ~112-118, at the same ~3.7-4.2 ms per batch (the
        commit's fsync dominates)."""
        try:
            with conn.transaction():
                self._lock_seq(conn)
                seqs = [
                    row[0]
                    for row in conn.execute(
                        "SELECT nextval('message_seq') FROM generate_series(1, %s) ORDER BY 1",
                        (len(ops),),
                    )
                ]
                messages, raws, relays = [], [], []
                for seq, op in zip(seqs, ops, strict=True):
                    messages.append(_message_values(seq, op))
                    if op.raw is not None:
                        raws.append(raw_values(op.message_id, bytes(op.raw), _bytes(op.filtered)))
                    if op.relay is not None:
                        relays.append((op.message_id, *relay_row(op.relay)))
                with conn.cursor() as cur:
                    with cur.copy(COPY_MESSAGES.encode()) as copy:
                        for row in messages:
                            copy.write_row(row)
                    if raws:
                        with cur.copy(COPY_RAW.encode()) as copy:
                            for row in raws:
                                copy.write_row(row)
                    if relays:  # rare (--relay): a plain pipelined executemany
                        cur.executemany(INSERT_RELAY, relays)
                self._notify(conn, ops)
        except (pg_errors.IntegrityError, pg_errors.DataError, ValueError, TypeError):
            if conn.broken:
                raise
            return False
        return True

    def _run_op(self, conn: psycopg.Connection[Any], op: Op) -> None:
        # A savepoint per op (a nested transaction() block, psycopg "Transactions management")
        # keeps one bad record (a duplicate id) from failing the other sessions that share the
        # transaction; a lost connection escapes to the batch.
        if op.error is not None:
            return
        try:
            with conn.transaction():
                op.result = self._apply(conn, op)
        except NotFound as exc:
            op.error = exc
        except pg_errors.UniqueViolation as exc:
            op.error = StoreError(f"message {op.message_id!r} is already stored ({exc})")
        except (
            pg_errors.IntegrityError,
            pg_errors.DataError,
            ValueError,
            TypeError,
            KeyError,  # a relay state without one of its fields
        ) as exc:
            op.error = StoreError(f"message {op.message_id!r} cannot be stored: {exc!r}")

    def _apply(self, conn: psycopg.Connection[Any], op: Op) -> Any:
        """One operation's SQL (as ``sinkd.store.sql.apply_op`` for SQLite)."""
        if op.kind == "save":
            row = conn.execute("SELECT nextval('message_seq')").fetchone()
            assert row is not None
            conn.execute(INSERT_MESSAGE, _message_values(row[0], op))
            if op.raw is not None:
                conn.execute(
                    INSERT_RAW, raw_values(op.message_id, bytes(op.raw), _bytes(op.filtered))
                )
            if op.relay is not None:
                conn.execute(INSERT_RELAY, (op.message_id, *relay_row(op.relay)))
            return None
        if op.kind == "delete":
            # raw and relay go with it (ON DELETE CASCADE).
            gone = conn.execute("DELETE FROM messages WHERE id = %s", (op.message_id,)).rowcount
            if not gone:
                raise NotFound(f"no message with id {op.message_id!r}")
            return None
        if op.kind in ("release", "release_relay"):
            changed = conn.execute(
                "UPDATE messages SET released_at = %s WHERE id = %s AND released_at IS NULL",
                (op.released_at, op.message_id),
            ).rowcount
            if changed:
                if op.kind == "release_relay":
                    self._queue_released(conn, op)
                return True
            if conn.execute("SELECT 1 FROM messages WHERE id = %s", (op.message_id,)).fetchone():
                return False
            raise NotFound(f"no message with id {op.message_id!r}")
        if op.kind == "relay_update":
            assert op.relay is not None
            state = relay_row(op.relay)
            values = (*state[:2], *state[3:], op.message_id)  # all but queued_at
            return conn.execute(UPDATE_RELAY, values).rowcount > 0
        if op.kind == "clear":
            return conn.execute("DELETE FROM messages").rowcount
        raise AssertionError(f"unknown store operation {op.kind!r}")

    def _queue_released(self, conn: psycopg.Connection[Any], op: Op) -> None:
        """Queue a message just released for relaying (in its release's savepoint), unless it
        has no bytes or is queued already."""
        found = conn.execute(
            "SELECT m.data FROM messages m JOIN raw r ON r.id = m.id WHERE m.id = %s",
            (op.message_id,),
        ).fetchone()
        if found is None or op.released_at is None:
            return
        rcpt_to = json.loads(found[0])["envelope"]["rcpt_to"] or []
        state = relay_queued([str(r) for r in rcpt_to], op.released_at)
        conn.execute(
            INSERT_RELAY, (op.message_id, *relay_row(json.dumps(state, separators=(",", ":"))))
        )

    def _notify(self, conn: psycopg.Connection[Any], ops: Sequence[Op]) -> None:
        """The batch's events on EVENTS_CHANNEL, in its transaction: delivered to listeners
        only if it commits (PostgreSQL NOTIFY). Saves are "verdict"; a release or relay update
        only when it changed something."""
        events: dict[str, list[str]] = {"verdict": [], "released": [], "relay": []}
        for op in ops:
            if op.error is not None or op.message_id is None:
                continue
            if op.kind == "save":
                events["verdict"].append(op.message_id)
            elif op.kind in ("release", "release_relay") and op.result:
                events["released"].append(op.message_id)
            elif op.kind == "relay_update" and op.result:
                events["relay"].append(op.message_id)
        payloads = [
            (EVENTS_CHANNEL, payload)
            for event, ids in events.items()
            for payload in notify_payloads(self.instance, event, ids)
        ]
        if payloads:
            with conn.cursor() as cur:
                cur.executemany("SELECT pg_notify(%s, %s)", payloads)


def notify_payloads(instance: str, event: str, ids: Sequence[str]) -> Iterator[str]:
    """The JSON payloads announcing ``ids``, each under NOTIFY_PAYLOAD_BYTES (UTF-8)."""
    if not ids:
        return
    head = {"origin": instance, "event": event}
    chunk: list[str] = []
    for message_id in ids:
        trial = json.dumps({**head, "ids": [*chunk, message_id]}, separators=(",", ":"))
        if chunk and len(trial.encode()) > NOTIFY_PAYLOAD_BYTES:
            yield json.dumps({**head, "ids": chunk}, separators=(",", ":"))
            chunk = []
        chunk.append(message_id)
    yield json.dumps({**head, "ids": chunk}, separators=(",", ":"))


def _bytes(data: bytes | bytearray | memoryview | None) -> bytes | None:
    return None if data is None else bytes(data)


def _message_values(seq: int, op: Op) -> tuple[Any, ...]:
    columns, received = op.save_values()
    return (
        seq,
        columns.id,
        received,
        columns.transaction_id,
        text(columns.profile),
        columns.verdict,
        columns.disposition,
        columns.score,
        columns.stage,
        text(columns.subject),
        text(columns.mail_from),
        text(columns.client_ip),
        columns.size,
        columns.data,
        [code for code in (text(c) for c in op.codes) if code is not None],
        text(op.search.subject),
        text(op.search.mail_from),
        text(op.search.rcpt_to),
    )
