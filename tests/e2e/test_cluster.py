"""Several ``sinkd serve`` processes on one PostgreSQL store behave as one sink (issue 21): what
one instance stored, the other lists and streams; a client's rate is counted across them; kill
-9 of one instance under load loses no acknowledged message; a PostgreSQL outage under load
gives 4xx replies, never a 250 that is then missing, and the instances recover by themselves.

Real processes (``tests/support/cluster.py``: kill -9 takes an instance's store writer with it,
as losing its machine would), real SMTP clients (smtplib, aiosmtplib for the load), the HTTP API
over httpx, and the tests' private PostgreSQL (``tests/support/postgres.py``).
"""

from __future__ import annotations

import asyncio
import itertools
import signal
from collections.abc import Callable
from pathlib import Path

import aiosmtplib
import httpx
import pytest

from tests.support.cluster import Cluster
from tests.support.postgres import PostgresServer, postgres_server
from tests.support.servers import QUEUED, TIMEOUT, Served, message, run_sinkd

__all__ = ["postgres_server"]  # the session fixture, used below by name

WAIT = 60.0  # seconds any awaited condition may take before the test fails
MESSAGES = "/api/v1/messages"

RATE_PROFILE = """\
schema: sinkd.profile/v1
id: rate-three
title: "Three messages a minute per client"
models:
  - {what: "A client starting more than 3 messages a minute gets 450 4.7.1",
     assumption: "low enough for a test to reach; postconf(5) smtpd_client_message_rate_limit"}
filters:
  - kind: rate_limit
    name: anvil
    messages_per_minute: 3
    message_reply: postfix.message_rate
    assumption: "a low limit so that a test reaches it; postconf(5) smtpd_client_message_rate_limit"
"""


async def wait_ready(cluster: Cluster, index: int, want: bool) -> dict[str, object]:
    """Poll ``/readyz`` until it says ready (``want``) or not, as a load balancer's health
    check does (readiness is polled: nothing pushes it); its last body."""
    async with asyncio.timeout(WAIT):
        while True:
            status, body = await cluster.readyz(index)
            if (status == 200) == want:
                return body
            await asyncio.sleep(0.1)


async def test_a_message_sent_to_one_instance_is_listed_and_streamed_by_the_other(
    postgres_server: PostgresServer, tmp_path: Path
) -> None:
    dsn = postgres_server.create_database()
    async with await Cluster.start(dsn, 2, tmp_path) as cluster, cluster.events(1) as stream:
        (sent,) = await cluster.send(0, message(1))
        kind, data = await stream.event()

        assert (kind, data["id"]) == ("verdict", sent)
        assert data["subject"] == "durable 1"
        assert sent in await cluster.listed_ids(1)
        assert sent in await cluster.listed_ids(0)


async def test_a_clients_rate_is_counted_across_instances(
    postgres_server: PostgresServer, tmp_path: Path
) -> None:
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    (profiles / "rate-three.yaml").write_text(RATE_PROFILE, encoding="utf-8")
    dsn = postgres_server.create_database()
    args = ("--profiles-dir", str(profiles), "--profile", "rate-three")
    async with await Cluster.start(dsn, 2, tmp_path, *args) as cluster:
        codes = [(await cluster.attempt(n % 2, message(n))).code for n in range(4)]

    # Three a minute from 127.0.0.1, wherever they landed: the fourth is refused (Postfix's
    # anvil answers 450 4.7.1 "Error: too much mail from" at MAIL FROM).
    assert codes == [250, 250, 250, 450]


async def test_a_triplet_greylisted_by_one_instance_passes_when_retried_on_the_other(
    postgres_server: PostgresServer, tmp_path: Path
) -> None:
    dsn = postgres_server.create_database()
    args = ("--profile", "deferring-gateway", "--greylist-delay", "0")
    async with await Cluster.start(dsn, 2, tmp_path, *args) as cluster:
        first = await cluster.attempt(0, message(1))
        # The sender's queue retries later, and its next MX attempt lands on the other one.
        (retried,) = await cluster.send(1, message(1))

        assert (first.code, first.text.split()[0]) == (451, "4.7.1")
        assert retried in await cluster.listed_ids(0)


async def test_an_instance_on_a_database_without_the_schema_says_what_to_run_and_nothing_more(
    postgres_server: PostgresServer,
) -> None:
    dsn = postgres_server.create_database()

    code, _, stderr = await run_sinkd("serve", "--store", dsn, "--port", "0", "--no-http")

    assert code == 1
    assert stderr.splitlines() == [
        f"sinkd: message store {dsn} has no sinkd schema (this sinkd needs 7); run "
        f"'sinkd store migrate --store {dsn}' or start sinkd with --migrate"
    ]


class Tally:
    """What the senders got: the ids of acknowledged messages, the codes of refusals;
    ``until(condition)`` waits for them to satisfy ``condition`` (each outcome wakes it)."""

    def __init__(self) -> None:
        self.acked: dict[int, set[str]] = {}  # by the instance's process id
        self.refused: list[int] = []
        self.changed = asyncio.Condition()

    def of(self, served: Served) -> set[str]:
        return self.acked.setdefault(served.process.pid, set())

    @property
    def all_acked(self) -> set[str]:
        return set().union(*self.acked.values())

    async def note(self) -> None:
        async with self.changed:
            self.changed.notify_all()

    async def until(self, condition: Callable[[], bool]) -> None:
        async with asyncio.timeout(WAIT), self.changed:
            await self.changed.wait_for(condition)


async def keep_sending(served: Served, tally: Tally, stop: asyncio.Event) -> None:
    """Send one message per connection until ``stop``: each 250's id and each refusal's code
    into ``tally``; a connection the server drops (killed) is no reply."""
    for n in itertools.count():
        if stop.is_set() or served.process.returncode is not None:
            return
        try:
            async with aiosmtplib.SMTP(
                hostname=served.host, port=served.port, start_tls=False, timeout=TIMEOUT
            ) as smtp:
                _, text = await smtp.sendmail(
                    "alice@sender.example", ["bob@corp.example"], message(n)
                )
            found = QUEUED.match(text)
            assert found, text
            tally.of(served).add(found.group(1))
        except aiosmtplib.SMTPResponseException as exc:
            tally.refused.append(exc.code)
        except (aiosmtplib.SMTPException, OSError):
            continue  # no reply at all (the instance was killed): nothing was acknowledged
        await tally.note()


async def test_kill_9_of_one_instance_under_load_loses_no_acknowledged_message(
    postgres_server: PostgresServer, tmp_path: Path
) -> None:
    dsn = postgres_server.create_database()
    async with await Cluster.start(dsn, 2, tmp_path) as cluster:
        a, b = cluster.instances
        tally = Tally()
        stop = asyncio.Event()
        senders = [asyncio.ensure_future(keep_sending(s, tally, stop)) for s in (a, a, b)]
        try:
            await tally.until(lambda: len(tally.of(a)) >= 20 and len(tally.of(b)) >= 10)
            # SIGKILL to A and its store writer: no shutdown code runs, what the writer had
            # not committed is lost with it (and was never acknowledged).
            assert await cluster.kill(0) == -signal.SIGKILL
            before = len(tally.of(b))
            await tally.until(lambda: len(tally.of(b)) >= before + 10)  # B goes on serving
        finally:
            stop.set()
            await asyncio.gather(*senders)

        assert tally.refused == []
        stored = await listed_ids_all(cluster, 1)
        assert tally.of(a) <= stored
        assert tally.of(b) <= stored


async def listed_ids_all(cluster: Cluster, index: int) -> set[str]:
    """Every id instance ``index`` lists, page by page (the API pages by key)."""
    found: set[str] = set()
    async with httpx.AsyncClient(base_url=cluster.http(index), timeout=TIMEOUT) as http:
        params = {"limit": 500}
        while True:
            response = await http.get(MESSAGES, params=params)
            response.raise_for_status()
            page = response.json()
            found.update(m["id"] for m in page["messages"])
            if page["next"] is None:
                return found
            params = {"limit": 500, "before": page["next"]}


async def test_a_postgresql_restart_under_load_gives_4xx_never_a_lost_250_and_recovers_by_itself(
    tmp_path: Path,
) -> None:
    with PostgresServer() as server:
        dsn = server.create_database()
        async with await Cluster.start(dsn, 2, tmp_path) as cluster:
            a, b = cluster.instances
            tally = Tally()
            stop = asyncio.Event()
            senders = [asyncio.ensure_future(keep_sending(s, tally, stop)) for s in (a, b, a, b)]
            try:
                await tally.until(lambda: len(tally.all_acked) >= 20)
                await asyncio.to_thread(server.pause)
                try:
                    down = [await wait_ready(cluster, i, False) for i in (0, 1)]
                    await tally.until(lambda: bool(tally.refused))  # the senders meet it
                finally:
                    await asyncio.to_thread(server.resume)
                up = [await wait_ready(cluster, i, True) for i in (0, 1)]
                recovered = [len(tally.of(served)) for served in (a, b)]
                # Both serve again, and nobody restarted them.
                await tally.until(
                    lambda: all(
                        len(tally.of(s)) >= n + 10 for s, n in zip((a, b), recovered, strict=True)
                    )
                )
            finally:
                stop.set()
                await asyncio.gather(*senders)

            # 503 {"error": "not ready", "detail": {"smtp": true, "store": false}} while down.
            assert all(body["detail"] == {"smtp": True, "store": False} for body in down)
            assert all(body["store"] is True for body in up)
            assert set(tally.refused) == {451}  # 451 4.3.5: never a 5xx, never a lost 250
            assert tally.all_acked <= await listed_ids_all(cluster, 0)


pytestmark = pytest.mark.timeout(300)
