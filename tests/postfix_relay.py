"""A private Postfix relay for tests: a real, retrying MTA whose ``relayhost`` is sinkd, or
(``--relay`` tests) sinkd's relay target, relaying on to a test sink.

``PostfixRelay().start(relay_to=(host, port))`` builds a whole Postfix instance in a fresh
directory of the system's temporary directory and starts it with ``postfix -c <dir>/etc start``:
its own main.cf and master.cf, queue and data directories and log file. Nothing of the system's
Postfix is used — not /etc/postfix/main.cf (which Debian's "No configuration" leaves absent), not
its queue, not a running system instance; only the binaries and the package's metadata
(``meta_directory``: postfix-files, dynamicmaps.cf) come from the package. Mail is submitted by
SMTP to the private smtpd on a free loopback port (``smtp_port``), never through sendmail,
which would read the default configuration.

The instance listens on 127.0.0.1 only, delivers nothing locally (``mydestination`` empty) and
relays everything to ``relay_to``; retry times are short (``minimal_backoff_time = 1s``,
``maximal_backoff_time = 2s``, ``queue_run_delay = 1s``) so a deferred message is retried
within seconds. Postfix logs to ``<dir>/maillog`` through its own postlogd (there is no syslog
here): ``maillog`` reads it, ``maillog_tail()`` is what failure messages show.

``start(..., reject=..., defer=...)`` makes its smtpd refuse those recipients at RCPT TO with
Postfix's own replies (``check_recipient_access``: ``REJECT`` gives ``554 5.7.1``, ``DEFER``
``450 4.7.1``, "Recipient address rejected: Access denied"), so a test of sinkd's ``--relay``
records real Postfix replies.

Readiness: ``postfix start`` runs ``master -w``, which returns only once the master daemon has
initialized (its listening sockets are bound); then the master's "daemon started" line is
awaited in the maillog. ``stop()`` (or leaving the ``with`` block) runs ``postfix stop``, then
checks that no process of the instance (the master's session: ``pgrep -s <master pid>``) is
left alive, kills and reports any that are, reaps them and removes the directory.

Postfix needs root (the master runs as root and its daemons as ``mail_owner``): without root,
or without the ``postfix`` package, the test is skipped on a laptop and fails in CI.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

import pytest

from tests.conftest import free_port, in_ci, require_executable

START_TIMEOUT = 30.0  # postfix check + start: about a second here
STOP_TIMEOUT = 30.0  # postfix stop waits up to 5 s for the master, then kills its group
LOG_TIMEOUT = 10.0  # postlogd writes the master's "daemon started" line within milliseconds
LEFTOVER_GRACE = 5.0  # daemons exit on the master's SIGTERM; give them this long
TAIL_LINES = 40
SBIN_DIRS = ("/usr/sbin", "/sbin")  # Debian installs postfix there; a user's PATH may lack it
PORT_ATTEMPTS = 3

PR_SET_CHILD_SUBREAPER = 36  # linux/prctl.h
PR_GET_CHILD_SUBREAPER = 37

MAIN_CF = """\
# A private Postfix instance for sinkd's tests (tests/postfix_relay.py): relay everything to
# sinkd, retry deferred mail within seconds, log to a file, touch nothing of the system's.
compatibility_level = 3.6
config_directory = {etc}
queue_directory = {spool}
data_directory = {data}
mail_owner = postfix
setgid_group = postdrop

myhostname = {hostname}
mydomain = {hostname}
myorigin = {hostname}
mydestination =
local_recipient_maps =
local_transport = error:5.1.1 local delivery is disabled in this test relay
alias_maps =
alias_database =
biff = no

inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
smtpd_recipient_restrictions = check_recipient_access texthash:{etc}/recipient_access
smtpd_tls_security_level = none
smtputf8_enable = no

relayhost = [{relay_host}]:{relay_port}
smtp_helo_name = {hostname}
smtp_tls_security_level = none

minimal_backoff_time = 1s
maximal_backoff_time = 2s
queue_run_delay = 1s

maillog_file = {maillog}
maillog_file_prefixes = {root}
"""

# Every service runs unchrooted (chroot "n"): the queue is a temporary directory, not a jail
# prepared by Debian's init script. Only the services a relay needs; no local delivery.
MASTER_CF = """\
# service type  private unpriv  chroot  wakeup  maxproc command + args
127.0.0.1:{port} inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


def postfix_command() -> str:
    """The ``postfix`` binary: on PATH or in /usr/sbin; else skip (laptop) or fail (CI)."""
    search = os.pathsep.join([os.environ.get("PATH", ""), *SBIN_DIRS])
    return shutil.which("postfix", path=search) or require_executable("postfix", "postfix")


def require_root() -> None:
    if os.geteuid() != 0:
        reason = "a private Postfix instance needs root (its master runs as root)"
        if in_ci():
            pytest.fail(f"CI must not skip: {reason}")
        pytest.skip(reason)


def _proc_stat(pid: int) -> tuple[str, int, int] | None:
    """(state, parent pid, session id) of a process, or None once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "
    return fields[0], int(fields[1]), int(fields[3])


def _orphaned_masters() -> list[int]:
    """Postfix masters this process adopted as subreaper (session leaders named "master"):
    after a failed ``postfix start`` the master that gave up is one, its pid never written."""
    me = os.getpid()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            pid = int(entry.name)
            stat = _proc_stat(pid)
            try:
                comm = Path(f"/proc/{pid}/comm").read_text().strip()
            except OSError:
                continue
            if stat is not None and stat[1] == me and stat[2] == pid and comm == "master":
                found.append(pid)
    return found


def _cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "?"
    return raw.replace(b"\0", b" ").decode(errors="replace").strip() or "?"


def session_processes(sid: int) -> list[int]:
    """Every process whose session is ``sid`` (what ``pgrep -s SID`` lists), zombies included.

    The master daemon calls setsid(), so its session is the instance: the master and every
    daemon it started, even those that outlive it.
    """
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = _proc_stat(int(entry.name))
            if stat is not None and stat[2] == sid:
                pids.append(int(entry.name))
    return sorted(pids)


def _alive(pids: list[int]) -> list[int]:
    """Those of ``pids`` still running (not exited, not a zombie waiting to be reaped)."""
    return [pid for pid in pids if (stat := _proc_stat(pid)) is not None and stat[0] != "Z"]


def _set_subreaper(value: int) -> int | None:
    """Make this process the reaper of its orphaned descendants (Linux); return the previous
    setting, or None where prctl is unavailable.

    ``postfix start`` daemonizes the master (the foreground ``master -w`` exits), so the master
    and, after ``postfix stop``, its daemons are orphans. A subreaper collects them; otherwise
    they go to PID 1, and where PID 1 reaps nothing (a bare container init) they stay zombies.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        previous = ctypes.c_int(0)
        if libc.prctl(PR_GET_CHILD_SUBREAPER, ctypes.byref(previous), 0, 0, 0) != 0:
            return None
        if libc.prctl(PR_SET_CHILD_SUBREAPER, value, 0, 0, 0) != 0:
            return None
        return previous.value
    except (OSError, AttributeError):
        return None


def _reap(sid: int) -> None:
    """Collect the exit status of the instance's zombies that are this process's children
    (orphans it adopted as subreaper). Only those: a reused pid is never waited for."""
    me = os.getpid()
    for pid in session_processes(sid):
        stat = _proc_stat(pid)
        if stat is not None and stat[0] == "Z" and stat[1] == me:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)


class PostfixRelay:
    """A private Postfix relaying to ``relay_to``; see the module docstring.

    ``with PostfixRelay() as relay: relay.start(relay_to=(host, port))``; then submit to
    ``("127.0.0.1", relay.smtp_port)`` and read ``relay.maillog``.
    """

    def __init__(self, *, hostname: str = "relay.test") -> None:
        self.hostname = hostname
        self.root: Path | None = None
        self.smtp_port = 0
        self.master_pid: int | None = None
        self._postfix = ""
        self._subreaper: int | None = None

    # --- paths ----------------------------------------------------------------------------

    @property
    def config_dir(self) -> Path:
        return self._root / "etc"

    @property
    def queue_dir(self) -> Path:
        return self._root / "spool"

    @property
    def data_dir(self) -> Path:
        return self._root / "data"

    @property
    def maillog_path(self) -> Path:
        return self._root / "maillog"

    @property
    def _root(self) -> Path:
        assert self.root is not None, "PostfixRelay.start() was not called"
        return self.root

    # --- the log ----------------------------------------------------------------------------

    @property
    def maillog(self) -> str:
        """The whole maillog so far ("" before Postfix wrote to it)."""
        try:
            return self.maillog_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def maillog_tail(self, lines: int = TAIL_LINES) -> str:
        tail = self.maillog.splitlines()[-lines:]
        return "\n".join(tail) if tail else "(the maillog is empty)"

    def wait_for_log(self, pattern: str | re.Pattern[str], timeout: float) -> re.Match[str]:
        """The first match of ``pattern`` in the maillog, watching the file for up to
        ``timeout`` seconds (postlogd appends asynchronously); fail with the log's tail."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            match = regex.search(self.maillog)
            if match is not None:
                return match
            if time.monotonic() >= deadline:
                pytest.fail(
                    f"Postfix did not log {regex.pattern!r} within {timeout:g} s;"
                    f" {self.maillog_path}:\n{self.maillog_tail()}"
                )
            time.sleep(0.05)

    # --- start and stop ---------------------------------------------------------------------

    def flush(self) -> None:
        """Ask the queue manager to retry deferred mail now (``postfix flush``, as an
        administrator would). Its own schedule normally does this within a second or two;
        now and then qmgr logs "skipped, still being delivered" for the deferred message and
        then sits on it far longer than maximal_backoff_time."""
        self._run("flush", timeout=10)

    def _run(self, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
        # A minimal environment: no MAIL_CONFIG or other Postfix variable from the caller's.
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C"}
        return subprocess.run(
            [self._postfix, "-c", str(self.config_dir), *args],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            errors="replace",
            env=env,
            timeout=timeout,
            check=False,
        )

    def _layout(
        self, relay_to: tuple[str, int], reject: tuple[str, ...], defer: tuple[str, ...]
    ) -> None:
        # The system's temporary directory, not pytest's tmp_path: Postfix's daemons run as the
        # postfix user, which must reach the data directory (pytest's tree is root-only).
        self.root = Path(tempfile.mkdtemp(prefix="sinkd-postfix-"))
        self.root.chmod(0o755)
        for directory in (self.config_dir, self.queue_dir, self.data_dir):
            directory.mkdir(mode=0o755)
        # What Postfix's postfix-files asks for; "postfix check" creates the queue's subdirs.
        shutil.chown(self.data_dir, user="postfix")
        self.data_dir.chmod(0o700)
        (self.config_dir / "main.cf").write_text(
            MAIN_CF.format(
                etc=self.config_dir,
                spool=self.queue_dir,
                data=self.data_dir,
                hostname=self.hostname,
                relay_host=relay_to[0],
                relay_port=relay_to[1],
                maillog=self.maillog_path,
                root=self.root,
            )
        )
        # texthash: read as it is, no postmap; postconf(5) check_recipient_access, access(5).
        access = [f"{address} REJECT" for address in reject]
        access += [f"{address} DEFER" for address in defer]
        (self.config_dir / "recipient_access").write_text("".join(f"{a}\n" for a in access))

    def start(
        self,
        relay_to: tuple[str, int],
        *,
        reject: tuple[str, ...] = (),
        defer: tuple[str, ...] = (),
    ) -> PostfixRelay:
        """Build and start the instance; return once its smtpd accepts connections. Its smtpd
        answers ``reject`` recipients 554 and ``defer`` ones 450 at RCPT TO."""
        require_root()
        self._postfix = postfix_command()
        self._layout(relay_to, reject, defer)
        # From here on a failure still stops what was started and removes the directory.
        try:
            self._start()
        except BaseException:
            self.stop(check=False)
            raise
        return self

    def _start(self) -> None:
        self._subreaper = _set_subreaper(1)
        for _ in range(PORT_ATTEMPTS):  # the free port may be taken before master binds it
            self.smtp_port = free_port()
            (self.config_dir / "master.cf").write_text(MASTER_CF.format(port=self.smtp_port))
            check = self._run("check", timeout=START_TIMEOUT)
            if check.returncode != 0:
                pytest.fail(self._why("postfix check failed", check))
            mark = len(self.maillog)
            started = self._run("start", timeout=START_TIMEOUT)
            if started.returncode == 0:
                break
            for master in _orphaned_masters():  # reap it (and kill what it may have started)
                self._leftovers(master)
            said = self.maillog[mark:] + started.stdout + started.stderr
            if "Address already in use" not in said:
                pytest.fail(self._why("postfix start failed", started))
        else:
            pytest.fail(self._why(f"postfix found no free port in {PORT_ATTEMPTS} attempts"))
        pid_file = self.queue_dir / "pid" / "master.pid"
        self.master_pid = int(pid_file.read_text().split()[0])
        # master -w returned: the listening socket is bound. The log line confirms it was this
        # instance (its configuration directory) that started.
        self.wait_for_log(
            rf"postfix/master\[{self.master_pid}\]: daemon started -- version \S+,"
            rf" configuration {re.escape(str(self.config_dir))}",
            LOG_TIMEOUT,
        )

    def _why(self, what: str, result: subprocess.CompletedProcess[str] | None = None) -> str:
        text = what
        if result is not None:
            text += f" (exit code {result.returncode})"
            output = (result.stdout + result.stderr).strip()
            if output:
                text += f"; its output:\n{output}"
        return f"{text}\n{self.maillog_path}:\n{self.maillog_tail()}"

    def stop(self, *, check: bool = True) -> None:
        """``postfix stop``; then kill and report (when ``check``) any process left alive.

        Idempotent. The directory is removed in every case.
        """
        if self.root is None:
            return
        problems: list[str] = []
        try:
            if self.master_pid is not None:
                stopped = self._run("stop", timeout=STOP_TIMEOUT)
                if stopped.returncode != 0:
                    problems.append(self._why("postfix stop failed", stopped))
                problems += self._leftovers(self.master_pid)
        finally:
            if self._subreaper is not None:
                _set_subreaper(self._subreaper)
                self._subreaper = None
            tail = self.maillog_tail()
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None
            self.master_pid = None
        if problems and check:
            pytest.fail("\n".join(problems) + f"\nmaillog:\n{tail}")

    def _leftovers(self, sid: int) -> list[str]:
        """Wait for the instance's processes (``pgrep -s <master pid>``) to exit, reaping
        them; SIGKILL and name those still running after ``LEFTOVER_GRACE`` seconds."""
        killed: list[str] = []
        deadline = time.monotonic() + LEFTOVER_GRACE
        while True:
            _reap(sid)
            alive = _alive(session_processes(sid))
            if not alive:
                break
            if time.monotonic() >= deadline:
                if killed:  # even SIGKILL did not end them: give up, but say so
                    killed.append(f"and still alive after SIGKILL: {alive}")
                    break
                killed = [f"{pid} ({_cmdline(pid)})" for pid in alive]
                for pid in alive:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                deadline = time.monotonic() + LEFTOVER_GRACE
            time.sleep(0.05)
        if not killed:
            return []
        return [
            f"Postfix processes still running {LEFTOVER_GRACE:g} s after postfix stop"
            f" (killed): {', '.join(killed)}"
        ]

    def __enter__(self) -> PostfixRelay:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Do not hide the test's own failure behind a teardown complaint.
        self.stop(check=exc_type is None)
