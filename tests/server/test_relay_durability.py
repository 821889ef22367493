"""Relaying onward survives what a test environment does to it: ``sinkd serve`` killed with
SIGKILL while its target is down (one SMTP process and ``--workers 2``), and the target
stopped and started again while mail flows. Real processes, a real SMTP target on a loopback
port (tests/support/relay_target.py), the store read on disk."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sqlite3
from collections import Counter
from pathlib import Path

import pytest

from tests.support.relay_target import Delivery, RelayTarget
from tests.support.servers import Served, StartServe, message, send


def relay_args(db: Path, target: RelayTarget, *extra: str) -> tuple[str, ...]:
    return (
        "--db",
        str(db),
        "--profile",
        "no-filter",
        "--relay",
        target.url,
        "--relay-starttls",
        "off",
        "--relay-backoff",
        "0.05,0.5",
        *extra,
    )


def relay_statuses(db: Path) -> Counter[str]:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return Counter(status for (status,) in conn.execute("SELECT status FROM relay"))


def subjects(target: RelayTarget) -> Counter[str]:
    """How often each message (by its Subject, ``durable N``) reached the target."""
    return subjects_of(target.deliveries)


def subjects_of(deliveries: list[Delivery]) -> Counter[str]:
    counts: Counter[str] = Counter()
    for delivery in deliveries:
        for line in delivery.headers.split(b"\r\n"):
            if line.startswith(b"Subject: "):
                counts[line.removeprefix(b"Subject: ").decode()] += 1
    return counts


async def send_all(served: Served, numbers: range, *, connections: int = 4) -> list[str]:
    groups = [numbers[k::connections] for k in range(connections)]
    results = await asyncio.gather(*(send(served, *(message(n) for n in g)) for g in groups))
    return [i for ids in results for i in ids]


@pytest.mark.parametrize("workers", ["1", "2"])
async def test_relays_queued_before_kill_9_are_all_delivered_once_after_restart(
    serve: StartServe, tmp_path: Path, workers: str
) -> None:
    db = tmp_path / "store.db"
    target = RelayTarget()
    port = await target.start()
    await target.stop()  # down: every attempt is refused and deferred

    served = await serve(*relay_args(db, target, "--workers", workers))
    ids = await send_all(served, range(20))
    assert len(set(ids)) == 20
    served.process.kill()  # SIGKILL: no shutdown code runs at all
    assert await served.wait() == -signal.SIGKILL
    assert relay_statuses(db) == {"queued": 20}  # committed with their 250s

    await target.start(port)
    try:
        again = await serve(*relay_args(db, target))
        await target.wait_for(20)
        assert await again.stop(signal.SIGTERM) == 0  # records what is in flight first
    finally:
        await target.stop()

    assert relay_statuses(db) == {"delivered": 20}
    assert subjects(target) == {f"durable {n}": 1 for n in range(20)}
    assert all(d.rcpt_to == ("bob@corp.example",) for d in target.deliveries)


async def test_a_target_restarted_while_mail_flows_gets_every_message(
    serve: StartServe, tmp_path: Path
) -> None:
    db = tmp_path / "store.db"
    target = RelayTarget()
    port = await target.start()
    served = await serve(*relay_args(db, target))
    try:
        await send_all(served, range(0, 15))
        await target.wait_for(5)
        # Down while messages arrive and relays are in flight, up again while more arrive.
        await asyncio.gather(send_all(served, range(15, 30)), target.stop())
        await asyncio.gather(send_all(served, range(30, 45)), target.start(port))
        # Every message, however many arrived twice (a duplicate does not stand for another).
        await target.wait_until(lambda deliveries: len(subjects_of(deliveries)) == 45)
        assert await served.stop(signal.SIGTERM) == 0
        # A relay whose 250 was cut off is still queued (sinkd cannot know it arrived): a
        # restarted sinkd delivers it again, as an MTA would.
        again = relay_statuses(db)["queued"]
        if again:
            restarted = await serve(*relay_args(db, target))
            await target.wait_for(len(target.deliveries) + again)
            assert await restarted.stop(signal.SIGTERM) == 0
    finally:
        await target.stop()

    assert relay_statuses(db) == {"delivered": 45}
    counts = subjects(target)
    assert set(counts) == {f"durable {n}" for n in range(45)}
    # A message is delivered twice only when the target's 250 to DATA was cut off with the
    # connection before sinkd read it (SMTP's at-least-once): at most one per connection
    # open when the target stopped, and sinkd opens --relay-concurrency (4) at most.
    duplicates = sum(count - 1 for count in counts.values())
    assert duplicates <= 4
    assert len(target.deliveries) == 45 + duplicates


async def test_with_workers_the_primary_relays_every_workers_messages_as_they_commit(
    serve: StartServe, tmp_path: Path
) -> None:
    db = tmp_path / "store.db"
    target = RelayTarget()
    await target.start()
    # A backoff longer than the test: nothing is retried, so every delivery below was started
    # by a wake-up (the writer's commit notice of a worker's record), not by a timer.
    served = await serve(*relay_args(db, target, "--workers", "2", "--relay-backoff", "600,600"))
    try:
        await send_all(served, range(12))
        await target.wait_for(12)
        assert await served.stop(signal.SIGTERM) == 0
    finally:
        await target.stop()

    assert relay_statuses(db) == {"delivered": 12}
    assert subjects(target) == {f"durable {n}": 1 for n in range(12)}
