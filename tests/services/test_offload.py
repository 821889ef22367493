"""The judge worker pool (``sinkd.services.offload``) behind the ``Judge``: which messages go to
it, that they are really judged in another process, with the routing in force, and what a dead
worker costs."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest

from sinkd.core.model import ClientIdentity
from sinkd.core.profiles import ProfileSet
from sinkd.errors import BackendError
from sinkd.services import offload
from sinkd.services.judge import Identity, Judge
from sinkd.services.offload import SPOOL_BYTES, JudgePool, Task, WorkerSetup, worker_count
from sinkd.services.settings import parse_judge_workers, parse_offload_bytes
from tests.support.offload import comparable, gate, gated_judge
from tests.support.smtp import message

IDENTITY = Identity(ClientIdentity(ip="203.0.113.5", helo="mail.sender.example"))


def judge_with(pool: JudgePool | None) -> Judge:
    return Judge(ProfileSet([]), profile="typical-corporate", offload=pool)


async def judge_once(judge: Judge, raw: bytes) -> list[dict[str, object]]:
    transaction = judge.transaction(IDENTITY)
    assert await transaction.mail("alice@sender.example", len(raw)) is None
    assert await transaction.rcpt("bob@corp.example") is None
    verdicts = await transaction.data(raw)
    return [comparable(v.to_json()) for v in verdicts]


def test_judge_workers_auto_leaves_the_smtp_process_a_core_and_stops_at_four() -> None:
    assert worker_count(0, cores=1) == 1
    assert worker_count(0, cores=2) == 1
    assert worker_count(0, cores=3) == 2
    assert worker_count(0, cores=16) == 4
    assert worker_count(3, cores=16) == 3
    assert parse_judge_workers("auto") == 0


def test_judge_offload_bytes_takes_a_size_zero_or_off() -> None:
    assert parse_offload_bytes("64K") == 65536
    assert parse_offload_bytes("0") == 0
    assert parse_offload_bytes("off") is None


def test_the_pool_takes_messages_from_its_threshold_on_and_none_when_off() -> None:
    setup = WorkerSetup(())
    assert JudgePool(setup, workers=1, threshold=100).takes(100)
    assert not JudgePool(setup, workers=1, threshold=100).takes(99)
    assert JudgePool(setup, workers=1, threshold=0).takes(0)
    assert not JudgePool(setup, workers=1, threshold=None).takes(10**9)


async def test_a_small_message_is_judged_inline_and_starts_no_worker() -> None:
    pool = JudgePool(WorkerSetup(()), workers=1, threshold=1024 * 1024)
    try:
        await judge_once(judge_with(pool), message())
        assert not pool.started
    finally:
        await pool.close()


async def test_a_large_message_is_judged_in_another_process_with_the_inline_verdict(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    raw = message("Spring collection", "Our collection is here.\r\n" * 4000)
    inline = await judge_once(judge_with(None), raw)
    pool = JudgePool(WorkerSetup(()), workers=1, threshold=1024, job=gated_judge)
    try:
        async with gate(monkeypatch) as opened:
            task = asyncio.ensure_future(judge_once(judge_with(pool), raw))
            arrival = await opened.arrival()
            assert arrival.pid != os.getpid()
            assert arrival.pid in pool.pids()
            arrival.release()
            assert await task == inline
    finally:
        await pool.close()


async def test_a_worker_killed_mid_message_is_a_backend_error_and_the_pool_starts_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    raw = message("Spring collection", "Our collection is here.\r\n" * 100)
    pool = JudgePool(WorkerSetup(()), workers=1, threshold=0, job=gated_judge)
    judge = judge_with(pool)
    try:
        async with gate(monkeypatch) as opened:
            doomed = asyncio.ensure_future(judge_once(judge, raw))
            arrival = await opened.arrival()
            os.kill(arrival.pid, signal.SIGKILL)
            with pytest.raises(BackendError, match="died"):
                await doomed
            assert pool.rebuilt == 1
            again = asyncio.ensure_future(judge_once(judge, raw))
            second = await opened.arrival()
            assert second.pid != arrival.pid
            second.release()
            (verdict,) = await again
            assert verdict["verdict"] == "accept"
    finally:
        await pool.close()


async def test_a_routing_change_reaches_the_workers_with_the_next_message() -> None:
    pool = JudgePool(WorkerSetup(()), workers=1, threshold=0)
    judge = judge_with(pool)
    try:
        raw = message()
        (before,) = await judge_once(judge, raw)
        judge.apply_routing(judge.prepare_routing("no-filter", {}))
        (after,) = await judge_once(judge, raw)
        assert (before["profile"], after["profile"]) == ("typical-corporate", "no-filter")
    finally:
        await pool.close()


async def test_a_message_over_the_spool_size_reaches_its_worker_through_a_file_removed_after(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Not in the pickle the pool's feeder thread makes while holding the interpreter lock.
    raw = message("Spring collection", "Our collection is here.\r\n" * (SPOOL_BYTES // 25 + 10))
    assert len(raw) >= SPOOL_BYTES
    inline = await judge_once(judge_with(None), raw)
    spooled: list[Path] = []
    real = offload._spool

    def spool(data: bytes) -> str:
        path = real(data)
        spooled.append(Path(path))
        return path

    monkeypatch.setattr(offload, "_spool", spool)
    pool = JudgePool(WorkerSetup(()), workers=1, threshold=1024, job=gated_judge)
    try:
        async with gate(monkeypatch) as opened:
            task = asyncio.ensure_future(judge_once(judge_with(pool), raw))
            arrival = await opened.arrival()
            (path,) = spooled
            assert path.read_bytes() == raw
            assert path.stat().st_mode & 0o077 == 0  # the owner's alone
            arrival.release()
            assert await task == inline
        assert not path.exists()
    finally:
        await pool.close()


def test_a_task_gives_its_message_from_raw_or_from_its_spool_file(tmp_path: Path) -> None:
    spooled = tmp_path / "m.eml"
    spooled.write_bytes(b"Subject: s\r\n\r\nspooled\r\n")
    assert Task(b"raw", (), {}, ()).message() == b"raw"
    assert Task(b"", (), {}, (), spool=str(spooled)).message() == spooled.read_bytes()
