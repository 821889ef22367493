"""The judge workers under test control: a job that stops at a gate the test opens, a server
started in process with that job, and smtplib sends that return the reply instead of raising.

``gated_judge`` runs in a judge worker process (the pool imports it there): before judging, it
connects to the test's ``Gate`` (its address in ``GATE_ENV``, which the spawned worker
inherits), says its pid and waits until the test releases it. The test thus knows for certain
that the message is being judged in that process, and decides when the judgement ends: ordering
without sleeps or timing thresholds. Timeouts here only stop a hung test.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import re
import smtplib
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from sinkd.core.model import Verdict
from sinkd.server.runtime import Sinkd
from sinkd.services.offload import Job, Task, judge_task
from sinkd.services.settings import Settings

GATE_ENV = "TEST_SINKD_JUDGE_GATE"  # HOST:PORT of the gate, inherited by spawned workers
HANG = 60.0  # seconds after which a test that waits for the gate has hung
MESSAGE_ID = re.compile(r"\b[0-9A-F]{12,40}\b")  # sinkd's message ids (queued as ...)


def comparable(data: dict[str, Any]) -> dict[str, Any]:
    """A stored record's or a verdict's JSON without what differs between two judgements of
    the same message: its ids and its time of arrival (also inside reply texts)."""
    data = dict(data)
    for key in ("id", "transaction_id", "received_at"):
        data.pop(key, None)
    data["reply"] = dict(data["reply"], text=MESSAGE_ID.sub("ID", data["reply"]["text"]))
    return data


def without_ids(reply: str) -> str:
    """An SMTP reply with sinkd's message ids masked."""
    return MESSAGE_ID.sub("ID", reply)


_numbers = itertools.count()


def gated_judge(task: Task) -> list[Verdict]:
    """``judge_task`` behind the test's gate: tell it this pid, wait to be released."""
    host, _, port = os.environ[GATE_ENV].rpartition(":")
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(f"{os.getpid()}\n".encode())
        sock.recv(1)  # the release (or the test closing the gate)
    return judge_task(task)


@dataclass
class Arrival:
    """A worker waiting at the gate with a message."""

    pid: int
    writer: asyncio.StreamWriter

    def release(self) -> None:
        self.writer.write(b"g")
        self.writer.close()


class Gate:
    """Where ``gated_judge`` waits: ``await arrival()`` gives the next worker that came."""

    def __init__(self) -> None:
        self._arrivals: asyncio.Queue[Arrival] = asyncio.Queue()
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []  # every arrival's, closed at the end
        self.address = ""

    async def open(self) -> None:
        self._server = await asyncio.start_server(self._arrived, "127.0.0.1", 0)
        host, port = self._server.sockets[0].getsockname()[:2]
        self.address = f"{host}:{port}"

    async def _arrived(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.append(writer)
        pid = int((await reader.readline()).decode())
        await self._arrivals.put(Arrival(pid, writer))

    async def arrival(self) -> Arrival:
        async with asyncio.timeout(HANG):
            return await self._arrivals.get()

    async def close(self) -> None:
        while not self._arrivals.empty():
            self._arrivals.get_nowait().release()
        for writer in self._writers:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


@contextlib.asynccontextmanager
async def gate(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Gate]:
    """An open gate whose address the judge workers started from now on inherit."""
    opened = Gate()
    await opened.open()
    monkeypatch.setenv(GATE_ENV, opened.address)
    try:
        yield opened
    finally:
        await opened.close()


@contextlib.asynccontextmanager
async def offload_server(
    tmp_path: Path, *, job: Job = judge_task, **overrides: object
) -> AsyncIterator[Sinkd]:
    """A server in this event loop on a free port whose judge workers run ``job``."""
    settings = Settings(
        host="127.0.0.1",
        port=0,
        db=tmp_path / f"offload-{next(_numbers)}.db",
        hostname="sinkd.test",
        http=False,
        http_port=0,
    )
    for key, value in overrides.items():
        setattr(settings, key, value)
    app = Sinkd(settings, judge_job=job)
    await app.start()
    try:
        yield app
    finally:
        await app.stop()


def sendmail(address: tuple[str, int], raw: bytes, sender: str, *rcpts: str) -> str:
    """Send ``raw`` over SMTP with smtplib (blocking: run it in a thread): the reply to DATA
    as "CODE TEXT", or the refusal that ended the transaction before it."""
    with smtplib.SMTP(*address, timeout=HANG) as client:
        client.ehlo()
        code, text = client.mail(sender)
        if code != 250:
            return f"{code} {text.decode()}"
        refusals = []
        for rcpt in rcpts:
            code, text = client.rcpt(rcpt)
            if code != 250:
                refusals.append(f"{code} {text.decode()}")
        if len(refusals) == len(rcpts):
            return refusals[0]
        code, text = client.data(raw)
        return f"{code} {text.decode()}"
