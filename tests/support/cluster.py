"""Several ``sinkd serve`` processes on one store, driven as the cluster of issue 21.

Owns starting N real ``python -m sinkd serve`` processes (tests/support/servers.py
``start_serve``: free ports, the readiness line, no sleeps) on one store location, each with
its own SMTP and HTTP port and working directory, each leading a process group of its own; and
the helpers a cluster test needs: send mail to instance *i* with smtplib (a real client over
loopback), read instance *i*'s ``/api/v1/messages`` and its ``/api/v1/events`` stream (httpx,
tests/support/events.py),
``kill -9`` one instance (with every process it started: the store writer and workers go with
it, as they would with the machine), start one again on the same store, and stop them all.

The first instance may create the schema (``migrate=True`` adds ``--migrate`` to it alone); the
others start once it is ready, as docker/compose.scale.yaml orders them. The store is whatever
``--store`` value the caller gives (a ``postgresql://`` DSN of tests/support/postgres.py, or a
SQLite path for a single instance). It judges and asserts nothing itself: the tests do.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import signal
import smtplib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from tests.support.events import Stream, subscribed
from tests.support.servers import QUEUED, TIMEOUT, Served, clean_env, start_serve

# The HTTP API on a free port (clean_env turns it off by default: its fixed port would clash).
HTTP_ON = {"SINKD_NO_HTTP": "", "SINKD_HTTP_PORT": "0"}
SENDER = "alice@sender.example"
RECIPIENT = "bob@corp.example"


@dataclass(frozen=True)
class Attempt:
    """What one SMTP transaction got: the code and text of the reply that ended it (the 250
    after DATA, or the first refusal at MAIL, RCPT or DATA), and the queued id of a 250."""

    code: int
    text: str
    queued: str | None = None


def _transact(
    host: str,
    port: int,
    raw: bytes,
    sender: str,
    recipients: Sequence[str],
    client_ip: str | None,
) -> Attempt:
    """One transaction with smtplib (blocking: run in a thread). ``client_ip``: the client
    address the filters see, set with Postfix's XCLIENT (sinkd takes it from every client)."""
    with smtplib.SMTP(host, port, timeout=TIMEOUT) as smtp:
        smtp.ehlo("client.cluster.example")
        if client_ip is not None:
            # XCLIENT answers with a new greeting (220); the client says EHLO again
            # (www.postfix.org/XCLIENT_README.html).
            code, text = smtp.docmd("XCLIENT", f"ADDR={client_ip}")
            if code != 220:
                return Attempt(code, text.decode("utf-8", "replace"))
            smtp.ehlo("client.cluster.example")
        code, text = smtp.mail(sender)
        if code != 250:
            return Attempt(code, text.decode("utf-8", "replace"))
        for recipient in recipients:
            code, text = smtp.rcpt(recipient)
            if code not in (250, 251):
                return Attempt(code, text.decode("utf-8", "replace"))
        try:
            code, text = smtp.data(raw)
        except smtplib.SMTPDataError as refused:  # DATA itself refused (no 354)
            error = refused.smtp_error
            text = error if isinstance(error, bytes) else error.encode()
            return Attempt(refused.smtp_code, text.decode("utf-8", "replace"))
        reply = text.decode("utf-8", "replace")
        match = QUEUED.match(reply) if code == 250 else None
        return Attempt(code, reply, match.group(1) if match else None)


def descendants(pid: int) -> list[int]:
    """The live descendants of ``pid``, depth first (/proc/PID/task/TID/children, proc(5))."""
    found: list[int] = []
    try:
        tasks = [entry.name for entry in Path(f"/proc/{pid}/task").iterdir()]
    except OSError:
        return found
    for tid in tasks:
        try:
            children = Path(f"/proc/{pid}/task/{tid}/children").read_text().split()
        except OSError:
            continue
        for child in map(int, children):
            found += [child, *descendants(child)]
    return found


def ended(pid: int) -> bool:
    """Whether ``pid`` has exited (gone, or a zombie its parent has not reaped yet)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat[stat.rindex(")") + 2] in "ZX"


def wait_ended(pids: Sequence[int]) -> None:
    """Block until each process has exited: a pidfd becomes readable when its process ends
    (pidfd_open(2)); AssertionError after TIMEOUT."""
    for pid in pids:
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            continue
        try:
            readable, _, _ = select.select([fd], [], [], TIMEOUT)
            assert readable, f"process {pid} still runs {TIMEOUT} s after SIGKILL"
        finally:
            os.close(fd)


async def event_ids(stream: Stream, wanted: set[str]) -> set[str]:
    """Read ``stream`` until every message id in ``wanted`` has arrived in an event; the ids
    seen (each read fails the test after tests/support/events.py's TIMEOUT)."""
    seen: set[str] = set()
    while not wanted <= seen:
        kind, data = await stream.event()
        assert kind != "end", f"the event stream ended; seen {sorted(seen)}"
        if isinstance(data, dict) and "id" in data:
            seen.add(str(data["id"]))
    return seen


@dataclass
class Cluster:
    """N ``sinkd serve`` processes on the store ``store``; ``instances[i]`` is instance i (a
    killed one stays in the list, its process ended)."""

    store: str
    root: Path
    args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    instances: list[Served] = field(default_factory=list)

    @classmethod
    async def start(
        cls,
        store: str,
        count: int,
        root: Path,
        *args: str,
        migrate: bool = True,
        env: dict[str, str] | None = None,
    ) -> Cluster:
        """Start ``count`` instances one after the other (the first with ``--migrate`` when
        ``migrate``), each ready before the next starts. ``args`` go to every instance."""
        cluster = cls(store, root, tuple(args), dict(env or {}))
        try:
            for index in range(count):
                await cluster.add(migrate=migrate and index == 0)
        except BaseException:
            await cluster.close()
            raise
        return cluster

    async def add(self, *extra: str, migrate: bool = False) -> int:
        """Start one more instance on the store (a restart after ``kill`` too); its index."""
        index = len(self.instances)
        cwd = self.root / f"instance-{index}"
        cwd.mkdir(parents=True, exist_ok=True)
        args = ["--port", "0", "--store", self.store, *self.args, *extra]
        if migrate:
            args.append("--migrate")
        # XDG_DATA_HOME: whatever an instance keeps beside no store file of its own (the
        # STARTTLS certificate with a PostgreSQL store) stays in its directory, never in $HOME.
        env = clean_env(**HTTP_ON, XDG_DATA_HOME=str(cwd), **self.env)
        served = await start_serve(*args, env=env, cwd=cwd, new_session=True)
        self.instances.append(served)
        return index

    def __len__(self) -> int:
        return len(self.instances)

    def http(self, index: int) -> str:
        url = self.instances[index].http
        assert url is not None, f"instance {index} started without its HTTP API"
        return url

    def running(self, index: int) -> bool:
        return self.instances[index].process.returncode is None

    # --- SMTP -------------------------------------------------------------------------------

    async def attempt(
        self,
        index: int,
        raw: bytes,
        *,
        sender: str = SENDER,
        recipients: Sequence[str] = (RECIPIENT,),
        client_ip: str | None = None,
    ) -> Attempt:
        """One transaction on a new connection to instance ``index``, whatever its outcome."""
        served = self.instances[index]
        return await asyncio.to_thread(
            _transact, served.host, served.port, raw, sender, recipients, client_ip
        )

    async def send(self, index: int, *messages: bytes, client_ip: str | None = None) -> list[str]:
        """Send each message to instance ``index`` (a connection each); the ids the 250s name.
        Anything but a 250 fails the test with the reply."""
        ids = []
        for raw in messages:
            result = await self.attempt(index, raw, client_ip=client_ip)
            assert result.code == 250 and result.queued, f"instance {index}: {result}"
            ids.append(result.queued)
        return ids

    # --- HTTP -------------------------------------------------------------------------------

    async def messages(self, index: int, **params: str | int) -> list[dict[str, Any]]:
        """Instance ``index``'s ``GET /api/v1/messages`` (newest first) with ``params``."""
        async with httpx.AsyncClient(base_url=self.http(index), timeout=TIMEOUT) as client:
            answer = await client.get("/api/v1/messages", params=params)
        assert answer.status_code == 200, answer.text
        listed: list[dict[str, Any]] = answer.json()["messages"]
        return listed

    async def listed_ids(self, index: int, limit: int = 500) -> set[str]:
        return {str(m["id"]) for m in await self.messages(index, limit=limit)}

    async def readyz(self, index: int) -> tuple[int, dict[str, Any]]:
        """Instance ``index``'s ``/readyz``: the status code and the JSON body."""
        async with httpx.AsyncClient(base_url=self.http(index), timeout=TIMEOUT) as client:
            answer = await client.get("/readyz")
        body: dict[str, Any] = answer.json()
        return answer.status_code, body

    @contextlib.asynccontextmanager
    async def events(self, index: int) -> AsyncIterator[Stream]:
        """A subscription to instance ``index``'s live events (tests/support/events.py), in
        place when it is yielded."""
        async with (
            httpx.AsyncClient(base_url=self.http(index), timeout=TIMEOUT) as client,
            subscribed(client) as stream,
        ):
            yield stream

    # --- stopping ---------------------------------------------------------------------------

    async def kill(self, index: int) -> int:
        """``kill -9`` instance ``index`` and every process it started (store writer, SMTP
        workers), as losing its machine would; returns once each has ended, with the instance's
        exit status (-9)."""
        served = self.instances[index]
        # The store writer runs in a session of its own (sinkd/store/writer.py: a terminal's
        # Ctrl-C must not reach it), so the group is not enough: every descendant, by pid.
        members = descendants(served.process.pid)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(served.process.pid, signal.SIGKILL)
        for pid in members:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        code = await served.wait()
        await asyncio.to_thread(wait_ended, members)
        return code

    async def stop(self, index: int) -> int:
        """SIGTERM instance ``index`` and wait for it; its exit status (0: a clean stop)."""
        served = self.instances[index]
        if served.process.returncode is not None:
            return served.process.returncode
        return await served.stop()

    async def close(self) -> list[int]:
        """Stop every instance still running (SIGTERM), kill what is left of their process
        groups; the exit statuses, in order."""
        codes = []
        for index in range(len(self.instances)):
            try:
                codes.append(await self.stop(index))
            except TimeoutError:
                codes.append(await self.kill(index))
        return codes

    async def __aenter__(self) -> Cluster:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()
