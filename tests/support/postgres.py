"""A private PostgreSQL server for tests (issue 21: the PostgreSQL store and its contract suite).

``PostgresServer().start()`` runs ``initdb`` into a directory of its own under the system's
temporary directory, starts the server with ``pg_ctl start`` listening only on 127.0.0.1 at a
free port (its Unix socket in that directory, never in /var/run/postgresql), waits until it
accepts connections, creates the database ``sinkd`` and exposes ``dsn``
(``postgresql://postgres@127.0.0.1:PORT/sinkd``, trust authentication: the server is private to
this test run and reachable from loopback only). ``stop()`` runs ``pg_ctl stop -m fast`` and
removes the directory. ``postgres_server`` is the session-scoped pytest fixture around it.

PostgreSQL refuses to run as root ("root" execution of the PostgreSQL server is not permitted,
postgres(1)), so under root the server runs as the ``postgres`` user Debian's ``postgresql``
package creates (``nobody`` otherwise), the directory chowned to it; pytest's ``tmp_path`` is
private to root, hence a directory of its own. This module starts and stops a server; it holds no
store code and judges nothing.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

import pytest

from tests.conftest import free_port, require_executable

# pg_ctl -w polls the server itself until it accepts connections or this many seconds pass
# (pg_ctl(1) "-t seconds"); initdb and a first start take 1-3 s here.
START_TIMEOUT = 60
STOP_TIMEOUT = 60
DATABASE = "sinkd"
SUPERUSER = "postgres"


def _binary(name: str) -> str:
    """A PostgreSQL server program: on PATH, else in Debian's versioned directory.

    Debian's ``postgresql`` package installs initdb and pg_ctl in /usr/lib/postgresql/N/bin and
    puts only the client wrappers (psql, pg_wrapper(1)) on PATH; the newest N wins.
    """
    found = shutil.which(name)
    if found is not None:
        return found
    candidates = sorted(
        Path("/usr/lib/postgresql").glob(f"*/bin/{name}"),
        key=lambda path: int(path.parent.parent.name) if path.parent.parent.name.isdigit() else 0,
    )
    if candidates:
        return str(candidates[-1])
    return require_executable(name, "postgresql")  # skips on a laptop, fails under CI=true


def _server_user() -> pwd.struct_passwd | None:
    """The account the server runs as when we are root; None when we are not root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    pytest.fail("running as root, but neither a 'postgres' nor a 'nobody' account exists")


class PostgresServer:
    def __init__(self) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="sinkd-postgres-"))
        self.data = self.directory / "data"
        self.log = self.directory / "server.log"
        self.port = 0
        self.user = _server_user()
        self.started = False
        self.pg_ctl = ""

    @property
    def dsn(self) -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{DATABASE}"

    def _as_server_user(self, argv: list[str]) -> list[str]:
        if self.user is None:
            return argv
        return ["runuser", "-u", self.user.pw_name, "--", *argv]

    def _run(self, argv: list[str], what: str) -> None:
        done = subprocess.run(
            self._as_server_user(argv),
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT + 30,
            check=False,
            env={**os.environ, "LC_ALL": "C.UTF-8"},
        )
        if done.returncode != 0:
            pytest.fail(
                f"{what} failed (exit {done.returncode}):\n{done.stdout}{done.stderr}"
                f"{self.server_log()}"
            )

    def server_log(self) -> str:
        try:
            return "\nserver log:\n" + self.log.read_text(errors="replace")
        except OSError:
            return ""

    def start(self) -> PostgresServer:
        initdb = _binary("initdb")
        self.pg_ctl = _binary("pg_ctl")
        require_executable("psql", "postgresql-client")  # start() creates the database with it
        if self.user is not None:
            # runuser is in util-linux (essential on Debian); the server user must own its
            # data directory (initdb refuses otherwise) and reach the socket directory.
            os.chown(self.directory, self.user.pw_uid, self.user.pw_gid)
        self._run(
            [initdb, "-D", str(self.data), "-U", SUPERUSER, "--auth=trust", "-E", "UTF8"],
            "initdb",
        )
        for _ in range(3):  # the free port may be taken between probing it and the bind
            self.port = free_port()
            options = f"-k {self.directory} -c listen_addresses=127.0.0.1 -p {self.port}"
            done = subprocess.run(
                self._as_server_user(
                    [
                        self.pg_ctl,
                        "start",
                        "-w",
                        "-t",
                        str(START_TIMEOUT),
                        "-D",
                        str(self.data),
                        "-l",
                        str(self.log),
                        "-o",
                        options,
                    ]
                ),
                capture_output=True,
                text=True,
                timeout=START_TIMEOUT + 30,
                check=False,
            )
            if done.returncode == 0:
                self.started = True
                break
            if "Address already in use" not in self.server_log():
                self.stop()
                pytest.fail(f"pg_ctl start failed:\n{done.stdout}{done.stderr}{self.server_log()}")
        else:
            self.stop()
            pytest.fail(f"PostgreSQL found no free port in 3 attempts{self.server_log()}")
        # pg_ctl -w returned once the server accepts connections; the database is ours to make.
        self.psql("postgres", f"CREATE DATABASE {DATABASE}")
        return self

    def psql(self, database: str, sql: str) -> str:
        """Run ``sql`` in ``database`` with psql (a real client over loopback TCP); its output,
        or the test fails with psql's message."""
        psql = require_executable("psql", "postgresql-client")
        done = subprocess.run(
            [
                *(psql, "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1"),
                *("-p", str(self.port), "-U", SUPERUSER, "-d", database, "-c", sql),
            ],
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT,
            check=False,
        )
        if done.returncode != 0:
            pytest.fail(f"psql {sql!r} failed:\n{done.stdout}{done.stderr}")
        return done.stdout

    def create_database(self) -> str:
        """A new, empty database of its own (so that tests sharing the session's server stay
        independent); its DSN."""
        name = f"t_{uuid.uuid4().hex[:16]}"
        self.psql("postgres", f"CREATE DATABASE {name}")
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{name}"

    def pause(self) -> None:
        """Stop the server (fast shutdown: every session is ended) and keep its files, as a
        database restart or outage does; ``resume`` starts it again on the same port."""
        self._pg_ctl(["stop", "-m", "fast", "-w", "-t", str(STOP_TIMEOUT)], "pg_ctl stop")

    def resume(self) -> None:
        """Start the paused server again on the same port (pg_ctl -w: accepting connections)."""
        options = f"-k {self.directory} -c listen_addresses=127.0.0.1 -p {self.port}"
        self._pg_ctl(
            ["start", "-w", "-t", str(START_TIMEOUT), "-l", str(self.log), "-o", options],
            "pg_ctl start",
        )

    def _pg_ctl(self, argv: list[str], what: str) -> None:
        self._run([self.pg_ctl, *argv[:1], "-D", str(self.data), *argv[1:]], what)

    def stop(self) -> None:
        """Stop the server (fast shutdown: sessions are ended, pg_ctl(1)) and remove its files."""
        failure = ""
        if self.started:
            done = subprocess.run(
                self._as_server_user(
                    [
                        self.pg_ctl,
                        "stop",
                        "-m",
                        "fast",
                        "-w",
                        "-t",
                        str(STOP_TIMEOUT),
                        "-D",
                        str(self.data),
                    ]
                ),
                capture_output=True,
                text=True,
                timeout=STOP_TIMEOUT + 30,
                check=False,
            )
            self.started = False
            if done.returncode != 0:
                failure = f"pg_ctl stop failed:\n{done.stdout}{done.stderr}{self.server_log()}"
        shutil.rmtree(self.directory, ignore_errors=True)
        if failure:
            pytest.fail(failure)

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One private PostgreSQL for the session; stopped and removed at the end."""
    with PostgresServer() as server:
        yield server
