"""The cluster harness itself (tests/support/cluster.py), so that the cluster tests of issue 21
stand on something known to work: real ``sinkd serve`` processes started on one store, mail sent
to one over SMTP (smtplib), read back through that instance's API and live event stream, an
instance killed with -9 together with its store writer, and one started again on the same store.

On SQLite with one instance (SQLite is one machine's store); on the private PostgreSQL of
tests/support/postgres.py with two instances once the PostgreSQL store is in this branch.
"""

from __future__ import annotations

from pathlib import Path

from tests.support.cluster import Cluster, ended, event_ids
from tests.support.postgres import PostgresServer, postgres_server
from tests.support.servers import assert_store_intact, message, writer_pid

__all__ = ["postgres_server"]  # the session fixture, used below by name


async def test_a_message_sent_to_an_instance_is_listed_by_its_api_and_arrives_on_its_events(
    tmp_path: Path,
) -> None:
    db = tmp_path / "sinkd.db"
    async with await Cluster.start(str(db), 1, tmp_path, "--profile", "no-filter") as cluster:
        async with cluster.events(0) as events:
            ids = await cluster.send(0, message(1), message(2))
            assert await event_ids(events, set(ids)) >= set(ids)
        assert await cluster.listed_ids(0) == set(ids)
        status, body = await cluster.readyz(0)
        assert status == 200 and body["store"] is True, body
        assert await cluster.close() == [0]
    assert_store_intact(db, ids)


async def test_an_attempt_reports_a_refusal_with_its_code_instead_of_failing(
    tmp_path: Path,
) -> None:
    async with await Cluster.start(
        str(tmp_path / "sinkd.db"), 1, tmp_path, "--profile", "no-filter", "--max-recipients", "1"
    ) as cluster:
        refused = await cluster.attempt(0, message(1), recipients=["a@corp.example"] * 2)
        assert refused.code == 452 and refused.queued is None, refused
        accepted = await cluster.attempt(0, message(2), client_ip="192.0.2.7")
        assert accepted.code == 250 and accepted.queued is not None, accepted
        [listed] = await cluster.messages(0)
        assert listed["id"] == accepted.queued


async def test_kill_9_ends_the_instance_with_its_store_writer_and_a_new_one_keeps_its_mail(
    tmp_path: Path,
) -> None:
    db = tmp_path / "sinkd.db"
    async with await Cluster.start(str(db), 1, tmp_path, "--profile", "no-filter") as cluster:
        ids = await cluster.send(0, *(message(n) for n in range(5)))
        writer = writer_pid(cluster.instances[0])  # sinkd serve's store writer process
        assert not ended(writer)
        assert await cluster.kill(0) == -9
        assert not cluster.running(0)
        assert ended(writer), "the store writer outlived kill -9 of its instance"
        again = await cluster.add()
        assert again == 1 and cluster.running(1)
        assert await cluster.listed_ids(1) == set(ids)  # every acknowledged message is there
        ids += await cluster.send(1, message(6))
        assert await cluster.close() == [-9, 0]
    assert_store_intact(db, ids)


async def test_two_instances_on_one_postgresql_list_each_others_mail_and_events(
    postgres_server: PostgresServer, tmp_path: Path
) -> None:
    store = postgres_server.create_database()
    async with await Cluster.start(store, 2, tmp_path, "--profile", "no-filter") as cluster:
        async with cluster.events(1) as events:
            ids = await cluster.send(0, message(1))
            assert await event_ids(events, set(ids)) >= set(ids)
        assert await cluster.listed_ids(1) == set(ids)
        assert await cluster.close() == [0, 0]
