"""What instances on one PostgreSQL store tell each other (``sinkd.store.pg_events``), against
the tests' private PostgreSQL: notifications from other instances reach the listener, its own
do not, it listens again by itself after the server was down, and exactly one instance holds
the relay lease, handed on when its session ends."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from typing import Any

import psycopg
import pytest

from sinkd.location import StoreLocation
from sinkd.store import RelayEntry, StoredMessage
from sinkd.store.pg_events import (
    EventListener,
    LeasedRelayQueue,
    Notification,
    RelayLease,
)
from sinkd.store.pg_schema import EVENTS_CHANNEL
from tests.support.postgres import PostgresServer, postgres_server

__all__ = ["postgres_server"]  # the session fixture, used below by name

WAIT = 30.0  # seconds any awaited condition may take before the test fails


async def notify(dsn: str, origin: str, event: str, ids: list[str]) -> None:
    payload = json.dumps({"origin": origin, "event": event, "ids": ids})
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await conn.execute("SELECT pg_notify(%s, %s)", (EVENTS_CHANNEL, payload))


@pytest.fixture
async def listened(
    postgres_server: PostgresServer,
) -> AsyncIterator[tuple[str, asyncio.Queue[Notification]]]:
    dsn = postgres_server.create_database()
    received: asyncio.Queue[Notification] = asyncio.Queue()

    async def on_event(found: Notification) -> None:
        await received.put(found)

    listener = EventListener(StoreLocation.parse(dsn), "instance-a", on_event)
    listener.start()
    try:
        await asyncio.wait_for(listener.listening.wait(), WAIT)
        yield dsn, received
    finally:
        await listener.close()


async def test_a_notification_from_another_instance_reaches_the_listener(
    listened: tuple[str, asyncio.Queue[Notification]],
) -> None:
    dsn, received = listened

    await notify(dsn, "instance-b", "verdict", ["m1", "m2"])

    found = await asyncio.wait_for(received.get(), WAIT)
    assert found == Notification("instance-b", "verdict", ("m1", "m2"))


async def test_the_listeners_own_notifications_and_foreign_payloads_are_not_delivered(
    listened: tuple[str, asyncio.Queue[Notification]],
) -> None:
    dsn, received = listened

    await notify(dsn, "instance-a", "verdict", ["own"])  # committed by this instance itself
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await conn.execute("SELECT pg_notify(%s, 'not json')", (EVENTS_CHANNEL,))
    await notify(dsn, "instance-b", "released", ["theirs"])

    # Notifications of one session arrive in order: had either earlier one been delivered,
    # it would be first.
    found = await asyncio.wait_for(received.get(), WAIT)
    assert found == Notification("instance-b", "released", ("theirs",))
    assert received.empty()


async def test_the_listener_listens_again_by_itself_after_the_server_was_down() -> None:
    with PostgresServer() as server:
        dsn = server.create_database()
        received: asyncio.Queue[Notification] = asyncio.Queue()

        async def on_event(found: Notification) -> None:
            await received.put(found)

        listener = EventListener(StoreLocation.parse(dsn), "instance-a", on_event)
        listener.start()
        try:
            await asyncio.wait_for(listener.listening.wait(), WAIT)
            await asyncio.to_thread(server.pause)
            await asyncio.to_thread(server.resume)
            # It notices the lost connection, then listens again on a new one.
            while True:
                await asyncio.wait_for(listener.listening.wait(), WAIT)
                await notify(dsn, "instance-b", "verdict", ["after-restart"])
                try:
                    found = await asyncio.wait_for(received.get(), 2.0)
                    break
                except TimeoutError:
                    continue  # that notification went to the old, dead session: again
            assert found.ids == ("after-restart",)
        finally:
            await listener.close()


async def test_one_instance_holds_the_relay_lease_and_another_takes_it_when_that_session_ends(
    postgres_server: PostgresServer,
) -> None:
    location = StoreLocation.parse(postgres_server.create_database())
    first, second = RelayLease(location), RelayLease(location)
    try:
        assert await first.held()
        assert await first.held()  # still, on the same session
        assert not await second.held()

        await first.close()  # as the end of a killed instance's session

        assert await second.held()
        assert not await first.held()
    finally:
        await first.close()
        await second.close()


async def test_a_lease_lost_with_its_connection_is_noticed_and_taken_by_another_instance(
    postgres_server: PostgresServer,
) -> None:
    dsn = postgres_server.create_database()
    location = StoreLocation.parse(dsn)
    first, second = RelayLease(location), RelayLease(location)
    try:
        assert await first.held()
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as admin:
            # The relaying instance's backend ends (its host lost, the instance killed).
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_locks"
                " WHERE locktype = 'advisory' AND granted"
            )
        assert await second.held()
        assert not await first.held()
    finally:
        await first.close()
        await second.close()


class QueueOfOne:
    """A relay repository whose queue holds one entry."""

    def __init__(self) -> None:
        self.reads = 0

    async def get(self, message_id: str, *, with_raw: bool = False) -> StoredMessage:
        return StoredMessage({"id": message_id})

    async def relay_queue(self, limit: int) -> Sequence[RelayEntry]:
        self.reads += 1
        return [RelayEntry("m1", {"next_attempt_at": "2026-01-01T00:00:00.000Z"})]

    async def relay_update(self, message_id: str, state: dict[str, Any]) -> bool:
        return True


async def test_a_follower_reads_the_relay_queue_only_once_the_relaying_instance_is_gone(
    postgres_server: PostgresServer,
) -> None:
    location = StoreLocation.parse(postgres_server.create_database())
    leader_lease, follower_lease = RelayLease(location), RelayLease(location)
    leader, follower = QueueOfOne(), QueueOfOne()
    try:
        assert len(await LeasedRelayQueue(leader, leader_lease).relay_queue(10)) == 1
        waiting = asyncio.ensure_future(
            LeasedRelayQueue(follower, follower_lease, retry=0.05).relay_queue(10)
        )
        done, _ = await asyncio.wait([waiting], timeout=0.5)
        assert not done and follower.reads == 0  # waiting for the lease, not reading

        await leader_lease.close()

        assert len(await asyncio.wait_for(waiting, WAIT)) == 1
        assert follower.reads == 1
    finally:
        await leader_lease.close()
        await follower_lease.close()
