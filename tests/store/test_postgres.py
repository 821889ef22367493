"""The PostgreSQL store's own behaviour, beyond the contract every backend passes: its schema
(created at the SQLite store's version, refused when missing or newer), several instances on
one database, the notifications its commits send, and an outage of the database (451, never a
lost 250; writable again by itself). Real PostgreSQL servers on loopback
(tests/support/postgres.py): the session's one, a database per test, or a server of the test's
own where it is stopped and started again."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from sinkd.errors import NotFound, StoreError
from sinkd.store import Query
from sinkd.store.pg_schema import EVENTS_CHANNEL, SCHEMA_VERSION
from sinkd.store.postgres import PostgresStore, open_postgres
from sinkd.store.writer import WriterKind
from tests.support.postgres import PostgresServer, postgres_server
from tests.support.store import make_record

__all__ = ["postgres_server"]  # the session fixture, used below by name

SECRET = "pw-never-shown-4711"
WRITERS: tuple[WriterKind, ...] = ("thread", "process")


def with_password(dsn: str) -> str:
    """``dsn`` with a password in it (trust authentication ignores it; it must never show)."""
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(netloc=f"postgres:{SECRET}@{parts.hostname}:{parts.port}"))


def database(server: PostgresServer, name: str, sql: str) -> str:
    return server.psql(urlsplit(name).path.lstrip("/"), sql).strip()


# --- the schema ------------------------------------------------------------------------------


async def test_migrate_creates_the_schema_at_the_sqlite_version_with_its_meta_table(
    postgres_server: PostgresServer,
) -> None:
    dsn = postgres_server.create_database()
    store = await open_postgres(dsn, migrate=True)
    await store.close()

    assert database(postgres_server, dsn, "SELECT value FROM sinkd_meta") == str(SCHEMA_VERSION)
    assert SCHEMA_VERSION == 7
    tables = database(
        postgres_server,
        dsn,
        "SELECT string_agg(tablename, ',' ORDER BY tablename) FROM pg_tables"
        " WHERE schemaname = 'public'",
    ).split(",")
    assert {"messages", "raw", "relay", "sinkd_meta", "greylist", "rate_windows"} <= set(tables)


async def test_a_database_without_the_schema_is_refused_with_what_to_run(
    postgres_server: PostgresServer,
) -> None:
    dsn = with_password(postgres_server.create_database())

    with pytest.raises(StoreError) as refused:
        await open_postgres(dsn)

    text = str(refused.value)
    assert "has no sinkd schema" in text
    assert "sinkd store migrate --store postgresql://postgres:***@" in text
    assert "--migrate" in text
    assert SECRET not in text


async def test_a_schema_newer_than_this_sinkd_is_refused(postgres_server: PostgresServer) -> None:
    dsn = postgres_server.create_database()
    await (await open_postgres(dsn, migrate=True)).close()
    database(postgres_server, dsn, "UPDATE sinkd_meta SET value = '99'")

    for migrate in (False, True):
        with pytest.raises(StoreError, match="schema version 99, newer than this sinkd"):
            await open_postgres(dsn, migrate=migrate)


async def test_opening_a_current_schema_again_keeps_what_is_stored(
    postgres_server: PostgresServer,
) -> None:
    dsn = postgres_server.create_database()
    async with await open_postgres(dsn, migrate=True) as first:
        await first.save(make_record(1))

    async with await open_postgres(dsn) as again:
        assert (await again.get("m0001")).id == "m0001"


# --- several instances on one database ---------------------------------------------------------


async def test_two_stores_on_one_database_see_each_others_records_in_commit_order(
    postgres_server: PostgresServer,
) -> None:
    dsn = postgres_server.create_database()
    a = await open_postgres(dsn, migrate=True, writer="thread", instance="a")
    b = await open_postgres(dsn, writer="process", instance="b")
    try:
        order = []
        for n in range(12):
            store = a if n % 3 else b
            await store.save(make_record(n))
            order.append(make_record(n).id)
        # Concurrent saves on both: every record once, seqs unique.
        await asyncio.gather(
            *(s.save(make_record(n)) for n in range(12, 40) for s in [(a, b)[n % 2]])
        )

        for store in (a, b):
            listed = await store.list(Query(limit=100))
            assert len(listed) == 40
            seqs = [m.seq for m in listed]
            assert seqs == sorted(seqs, reverse=True) and len(set(seqs)) == 40
            assert [m.id for m in listed][-12:] == order[::-1]  # the sequential ones, in order
    finally:
        await a.close()
        await b.close()


# --- notifications -----------------------------------------------------------------------------


@asynccontextmanager
async def listening(
    dsn: str, instance: str
) -> AsyncIterator[tuple[psycopg.AsyncConnection[object], PostgresStore]]:
    """A connection that LISTENs on the events channel, then a store (writer process) named
    ``instance`` on the same database."""
    listener = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
    try:
        await listener.execute(f"LISTEN {EVENTS_CHANNEL}")
        store = await open_postgres(dsn, migrate=True, writer="process", instance=instance)
        try:
            yield listener, store
        finally:
            await store.close()
    finally:
        await listener.close()


async def next_event(conn: psycopg.AsyncConnection[object]) -> dict[str, object]:
    async for notify in conn.notifies(timeout=30, stop_after=1):
        assert notify.channel == EVENTS_CHANNEL
        event: dict[str, object] = json.loads(notify.payload)
        return event
    raise AssertionError("no notification within 30 s")


async def test_committed_writes_are_notified_and_a_failed_one_never_is(
    postgres_server: PostgresServer,
) -> None:
    async with listening(postgres_server.create_database(), "inst-a") as (listener, store):
        await store.save(make_record(1))
        assert await next_event(listener) == {
            "origin": "inst-a",
            "event": "verdict",
            "ids": ["m0001"],
        }

        with pytest.raises(StoreError, match="already stored"):
            await store.save(make_record(1))
        await store.save(make_record(2))
        # The duplicate's transaction sent nothing: the next event is m0002's.
        assert (await next_event(listener))["ids"] == ["m0002"]

        assert await store.release("m0002", make_record(9).received_at)
        assert await next_event(listener) == {
            "origin": "inst-a",
            "event": "released",
            "ids": ["m0002"],
        }
        assert not await store.release("m0002", make_record(9).received_at)  # nothing changed
        with pytest.raises(NotFound):
            await store.release("nope", make_record(9).received_at)
        await store.save(make_record(3))
        assert (await next_event(listener))["ids"] == ["m0003"]

        await store.save(make_record(4, relay=True))
        assert (await next_event(listener))["ids"] == ["m0004"]
        (entry,) = await store.relay_queue(10)
        assert await store.relay_update("m0004", {**entry.state, "attempts": 1})
        assert await next_event(listener) == {
            "origin": "inst-a",
            "event": "relay",
            "ids": ["m0004"],
        }
        await store.delete("m0004")
        assert not await store.relay_update("m0004", entry.state)  # gone: nothing to notify
        await store.save(make_record(5))
        assert (await next_event(listener))["ids"] == ["m0005"]


async def test_a_large_batch_is_notified_in_payloads_under_the_limit(
    postgres_server: PostgresServer,
) -> None:
    async with listening(postgres_server.create_database(), "i") as (listener, store):
        records = [make_record(n, message_id=f"{'x' * 60}{n:04d}") for n in range(600)]
        await asyncio.gather(*(store.save(r) for r in records))

        seen: list[str] = []
        async for notify in listener.notifies(timeout=30):
            assert len(notify.payload.encode()) <= 7800
            seen.extend(json.loads(notify.payload)["ids"])
            if len(seen) >= len(records):
                break
        assert sorted(seen) == sorted(r.id for r in records)


# --- an outage of the database -----------------------------------------------------------------


@pytest.mark.parametrize("writer", WRITERS)
async def test_an_outage_fails_saves_then_the_store_recovers_by_itself(
    writer: WriterKind, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    with PostgresServer() as server:
        dsn = with_password(server.create_database())
        store: PostgresStore = await open_postgres(dsn, migrate=True, writer=writer)
        try:
            await store.save(make_record(1))
            assert store.writable

            server.pause()
            with pytest.raises(StoreError) as failed:
                await store.save(make_record(2))
            assert SECRET not in str(failed.value)
            async with asyncio.timeout(30):  # the writer notices at once or at its next check
                await store.wait_writable(False)
            with pytest.raises(StoreError) as unread:
                await store.count()
            assert SECRET not in str(unread.value)

            server.resume()
            async with asyncio.timeout(30):  # its next connection attempt succeeds
                await store.wait_writable(True)
            assert store.writable
            await store.save(make_record(3))  # the same store, not reopened
            assert [m.id for m in await store.list(Query())] == ["m0003", "m0001"]
        finally:
            await store.close()
    assert SECRET not in caplog.text


async def test_an_unreachable_database_is_refused_at_open_without_its_password() -> None:
    with PostgresServer() as server:
        dsn = with_password(server.create_database())
        server.pause()
        with pytest.raises(StoreError) as refused:
            await open_postgres(dsn, migrate=True, writer="process")
        server.resume()
    assert "cannot reach message store postgresql://postgres:***@" in str(refused.value)
    assert SECRET not in str(refused.value)


async def test_the_writer_process_gets_the_url_outside_its_command_line(
    postgres_server: PostgresServer,
) -> None:
    dsn = with_password(postgres_server.create_database())
    async with await open_postgres(dsn, migrate=True, writer="process") as store:
        process = store.writer_process
        assert process is not None and process._process is not None
        # What ps(1) shows every user of the machine.
        cmdline = await asyncio.to_thread(Path(f"/proc/{process._process.pid}/cmdline").read_bytes)
        argv = cmdline.split(b"\0")

    assert b"sinkd.store.writer_main" in argv
    assert b"postgresql" in argv  # the kind, not the URL
    assert not any(SECRET.encode() in word or b"@127.0.0.1" in word for word in argv)
