"""``sinkd readyz`` as health checks and CI scripts run it: a real process against a real
sinkd (in a thread of this process, on free ports), a closed port and a server that is up but
not ready."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sinkd.server.runtime import ServerThread, Sinkd
from sinkd.services.settings import Settings
from tests.conftest import free_port, refused_port
from tests.support.servers import clean_env

RUN_TIMEOUT = 60.0


def readyz(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sinkd", "readyz", *args],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        env=clean_env(),
        check=False,
    )


def settings(tmp_path: Path, **overrides: object) -> Settings:
    base = Settings(port=0, http_port=0, db=tmp_path / "sinkd.db", hostname="sinkd.test")
    for key, value in overrides.items():
        setattr(base, key, value)
    return base


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerThread]:
    thread = ServerThread(settings(tmp_path))
    thread.start()
    yield thread
    thread.stop()


def url_of(sinkd: Sinkd) -> str:
    assert sinkd.http_address is not None
    return "http://{}:{}".format(*sinkd.http_address)


def test_a_ready_sinkd_exits_0(server: ServerThread) -> None:
    done = readyz("--url", url_of(server.sinkd))
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == f"sinkd at {url_of(server.sinkd)}: ready\n"


def test_a_closed_port_exits_1_with_one_line_saying_why() -> None:
    with refused_port() as port:
        url = f"http://127.0.0.1:{port}"
        done = readyz("--url", url)
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1
    assert done.stderr.startswith(f"sinkd: {url}: connection refused")


def test_wait_gives_up_after_the_timeout_on_a_closed_port() -> None:
    started = time.monotonic()
    with refused_port() as port:
        done = readyz("--url", f"http://127.0.0.1:{port}", "--wait", "--timeout", "0.5")
    assert done.returncode == 1
    assert time.monotonic() - started >= 0.5
    assert "connection refused" in done.stderr and "(waited 0.5 s)" in done.stderr


def test_wait_returns_once_a_sinkd_starting_later_is_ready(tmp_path: Path) -> None:
    port = free_port()
    waiting = subprocess.Popen(
        [sys.executable, "-m", "sinkd", "readyz", "--url", f"http://127.0.0.1:{port}", "--wait"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=clean_env(),
    )
    try:
        with ServerThread(settings(tmp_path, http_port=port)):
            out, err = waiting.communicate(timeout=RUN_TIMEOUT)
    finally:
        if waiting.returncode is None:
            waiting.kill()
            waiting.communicate()
    assert (waiting.returncode, err) == (0, "")
    assert out.endswith(": ready\n")


def test_a_sinkd_whose_smtp_listener_is_down_is_not_ready(server: ServerThread) -> None:
    async def close_smtp() -> None:
        assert server.sinkd.server is not None
        server.sinkd.server.close()
        await server.sinkd.server.wait_closed()

    server.call(close_smtp())
    done = readyz("--url", url_of(server.sinkd))
    assert done.returncode == 1
    assert done.stderr == f"sinkd: {url_of(server.sinkd)}: not ready: smtp down\n"


def test_an_answer_waiting_cannot_change_fails_at_once_even_with_wait(
    server: ServerThread,
) -> None:
    url = url_of(server.sinkd) + "/not-sinkd"  # sinkd's 404 for /not-sinkd/readyz
    started = time.monotonic()
    done = readyz("--url", url, "--wait", "--timeout", "30")
    assert done.returncode == 1 and time.monotonic() - started < 20
    assert done.stderr.startswith(f"sinkd: {url}: not ready: HTTP 404 not found")


def test_readyz_needs_no_credentials_under_http_auth(tmp_path: Path) -> None:
    with ServerThread(settings(tmp_path, http_auth=("ann", "pw"))) as sinkd:
        assert readyz("--url", url_of(sinkd)).returncode == 0
