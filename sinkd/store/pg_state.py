"""The delivery state several sinkd instances share in PostgreSQL: greylist triplets, rate-limit
windows, and the open SMTP connections of every live instance.

Owns ``PgDeliveryState``, the ``ports.DeliveryMemory`` of ``sinkd serve --store
postgresql://...``, and the statements on the tables ``sinkd.store.pg_schema.DELIVERY_TABLES``
declares (the store's migrations create them; this module never creates or alters a table).
It decides nothing itself: the greylist's rule is ``sinkd.core.delivery_state.greylist_step``,
applied here under the triplet's row lock, so that instances behind one load balancer decide
as one process does. It must never let a decision through without the database: every failure
to read or write the state is ``DeliveryStateUnavailable`` (the filters answer 451 4.3.5), and
only the connection count, which no message's verdict depends on, falls back to this
instance's own count. It never logs the store's URL (``StoreLocation.shown`` is logged).

psycopg is imported at module level: this module is imported only when ``--store`` names
PostgreSQL (``sinkd.server.runtime`` imports it there), so SQLite users need not install the
``postgresql`` extra.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator, Coroutine, Iterable
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from sinkd.core.delivery_state import SWEEP_INTERVAL, GreylistEntry, greylist_step
from sinkd.core.ports import GreylistDecision
from sinkd.errors import DeliveryStateUnavailable
from sinkd.location import StoreLocation
from sinkd.store.pg_sql import CONNECT_TIMEOUT, redact

__all__ = ["HEARTBEAT", "STALE_AFTER", "PgDeliveryState"]

log = logging.getLogger("sinkd.store")

# Seconds between two heartbeats of an instance (its ``instances.seen_at``). An instance whose
# heartbeat is older than STALE_AFTER no longer counts: its connections are left out of every
# other instance's count. Three heartbeats, so that one slow or lost beat (a busy event loop, a
# short network hiccup) does not make a live instance's connections vanish, while an instance
# killed with -9 (which never deletes its row) stops counting within 15 seconds; its rows are
# deleted by the next sweep of any instance once they are a minute old.
HEARTBEAT = 5.0
STALE_AFTER = 3 * HEARTBEAT
FORGET_INSTANCE_AFTER = 60.0  # seconds without a heartbeat before a sweep deletes the instance

# Each call waits at most this long for a connection and its statements: past it the state is
# unavailable and the SMTP command gets 451 4.3.5, rather than a session that hangs (SMTP
# clients wait 5 minutes for a RCPT reply, RFC 5321 §4.5.3.2.6, and give up before that).
CALL_TIMEOUT = 5.0

_GREYLIST_COLUMNS = "first_seen, last_seen, expires, attempts, passed_at, remember"

_INSERT_FIRST = (
    f"INSERT INTO greylist (client, sender, recipient, {_GREYLIST_COLUMNS})"
    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
    " ON CONFLICT (client, sender, recipient) DO NOTHING RETURNING true"
)
_SELECT_FOR_UPDATE = (
    f"SELECT {_GREYLIST_COLUMNS} FROM greylist"
    " WHERE client = %s AND sender = %s AND recipient = %s FOR UPDATE"
)
_UPDATE = (
    "UPDATE greylist SET first_seen = %s, last_seen = %s, expires = %s, attempts = %s,"
    " passed_at = %s, remember = %s WHERE client = %s AND sender = %s AND recipient = %s"
)
# One statement per message: the conflicting row is locked by ON CONFLICT DO UPDATE, so two
# instances counting one client serialize on it and each sees the other's time (PostgreSQL
# INSERT, "ON CONFLICT DO UPDATE guarantees an atomic INSERT or UPDATE outcome"). The window
# keeps the times after the cutoff, then this one; the count is its length.
_NOTE_MESSAGE = (
    "INSERT INTO rate_windows AS w (scope, client, span, times, last)"
    " VALUES (%(scope)s, %(client)s, %(span)s, ARRAY[%(now)s::double precision], %(now)s)"
    " ON CONFLICT (scope, client) DO UPDATE SET span = EXCLUDED.span,"
    " times = ARRAY(SELECT t FROM unnest(w.times) AS t WHERE t > %(cutoff)s ORDER BY t)"
    " || %(now)s::double precision,"
    " last = greatest(w.last, EXCLUDED.last)"
    " RETURNING cardinality(times)"
)
# The instance's row: inserted, or its heartbeat moved on. ``xmax = 0`` is true for a row this
# statement inserted (a row version no transaction has updated or locked): then the instance
# was unknown (first start, or swept while cut off) and its connection rows are written anew.
_HEARTBEAT = (
    "INSERT INTO instances (id, hostname, started_at, seen_at)"
    " VALUES (%s, %s, now(), now())"
    " ON CONFLICT (id) DO UPDATE SET seen_at = now()"
    " RETURNING (xmax = 0)"
)
# This instance's open connections from one address (absolute: written under ``_counts``, in
# the order the counts changed), and the other live instances' from it. A data-modifying WITH
# runs on the statement's snapshot, so the SELECT does not see this write (PostgreSQL, "Data-
# Modifying Statements in WITH"): this instance's own count is added by the caller.
_COUNT_OPEN = (
    "WITH mine AS ("
    " INSERT INTO smtp_connections (instance, ip, open) VALUES (%(id)s, %(ip)s, %(open)s)"
    " ON CONFLICT (instance, ip) DO UPDATE SET open = EXCLUDED.open)"
    " SELECT coalesce(sum(c.open), 0) FROM smtp_connections c"
    " JOIN instances i ON i.id = c.instance"
    " WHERE c.ip = %(ip)s AND c.instance <> %(id)s"
    " AND i.seen_at > now() - make_interval(secs => %(stale)s)"
)
_CLOSE_LAST = "DELETE FROM smtp_connections WHERE instance = %s AND ip = %s"
_SET_OPEN = (
    "INSERT INTO smtp_connections (instance, ip, open) VALUES (%s, %s, %s)"
    " ON CONFLICT (instance, ip) DO UPDATE SET open = EXCLUDED.open"
)


class PgDeliveryState:
    """``ports.DeliveryMemory`` on PostgreSQL, for every instance of one ``--store``.

    ``instance`` is this server's id (a uuid the server draws at start), ``delay_override``
    ``sinkd serve --greylist-delay``. ``await start()`` opens a small pool (1 to 4 connections)
    and begins heartbeating; ``await close()`` removes the instance (and, by ON DELETE
    CASCADE, its connection rows) and closes the pool.
    """

    def __init__(
        self,
        url: str,
        *,
        instance: str,
        delay_override: float | None = None,
        hostname: str | None = None,
        sweep_interval: float = SWEEP_INTERVAL,
        heartbeat: float = HEARTBEAT,
        call_timeout: float = CALL_TIMEOUT,
    ) -> None:
        if delay_override is not None and delay_override < 0:
            raise ValueError("delay_override must be 0 or more seconds")
        self.location = StoreLocation.parse(url)
        self.shown = self.location.shown  # for logs and errors: no password
        self.instance = instance
        self.hostname = hostname or socket.gethostname()
        self.delay_override = delay_override
        self.sweep_interval = sweep_interval
        self.heartbeat = heartbeat
        self.stale_after = 3 * heartbeat
        self.call_timeout = call_timeout
        self._pool: AsyncConnectionPool[psycopg.AsyncConnection[Any]] = AsyncConnectionPool(
            url,
            min_size=1,
            max_size=4,
            open=False,
            timeout=call_timeout,
            name="sinkd-delivery-state",
            # Autocommit: a rate count is one statement, one round trip; the greylist's
            # several statements run in an explicit transaction (conn.transaction()).
            kwargs={
                "autocommit": True,
                "connect_timeout": CONNECT_TIMEOUT,
                "application_name": f"sinkd delivery state {instance}",
            },
            # A connection kept across a database restart is dead; the pool's check (an
            # empty query) finds it before it is handed out (psycopg_pool, "Connection
            # checks"), so the first call after a restart does not fail on it.
            check=AsyncConnectionPool.check_connection,
        )
        self._open: dict[str, int] = {}  # this instance's open connections per address
        self._counts = asyncio.Lock()  # connection rows are written in the order counts change
        self._down = False  # the last connection write failed: counts are this instance's own
        self._resync = True  # connection rows must be written anew (first start, outage)
        self._last_sweep: float | None = None
        self._tasks: set[asyncio.Task[None]] = set()  # sweeps and connection writes in flight
        self._beating: asyncio.Task[None] | None = None
        self._started = False
        self._beat_now = asyncio.Event()

    # --- lifetime ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the pool and register this instance. An unreachable database does not stop
        the start: the heartbeat keeps trying, and greylist and rate decisions answer 451
        meanwhile (as they would if it went away later)."""
        self._started = True
        await self._pool.open(wait=False)
        try:
            await self.beat()
        except DeliveryStateUnavailable as error:
            self._went_down(error)
        self._beating = asyncio.create_task(self._heartbeat_loop(), name="delivery-heartbeat")

    async def close(self) -> None:
        """Stop heartbeating, forget this instance's row (its connection rows go with it),
        close the pool. Idempotent; nothing to do for a state never started."""
        if not self._started:
            return
        self._started = False
        if self._beating is not None:
            self._beating.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._beating
            self._beating = None
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        try:
            async with self._connection() as conn:
                await conn.execute("DELETE FROM instances WHERE id = %s", (self.instance,))
        except DeliveryStateUnavailable as error:  # its heartbeat stops: it goes stale anyway
            log.warning("delivery state: could not remove instance %s: %s", self.instance, error)
        await self._pool.close()

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """A pooled connection, every failure (no connection in time, a dropped session, an
        error of a statement) turned into ``DeliveryStateUnavailable``."""
        try:
            async with asyncio.timeout(self.call_timeout):
                async with self._pool.connection() as conn:
                    yield conn
        except (psycopg.Error, PoolTimeout, TimeoutError, OSError) as error:
            reason = redact(self.location, str(error)) or type(error).__name__
            raise DeliveryStateUnavailable(
                f"the shared delivery state at {self.shown} is unavailable: {reason}"
            ) from error

    # --- greylisting -------------------------------------------------------------------------

    async def greylist(
        self,
        key: tuple[str, str, str],
        now: float,
        delay: float,
        retry_window: float,
        remember: float,
    ) -> GreylistDecision:
        """One attempt of the triplet ``key`` at ``now``, decided by ``greylist_step`` on the
        shared row: a first attempt is one INSERT; a known triplet is locked (SELECT ... FOR
        UPDATE), stepped and updated in one short transaction, so concurrent attempts on two
        instances serialize on its row lock (PostgreSQL, "The Locking Clause")."""
        if self.delay_override is not None:
            delay = self.delay_override
        self._maybe_sweep(now)
        fresh, first = greylist_step(None, now, delay, retry_window, remember)
        async with self._connection() as conn:
            for _ in range(3):  # a sweep may delete the row between the two statements
                # ON CONFLICT DO NOTHING first, on its own (autocommit: one round trip for a
                # new triplet): of two first attempts at once, one inserts and the other
                # waits for it, then finds its row (PostgreSQL INSERT, "ON CONFLICT Clause").
                cursor = await conn.execute(_INSERT_FIRST, (*key, *_entry_values(fresh)))
                if await cursor.fetchone() is not None:
                    return first
                async with conn.transaction():
                    cursor = await conn.execute(_SELECT_FOR_UPDATE, key)
                    row = await cursor.fetchone()
                    if row is None:
                        continue
                    entry, decision = greylist_step(
                        GreylistEntry(*row), now, delay, retry_window, remember
                    )
                    await conn.execute(_UPDATE, (*_entry_values(entry), *key))
                    return decision
        raise DeliveryStateUnavailable(
            f"the greylist row of {'/'.join(key)} kept vanishing at {self.shown}"
        )

    # --- message rates -----------------------------------------------------------------------

    async def note_message(
        self, client_ip: str, now: float, window: float = 60.0, *, scope: str = ""
    ) -> int:
        """Record one message from ``client_ip`` at ``now``; how many it sent in the sliding
        window ``(now - window, now]`` across every instance, this one included."""
        self._maybe_sweep(now)
        params = {
            "scope": scope,
            "client": client_ip,
            "span": window,
            "now": now,
            "cutoff": now - window,
        }
        async with self._connection() as conn:
            cursor = await conn.execute(_NOTE_MESSAGE, params)
            row = await cursor.fetchone()
        assert row is not None  # INSERT ... RETURNING always returns the row it wrote
        return int(row[0])

    # --- what the HTTP API shows and clears ----------------------------------------------------

    async def entries(self) -> int:
        """Triplets plus client windows, across every instance."""
        async with self._connection() as conn:
            cursor = await conn.execute(
                "SELECT (SELECT count(*) FROM greylist) + (SELECT count(*) FROM rate_windows)"
            )
            row = await cursor.fetchone()
        return int(row[0]) if row is not None else 0

    async def forget(self) -> int:
        """Forget every triplet and client window (for every instance); how many there were."""
        async with self._connection() as conn:
            cursor = await conn.execute(
                "WITH g AS (DELETE FROM greylist RETURNING 1),"
                " r AS (DELETE FROM rate_windows RETURNING 1)"
                " SELECT (SELECT count(*) FROM g) + (SELECT count(*) FROM r)"
            )
            row = await cursor.fetchone()
        self._last_sweep = None
        return int(row[0]) if row is not None else 0

    async def clear(self) -> int:
        """``forget``, as ``DeliveryState.clear`` is named."""
        return await self.forget()

    # --- expiry ------------------------------------------------------------------------------

    def _maybe_sweep(self, now: float) -> None:
        """At most once a ``sweep_interval`` of the callers' clock, delete expired rows in a
        task of its own: off the SMTP command's path."""
        if self._last_sweep is not None and 0 <= now - self._last_sweep < self.sweep_interval:
            return
        self._last_sweep = now
        self._spawn(self._sweep(now), "delivery-sweep")

    async def _sweep(self, now: float) -> None:
        try:
            await self.sweep(now)
        except DeliveryStateUnavailable as error:
            log.debug("delivery state: sweep skipped: %s", error)

    async def sweep(self, now: float) -> None:
        """Delete every expired triplet, every client window with no message in its span, and
        instances unseen for FORGET_INSTANCE_AFTER seconds (with their connection rows)."""
        async with self._connection() as conn:
            await conn.execute("DELETE FROM greylist WHERE expires < %s", (now,))
            await conn.execute("DELETE FROM rate_windows WHERE last <= %s - span", (now,))
            await conn.execute(
                "DELETE FROM instances WHERE seen_at < now() - make_interval(secs => %s)",
                (FORGET_INSTANCE_AFTER,),
            )

    async def flush(self) -> None:
        """Wait for the background writes in flight (connection counts, sweeps)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def _spawn(self, coroutine: Coroutine[Any, Any, None], name: str) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coroutine, name=name)
        self._tasks.add(task)  # a strong reference until it ends (asyncio.create_task)
        task.add_done_callback(self._tasks.discard)

    # --- SMTP connections per client address ------------------------------------------------

    def connection_opened(self, ip: str) -> None:
        """Count a connection from ``ip`` on this instance (no I/O: called when the
        connection is made); the shared row is updated in the background, and
        ``connections_from`` (awaited where a limit applies) writes it and reads the total."""
        self._open[ip] = self._open.get(ip, 0) + 1
        if self._started and not self._down:
            self._spawn(self._write_count(ip), "delivery-connection-opened")

    def connection_closed(self, ip: str) -> None:
        """Count a closed connection from ``ip``; the shared row is updated in the background."""
        left = self._open.get(ip, 0) - 1
        if left > 0:
            self._open[ip] = left
        else:
            self._open.pop(ip, None)
        if self._started and not self._down:
            self._spawn(self._write_count(ip), "delivery-connection-closed")

    async def connections_from(self, ip: str) -> int:
        """Open connections from ``ip`` across every live instance, this one's included.

        While PostgreSQL is unreachable, this instance's own count (a warning is logged once
        per outage): refusing every connection during an outage would be worse than what a
        real MX does, and Postfix's own limit is per host anyway (anvil(8) counts the
        connections of one Postfix instance, smtpd_client_connection_count_limit).
        """
        mine = self._open.get(ip, 0)
        if self._down:
            return mine
        try:
            async with self._counts:
                mine = self._open.get(ip, 0)
                async with self._connection() as conn:
                    cursor = await conn.execute(
                        _COUNT_OPEN,
                        {"id": self.instance, "ip": ip, "open": mine, "stale": self.stale_after},
                    )
                    row = await cursor.fetchone()
        except DeliveryStateUnavailable as error:
            self._went_down(error)
            return self._open.get(ip, 0)
        return mine + (int(row[0]) if row is not None else 0)

    async def _write_count(self, ip: str) -> None:
        try:
            async with self._counts:
                await self._write_counts([ip])
        except DeliveryStateUnavailable as error:
            self._went_down(error)

    async def _write_counts(self, ips: Iterable[str]) -> None:
        """This instance's rows for ``ips`` as its counts are now (0: no row)."""
        async with self._connection() as conn:
            for ip in ips:
                count = self._open.get(ip, 0)
                if count > 0:
                    await conn.execute(_SET_OPEN, (self.instance, ip, count))
                else:
                    await conn.execute(_CLOSE_LAST, (self.instance, ip))

    def _went_down(self, error: DeliveryStateUnavailable) -> None:
        if not self._down:
            log.warning(
                "delivery state: %s; connection limits count this instance's connections "
                "only until it is back",
                error,
            )
        self._down = self._resync = True
        self._beat_now.set()  # the heartbeat loop retries without waiting a whole beat

    # --- heartbeat ---------------------------------------------------------------------------

    async def beat(self) -> None:
        """One heartbeat; after an outage (or a first start) this instance's connection rows
        are written anew, so that the shared counts match what it has open now."""
        async with self._counts:
            async with self._connection() as conn:
                cursor = await conn.execute(_HEARTBEAT, (self.instance, self.hostname))
                row = await cursor.fetchone()
                inserted = bool(row[0]) if row is not None else True
                if inserted or self._resync:
                    await conn.execute(
                        "DELETE FROM smtp_connections WHERE instance = %s", (self.instance,)
                    )
                    for ip, count in list(self._open.items()):
                        await conn.execute(_SET_OPEN, (self.instance, ip, count))
            if self._down:
                log.info("delivery state: %s is back; connection counts are shared", self.shown)
            self._down = self._resync = False

    async def _heartbeat_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.heartbeat):
                    await self._beat_now.wait()
            self._beat_now.clear()
            try:
                await self.beat()
            except DeliveryStateUnavailable as error:
                self._went_down(error)
                self._beat_now.clear()  # retried at the next beat, not in a busy loop


def _entry_values(entry: GreylistEntry) -> tuple[float, float, float, int, float | None, float]:
    return (
        entry.first_seen,
        entry.last_seen,
        entry.expires,
        entry.attempts,
        entry.passed_at,
        entry.remember,
    )
