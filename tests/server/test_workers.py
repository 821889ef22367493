"""``sinkd serve --workers N``: several SMTP processes on one port and one store.

Real processes: ``python -m sinkd serve --workers 2`` with its HTTP API, driven over SMTP by
aiosmtplib and read back through the API and the live event stream. The primary hands each
connection to the next worker in turn; a message's id tells which one took it (each process
draws the sequence numbers equal to its index modulo the number of processes).
"""

from __future__ import annotations

import asyncio
import json
import os
import select
import signal
import sqlite3
from pathlib import Path

import aiosmtplib
import httpx
import pytest

from tests.support.servers import (
    TIMEOUT,
    Served,
    StartServe,
    assert_store_intact,
    clean_env,
    message,
    run_sinkd,
    send,
    writer_pid,
)

HTTP = {"SINKD_NO_HTTP": "", "SINKD_HTTP_PORT": "0"}


def http_url(served: Served) -> str:
    assert served.http is not None, "started without its HTTP API"
    return served.http


def worker_pids(served: Served) -> list[int]:
    """The primary's worker processes (its children started by multiprocessing's spawn)."""
    pid = served.process.pid
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [
        int(child)
        for child in children
        if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes()
    ]


def process_of(message_id: str, total: int) -> int:
    return int(message_id[-7:], 16) % total


def wait_for_exit(pid: int, timeout: float) -> bool:
    """True once the process ``pid`` (not our child) has ended, False after ``timeout``."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        readable, _, _ = select.select([fd], [], [], timeout)
        return bool(readable)
    finally:
        os.close(fd)


async def send_many(served: Served, count: int, connections: int) -> list[str]:
    groups = [range(k, count, connections) for k in range(connections)]
    results = await asyncio.gather(*(send(served, *(message(n) for n in g)) for g in groups))
    return [i for ids in results for i in ids]


async def test_two_processes_share_the_port_and_every_message_reaches_store_and_events(
    serve: StartServe, tmp_path: Path
) -> None:
    served = await serve(
        "--db", str(tmp_path / "s.db"), "--workers", "2", "--profile", "no-filter",
        env=clean_env(**HTTP),
    )  # fmt: skip
    assert len(worker_pids(served)) == 2
    url = http_url(served)
    events: list[dict[str, object]] = []
    async with httpx.AsyncClient(base_url=url, timeout=TIMEOUT) as client:
        async with client.stream("GET", "/api/v1/events") as stream:
            lines = stream.aiter_lines()
            ids = await send_many(served, 60, 30)  # 30 connections: both workers get some
            async with asyncio.timeout(TIMEOUT):
                async for line in lines:
                    if line.startswith("data:"):
                        events.append(json.loads(line[5:]))
                        if len(events) == len(ids):
                            break
        listed = (await client.get("/api/v1/messages", params={"limit": 500})).json()
    assert len(set(ids)) == 60
    assert {e["id"] for e in events} == set(ids)
    stored = {m["id"] for m in listed["messages"]}
    assert stored == set(ids)
    assert {process_of(i, 3) for i in ids} == {1, 2}  # both workers took connections


async def test_a_routing_change_over_http_reaches_every_process(
    serve: StartServe, tmp_path: Path
) -> None:
    served = await serve(
        "--db", str(tmp_path / "s.db"), "--workers", "2", "--profile", "no-filter",
        env=clean_env(**HTTP),
    )  # fmt: skip
    url = http_url(served)
    async with httpx.AsyncClient(base_url=url, timeout=TIMEOUT) as client:
        answer = await client.put("/api/v1/routing", json={"profile": "strict-finance"})
        assert answer.status_code == 200, answer.text
        ids = await send_many(served, 40, 20)
        profiles = {(await client.get(f"/api/v1/messages/{i}")).json()["profile"] for i in ids}
    assert {process_of(i, 3) for i in ids} == {1, 2}
    assert profiles == {"strict-finance"}


async def test_a_greylisting_profile_cannot_be_routed_to_while_processes_run(
    serve: StartServe, tmp_path: Path
) -> None:
    served = await serve("--db", str(tmp_path / "s.db"), "--workers", "2", env=clean_env(**HTTP))
    async with httpx.AsyncClient(base_url=http_url(served), timeout=TIMEOUT) as client:
        answer = await client.put("/api/v1/routing", json={"profile": "deferring-gateway"})
        routing = (await client.get("/api/v1/routing")).json()
    assert answer.status_code == 409
    assert "--workers 1" in answer.json()["detail"]
    assert routing["profile"] == "typical-corporate"


async def test_workers_are_refused_for_a_profile_that_keeps_delivery_state(
    tmp_path: Path,
) -> None:
    code, _, err = await run_sinkd(
        "serve", "--port", "0", "--db", str(tmp_path / "s.db"), "--workers", "2",
        "--profile", "deferring-gateway",
    )  # fmt: skip
    assert code == 2
    assert "--workers 2: profile 'deferring-gateway' keeps delivery state" in err


async def test_auto_runs_one_process_for_a_greylisting_profile(
    serve: StartServe, tmp_path: Path
) -> None:
    served = await serve(
        "--db", str(tmp_path / "s.db"), "--workers", "auto", "--profile", "deferring-gateway"
    )
    assert worker_pids(served) == []  # and the log says why (not checked: stderr may lag)


async def test_sigterm_stops_every_process_after_its_open_sessions(
    serve: StartServe, tmp_path: Path
) -> None:
    served = await serve("--db", str(tmp_path / "s.db"), "--workers", "2", "--profile", "no-filter")
    pids = worker_pids(served)
    assert len(pids) == 2
    await send_many(served, 10, 10)
    assert await served.stop(signal.SIGTERM) == 0
    assert all(wait_for_exit(pid, TIMEOUT) for pid in pids)


async def test_workers_end_when_the_primary_is_killed_and_their_messages_are_stored(
    serve: StartServe, tmp_path: Path
) -> None:
    db = tmp_path / "s.db"
    served = await serve("--db", str(db), "--workers", "2", "--profile", "no-filter")
    pids = worker_pids(served)
    ids = await send_many(served, 40, 20)
    served.process.kill()
    assert await served.wait() == -signal.SIGKILL
    assert all(
        wait_for_exit(pid, TIMEOUT) for pid in pids
    )  # its pipe to the primary closed: it ends by itself
    with sqlite3.connect(db) as conn:
        found = {row[0] for row in conn.execute("SELECT id FROM messages")}
    assert set(ids) <= found
    assert {process_of(i, 3) for i in ids} == {1, 2}


@pytest.mark.parametrize("value", ["0", "65", "two", "-1"])
async def test_a_bad_number_of_workers_is_a_usage_error_naming_the_option(value: str) -> None:
    code, _, err = await run_sinkd("serve", "--port", "0", "--workers", value)
    assert code == 2
    assert "--workers" in err and "expected a number of processes 1..64, or auto" in err


async def test_readyz_is_ok_while_every_worker_listens_and_503_once_one_has_died(
    serve: StartServe, tmp_path: Path
) -> None:
    served = await serve(
        "--db", str(tmp_path / "s.db"), "--workers", "2", "--profile", "no-filter",
        env=clean_env(**HTTP),
    )  # fmt: skip
    first, _ = worker_pids(served)
    async with httpx.AsyncClient(base_url=http_url(served), timeout=TIMEOUT) as client:
        ready = await client.get("/readyz")
        assert ready.status_code == 200, ready.text
        os.kill(first, signal.SIGKILL)
        assert wait_for_exit(first, TIMEOUT)
        # The primary learns of it when the worker's pipe closes; readyz asks the process too.
        degraded = await client.get("/readyz")
        ids = await send_many(served, 10, 5)  # the other worker takes the connections
    assert degraded.status_code == 503
    assert degraded.json()["detail"]["smtp"] is False
    assert len(ids) == 10


async def test_every_workers_verdicts_reach_the_verdict_log(
    serve: StartServe, tmp_path: Path
) -> None:
    log_path = tmp_path / "verdicts.jsonl"
    served = await serve(
        "--db", str(tmp_path / "s.db"), "--workers", "2", "--profile", "no-filter",
        "--verdict-log", str(log_path),
    )  # fmt: skip
    ids = await send_many(served, 30, 15)
    # Each line is written before its 250 is sent: all are there once every reply came back.
    logged = [json.loads(line)["id"] for line in log_path.read_text().splitlines()]
    assert sorted(logged) == sorted(ids)
    assert {process_of(i, 3) for i in ids} == {1, 2}


async def test_accept_failures_pause_accepting_instead_of_spinning(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import errno
    import socket
    import time

    from sinkd.server import workers

    monkeypatch.setattr(workers, "ACCEPT_RETRY_DELAY", 0.2)
    pool = workers.WorkerPool(None, 0, ("text", 20), None, None)  # type: ignore[arg-type]
    calls: list[float] = []
    second = asyncio.Event()

    class OutOfDescriptors:  # a listener whose accept() fails as under EMFILE
        def __init__(self, sock: socket.socket) -> None:
            self.sock = sock

        def fileno(self) -> int:
            return self.sock.fileno()

        def accept(self) -> tuple[socket.socket, object]:
            calls.append(time.monotonic())
            if len(calls) == 2:
                second.set()
            raise OSError(errno.EMFILE, "Too many open files")

    with socket.create_server(("127.0.0.1", 0)) as sock:
        sock.setblocking(False)
        client = socket.create_connection(sock.getsockname())  # the listener is readable now
        try:
            pool.accept_from(OutOfDescriptors(sock))  # type: ignore[arg-type]
            async with asyncio.timeout(TIMEOUT):
                await second.wait()
            asyncio.get_running_loop().remove_reader(sock.fileno())
        finally:
            client.close()
    assert calls[1] - calls[0] >= 0.2  # one try, a pause, the next: no busy loop meanwhile


async def test_workers_save_through_a_new_writer_process_after_the_old_one_dies(
    serve: StartServe, tmp_path: Path
) -> None:
    db = tmp_path / "s.db"
    served = await serve("--db", str(db), "--workers", "2", "--profile", "no-filter")
    before = await send_many(served, 10, 5)
    old = writer_pid(served)
    os.kill(old, signal.SIGKILL)
    assert wait_for_exit(old, TIMEOUT)
    # The primary starts a new writer at once and gives each worker a connection to it;
    # meanwhile a save fails with 451 (never a 250 for an unconfirmed commit), and a client
    # retries, as an MTA would.
    after: list[str] = []
    async with asyncio.timeout(TIMEOUT):
        while len(after) < 10:
            try:
                after += await send(served, message(len(after)))
            except aiosmtplib.SMTPResponseException as exc:
                assert exc.code == 451, exc
    assert writer_pid(served) != old
    assert {process_of(i, 3) for i in await send_many(served, 10, 5)} == {1, 2}
    assert await served.stop(signal.SIGTERM) == 0
    assert_store_intact(db, before + after)
