"""Two sinkd instances on one PostgreSQL store act as one MX cluster (issue 21): a triplet
greylisted by one passes its retry on the other, a client's message rate and the connection
limit count both instances' messages and connections. Real ``Sinkd`` servers, a real SMTP
client over loopback, the private PostgreSQL server of the tests; ``--greylist-delay 0`` makes
the retry pass at once (no sleep).

Until the PostgreSQL store is merged, the messages themselves go to each instance's own SQLite
file and only the delivery state lives in PostgreSQL; the delivery tables are created here as
the store's schema creates them (``CREATE TABLE IF NOT EXISTS``).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from sinkd.location import StoreLocation
from sinkd.server.runtime import Sinkd
from sinkd.store.pg_schema import DELIVERY_TABLES
from tests.conftest import StartServer
from tests.support.delivery import BODY, RCPT, SENDER, gateway
from tests.support.postgres import PostgresServer, postgres_server
from tests.support.smtp import TIMEOUT, raw_client, write_profile
from tests.support.web import JSON, base_url

__all__ = ["postgres_server"]  # the session fixture, used below by name

pytestmark = pytest.mark.usefixtures("no_internal_errors")  # every test here: see conftest


def shared_store(server: PostgresServer) -> StoreLocation:
    dsn = server.create_database()
    server.psql(dsn.rsplit("/", 1)[1], "; ".join(DELIVERY_TABLES))
    return StoreLocation.parse(dsn)


async def cluster(
    start_server: StartServer, store: StoreLocation, profile: str, *, http: bool = False
) -> list[Sinkd]:
    return [
        await start_server(profile=profile, greylist_delay=0, store=store, migrate=True, http=http)
        for _ in range(2)
    ]


async def test_a_recipient_greylisted_on_one_instance_is_accepted_on_the_retry_to_the_other(
    start_server: StartServer, tmp_path: Path, postgres_server: PostgresServer
) -> None:
    a, b = await cluster(start_server, shared_store(postgres_server), gateway(tmp_path))
    async with raw_client(a) as client:
        await client.ok(f"MAIL FROM:<{SENDER}>")
        deferred = await client.command(f"RCPT TO:<{RCPT}>")
        assert deferred.line == "451 4.7.1 Greylisted: please try again in 0 seconds"
        await client.quit()
    async with raw_client(b) as client:
        answer = await client.mail(BODY, SENDER, RCPT)
        assert answer.line.startswith("250 2.0.0 Ok: queued as ")
        await client.quit()
    # And another sender's first attempt, on b, is still greylisted there and on a.
    async with raw_client(b) as client:
        await client.ok("MAIL FROM:<carol@elsewhere.example>")
        await client.ok(f"RCPT TO:<{RCPT}>", 451)
        await client.quit()


async def test_the_connection_limit_counts_the_connections_of_both_instances(
    start_server: StartServer, tmp_path: Path, postgres_server: PostgresServer
) -> None:
    profile = gateway(tmp_path, extra=", max_connections_per_ip: 2")
    a, b = await cluster(start_server, shared_store(postgres_server), profile)
    async with raw_client(a) as first, raw_client(b) as second:
        assert b.smtp_address is not None
        reader, writer = await asyncio.open_connection(*b.smtp_address)
        try:
            async with asyncio.timeout(10):
                line = await reader.readline()
                rest = await reader.read()
        finally:
            writer.close()
        assert line == b"421 4.7.0 sinkd.test Error: too many connections from 127.0.0.1\r\n"
        assert rest == b""
        await first.quit()
        assert await first.reader.read() == b""  # closed on a: it no longer counts on b
        await second.quit()
    # Both closed: two new connections are welcome again, one on each instance.
    async with raw_client(a) as again, raw_client(b) as other:
        await again.quit()
        await other.quit()


async def test_the_delivery_state_api_of_either_instance_shows_and_forgets_what_both_remember(
    start_server: StartServer, tmp_path: Path, postgres_server: PostgresServer
) -> None:
    store = shared_store(postgres_server)
    a, b = await cluster(start_server, store, gateway(tmp_path), http=True)
    async with raw_client(a) as client:
        await client.ok(f"MAIL FROM:<{SENDER}>")
        await client.ok(f"RCPT TO:<{RCPT}>", 451)
        await client.quit()
    delivery = "/api/v1/delivery-state"
    async with httpx.AsyncClient(base_url=base_url(b), timeout=TIMEOUT) as http:
        assert (await http.get(delivery)).json()["entries"] >= 1  # a's triplet, seen by b
        forgotten = await http.request("DELETE", delivery, headers=JSON)
        assert forgotten.json()["forgotten"] >= 1
    async with httpx.AsyncClient(base_url=base_url(a), timeout=TIMEOUT) as http:
        assert (await http.get(delivery)).json() == {"entries": 0}
    async with raw_client(a) as client:  # forgotten on both: a first attempt again
        await client.ok(f"MAIL FROM:<{SENDER}>")
        await client.ok(f"RCPT TO:<{RCPT}>", 451)
        await client.quit()


async def test_a_clients_message_rate_is_counted_on_both_instances_together(
    start_server: StartServer, tmp_path: Path, postgres_server: PostgresServer
) -> None:
    profile = write_profile(
        tmp_path,
        "rate-two",
        'title: "two messages a minute per client"\n'
        "models: [{what: a low rate limit, source: the suite}]\n"
        "filters:\n"
        "  - kind: rate_limit\n"
        "    name: anvil\n"
        "    messages_per_minute: 2\n"
        '    assumption: "low, so that a test reaches it; postconf(5) '
        'smtpd_client_message_rate_limit"\n',
    )
    a, b = await cluster(start_server, shared_store(postgres_server), str(profile))
    replies = []
    for app in (a, b, a):
        async with raw_client(app) as client:
            replies.append((await client.command(f"MAIL FROM:<{SENDER}>")).line)
            await client.quit()
    assert replies[:2] == ["250 2.1.0 Ok", "250 2.1.0 Ok"]
    assert replies[2] == "450 4.7.1 Error: too much mail from 127.0.0.1"
