"""What several sinkd instances on one PostgreSQL store tell each other: the events of records
committed elsewhere (LISTEN/NOTIFY), and which one instance delivers the relay queue.

Owns two dedicated connections of a server on a PostgreSQL store, each reconnecting by itself:
``EventListener`` LISTENs on ``EVENTS_CHANNEL`` (the writers NOTIFY it in the transaction that
commits, ``sinkd.store.pg_schema``) and hands every notification from another instance to a
callback; ``RelayLease`` holds the session advisory lock ``LOCK_RELAY`` that makes one instance
the relayer, and ``LeasedRelayQueue`` lets a relayer read the queue only while its instance
holds it; ``SharedLinks`` is what a server starts and stops of them. They read no records and
publish nothing themselves (the server does, through its store and its event hub), and must
never raise into the server's event loop: a lost connection is logged and opened again.

psycopg is imported here at module level: only a server whose ``--store`` is a PostgreSQL URL
imports this module (through ``sinkd.store.backends``), and that needs the ``postgresql`` extra
anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg

from sinkd.location import StoreLocation
from sinkd.store import RelayEntry, RelayStore, StoredMessage
from sinkd.store.pg_schema import EVENTS_CHANNEL, LOCK_RELAY
from sinkd.store.pg_sql import CONNECT_TIMEOUT

log = logging.getLogger(__name__)

# Seconds between attempts to reach PostgreSQL again after a lost connection (the server goes
# on serving meanwhile: SMTP answers 451 4.3.5 while the writer cannot commit).
RECONNECT_DELAY = 1.0
# A dead peer (a PostgreSQL host that vanished without closing the connection) is noticed by
# TCP keepalives within about idle + interval * count seconds (libpq connection parameters
# keepalives_idle/_interval/_count, PostgreSQL docs §34.1.2).
KEEPALIVES_IDLE, KEEPALIVES_INTERVAL, KEEPALIVES_COUNT = 5, 2, 3
# How often a follower asks for the relay lease: how long the queue may wait after the
# relaying instance is gone (its session ends with its connection, and the lock with it).
LEASE_RETRY = 5.0


@dataclass(frozen=True, slots=True)
class Notification:
    """One NOTIFY of ``EVENTS_CHANNEL``: which instance committed, what, and which records."""

    origin: str
    event: str  # "verdict", "released" or "relay"
    ids: tuple[str, ...]

    @classmethod
    def parse(cls, payload: str) -> Notification | None:
        """The payload a writer sent, or None when it is not one (logged by the caller)."""
        try:
            data = json.loads(payload)
            origin, event, ids = data["origin"], data["event"], data["ids"]
        except (ValueError, KeyError, TypeError):
            return None
        if not (isinstance(origin, str) and isinstance(event, str) and isinstance(ids, list)):
            return None
        return cls(origin, event, tuple(str(i) for i in ids))


async def _connect(location: StoreLocation) -> psycopg.AsyncConnection[Any]:
    assert location.url is not None
    return await psycopg.AsyncConnection.connect(
        location.url,
        autocommit=True,
        connect_timeout=CONNECT_TIMEOUT,
        keepalives=1,
        keepalives_idle=KEEPALIVES_IDLE,
        keepalives_interval=KEEPALIVES_INTERVAL,
        keepalives_count=KEEPALIVES_COUNT,
    )


class EventListener:
    """LISTEN on the events channel and call ``on_event`` for each notification another
    instance (``origin`` other than ``instance``) sent. Events committed while the connection
    is lost are not replayed: the records are stored all the same (the listing shows them),
    only their live events are missed; the reconnection is logged so that is visible."""

    def __init__(
        self,
        location: StoreLocation,
        instance: str,
        on_event: Callable[[Notification], Awaitable[None]],
    ) -> None:
        self.location = location
        self.instance = instance
        self.on_event = on_event
        self.listening = asyncio.Event()  # set while LISTEN is in force (tests wait on it)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="sinkd-pg-events")

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        lost = False
        while True:
            try:
                conn = await _connect(self.location)
            except psycopg.Error as exc:
                if not lost:
                    log.error("events: cannot listen on %s: %s", self.location.shown, exc)
                lost = True
                await asyncio.sleep(RECONNECT_DELAY)
                continue
            try:
                await conn.execute(f"LISTEN {EVENTS_CHANNEL}")
                if lost:
                    log.warning(
                        "events: listening on %s again; events committed meanwhile were not "
                        "relayed to this instance's subscribers",
                        self.location.shown,
                    )
                lost = False
                self.listening.set()
                async for notify in conn.notifies():
                    await self._deliver(notify.payload)
            except psycopg.Error as exc:
                log.error("events: lost the connection to %s: %s", self.location.shown, exc)
                lost = True
            finally:
                self.listening.clear()
                with contextlib.suppress(psycopg.Error):
                    await conn.close()
            await asyncio.sleep(RECONNECT_DELAY)

    async def _deliver(self, payload: str) -> None:
        found = Notification.parse(payload)
        if found is None:
            log.warning("events: ignored a notification that is not sinkd's: %.200r", payload)
            return
        if found.origin == self.instance:
            return  # this instance published its own records when it committed them
        try:
            await self.on_event(found)
        except Exception:  # one bad event must not end the listener
            log.exception("events: publishing %s %s failed", found.event, ",".join(found.ids))


class RelayLease:
    """The session advisory lock that makes this instance the one that relays
    (pg_try_advisory_lock, PostgreSQL docs §9.27.10: held until released or the session ends,
    so the lease of an instance that died, even by kill -9, ends with its connection)."""

    def __init__(self, location: StoreLocation) -> None:
        self.location = location
        self._conn: psycopg.AsyncConnection[Any] | None = None

    async def held(self) -> bool:
        """Whether this instance holds the lease now, taking it when it is free."""
        conn = self._conn
        if conn is not None:
            try:
                await conn.execute("SELECT 1")  # still our session, so still our lock
                return True
            except psycopg.Error:
                log.warning("relay: lost the relay lease with the connection; asking again")
                await self._drop()
        try:
            conn = await _connect(self.location)
        except psycopg.Error:
            return False
        try:
            row = await (
                await conn.execute("SELECT pg_try_advisory_lock(%s)", (LOCK_RELAY,))
            ).fetchone()
        except psycopg.Error:
            await conn.close()
            return False
        if row is None or not row[0]:
            await conn.close()
            return False
        self._conn = conn
        log.info("relay: this instance delivers the relay queue (lease taken)")
        return True

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(psycopg.Error):
                await conn.close()

    async def close(self) -> None:
        await self._drop()  # ending the session releases the lock


class LeasedRelayQueue:
    """A relay queue read only while this instance holds the ``RelayLease``: several instances
    relaying from one queue would deliver each message several times. A follower's read
    waits, asking for the lease every ``retry`` seconds, so it takes over after the relaying
    instance is gone."""

    def __init__(self, store: RelayStore, lease: RelayLease, *, retry: float = LEASE_RETRY) -> None:
        self.store = store
        self.lease = lease
        self.retry = retry

    async def get(self, message_id: str, *, with_raw: bool = False) -> StoredMessage:
        return await self.store.get(message_id, with_raw=with_raw)

    async def relay_queue(self, limit: int) -> Sequence[RelayEntry]:
        while True:
            if await self.lease.held():
                return await self.store.relay_queue(limit)
            # Polled: the end of another session's lock notifies nobody.
            await asyncio.sleep(self.retry)

    async def relay_update(self, message_id: str, state: dict[str, Any]) -> bool:
        return await self.store.relay_update(message_id, state)


@dataclass(slots=True)
class SharedLinks:
    """A server's links to the other instances on its store (``sinkd.store.backends``):
    started with the server, closed at its stop."""

    listener: EventListener
    lease: RelayLease | None  # only when this server relays (--relay)

    def start(self) -> None:
        self.listener.start()

    def relay_queue(self, store: RelayStore) -> LeasedRelayQueue:
        """``store``'s relay queue as this server's relayer must read it: only while this
        instance holds the lease."""
        assert self.lease is not None, "links made without relay=True"
        return LeasedRelayQueue(store, self.lease)

    async def close(self) -> None:
        await self.listener.close()
        if self.lease is not None:
            await self.lease.close()


def links(
    location: StoreLocation,
    instance: str,
    on_event: Callable[[Notification], Awaitable[None]],
    *,
    relay: bool,
) -> SharedLinks:
    """The links of a server on the PostgreSQL store at ``location`` (not started)."""
    return SharedLinks(
        EventListener(location, instance, on_event), RelayLease(location) if relay else None
    )
