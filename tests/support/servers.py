"""``sinkd serve`` as a real process: a clean environment, its readiness line, a running server
with its stderr drained, one-shot ``sinkd`` commands, numbered messages sent over SMTP and the
store checked on disk. The ``serve`` fixture that starts such processes is in tests/conftest.py."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sqlite3
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiosmtplib

READY = re.compile(
    r"^sinkd ready smtp=(?P<host>[^:\s]+):(?P<port>\d+)"
    r"(?: http=(?P<http_host>[^:\s]+):(?P<http_port>\d+))?$"
)
QUEUED = re.compile(r"^2\.0\.0 Ok: queued as ([0-9A-F]{12,40})$")
START_TIMEOUT = 30.0
TIMEOUT = 15.0


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without any ``SINKD_*`` variable, and without the HTTP API (its fixed
    default port would clash between servers); ``SINKD_NO_HTTP=""`` opts back in."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SINKD_")}
    env["PYTHONUNBUFFERED"] = "1"
    env["SINKD_NO_HTTP"] = "1"
    env.update(extra)
    return env


@dataclass
class Served:
    """A running ``sinkd serve``; its stderr is drained continuously into ``stderr``."""

    process: asyncio.subprocess.Process
    host: str = ""
    port: int = 0
    http: str | None = None  # "http://HOST:PORT" when the readiness line names an HTTP API
    stderr: list[str] = field(default_factory=list)
    drain: asyncio.Task[None] | None = None

    async def stop(self, signum: int = signal.SIGTERM) -> int:
        """Signal the process, wait for it and for the end of its output; its exit code."""
        self.process.send_signal(signum)
        return await self.wait()

    async def wait(self) -> int:
        async with asyncio.timeout(TIMEOUT):
            code = await self.process.wait()
            if self.drain is not None:
                await self.drain
        return code


StartServe = Callable[..., Awaitable[Served]]


async def start_serve(
    *args: str, env: dict[str, str], cwd: Path, new_session: bool = False
) -> Served:
    """Start ``python -m sinkd serve ARGS`` and wait for its readiness line (what the ``serve``
    fixture of tests/conftest.py does, for helpers that own their processes: tests/support/
    cluster.py). ``new_session``: the process leads a process group of its own, so that a kill
    of the group takes its children (the store writer, SMTP workers) with it, as losing the
    machine would. The caller stops or kills it; ``Served.wait`` reaps it."""
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "sinkd", "serve", *args),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
        cwd=cwd,
        start_new_session=new_session,
    )
    served = Served(process)

    async def drain(stream: asyncio.StreamReader | None) -> None:
        assert stream is not None
        async for line in stream:
            served.stderr.append(line.decode("utf-8", "replace").rstrip("\n"))

    async def drain_both(stderr: asyncio.Task[None]) -> None:
        # After the readiness line stdout is drained too: a long run must never block on a
        # full pipe (its lines join stderr's).
        await drain(process.stdout)
        await stderr

    served.drain = asyncio.create_task(drain(process.stderr))
    assert process.stdout is not None
    try:
        async with asyncio.timeout(START_TIMEOUT):
            line = (await process.stdout.readline()).decode().strip()
        match = READY.match(line)
        assert match, f"no readiness line, got {line!r}; stderr: {served.stderr}"
    except BaseException:
        if process.returncode is None:
            process.kill()
        await served.wait()
        raise
    served.drain = asyncio.create_task(drain_both(served.drain))
    served.host, served.port = match["host"], int(match["port"])
    if match["http_host"]:
        served.http = f"http://{match['http_host']}:{match['http_port']}"
    return served


async def run_sinkd(*args: str) -> tuple[int, bytes, str]:
    """Run a one-shot ``sinkd`` command; (exit code, stdout bytes, stderr text)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "sinkd",
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=clean_env(),
    )
    async with asyncio.timeout(TIMEOUT):
        out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out, err.decode("utf-8", "replace")


def message(n: int, body: str | None = None) -> bytes:
    text = (
        body
        if body is not None
        else (f"Message number {n}.\r\n.A line that starts with a dot.\r\n..and one with two.\r\n")
    )
    return (
        "From: Alice <alice@sender.example>\r\n"
        "To: Bob <bob@corp.example>\r\n"
        f"Subject: durable {n}\r\n"
        "Date: Mon, 1 Jan 2024 10:00:00 +0000\r\n"
        f"Message-ID: <durable-{n}@sender.example>\r\n"
        "\r\n" + text
    ).encode()


async def send(served: Served, *messages: bytes) -> list[str]:
    """Send messages on one connection; the id each 250 names."""
    ids: list[str] = []
    async with aiosmtplib.SMTP(
        hostname=served.host, port=served.port, start_tls=False, timeout=TIMEOUT
    ) as smtp:
        for raw in messages:
            _, text = await smtp.sendmail("alice@sender.example", ["bob@corp.example"], raw)
            match = QUEUED.match(text)
            assert match, text
            ids.append(match.group(1))
    return ids


def writer_pid(served: Served) -> int:
    """The server's store writer process (``python -m sinkd.store.writer_main``)."""
    pid = served.process.pid
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    (found,) = [
        int(child)
        for child in children
        if b"sinkd.store.writer_main" in Path(f"/proc/{child}/cmdline").read_bytes()
    ]
    return found


def assert_store_intact(db: Path, ids: list[str]) -> None:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        found = {row[0] for row in conn.execute("SELECT id FROM messages")}
    assert set(ids) <= found
