"""Shared fixtures: in-process servers on free ports, ``sinkd serve`` processes, message files, a
real spamd, and the rule
that a test needing a missing real component skips on a laptop but fails in CI (CI=true)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from sinkd.server.runtime import Sinkd
from sinkd.services.settings import Settings
from tests.dns_server import DnsTestServer, RecordMap
from tests.support.servers import READY, START_TIMEOUT, Served, StartServe, clean_env

MESSAGES = Path(__file__).parent / "messages"


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def require_executable(name: str, package: str) -> str:
    """The path of ``name``; skip (laptop) or fail (CI) with the package that provides it."""
    path = shutil.which(name)
    if path is None:
        reason = f"{name} not found: install the Debian package '{package}' (.ci/run does)"
        if in_ci():
            pytest.fail(f"CI must not skip: {reason}")
        pytest.skip(reason)
    return path


StartServer = Callable[..., Awaitable[Sinkd]]


@pytest.fixture
async def start_server(tmp_path: Path) -> AsyncIterator[StartServer]:
    """Start sinkd in this event loop on a free port; every server is stopped afterwards.

    Keyword arguments override ``Settings`` fields (profile, routes, auth, ...). No HTTP API
    unless a test opts in: ``start_server(http=True)`` serves it on a free port too
    (``app.http_address``).
    """
    started: list[Sinkd] = []

    async def start(**overrides: object) -> Sinkd:
        settings = Settings(
            host="127.0.0.1",
            port=0,
            db=tmp_path / f"sinkd-{len(started)}.db",
            hostname="sinkd.test",
            http=False,
            http_port=0,
        )
        for key, value in overrides.items():
            setattr(settings, key, value)
        app = Sinkd(settings)
        await app.start()
        started.append(app)
        return app

    yield start
    for app in started:
        await app.stop()


@pytest.fixture
def no_internal_errors(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Whatever a test sends, sinkd itself must not fail: no ERROR from its loggers (an
    internal error is what makes the server answer "451 4.3.0"). A module opts in with
    ``pytestmark = pytest.mark.usefixtures("no_internal_errors")``."""
    yield
    errors = [
        r for r in caplog.get_records("call") if r.name.startswith("sinkd") and r.levelno >= 40
    ]
    assert not errors, [r.getMessage() for r in errors]


# --- ``sinkd serve`` as a real process ---------------------------------------------------------


@pytest.fixture
async def serve(tmp_path: Path) -> AsyncIterator[StartServe]:
    """Start ``sinkd serve`` and wait for its readiness line; every process is reaped after."""
    started: list[Served] = []

    async def start(*args: str, env: dict[str, str] | None = None, port: bool = True) -> Served:
        command = [sys.executable, "-m", "sinkd", "serve", *(["--port", "0"] if port else [])]
        process = await asyncio.create_subprocess_exec(
            *command,
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env or clean_env(),
            cwd=tmp_path,
        )
        served = Served(process)
        started.append(served)

        async def drain() -> None:
            assert process.stderr is not None
            async for line in process.stderr:
                served.stderr.append(line.decode("utf-8", "replace").rstrip("\n"))

        served.drain = asyncio.create_task(drain())
        assert process.stdout is not None
        async with asyncio.timeout(START_TIMEOUT):
            line = (await process.stdout.readline()).decode().strip()
        match = READY.match(line)
        assert match, f"no readiness line, got {line!r}; stderr: {served.stderr}"
        served.host, served.port = match["host"], int(match["port"])
        if match["http_host"]:
            served.http = f"http://{match['http_host']}:{match['http_port']}"
        return served

    yield start
    for served in started:
        if served.process.returncode is None:
            served.process.kill()
        await served.wait()
        assert served.process.stdout is not None
        await served.process.stdout.read()


# --- a real spamd ------------------------------------------------------------------------------

SPAMD_START_TIMEOUT = 60.0  # spamd compiles its rules at start-up: 1-5 s usually
SPAMD_STOP_TIMEOUT = 30.0
SPAMD_READY = "server started on"


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now (bind port 0, read it, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def refused_port(host: str = "127.0.0.1") -> Iterator[int]:
    """A port that refuses connections for as long as the block runs: bound but not listening,
    so no other process (tests run beside other servers) can take it meanwhile."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        yield sock.getsockname()[1]


def spamd_port_unused(host: str = "127.0.0.1") -> tuple[str, int]:
    """An address where no spamd (nor anything else) listens: connections are refused."""
    return host, free_port(host)


@dataclass
class SpamdProcess:
    """A spamd started by ``start_spamd``; its stderr is drained continuously into ``lines``."""

    host: str
    port: int
    process: subprocess.Popen[str]
    home: Path
    lines: list[str] = field(default_factory=list)
    ready: threading.Event = field(default_factory=threading.Event)
    drain: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    @property
    def spec(self) -> str:
        """``HOST:PORT``, as ``--spamd`` takes it."""
        return f"{self.host}:{self.port}"

    def stderr(self) -> str:
        return "\n".join(self.lines)

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line.rstrip("\n"))
            if SPAMD_READY in line:
                self.ready.set()
        self.ready.set()  # end of output: whoever waits must look at why

    def _group(self, signum: int) -> None:
        # spamd was started in its own session: its process group is spamd and its children.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signum)

    def _reap(self) -> None:
        try:
            self.process.wait(timeout=SPAMD_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self._group(signal.SIGKILL)
            self.process.wait(timeout=SPAMD_STOP_TIMEOUT)
        if self.drain is not None:
            self.drain.join(timeout=SPAMD_STOP_TIMEOUT)
        if self.process.stderr is not None:
            self.process.stderr.close()
        shutil.rmtree(self.home, ignore_errors=True)

    def kill(self) -> None:
        """kill -9 spamd and every child at once, as a crash would; the port then refuses."""
        self._group(signal.SIGKILL)
        self._reap()

    def stop(self) -> None:
        """SIGTERM (spamd stops its children and exits), then wait; SIGKILL if it hangs."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        self._reap()


def _spawn_spamd(
    home: Path, port: int, max_children: int, args: Sequence[str] = ()
) -> SpamdProcess:
    command = [
        "spamd",
        "--local",
        "-p",
        str(port),
        "-i",
        "127.0.0.1",
        "-A",
        "127.0.0.1",
        "--max-children",
        str(max_children),
        "-H",
        str(home),
        "--pidfile",
        str(home / "spamd.pid"),
        "-s",
        "stderr",
        *args,
    ]
    if os.geteuid() == 0:  # as root spamd must drop privileges; as anyone else -u fails
        command[1:1] = ["-u", "nobody"]
    process = subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        errors="replace",
        start_new_session=True,
    )
    spamd = SpamdProcess("127.0.0.1", port, process, home)
    spamd.drain = threading.Thread(target=spamd._read, name=f"spamd-{port}-stderr", daemon=True)
    spamd.drain.start()
    return spamd


def start_spamd(
    *, max_children: int = 4, timeout: float = SPAMD_START_TIMEOUT, args: Sequence[str] = ()
) -> SpamdProcess:
    """Start Debian's spamd on a free loopback port; return once it logs "server started on".

    ``args`` are added to spamd's command line (``tests/support/spamd_config.py`` passes
    ``--siteconfigpath``/``--configpath`` to load a configuration under test).

    Its home and pid file live in a private directory of the system's temporary directory
    (world-writable: spamd started as root runs as ``nobody``, which could not even reach a
    pytest tmp_path), removed again when it stops. The caller stops it: ``stop()`` or ``kill()``.
    """
    require_executable("spamd", "spamd")
    for _ in range(3):  # the free port may be taken between closing it and spamd binding it
        home = Path(tempfile.mkdtemp(prefix="sinkd-spamd-"))
        home.chmod(0o777)
        spamd = _spawn_spamd(home, free_port(), max_children, args)
        ready = spamd.ready.wait(timeout)
        if ready and spamd.process.poll() is None and any(SPAMD_READY in x for x in spamd.lines):
            return spamd
        spamd.stop()
        if not any("Address already in use" in line for line in spamd.lines):
            why = "did not start" if ready else f"was not ready within {timeout:g} s"
            pytest.fail(
                f"spamd on 127.0.0.1:{spamd.port} {why} (exit code {spamd.process.returncode});"
                f" its stderr:\n{spamd.stderr()}"
            )
    pytest.fail(f"spamd found no free port in 3 attempts; last stderr:\n{spamd.stderr()}")


@pytest.fixture(scope="session")
def spamd() -> Iterator[SpamdProcess]:
    """One spamd for the session (``--max-children 4``), stopped with SIGTERM at the end."""
    process = start_spamd()
    try:
        yield process
    finally:
        process.stop()


# --- a real DNS server -------------------------------------------------------------------------

StartDnsServer = Callable[..., DnsTestServer]


@pytest.fixture
def dns_server() -> Iterator[StartDnsServer]:
    """``start(records, **options)`` serves a record map on 127.0.0.1 over UDP and TCP (see
    ``tests/dns_server.py``); every server started is stopped afterwards."""
    started: list[DnsTestServer] = []

    def start(records: RecordMap | None = None, **options: Any) -> DnsTestServer:
        server = DnsTestServer(records, **options).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
