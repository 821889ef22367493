"""The PostgreSQL message store: ``--store postgresql://...``, one database that several sinkd
instances share.

Owns the reads (``get``, ``list``, ``count``, the relay queue) on a small
``psycopg_pool.AsyncConnectionPool`` in the event loop, with exactly the store contract's
semantics (``tests/store/test_contract.py``), and composes the write side every SQL store has
(``sinkd.store.writer.StoreWrites``: a writer thread or process running
``sinkd.store.pg_sql.PgWriter``), so that no database write runs on the SMTP event loop. It
must not acknowledge a save before its commit, let a raw psycopg error escape (failures become
``StoreError``), or show the URL's password. Imported only when the ``postgresql`` extra is
installed and wanted (``sinkd.store.backends``).
"""

from __future__ import annotations

import json
import os
import socket
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, LiteralString

import psycopg
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from sinkd.errors import NotFound, StoreError
from sinkd.location import StoreLocation
from sinkd.store import Query, RelayEntry, StoredMessage
from sinkd.store.columns import fold
from sinkd.store.pg_sql import CONNECT_TIMEOUT, RELAY_COLUMNS, redact, relay_state, text
from sinkd.store.sql import stored_message
from sinkd.store.writer import StoreWrites, WriterKind, WritesThrough
from sinkd.store.writer_main import WriterSpec

__all__ = ["PostgresStore", "open_postgres"]

# The read pool (psycopg_pool "Connection pools"): one connection kept, up to four for
# concurrent API reads; a read waits at most POOL_WAIT seconds for one (during an outage the
# HTTP API answers an error soon rather than hanging).
POOL_MIN, POOL_MAX = 1, 4
POOL_WAIT = 5.0

# The relay columns of ``q`` (the relay table, LEFT JOINed: NULLs when not queued).
_RELAY_SELECT = ", ".join(f"q.{c.strip()}" for c in RELAY_COLUMNS.split(","))
_RELAY_WIDTH = len(RELAY_COLUMNS.split(","))


def default_instance() -> str:
    """A name for this instance in notifications when the server gives none."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class PostgresStore(WritesThrough):
    """A ``Store`` on a PostgreSQL database. Create it with ``open_postgres``."""

    def __init__(
        self,
        location: StoreLocation,
        *,
        writer: WriterKind = "thread",
        migrate: bool = False,
        instance: str | None = None,
    ) -> None:
        if location.kind != "postgresql" or location.url is None:
            raise StoreError(f"{location.shown} is no PostgreSQL store")
        self.location = location
        self.instance = instance or default_instance()
        self._writes = StoreWrites(
            WriterSpec(location, migrate=migrate, instance=self.instance), writer
        )
        self._pool = AsyncConnectionPool(
            location.url,
            min_size=POOL_MIN,
            max_size=POOL_MAX,
            kwargs={"autocommit": True, "connect_timeout": CONNECT_TIMEOUT},
            # A connection is checked before it is handed out: after a database restart the
            # pool's old connections are dead, and a read must get a new one, not an error.
            check=AsyncConnectionPool.check_connection,
            timeout=POOL_WAIT,
            open=False,
            name="sinkd-store-reads",
        )
        self._closed = False

    @property
    def path(self) -> str:
        """The store as shown in messages (no password)."""
        return self.location.shown

    @property
    def writable(self) -> bool:
        """Whether a save can be committed now: open, its writer there and connected."""
        return not self._closed and self._writes.writable

    async def wait_writable(self, wanted: bool = True) -> None:
        """Return once ``writable`` is ``wanted``: the database went away, or came back (the
        writer reconnects by itself); bound the wait with ``asyncio.timeout``."""
        await self._writes.wait_writable(wanted)

    # -- reads ---------------------------------------------------------------------------

    async def _fetch(
        self, statement: sql.Composed | sql.SQL | LiteralString, params: Sequence[Any]
    ) -> list[Any]:
        if self._closed:
            raise StoreError(f"message store {self.location.shown} is closed")
        try:
            async with self._pool.connection() as conn:
                cur = await conn.execute(statement, params)
                return await cur.fetchall()
        except psycopg.Error as exc:
            raise StoreError(
                f"reading message store {self.location.shown} failed:"
                f" {redact(self.location, str(exc)).strip()}"
            ) from None

    async def get(self, message_id: str, *, with_raw: bool = False) -> StoredMessage:
        raw_columns = "r.bytes, r.filtered, r.filtered_from" if with_raw else "NULL, NULL, NULL"
        join = " LEFT JOIN raw r ON r.id = m.id" if with_raw else ""
        rows = await self._fetch(
            sql.SQL(
                "SELECT m.data, m.released_at, {raw}, {relay} FROM messages m{join}"
                " LEFT JOIN relay q ON q.message_id = m.id WHERE m.id = %s"
            ).format(raw=sql.SQL(raw_columns), relay=sql.SQL(_RELAY_SELECT), join=sql.SQL(join)),
            (message_id,),
        )
        if not rows:
            raise NotFound(f"no message with id {message_id!r}")
        data, released_at, raw, filtered, filtered_from, *relay = rows[0]
        return stored_message(_data(data, released_at, relay), raw, filtered, filtered_from)

    async def list(self, query: Query) -> Sequence[StoredMessage]:
        where = _where(query)
        if where is None:
            return []
        conditions, params = where
        # Anchored at ``after``, the page is read upwards from it, then turned newest first.
        upwards = query.after is not None
        statement = sql.SQL(
            "SELECT m.seq, m.data, m.released_at, {relay} FROM messages m"
            " LEFT JOIN relay q ON q.message_id = m.id{where}"
            " ORDER BY m.seq {order} LIMIT %s OFFSET %s"
        ).format(
            relay=sql.SQL(_RELAY_SELECT),
            where=conditions,
            order=sql.SQL("ASC" if upwards else "DESC"),
        )
        rows = await self._fetch(statement, (*params, query.limit, max(0, query.offset)))
        listed = [
            StoredMessage(data=_data(data, released_at, relay), seq=seq)
            for seq, data, released_at, *relay in rows
        ]
        return listed[::-1] if upwards else listed

    async def count(
        self, query: Query | None = None, *, at_most: int | None = None, cursors: bool = False
    ) -> int:
        counted = (query or Query()).counted(cursors=cursors)
        where = _where(counted)
        if where is None:
            return 0
        conditions, params = where
        limit = sql.SQL("") if at_most is None else sql.SQL(" LIMIT %s")
        statement = sql.SQL(
            "SELECT count(*) FROM (SELECT 1 FROM messages m{where}{limit}) s"
        ).format(where=conditions, limit=limit)
        rows = await self._fetch(statement, (*params, *(() if at_most is None else (at_most,))))
        return int(rows[0][0])

    async def relay_queue(self, limit: int) -> Sequence[RelayEntry]:
        rows = await self._fetch(
            sql.SQL(
                "SELECT q.message_id, {relay} FROM relay q JOIN messages m"
                " ON m.id = q.message_id WHERE q.status = 'queued'"
                " ORDER BY q.next_attempt_at, m.seq LIMIT %s"
            ).format(relay=sql.SQL(_RELAY_SELECT)),
            (limit,),
        )
        return [RelayEntry(message_id, relay_state(state)) for message_id, *state in rows]

    async def relay_depth(self) -> int:
        rows = await self._fetch("SELECT count(*) FROM relay WHERE status = 'queued'", ())
        return int(rows[0][0])

    # -- lifecycle -----------------------------------------------------------------------

    async def _start(self) -> None:
        """Start the writer (it creates or checks the schema), then the read pool."""
        try:
            await self._writes.start()
        except BaseException:
            self._closed = True
            raise
        try:
            await self._pool.open(wait=True, timeout=POOL_WAIT + CONNECT_TIMEOUT)
        except (psycopg.Error, TimeoutError) as exc:
            self._closed = True
            await self._writes.close()
            await self._pool.close()
            raise StoreError(
                f"cannot read message store {self.location.shown}:"
                f" {redact(self.location, str(exc)).strip()}"
            ) from None

    async def close(self) -> None:
        self._closed = True
        await self._writes.close()  # commits everything submitted before it
        await self._pool.close()

    async def __aenter__(self) -> PostgresStore:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


async def open_postgres(
    url: str | StoreLocation,
    *,
    writer: WriterKind = "thread",
    migrate: bool = False,
    instance: str | None = None,
) -> PostgresStore:
    """Open the PostgreSQL store at ``url``; with ``migrate`` create or migrate its schema
    first (else a missing or older one is a ``StoreError`` saying what to run). ``writer`` is
    where the writes run (a thread here, or a process of its own: ``sinkd serve``);
    ``instance`` names this instance in the notifications its commits send."""
    location = url if isinstance(url, StoreLocation) else StoreLocation.parse(url)
    store = PostgresStore(location, writer=writer, migrate=migrate, instance=instance)
    await store._start()
    return store


def _like(value: str) -> str:
    """A LIKE pattern matching ``value`` anywhere (its %, _ and \\ escaped: "Pattern
    Matching", §9.7.1, backslash being LIKE's default escape character)."""
    escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _whole_ms(moment: datetime) -> datetime:
    """``moment`` cut to whole milliseconds, as received times are stored and compared."""
    moment = moment.astimezone(UTC)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def _where(query: Query) -> tuple[sql.SQL, list[Any]] | None:
    """``query``'s filters as a WHERE clause (or nothing) and its parameters; None when
    nothing can match."""
    conditions: list[str] = []
    params: list[Any] = []
    for column, value in (("verdict", query.verdict), ("profile", query.profile)):
        if value is not None:
            conditions.append(f"m.{column} = %s")
            params.append(value)
    for column, value in (
        ("search_subject", query.subject),
        ("search_mail_from", query.mail_from),
        ("search_rcpt_to", query.to),
    ):
        if value is None:
            continue
        needle = text(fold(value)) or ""
        if column == "search_rcpt_to" and "\n" in needle:
            return None  # recipients are stored one per line; none holds a line break
        conditions.append(f"m.{column} LIKE %s")
        params.append(_like(needle))
    if query.code is not None:
        conditions.append("m.codes @> ARRAY[%s]::text[]")
        params.append(query.code)
    if query.since is not None:
        conditions.append("m.received_at >= %s")
        params.append(_whole_ms(query.since))
    if query.until is not None:
        conditions.append("m.received_at < %s")
        params.append(_whole_ms(query.until))
    if query.before is not None:
        conditions.append("m.seq < %s")
        params.append(query.before)
    if query.after is not None:
        conditions.append("m.seq > %s")
        params.append(query.after)
    if not conditions:
        return sql.SQL(""), params
    # Only the fixed fragments above are joined here; every value is a parameter.
    return sql.SQL(" WHERE " + " AND ".join(conditions)), params


def _data(text_value: str, released_at: str | None, relay: Sequence[Any]) -> dict[str, Any]:
    """The stored JSON shape with ``released_at`` from its column and ``relay`` from the
    relay queue's row (all NULL when the message is not queued)."""
    data: dict[str, Any] = json.loads(text_value)
    data["released_at"] = released_at
    data["relay"] = None if relay[0] is None else relay_state(relay[:_RELAY_WIDTH])
    return data
