"""The delivery state several instances share in PostgreSQL (issue 21): two ``PgDeliveryState``
objects on one database of the private test server act as two sinkd instances. Greylist
triplets and rate windows are shared (time injected: ``now`` is a parameter), connection counts
add across live instances and drop when one closes or goes stale, and an unreachable server
gives ``DeliveryStateUnavailable`` until it is back."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from sinkd.errors import DeliveryStateUnavailable
from sinkd.store.pg_schema import DELIVERY_TABLES
from sinkd.store.pg_state import PgDeliveryState
from tests.conftest import free_port
from tests.support.postgres import PostgresServer, postgres_server

__all__ = ["postgres_server"]  # the session fixture, used below by name

KEY = ("192.0.2.0/24", "alice@sender.example", "bob@corp.example")
T0 = 1_700_000_000.0
DELAY, WINDOW, REMEMBER = 300.0, 14400.0, 3600.0


def delivery_database(server: PostgresServer) -> str:
    """A new database with the delivery tables (the store's schema creates them)."""
    dsn = server.create_database()
    server.psql(dsn.rsplit("/", 1)[1], "; ".join(DELIVERY_TABLES))
    return dsn


@asynccontextmanager
async def instance(
    dsn: str, *, delay_override: float | None = None, call_timeout: float = 5.0
) -> AsyncIterator[PgDeliveryState]:
    state = PgDeliveryState(
        dsn,
        instance=str(uuid.uuid4()),
        delay_override=delay_override,
        hostname="test",
        call_timeout=call_timeout,
    )
    await state.start()
    try:
        yield state
    finally:
        await state.close()


@pytest.fixture
def dsn(postgres_server: PostgresServer) -> str:
    return delivery_database(postgres_server)


# --- greylisting across instances --------------------------------------------------------------


async def test_a_triplet_first_seen_on_a_is_deferred_on_b_before_the_delay_and_passes_on_b_after(
    dsn: str,
) -> None:
    async with instance(dsn) as a, instance(dsn) as b:
        first = await a.greylist(KEY, T0, DELAY, WINDOW, REMEMBER)
        assert (first.passed, first.attempts, first.retry_after) == (False, 1, DELAY)
        early = await b.greylist(KEY, T0 + 100, DELAY, WINDOW, REMEMBER)
        assert (early.passed, early.attempts, early.retry_after) == (False, 2, 200)
        assert early.first_seen == T0
        later = await b.greylist(KEY, T0 + 301, DELAY, WINDOW, REMEMBER)
        assert (later.passed, later.remembered, later.waited) == (True, False, 301)


async def test_a_triplet_that_passed_is_remembered_and_passes_at_once_on_either_instance(
    dsn: str,
) -> None:
    async with instance(dsn) as a, instance(dsn) as b:
        await a.greylist(KEY, T0, DELAY, WINDOW, REMEMBER)
        assert (await a.greylist(KEY, T0 + 300, DELAY, WINDOW, REMEMBER)).passed
        on_b = await b.greylist(KEY, T0 + 1000, DELAY, WINDOW, REMEMBER)
        on_a = await a.greylist(KEY, T0 + 2000, DELAY, WINDOW, REMEMBER)
        assert on_b.remembered and on_a.remembered
        assert (on_b.waited, on_a.attempts) == (300, 4)
        forgotten = await b.greylist(KEY, T0 + 2000 + REMEMBER + 1, DELAY, WINDOW, REMEMBER)
        assert (forgotten.passed, forgotten.attempts) == (False, 1)


async def test_two_first_attempts_at_once_on_two_instances_make_one_triplet(dsn: str) -> None:
    async with instance(dsn) as a, instance(dsn) as b:
        for n in range(20):
            key = (f"198.51.100.{n}/32", "x@sender.example", "y@corp.example")
            one, other = await asyncio.gather(
                a.greylist(key, T0, DELAY, WINDOW, REMEMBER),
                b.greylist(key, T0, DELAY, WINDOW, REMEMBER),
            )
            assert sorted((one.attempts, other.attempts)) == [1, 2]
            assert not one.passed and not other.passed
        assert await a.entries() == 20


async def test_concurrent_retries_on_two_instances_serialize_on_the_triplets_row(
    dsn: str,
) -> None:
    async with instance(dsn) as a, instance(dsn) as b:
        await a.greylist(KEY, T0, DELAY, WINDOW, REMEMBER)
        retries = await asyncio.gather(
            *(
                state.greylist(KEY, T0 + 10 + n, DELAY, WINDOW, REMEMBER)
                for n in range(20)
                for state in (a, b)
            )
        )
    # Every attempt saw the one before it: attempts 2..41, each once.
    assert sorted(r.attempts for r in retries) == list(range(2, 42))
    assert not any(r.passed for r in retries)


async def test_the_greylist_delay_override_applies_on_the_instance_that_has_it(dsn: str) -> None:
    async with instance(dsn) as a, instance(dsn, delay_override=0) as b:
        assert not (await a.greylist(KEY, T0, DELAY, WINDOW, REMEMBER)).passed
        retry = await b.greylist(KEY, T0, DELAY, WINDOW, REMEMBER)
        assert (retry.passed, retry.delay, retry.attempts) == (True, 0, 2)


# --- message rates across instances ------------------------------------------------------------


async def test_fifty_messages_at_once_on_each_instance_count_each_of_1_to_100_exactly_once(
    dsn: str,
) -> None:
    async with instance(dsn) as a, instance(dsn) as b:
        counts = await asyncio.gather(
            *(
                state.note_message("203.0.113.5", T0 + n / 1000, scope="anvil#1")
                for n in range(50)
                for state in (a, b)
            )
        )
    assert sorted(counts) == list(range(1, 101))


async def test_rate_scopes_clients_and_windows_are_kept_apart(dsn: str) -> None:
    async with instance(dsn) as a, instance(dsn) as b:
        assert await a.note_message("203.0.113.5", T0, 10, scope="one") == 1
        assert await b.note_message("203.0.113.5", T0 + 1, 10, scope="one") == 2
        assert await b.note_message("203.0.113.5", T0 + 1, 10, scope="two") == 1
        assert await a.note_message("203.0.113.6", T0 + 1, 10, scope="one") == 1
        assert await a.note_message("203.0.113.5", T0 + 9, 10, scope="one") == 3
        # T0 left the window (now - window, now]: T0 + 1 and T0 + 9 are still in it.
        assert await b.note_message("203.0.113.5", T0 + 10, 10, scope="one") == 3
        assert await a.note_message("203.0.113.5", T0 + 30, 10, scope="one") == 1


# --- what the HTTP API shows and clears, and expiry ---------------------------------------------


async def test_forget_clears_every_instances_triplets_and_windows(dsn: str) -> None:
    async with instance(dsn) as a, instance(dsn) as b:
        await a.greylist(KEY, T0, DELAY, WINDOW, REMEMBER)
        await b.note_message("203.0.113.5", T0)
        assert await b.entries() == 2
        assert await b.forget() == 2
        assert await a.entries() == 0
        assert (await a.greylist(KEY, T0 + 300, DELAY, WINDOW, REMEMBER)).attempts == 1


async def test_a_sweep_deletes_expired_triplets_and_idle_windows_only(dsn: str) -> None:
    async with instance(dsn) as a:
        await a.greylist(KEY, T0, DELAY, WINDOW, REMEMBER)  # pending: expires at T0 + WINDOW
        other = ("192.0.2.0/24", "carol@sender.example", "bob@corp.example")
        await a.greylist(other, T0 + WINDOW, DELAY, WINDOW, REMEMBER)
        await a.note_message("203.0.113.5", T0, 60)
        assert await a.entries() == 3
        await a.sweep(T0 + WINDOW + 1)
        assert await a.entries() == 1
        assert (await a.greylist(other, T0 + WINDOW + 300, DELAY, WINDOW, REMEMBER)).passed


# --- connection counts ----------------------------------------------------------------------


async def test_connection_counts_add_across_instances_and_drop_when_connections_close(
    dsn: str, postgres_server: PostgresServer
) -> None:
    async with instance(dsn) as a, instance(dsn) as b:
        a.connection_opened("203.0.113.5")
        assert await a.connections_from("203.0.113.5") == 1
        b.connection_opened("203.0.113.5")
        b.connection_opened("203.0.113.5")
        assert await b.connections_from("203.0.113.5") == 3
        assert await a.connections_from("203.0.113.5") == 3
        assert await a.connections_from("198.51.100.1") == 0
        b.connection_closed("203.0.113.5")
        await b.flush()  # the closing write runs in the background
        assert await a.connections_from("203.0.113.5") == 2
        # A connection counted without asking (no limit on b's profile) is written all the same.
        b.connection_opened("198.51.100.1")
        await b.flush()
        assert await a.connections_from("198.51.100.1") == 1
    database = dsn.rsplit("/", 1)[1]
    # Closing both instances removed their rows (ON DELETE CASCADE).
    assert postgres_server.psql(database, "SELECT count(*) FROM smtp_connections").strip() == "0"
    assert postgres_server.psql(database, "SELECT count(*) FROM instances").strip() == "0"


async def test_an_instance_that_stopped_heartbeating_no_longer_counts(
    dsn: str, postgres_server: PostgresServer
) -> None:
    async with instance(dsn) as a, instance(dsn) as b:
        b.connection_opened("203.0.113.5")
        assert await b.connections_from("203.0.113.5") == 1
        a.connection_opened("203.0.113.5")
        assert await a.connections_from("203.0.113.5") == 2
        # As if b had been killed with -9 a while ago: its heartbeat is older than the window.
        postgres_server.psql(
            dsn.rsplit("/", 1)[1],
            f"UPDATE instances SET seen_at = now() - interval '{b.stale_after + 1} seconds'"
            f" WHERE id = '{b.instance}'",
        )
        assert await a.connections_from("203.0.113.5") == 1


# --- an unreachable database --------------------------------------------------------------------


async def test_a_stopped_server_makes_the_state_unavailable_and_it_works_again_once_back() -> None:
    with PostgresServer() as server:
        dsn = delivery_database(server)
        async with instance(dsn, call_timeout=2.0) as a:
            assert not (await a.greylist(KEY, T0, DELAY, WINDOW, REMEMBER)).passed
            a.connection_opened("203.0.113.5")
            assert await a.connections_from("203.0.113.5") == 1
            server.pause()
            try:
                with pytest.raises(DeliveryStateUnavailable, match=r"127\.0\.0\.1"):
                    await a.greylist(KEY, T0 + 300, DELAY, WINDOW, REMEMBER)
                with pytest.raises(DeliveryStateUnavailable):
                    await a.note_message("203.0.113.5", T0)
                # Connection limits fall back to this instance's own count.
                a.connection_opened("203.0.113.5")
                assert await a.connections_from("203.0.113.5") == 2
            finally:
                server.resume()
            # Back without a restart of the object: the pool reconnects (a few tries at most
            # while its reconnection backs off; each bounded by call_timeout).
            for _ in range(10):
                try:
                    decision = await a.greylist(KEY, T0 + 300, DELAY, WINDOW, REMEMBER)
                    break
                except DeliveryStateUnavailable:
                    continue
            else:
                pytest.fail("the delivery state did not come back after the server did")
            assert decision.passed and decision.attempts == 2  # the triplet survived
            assert await a.note_message("203.0.113.5", T0) == 1
            # The next heartbeat writes the connections counted during the outage.
            await a.beat()
            rows = server.psql(
                dsn.rsplit("/", 1)[1], "SELECT ip, open FROM smtp_connections ORDER BY ip"
            )
            assert rows.split() == ["203.0.113.5|2"]
            assert await a.connections_from("203.0.113.5") == 2


async def test_no_server_at_all_is_unavailable_and_no_text_names_the_password(
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = f"postgresql://sinkd:s3cret-pw@127.0.0.1:{free_port()}/sinkd"
    caplog.set_level(logging.DEBUG, logger="sinkd")
    async with instance(url, call_timeout=1.0) as state:  # starts all the same
        with pytest.raises(DeliveryStateUnavailable) as info:
            await state.greylist(KEY, T0, DELAY, WINDOW, REMEMBER)
        with pytest.raises(DeliveryStateUnavailable):
            await state.entries()
        state.connection_opened("203.0.113.5")
        assert await state.connections_from("203.0.113.5") == 1  # its own count
    assert "sinkd:***@127.0.0.1" in str(info.value)
    assert "s3cret-pw" not in str(info.value)
    assert "s3cret-pw" not in caplog.text
    assert "connection limits count this instance's connections only" in caplog.text
