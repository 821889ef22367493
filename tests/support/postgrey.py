"""A private postgrey (Debian's postgrey 1.37) on a loopback port, for Postfix's
``check_policy_service inet:127.0.0.1:PORT`` in differential tests.

``Postgrey()`` runs ``postgrey --inet=127.0.0.1:PORT --dbdir=DIR`` with its defaults otherwise
(delay 300 s, the text sinkd's postfix_smtpd kind holds), as the ``postgrey`` user the package
creates. DIR is a directory of its own under the system's temporary directory, which that user
can reach (pytest's ``tmp_path`` is private to root); ``stop()`` removes it. ``start()``
returns once postgrey has bound its port (its "Setting uid" line comes after the bind);
``stop()`` ends the process it started. It judges nothing itself: the tests compare Postfix's
replies with it against sinkd's.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType

import pytest

from tests.conftest import free_port, require_executable

START_TIMEOUT = 15.0


class Postgrey:
    def __init__(self) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="sinkd-postgrey-"))
        self.port = free_port()
        self.process: subprocess.Popen[str] | None = None
        self.output: list[str] = []

    def start(self) -> Postgrey:
        binary = require_executable("postgrey", "postgrey")
        try:
            user = pwd.getpwnam("postgrey")
        except KeyError:
            pytest.fail("the postgrey package's user 'postgrey' is missing")
        if os.geteuid() == 0:
            os.chown(self.directory, user.pw_uid, user.pw_gid)
        self.process = subprocess.Popen(
            [
                binary,
                f"--inet=127.0.0.1:{self.port}",
                f"--dbdir={self.directory}",
                f"--pidfile={self.directory}/postgrey.pid",
                "--user=postgrey",
                "--group=postgrey",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert self.process.stdout is not None
        # Net::Server logs "Setting uid" once the socket is bound and listening.
        for line in self.process.stdout:
            self.output.append(line)
            if line.startswith("Setting uid"):
                return self
        self.stop()
        pytest.fail("postgrey did not start:\n" + "".join(self.output))

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=START_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=START_TIMEOUT)
            if self.process.stdout is not None:
                self.process.stdout.close()
        self.process = None
        shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> Postgrey:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.stop()
