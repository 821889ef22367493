"""Large messages judged in worker processes (``--judge-offload-bytes``), over real SMTP: the
same verdicts as in the SMTP process, other sessions answered while a big message is being
judged, and a worker that dies costs its message a 451, never the server.

Ordering is proven with the gate of ``tests.support.offload``: the judge worker stops before
judging until the test releases it, so "answered while the big message is judged" is a fact of
the run, not a matter of timing.
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest

from sinkd.server.runtime import Sinkd
from sinkd.store import Query
from tests.support.offload import (
    comparable,
    gate,
    gated_judge,
    offload_server,
    sendmail,
    without_ids,
)
from tests.support.servers import StartServe, assert_store_intact, clean_env, send
from tests.support.servers import message as numbered
from tests.support.smtp import message

MESSAGES = Path(__file__).parent.parent / "messages"
SENDER, RCPT = "alice@sender.example", "bob@corp.example"
BIG = message("Spring collection", "Our spring collection is here.\r\n" * 3000)  # ~100 KB


def golden_messages() -> list[Path]:
    return sorted(p for p in MESSAGES.rglob("*") if p.is_file() and p.suffix != ".md")


async def stored(app: Sinkd) -> list[tuple[dict[str, object], bytes | None]]:
    """Every record, oldest first, comparable, with its filtered copy."""
    assert app.store is not None
    records = await app.store.list(Query(limit=1000))
    out = []
    for record in reversed(records):
        full = await app.store.get(record.id, with_raw=True)
        out.append((comparable(record.data), full.filtered))
    return out


async def test_golden_messages_judged_in_workers_get_the_inline_verdicts(tmp_path: Path) -> None:
    async with (
        offload_server(tmp_path, judge_offload_bytes=0, judge_workers=1) as pooled,
        offload_server(tmp_path, judge_offload_bytes=None) as inline,
    ):
        assert pooled.smtp_address is not None and inline.smtp_address is not None
        for path in golden_messages():
            raw = path.read_bytes()
            got = await asyncio.to_thread(sendmail, pooled.smtp_address, raw, SENDER, RCPT)
            want = await asyncio.to_thread(sendmail, inline.smtp_address, raw, SENDER, RCPT)
            assert without_ids(got) == without_ids(want), path.name
        assert pooled.judge_pool is not None and pooled.judge_pool.started  # really used
        assert inline.judge_pool is None
        pooled_records, inline_records = await stored(pooled), await stored(inline)
    assert len(pooled_records) == len(golden_messages())
    assert pooled_records == inline_records


async def test_a_session_is_answered_while_a_big_message_is_judged_in_a_worker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with (
        gate(monkeypatch) as opened,
        offload_server(tmp_path, job=gated_judge, judge_offload_bytes=64 * 1024) as app,
    ):
        assert app.smtp_address is not None
        big = asyncio.create_task(asyncio.to_thread(sendmail, app.smtp_address, BIG, SENDER, RCPT))
        arrival = await opened.arrival()  # the big message is in the worker, held there
        assert arrival.pid != os.getpid()
        small = await asyncio.to_thread(sendmail, app.smtp_address, message(), SENDER, RCPT)
        assert small.startswith("250 2.0.0 Ok: queued as")
        assert not big.done()  # still being judged when the small one was stored
        arrival.release()
        assert (await big).startswith("250 2.0.0 Ok: queued as")
        assert app.store is not None
        subjects = [r.data["subject"] for r in await app.store.list(Query(limit=5))]
    assert subjects == ["Spring collection", "Quarterly figures"]  # newest first


async def test_a_worker_killed_mid_message_gives_451_stores_nothing_and_the_next_is_judged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with (
        gate(monkeypatch) as opened,
        offload_server(tmp_path, job=gated_judge, judge_offload_bytes=64 * 1024) as app,
    ):
        assert app.smtp_address is not None and app.store is not None
        doomed = asyncio.create_task(
            asyncio.to_thread(sendmail, app.smtp_address, BIG, SENDER, RCPT)
        )
        arrival = await opened.arrival()
        os.kill(arrival.pid, signal.SIGKILL)
        assert await doomed == "451 4.3.0 Internal error; try again later"
        assert await app.store.count() == 0
        retried = asyncio.create_task(
            asyncio.to_thread(sendmail, app.smtp_address, BIG, SENDER, RCPT)
        )
        again = await opened.arrival()  # a new worker of a new pool
        assert again.pid != arrival.pid
        again.release()
        assert (await retried).startswith("250 2.0.0 Ok: queued as")
        assert await app.store.count() == 1


async def test_smtp_worker_processes_judge_large_messages_in_their_own_pools(
    serve: StartServe, tmp_path: Path
) -> None:
    db = tmp_path / "workers.db"
    served = await serve(
        "--workers",
        "2",
        "--judge-offload-bytes",
        "0",
        "--judge-workers",
        "1",
        "--db",
        str(db),
        env=clean_env(),
    )
    ids = await send(served, numbered(1), numbered(2), numbered(3))
    assert await served.stop() == 0
    assert_store_intact(db, ids)
