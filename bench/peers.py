"""sinkd against its peers, in one run: throughput, acknowledgement latency, CPU and memory.

Starts, each on a free loopback port: Postfix's ``smtp-sink`` (C), a bare aiosmtpd sink that
only answers 250 (``bench/bare_aiosmtpd.py``), MailDev 3 (npm, installed into ``bench/.maildev``
and preloaded with ``bench/maildev_loopback_dns.cjs``, which answers its reverse lookups of
loopback clients itself and refuses every other resolution, so that no DNS query leaves the
machine), and ``sinkd serve`` three ways: (a) ``no-filter``; (b) ``typical-corporate``
against the demo DNS fixtures (``profiles/dns/demo.zone``; the simulated client is
192.0.2.25, shop.example's own server, so SPF passes, ZEN/DBL are looked up and miss, DMARC is
evaluated); (c) the same plus a private spamd (``--local``, 4 children) as an ``add``-mode
``spamassassin`` filter (a bench-local profile that ``extends: typical-corporate``).

Drivers, both at the same concurrency (``--sessions``, persistent sessions):
  smtp-source  Postfix's load generator (``-d``: one connection per session, many messages)
               with a plain-text body of ``-l`` bytes (80-byte lines of X); it reports no
               latency, so one of the sessions is a probe: our own asyncio client sending the
               same message and timing each MAIL FROM → 250 after the final dot.
  html loads   our own asyncio client, all sessions, every message timed the same way, sending
               one of three HTML messages from shop.example (``--html-loads``):
               html     the ~23 KB multipart newsletter of ``bench/content.py``, DKIM-signed;
               grid     a second, independent ~29 KB newsletter (``bench/messages/``: table
                        grid, 49 remote images, tracking pixel, CSS in <style>), DKIM-signed;
               receipt  a ~10 KB transactional receipt (``bench/messages/``: multipart/alternative,
                        the HTML with one inline cid: logo in multipart/related), DKIM-signed.

For each target it prints messages/s (median over ``--rounds`` interleaved rounds), p50/p99
acknowledgement latency, server CPU per message (utime+stime from /proc of the server process
and its threads; spamd's own, parent and children, in a separate column) and peak resident
memory (VmHWM), with ratios to bare aiosmtpd and to MailDev. Then the filter core's own CPU
per message (p50/p99), measured in process with ``sinkd.core.engine`` on the very messages stored,
and a durability check: every acknowledged message must be a row in sinkd's SQLite store.

    python bench/peers.py [--quick] [--sizes 1,20,500] [--sessions 20] [--messages N]
    python bench/peers.py --soak [--soak-sessions 200] [--soak-seconds 60]
    python bench/peers.py --kill9
    python bench/peers.py --rss 100000
    python bench/peers.py --profile-sinkd [--messages N]   # py-spy (or cProfile) breakdown

Everything it starts is stopped at the end; nothing listens off loopback.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import re
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from content import newsletter_message, pct  # noqa: E402

HOST = "127.0.0.1"
MAILDEV_DIR = HERE / ".maildev"
MAILDEV_PKG = MAILDEV_DIR / "node_modules" / "maildev"
MAILDEV_BIN = MAILDEV_PKG / "dist" / "bin" / "maildev.js"
# MailDev reverse-resolves every SMTP client; this preload keeps that (and any other DNS) local.
LOOPBACK_DNS = HERE / "maildev_loopback_dns.cjs"
DEMO_ZONE = ROOT / "profiles" / "dns" / "demo.zone"
DKIM_KEY = ROOT / "profiles" / "dns" / "demo-dkim-private.pem"
MESSAGES = HERE / "messages"  # the HTML loads' templates (see its README.md)
SENDER = "news@shop.example"
RECIPIENT = "bob@corp.example"
CLIENT_IP = "192.0.2.25"  # shop.example's server in demo.zone: SPF pass, listed nowhere
START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0
CLK_TCK = os.sysconf("SC_CLK_TCK")
SINKD_READY = re.compile(r"^sinkd ready smtp=(?P<host>[^:\s]+):(?P<port>\d+)")
BARE_READY = re.compile(r"^bare ready smtp=(?P<host>[^:\s]+):(?P<port>\d+)")
QUEUED_ID = re.compile(r"queued as (\S+)")
SPAMD_PROFILE = """\
schema: sinkd.profile/v1
id: bench-corporate-spamd
extends: typical-corporate
title: "typical-corporate plus SpamAssassin (bench/peers.py)"
models:
  - {what: "typical-corporate with spamd's score added (amavisd-new style)", source: "bench"}
filters:
  - kind: spamassassin
    name: spamd
    timeout: 120
    max_concurrency: 4
    mode: add
    on_error: {action: tempfail}
"""


def log(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


# --- /proc: CPU and memory ---------------------------------------------------------------------


def children_of(pid: int) -> list[int]:
    """Live descendants of ``pid`` (all threads' children), depth first."""
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for tid in tasks:
        try:
            kids = Path(f"/proc/{pid}/task/{tid}/children").read_text().split()
        except OSError:
            continue
        for kid in map(int, kids):
            found += [kid, *children_of(kid)]
    return found


def cpu_seconds(pid: int, *, reaped: bool = True) -> float:
    """utime+stime of a process (all its threads), plus its reaped children's if ``reaped``."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat[stat.rindex(")") + 2 :].split()
    ticks = int(fields[11]) + int(fields[12])
    if reaped:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / CLK_TCK


def tree_cpu_seconds(pid: int) -> float:
    return cpu_seconds(pid) + sum(cpu_seconds(kid) for kid in children_of(pid))


def status_kib(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def hwm_mib(pid: int) -> float:
    return status_kib(pid, "VmHWM") / 1024


def rss_mib(pid: int) -> float:
    return status_kib(pid, "VmRSS") / 1024


def tree_rss_mib(pid: int) -> tuple[float, str]:
    """Resident memory of a process and its children (sinkd's store writer, workers), and
    each one's share as text."""
    pids = [pid, *children_of(pid)]
    shares = [rss_mib(p) for p in pids]
    return sum(shares), " + ".join(f"{m:.0f}" for m in shares)


# --- servers -----------------------------------------------------------------------------------


@dataclass
class Server:
    """One target: a process listening on ``port``, and how to account for it."""

    key: str
    label: str
    process: subprocess.Popen[bytes]
    port: int
    workdir: Path
    db: Path | None = None  # sinkd's store
    spamd: subprocess.Popen[bytes] | None = None  # (c): its spamd, counted separately
    peak_spamd_mib: float = 0.0  # spamd parent + children VmHWM, sampled (children come and go)
    final_peak: float | None = None  # VmHWM taken just before the server was stopped

    @property
    def pid(self) -> int:
        return self.process.pid

    def cpu(self) -> float:
        return tree_cpu_seconds(self.pid)

    def spamd_cpu(self) -> float:
        return tree_cpu_seconds(self.spamd.pid) if self.spamd is not None else 0.0

    def sample_spamd_memory(self) -> None:
        if self.spamd is not None:
            pids = [self.spamd.pid, *children_of(self.spamd.pid)]
            self.peak_spamd_mib = max(self.peak_spamd_mib, sum(hwm_mib(p) for p in pids))

    def peak_mib(self) -> float:
        if self.final_peak is not None:
            return self.final_peak
        return hwm_mib(self.pid) + sum(hwm_mib(kid) for kid in children_of(self.pid))


def stop_process(process: subprocess.Popen[bytes], *, group: bool = False) -> None:
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            if group:
                os.killpg(process.pid, signal.SIGTERM)
            else:
                process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL) if group else process.kill()
        process.wait(timeout=STOP_TIMEOUT)


def wait_for_line(
    process: subprocess.Popen[bytes], pattern: re.Pattern[str], log_path: Path
) -> re.Match[str]:
    """Read stdout lines until ``pattern`` matches (the server's ready line)."""
    assert process.stdout is not None
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        line = process.stdout.readline().decode("utf-8", "replace")
        if not line:
            break
        match = pattern.search(line)
        if match:
            return match
    tail = log_path.read_text("utf-8", "replace")[-2000:] if log_path.exists() else ""
    raise RuntimeError(f"{process.args!r} did not get ready (exit {process.poll()}):\n{tail}")


def wait_for_greeting(port: int, process: subprocess.Popen[bytes], log_path: Path) -> None:
    """Poll until the port answers with a 220 greeting (servers that print no ready line)."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        try:
            with socket.create_connection((HOST, port), timeout=5) as sock:
                if sock.recv(512).startswith(b"220"):
                    sock.sendall(b"QUIT\r\n")
                    return
        except OSError:
            time.sleep(0.1)
    tail = log_path.read_text("utf-8", "replace")[-2000:] if log_path.exists() else ""
    raise RuntimeError(
        f"{process.args!r} did not answer on {port} (exit {process.poll()}):\n{tail}"
    )


def start_smtp_sink(workdir: Path) -> Server:
    port = free_port()
    command = ["smtp-sink"]
    if os.geteuid() == 0:
        command += ["-u", "nobody"]  # as root smtp-sink insists on dropping privileges
    command += [f"{HOST}:{port}", "256"]
    log_path = workdir / "smtp-sink.log"
    process = subprocess.Popen(
        command, stdin=subprocess.DEVNULL, stdout=log_path.open("wb"), stderr=subprocess.STDOUT
    )
    wait_for_greeting(port, process, log_path)
    return Server("smtp-sink", "Postfix smtp-sink (C)", process, port, workdir)


def start_bare(workdir: Path) -> Server:
    log_path = workdir / "bare.log"
    process = subprocess.Popen(
        [sys.executable, str(HERE / "bare_aiosmtpd.py"), "--host", HOST, "--port", "0"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=log_path.open("wb"),
    )
    match = wait_for_line(process, BARE_READY, log_path)
    return Server("bare", "bare aiosmtpd (250 only)", process, int(match["port"]), workdir)


def maildev_install() -> str | None:
    """Install MailDev 3 into bench/.maildev if it is not there; None, or why it cannot run."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None:
        return "node not found (Debian package nodejs)"
    if not LOOPBACK_DNS.is_file():
        return f"{LOOPBACK_DNS} not found: MailDev would send reverse DNS queries off the machine"
    if MAILDEV_BIN.is_file():
        return None
    if npm is None:
        return "npm not found (Debian package npm)"
    MAILDEV_DIR.mkdir(exist_ok=True)
    log("installing maildev@3 into bench/.maildev (npm) ...")
    result = subprocess.run(
        [
            npm,
            "install",
            "--no-save",
            "--no-audit",
            "--no-fund",
            "--prefix",
            str(MAILDEV_DIR),
            "maildev@3",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if result.returncode != 0 or not MAILDEV_BIN.is_file():
        return f"npm install maildev@3 failed (exit {result.returncode}): {result.stderr[-500:]}"
    return None


def maildev_version() -> str:
    text = (MAILDEV_PKG / "package.json").read_text()
    match = re.search(r'"version"\s*:\s*"([^"]+)"', text)
    return match[1] if match else "?"


def start_maildev(workdir: Path) -> Server:
    port, web = free_port(), free_port()
    tmp = workdir / "maildev-tmp"
    tmp.mkdir()
    log_path = workdir / "maildev.log"
    command = ["node", "--require", str(LOOPBACK_DNS), str(MAILDEV_BIN)]
    command += ["--ip", HOST, "--smtp", str(port), "--web-ip", HOST, "--web", str(web)]
    process = subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=log_path.open("wb"),
        stderr=subprocess.STDOUT,
        env=os.environ | {"TMPDIR": str(tmp)},  # MailDev writes its .eml files there
        cwd=workdir,
    )
    wait_for_greeting(port, process, log_path)
    return Server(
        "maildev", f"MailDev {maildev_version()} (Node {node_version()})", process, port, workdir
    )


def node_version() -> str:
    result = subprocess.run(["node", "--version"], capture_output=True, text=True)
    return result.stdout.strip().lstrip("v")


def spamd_start(workdir: Path, children: int = 4) -> subprocess.Popen[bytes]:
    """Debian's spamd on a free loopback port, ``--local`` (no network tests)."""
    if shutil.which("spamd") is None:
        raise RuntimeError("spamd not found: install the Debian packages spamassassin spamd")
    home = workdir / "spamd-home"
    home.mkdir()
    home.chmod(0o777)  # started as root, spamd runs as nobody
    for _ in range(3):
        port = free_port()
        command = ["spamd", "--local", "-p", str(port), "-i", HOST, "-A", HOST]
        command += ["--max-children", str(children), "-H", str(home)]
        command += ["--pidfile", str(home / "spamd.pid"), "-s", "stderr"]
        if os.geteuid() == 0:
            command += ["-u", "nobody"]
        log_path = workdir / f"spamd-{port}.log"
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=log_path.open("wb"),
            start_new_session=True,
        )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline and process.poll() is None:
            if "server started on" in log_path.read_text("utf-8", "replace"):
                process.port = port  # type: ignore[attr-defined]
                return process
            time.sleep(0.2)
        stop_process(process, group=True)
        if "Address already in use" not in log_path.read_text("utf-8", "replace"):
            raise RuntimeError(f"spamd did not start:\n{log_path.read_text()[-2000:]}")
    raise RuntimeError("spamd found no free port in 3 attempts")


SINKD_VARIANTS = {
    "a": ("sinkd a no-filter", "no-filter"),
    "b": ("sinkd b typical-corporate", "typical-corporate"),
    "c": ("sinkd c corporate+spamd", "bench-corporate-spamd"),
    # The same as a and b with two SMTP processes on the port (serve --workers 2).
    "a2": ("sinkd a2 no-filter, 2 workers", "no-filter"),
    "b2": ("sinkd b2 typical-corporate, 2 workers", "typical-corporate"),
}


def sinkd_command(
    workdir: Path, variant: str, db: Path, spamd_port: int | None, runner: list[str] | None = None
) -> list[str]:
    profile = SINKD_VARIANTS[variant][1]
    command = [*(runner or [sys.executable, "-m", "sinkd"]), "serve", "--host", HOST, "--port", "0"]
    command += ["--http-port", "0", "--db", str(db), "--hostname", "sinkd.bench"]
    command += ["--profile", profile]
    if variant.endswith("2"):
        command += ["--workers", "2"]
    if variant[0] in ("b", "c"):
        command += ["--dns-zone", str(DEMO_ZONE), "--client-ip", CLIENT_IP]
        command += ["--helo", "mx.shop.example"]
    if variant == "c":
        profiles = workdir / "profiles"
        profiles.mkdir(exist_ok=True)
        (profiles / "bench-corporate-spamd.yaml").write_text(SPAMD_PROFILE, encoding="utf-8")
        command += ["--profiles-dir", str(profiles), "--spamd", f"{HOST}:{spamd_port}"]
    return command


def start_sinkd(
    workdir: Path,
    variant: str,
    *,
    db: Path | None = None,
    spamd: subprocess.Popen[bytes] | None = None,
    runner: list[str] | None = None,
    extra: Sequence[str] = (),
) -> Server:
    """``sinkd serve`` from this checkout, a fresh store unless ``db`` is given; ``extra``
    options after the variant's own."""
    db = db or workdir / f"sinkd-{variant}.db"
    spamd_port = getattr(spamd, "port", None)
    command = [*sinkd_command(workdir, variant, db, spamd_port, runner), *extra]
    log_path = workdir / f"sinkd-{variant}.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SINKD_")}
    process = subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=log_path.open("ab"),
        env=env | {"PYTHONUNBUFFERED": "1"},
        cwd=ROOT,
    )
    match = wait_for_line(process, SINKD_READY, log_path)
    label = SINKD_VARIANTS[variant][0]
    return Server(f"sinkd-{variant}", label, process, int(match["port"]), workdir, db, spamd)


def stored_rows(db: Path) -> int:
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        (n,) = conn.execute("SELECT count(*) FROM messages").fetchone()
        return int(n)


def stored_ids(db: Path, ids: list[str]) -> set[str]:
    found: set[str] = set()
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = conn.execute(f"SELECT id FROM messages WHERE id IN ({marks})", chunk)
            found.update(row[0] for row in rows)
    return found


def stored_raw(db: Path, size: int) -> bytes | None:
    """One stored message of about ``size`` bytes (the bytes the filter core saw)."""
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        row = conn.execute(
            "SELECT r.bytes FROM raw r JOIN messages m ON m.id = r.id"
            " ORDER BY abs(m.size - ?) LIMIT 1",
            (size,),
        ).fetchone()
        return None if row is None else bytes(row[0])


# --- messages ----------------------------------------------------------------------------------


def source_like_message(size: int) -> bytes:
    """What smtp-source sends with ``-l size``: five headers, then 80-byte lines of X."""
    head = (
        f"From: <{SENDER}>\r\nTo: <{RECIPIENT}>\r\n"
        f"Date: {datetime.now(UTC).strftime('%a, %d %b %Y %H:%M:%S +0000 (UTC)')}\r\n"
        f"Message-Id: <probe.{time.monotonic_ns()}@bench>\r\nSubject: bench\r\n\r\n"
    )
    lines: list[str] = []
    left = size
    n = 0
    while left > 0:
        n += 1
        line = (str(n % 10) + "X" * 77)[: max(0, left - 2)]
        lines.append(line)
        left -= len(line) + 2
    return (head + "\r\n".join(lines) + "\r\n").encode()


def dkim_signed(raw: bytes) -> bytes:
    """``raw`` with a DKIM-Signature by shop.example (selector ``mail``, the demo key), as an
    ESP signs every message it sends; the demo zone publishes the key, so DKIM passes."""
    try:
        import dkim

        signature = dkim.sign(
            raw,
            b"mail",
            b"shop.example",
            DKIM_KEY.read_bytes(),
            include_headers=[b"from", b"to", b"subject", b"date", b"message-id"],
        )
        return bytes(signature) + raw
    except Exception as exc:  # dkimpy missing or the key unreadable: measure unsigned
        log(f"HTML message left unsigned: {exc}")
        return raw


def html_message() -> bytes:
    """The ~20 KB newsletter, From shop.example, DKIM-signed with the demo key."""
    raw = newsletter_message().replace(
        b"From: News <news@shop.example>", b"From: <news@shop.example>"
    )
    raw = raw.replace(
        b"Subject: Spring collection\r\n",
        b"Subject: Spring collection\r\nDate: Fri, 27 Nov 2026 09:00:00 +0000\r\n"
        b"Message-ID: <spring@shop.example>\r\n",
    )
    return dkim_signed(raw)


def crlf(text: str) -> str:
    """Template files are stored with LF line ends; SMTP wants CRLF."""
    return text.replace("\r\n", "\n").replace("\n", "\r\n")


def grid_newsletter_message() -> bytes:
    """The second newsletter (``bench/messages/newsletter-grid.*``), as a bulk sender sends it:
    List-Unsubscribe headers, 8bit UTF-8 text and HTML alternatives, DKIM-signed."""
    text = crlf((MESSAGES / "newsletter-grid.txt").read_text(encoding="utf-8"))
    html = crlf((MESSAGES / "newsletter-grid.html").read_text(encoding="utf-8"))
    raw = (
        'From: "Harbor & Pine" <news@shop.example>\r\nTo: bob@corp.example\r\n'
        "Subject: The Trail Edit: up to 30% off tents, packs and shells\r\n"
        "Date: Fri, 27 Nov 2026 10:00:00 +0000\r\n"
        "Message-ID: <trail-edit-42.8f3a61c2e4@shop.example>\r\n"
        "List-Unsubscribe: <https://shop.example/unsubscribe?u=8f3a61c2e4>\r\n"
        "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/alternative; boundary="=_grid_alt"\r\n\r\n'
        "--=_grid_alt\r\nContent-Type: text/plain; charset=utf-8\r\n"
        "Content-Transfer-Encoding: 8bit\r\n\r\n" + text + "\r\n"
        "--=_grid_alt\r\nContent-Type: text/html; charset=utf-8\r\n"
        "Content-Transfer-Encoding: 8bit\r\n\r\n" + html + "\r\n--=_grid_alt--\r\n"
    )
    return dkim_signed(raw.encode())


def receipt_message() -> bytes:
    """The transactional receipt (``bench/messages/receipt.*``): text and HTML alternatives,
    the HTML in multipart/related with its logo inline (base64, referenced by Content-ID)."""
    import base64

    text = crlf((MESSAGES / "receipt.txt").read_text(encoding="utf-8"))
    html = crlf((MESSAGES / "receipt.html").read_text(encoding="utf-8"))
    logo = base64.encodebytes((MESSAGES / "receipt-logo.png").read_bytes()).decode()
    raw = (
        'From: "Harbor & Pine" <orders@shop.example>\r\nTo: bob@corp.example\r\n'
        "Subject: Your receipt for order HP-2026-118204\r\n"
        "Date: Fri, 27 Nov 2026 07:41:12 +0000\r\n"
        "Message-ID: <HP-2026-118204.receipt@shop.example>\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/alternative; boundary="=_rcpt_alt"\r\n\r\n'
        "--=_rcpt_alt\r\nContent-Type: text/plain; charset=utf-8\r\n"
        "Content-Transfer-Encoding: 8bit\r\n\r\n" + text + "\r\n"
        '--=_rcpt_alt\r\nContent-Type: multipart/related; boundary="=_rcpt_rel"\r\n\r\n'
        "--=_rcpt_rel\r\nContent-Type: text/html; charset=utf-8\r\n"
        "Content-Transfer-Encoding: 8bit\r\n\r\n" + html + "\r\n"
        '--=_rcpt_rel\r\nContent-Type: image/png; name="logo.png"\r\n'
        "Content-Transfer-Encoding: base64\r\nContent-ID: <logo.hp@shop.example>\r\n"
        'Content-Disposition: inline; filename="logo.png"\r\n\r\n' + crlf(logo) + "\r\n"
        "--=_rcpt_rel--\r\n\r\n--=_rcpt_alt--\r\n"
    )
    return dkim_signed(raw.encode())


# The HTML loads by key: how each message is built and what it is called in the tables.
HTML_BUILDERS: dict[str, tuple[str, Callable[[], bytes]]] = {
    "html": ("HTML newsletter", html_message),
    "grid": ("HTML newsletter 2 (grid)", grid_newsletter_message),
    "receipt": ("HTML receipt", receipt_message),
}
HTML_LOADS: dict[str, bytes] = {}  # key -> the message, built once per run in compare()


def load_name(load: str) -> str:
    """A load's name in the tables: its size, and for HTML loads what it is."""
    if load in HTML_BUILDERS:
        size = len(HTML_LOADS[load]) if load in HTML_LOADS else 0
        # Decimal kB, as issue 18 names the newsletter ("23 KB"); the footnote gives bytes.
        return f"{HTML_BUILDERS[load][0]} {size / 1000:.0f} KB"
    return f"{load} KB"


def dot_stuff(raw: bytes) -> bytes:
    body = raw if raw.endswith(b"\r\n") else raw + b"\r\n"
    body = re.sub(rb"(?m)^\.", b"..", body)
    return body + b".\r\n"


# --- our own SMTP client (latency probe, HTML driver, soak, kill -9) ---------------------------


class SmtpError(Exception):
    pass


class Session:
    """One persistent SMTP session over asyncio streams: no library, little CPU."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int, helo: str = "client.bench") -> Session:
        reader, writer = await asyncio.open_connection(HOST, port, limit=1 << 20)
        session = cls(reader, writer)
        code, text = await session.reply()
        if code != 220:
            raise SmtpError(f"greeting {code} {text}")
        await session.command(f"EHLO {helo}", 250)
        return session

    async def reply(self) -> tuple[int, str]:
        while True:
            line = await self.reader.readline()
            if len(line) < 4:
                raise SmtpError(f"connection closed or bad reply {line!r}")
            if line[3:4] != b"-":
                return int(line[:3]), line[4:].decode("utf-8", "replace").strip()

    async def command(self, text: str, expect: int) -> str:
        self.writer.write(text.encode() + b"\r\n")
        code, reply = await self.reply()
        if code != expect:
            raise SmtpError(f"{text.split()[0]}: {code} {reply}")
        return reply

    async def send(self, stuffed: bytes, sender: str = SENDER, rcpt: str = RECIPIENT) -> str:
        """One transaction; the final reply's text (after 250)."""
        await self.command(f"MAIL FROM:<{sender}>", 250)
        await self.command(f"RCPT TO:<{rcpt}>", 250)
        await self.command("DATA", 354)
        self.writer.write(stuffed)
        code, reply = await self.reply()
        if code != 250:
            raise SmtpError(f"end of DATA: {code} {reply}")
        return reply

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.write(b"QUIT\r\n")
            await asyncio.wait_for(self.reply(), 5)
        self.writer.close()
        with contextlib.suppress(Exception):
            await self.writer.wait_closed()


@dataclass
class Drive:
    """What one driver run did."""

    sent: int = 0  # acknowledged with 250
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)


async def client_drive(
    port: int,
    stuffed: bytes,
    sessions: int,
    *,
    count: int | None = None,
    until: Callable[[], bool] | None = None,
    drive: Drive | None = None,
) -> Drive:
    """``sessions`` persistent sessions sending ``stuffed`` until ``count`` messages are sent
    (shared) or ``until()`` is true; every message timed from MAIL FROM to its 250."""
    drive = drive or Drive()
    left = [count if count is not None else 1 << 62]

    async def one() -> None:
        try:
            session = await Session.open(port)
        except (OSError, SmtpError) as exc:
            drive.errors.append(f"connect: {exc}")
            return
        try:
            while left[0] > 0 and not (until is not None and until()):
                left[0] -= 1
                start = time.perf_counter()
                try:
                    reply = await session.send(stuffed)
                except SmtpError as exc:
                    drive.errors.append(str(exc))
                    return
                drive.latencies.append(time.perf_counter() - start)
                drive.sent += 1
                match = QUEUED_ID.search(reply)
                if match:
                    drive.ids.append(match[1])
        except (OSError, asyncio.IncompleteReadError) as exc:
            drive.errors.append(f"connection: {exc!r}")
        finally:
            await session.close()

    start = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(sessions)))
    drive.seconds += time.perf_counter() - start
    return drive


async def smtp_source_drive(
    port: int, size: int, count: int, sessions: int, *, persistent: bool = True
) -> Drive:
    """smtp-source with ``sessions - 1`` sessions plus one probe session of our own
    (``persistent=False``: smtp-source opens a new connection for every message)."""
    source_sessions = max(1, sessions - 1)
    command = ["smtp-source", *(["-d"] if persistent else [])]
    command += ["-s", str(source_sessions), "-l", str(size), "-m", str(count)]
    command += ["-f", SENDER, "-t", RECIPIENT, "-S", "bench", "-M", "client.bench"]
    command += [f"{HOST}:{port}"]
    drive = Drive()
    start = time.perf_counter()
    process = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    done = asyncio.ensure_future(process.communicate())
    probe = Drive()
    probe_task = None
    if sessions > 1:
        probe_task = asyncio.ensure_future(
            client_drive(
                port, dot_stuff(source_like_message(size)), 1, until=done.done, drive=probe
            )
        )
    _, err = await done
    drive.seconds = time.perf_counter() - start
    if probe_task is not None:
        await probe_task
    errors = [line for line in err.decode("utf-8", "replace").splitlines() if line.strip()]
    if process.returncode != 0 or errors:
        drive.errors += [f"smtp-source exit {process.returncode}", *errors[:5]]
        drive.sent = 0  # we cannot tell which were acknowledged
    else:
        drive.sent = count
    drive.sent += probe.sent
    drive.latencies = probe.latencies
    drive.errors += probe.errors
    drive.ids = probe.ids
    return drive


# --- the comparison run ------------------------------------------------------------------------


@dataclass
class Cell:
    """One target at one load: pooled over rounds."""

    rates: list[float] = field(default_factory=list)
    sent: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    cpu: float = 0.0
    spamd_cpu: float = 0.0
    errors: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return statistics.median(self.rates) if self.rates else 0.0


def message_count(key: str, load: str, base: int) -> int:
    """Messages per round: sized so each cell takes a few seconds on this kind of machine."""
    factor = {"1": 1.0, "20": 0.5, "500": 0.05, "html": 0.4, "grid": 0.4, "receipt": 0.6}[load]
    if key == "smtp-sink":
        factor *= 4
    if key == "sinkd-c":  # spamd: 100-550 ms of CPU per message on 4 children
        per_load = {"1": 60, "20": 40, "500": 20, "html": 30, "grid": 30, "receipt": 40}
        return per_load[load] * max(1, base // 3000)
    return max(20, int(base * factor))


# --new-connections: smtp-source without -d, one connection per message (the figures
# for bare aiosmtpd, ~1,390 msgs/s at 1 KB, were measured that way).
PERSISTENT = True


async def run_cell(server: Server, load: str, count: int, sessions: int, cell: Cell) -> Drive:
    cpu0, spamd0 = server.cpu(), server.spamd_cpu()
    if load in HTML_LOADS:
        drive = await client_drive(server.port, dot_stuff(HTML_LOADS[load]), sessions, count=count)
    else:
        drive = await smtp_source_drive(
            server.port, int(load) * 1024, count, sessions, persistent=PERSISTENT
        )
    cell.cpu += server.cpu() - cpu0
    cell.spamd_cpu += server.spamd_cpu() - spamd0
    server.sample_spamd_memory()
    cell.sent += drive.sent
    cell.seconds += drive.seconds
    if drive.sent:
        cell.rates.append(drive.sent / drive.seconds)
    cell.latencies += drive.latencies
    cell.errors += drive.errors
    return drive


@dataclass
class Acked:
    """What a sinkd acknowledged over the whole run (the durability check)."""

    count: int = 0
    ids: list[str] = field(default_factory=list)
    unknown: bool = False  # a smtp-source run failed part way: count unknown


def fmt_ratio(value: float, base: float | None) -> str:
    if not base or not value:
        return "–"
    return f"{value / base:.2f}×"


def print_table(
    loads: list[str],
    servers: list[Server],
    cells: dict[tuple[str, str], Cell],
    sessions: int,
    out: list[str],
) -> None:
    head = (
        "| load | target | msgs/s | ×bare | ×MailDev | p50 ms | p99 ms | probe n | CPU ms/msg "
        "| spamd CPU ms/msg | peak RSS MiB | errors |"
    )
    out += [head, "|" + "---|" * 12]
    for load in loads:
        bare = cells.get((load, "bare"))
        maildev = cells.get((load, "maildev"))
        for server in servers:
            cell = cells.get((load, server.key))
            if cell is None:
                continue
            name = load_name(load) + ("*" if load in HTML_LOADS else "")
            cpu = cell.cpu / cell.sent * 1000 if cell.sent else float("nan")
            spamd = (
                f"{cell.spamd_cpu / cell.sent * 1000:.1f}"
                if server.spamd is not None and cell.sent
                else "–"
            )
            out.append(
                f"| {name} | {server.label} | {cell.rate:,.0f} | "
                f"{fmt_ratio(cell.rate, bare.rate if bare else None)} | "
                f"{fmt_ratio(cell.rate, maildev.rate if maildev else None)} | "
                f"{pct(cell.latencies, 0.5) * 1000:.1f} | {pct(cell.latencies, 0.99) * 1000:.1f} | "
                f"{len(cell.latencies)} | {cpu:.2f} | {spamd} | "
                f"{server.peak_mib():.0f}"
                + (f" (+spamd {server.peak_spamd_mib:.0f})" if server.spamd is not None else "")
                + f" | {len(cell.errors)} |"
            )


async def core_times(
    raws: dict[str, bytes], spamd_port: int | None, runs: int
) -> dict[tuple[str, str], tuple[float, float, float]]:
    """The filter core in process (sinkd.core.engine's staged Transaction, as sinkd serve runs it),
    CPU per message p50/p99 and wall p50, for each variant's profile and each message."""
    from sinkd.core.delivery_state import DeliveryState
    from sinkd.core.model import ClientIdentity
    from sinkd.core.profiles import ProfileSet
    from sinkd.services.judge import DnsOptions, Identity, Judge

    results: dict[tuple[str, str], tuple[float, float, float]] = {}
    with tempfile.TemporaryDirectory(prefix="sinkd-bench-core-") as tmp:
        profiles_dir = Path(tmp)
        (profiles_dir / "bench-corporate-spamd.yaml").write_text(SPAMD_PROFILE, encoding="utf-8")
        profiles = ProfileSet([profiles_dir])
        for variant, (_, profile) in SINKD_VARIANTS.items():
            if (variant == "c" and spamd_port is None) or variant.endswith("2"):
                continue  # a2/b2 run the same core as a/b
            zones = (DEMO_ZONE,) if variant != "a" else ()
            judge = Judge(  # what sinkd serve builds: the same transactions, lookups and state
                profiles,
                profile=profile,
                dns=DnsOptions(zones=zones),
                spamd=(HOST, spamd_port) if spamd_port else None,
                delivery=DeliveryState(),
            )
            if variant == "a":
                client = ClientIdentity(ip=HOST, helo="client.bench", source="connection")
            else:
                client = ClientIdentity(ip=CLIENT_IP, helo="mx.shop.example", source="option")
            for label, raw in raws.items():
                n = runs if len(raw) < 100_000 else max(10, runs // 10)
                if variant == "c":
                    n = max(5, n // 20)
                cpu: list[float] = []
                wall: list[float] = []
                for i in range(n + 3):  # the first three warm caches (DNS, imports)
                    c0, w0 = time.process_time(), time.perf_counter()
                    transaction = judge.transaction(Identity(client))
                    await transaction.mail(SENDER, len(raw))
                    await transaction.rcpt(RECIPIENT)
                    await transaction.data(raw)
                    if i >= 3:
                        cpu.append(time.process_time() - c0)
                        wall.append(time.perf_counter() - w0)
                results[(variant, label)] = (
                    statistics.median(cpu) * 1000,
                    pct(cpu, 0.99) * 1000,
                    statistics.median(wall) * 1000,
                )
    return results


def machine() -> str:
    cpu = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = status_mem_gib()
    return (
        f"{os.cpu_count()} cores ({cpu}), {mem:.0f} GiB, {platform.system()} "
        f"{platform.release()}, Python {platform.python_version()}"
    )


def status_mem_gib() -> float:
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024 / 1024
    return 0.0


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


@contextlib.contextmanager
def workspace() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="sinkd-bench-peers-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


async def compare(args: argparse.Namespace) -> int:
    loads = [s.strip() for s in args.sizes.split(",") if s.strip()]
    if not args.no_html:
        for key in args.html_loads:
            HTML_LOADS[key] = HTML_BUILDERS[key][1]()
            loads.append(key)
    started = time.monotonic()
    out: list[str] = []
    load_before = loadavg()
    notes: list[str] = []
    servers: list[Server] = []
    spamd: subprocess.Popen[bytes] | None = None
    acked: dict[str, Acked] = {}
    with workspace() as workdir:
        try:
            if shutil.which("smtp-source") is None or shutil.which("smtp-sink") is None:
                return fail("smtp-source/smtp-sink not found: install the Debian package postfix")
            servers.append(start_smtp_sink(workdir))
            servers.append(start_bare(workdir))
            why = maildev_install()
            if why is None:
                try:
                    servers.append(start_maildev(workdir))
                except RuntimeError as exc:
                    why = str(exc)
            if why is not None:
                notes.append(f"MailDev left out: {why}")
                log(f"MailDev left out: {why}")
            for variant in args.variants:
                if variant == "c":
                    try:
                        spamd = spamd_start(workdir)
                    except RuntimeError as exc:
                        notes.append(f"sinkd c left out: {exc}")
                        log(f"sinkd c left out: {exc}")
                        continue
                servers.append(
                    start_sinkd(workdir, variant, spamd=spamd if variant == "c" else None)
                )
                acked[f"sinkd-{variant}"] = Acked()
            log("started: " + ", ".join(f"{s.label} :{s.port} pid {s.pid}" for s in servers))
            # Warm-up: imports, caches, spamd's children compiling their first messages.
            for server in servers:
                warm = await client_drive(
                    server.port, dot_stuff(source_like_message(1024)), 4, count=40
                )
                record_acks(acked, server, warm)
                if warm.errors:
                    log(f"warm-up errors on {server.label}: {warm.errors[:3]}")
            cells: dict[tuple[str, str], Cell] = {}
            for load in loads:
                rounds = args.rounds if load in ("1", "20") else 1
                for r in range(rounds):
                    order = servers if r % 2 == 0 else list(reversed(servers))
                    for server in order:
                        count = message_count(server.key, load, args.messages)
                        cell = cells.setdefault((load, server.key), Cell())
                        log(f"{load:>4} round {r + 1}/{rounds}: {server.label} x{count} ...")
                        drive = await run_cell(server, load, count, args.sessions, cell)
                        record_acks(acked, server, drive, unknown=bool(drive.errors))
                        if drive.errors:
                            log(f"  errors: {drive.errors[:3]}")
            # The filter core alone, on the messages sinkd stored.
            raws: dict[str, bytes] = {}
            reference = next((s for s in servers if s.db is not None), None)
            for load in loads:
                if load in HTML_LOADS:
                    raws[load] = HTML_LOADS[load]
                elif reference is not None and reference.db is not None:
                    raw = stored_raw(reference.db, int(load) * 1024)
                    raws[load] = raw or source_like_message(int(load) * 1024)
            log("filter core in process ...")
            core = await core_times(raws, getattr(spamd, "port", None), args.core_runs)
            for server in servers:
                server.final_peak = server.peak_mib()
        finally:
            for server in servers:
                stop_process(server.process)
            if spamd is not None:
                stop_process(spamd, group=True)
        # The preload counts what it answered and refused: a refusal would mean MailDev asked
        # for a name this benchmark did not expect, so the run says so.
        maildev_log = workdir / "maildev.log"
        if maildev_log.exists():
            for line in maildev_log.read_text("utf-8", "replace").splitlines():
                if line.startswith("[maildev_loopback_dns]"):
                    notes.append(f"MailDev's DNS, all answered in process: {line}")
        # Durability: every acknowledged message is a row in the store (after a clean stop).
        durability: list[str] = []
        for server in servers:
            if server.db is None:
                continue
            got = acked[server.key]
            rows = stored_rows(server.db)
            ids = stored_ids(server.db, got.ids)
            verdict = "OK" if rows >= got.count and len(ids) == len(got.ids) else "MISSING"
            if got.unknown:
                verdict += " (a driver failed part way: its acknowledged count is unknown)"
            durability.append(
                f"- {server.label}: acknowledged {got.count}, rows in the store {rows}; "
                f"ids checked one by one {len(ids)}/{len(got.ids)}: {verdict}"
            )
    elapsed = time.monotonic() - started
    out.append(
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {machine()}; load average before "
        f"{load_before}, after {loadavg()}; {args.sessions} sessions; rounds {args.rounds} "
        f"(1 and 20 KB; msgs/s is their median); {elapsed:.0f} s in all."
    )
    out.append("")
    print_table(loads, servers, cells, args.sessions, out)
    out += [
        "",
        (
            "msgs/s: smtp-source -d (persistent sessions)"
            if PERSISTENT
            else "msgs/s: smtp-source without -d (a new connection for every message)"
        )
        + " with sessions-1 sessions plus one probe "
        "session of our own client; p50/p99: that probe's MAIL FROM → 250-after-DATA times "
        "(n in 'probe n'). *HTML loads: our own asyncio client on all sessions, every message "
        "timed, each message DKIM-signed by shop.example: "
        + html_footnote()
        + ". CPU ms/msg: the server process (all threads, and children) from "
        "/proc utime+stime; spamd's is separate. Peak RSS: VmHWM over the whole run (spamd: "
        "parent + children, sampled). 500 KB messages exceed the spamassassin filter's "
        "max_size (512,000 bytes, spamc's default), so (c) does not send them to spamd.",
        "",
        "Filter core in process (sinkd.core.engine Transaction: MAIL, RCPT, DATA with parse, "
        f"filters, verdict, strip; no sockets, no store), CPU per message, {args.core_runs} runs:",
        "",
        "| message | profile | core CPU p50 ms | p99 ms | wall p50 ms "
        "| server CPU ms/msg (same load) | core share |",
        "|---|---|---|---|---|---|---|",
    ]
    for (variant, load), (p50, p99, wall) in core.items():
        label = load_name(load)
        cell = cells.get((load, f"sinkd-{variant}"))
        server_ms = cell.cpu / cell.sent * 1000 if cell and cell.sent else float("nan")
        out.append(
            f"| {label} | {SINKD_VARIANTS[variant][1]} | {p50:.3f} | {p99:.3f} | {wall:.3f} | "
            f"{server_ms:.2f} | {p50 / server_ms * 100:.0f}% |"
        )
    out += ["", "Durability (every acknowledged message in sinkd's SQLite store):", *durability]
    out += [f"- note: {n}" for n in notes]
    errors = [e for c in cells.values() for e in c.errors]
    if errors:
        out += ["", f"Driver errors ({len(errors)}), first few:"]
        out += [f"- {e}" for e in errors[:8]]
    print("\n".join(out))
    if args.output:
        # A blocking write is fine here: every server is stopped, nothing else runs.
        Path(args.output).write_text("\n".join(out) + "\n", encoding="utf-8")  # noqa: ASYNC240
    failed = any("MISSING" in d for d in durability)
    return 1 if failed else 0


def html_footnote() -> str:
    """What each HTML load sent, with its exact size."""
    what = {
        "html": "a multipart/alternative newsletter (bench/content.py's)",
        "grid": "a second, independent newsletter (bench/messages/newsletter-grid.*: table "
        "grid, 49 remote images, tracking pixel, CSS in <style>)",
        "receipt": "a transactional receipt (bench/messages/receipt.*: multipart/alternative, "
        "one inline cid: logo in multipart/related)",
    }
    return "; ".join(
        f"{load_name(key)} = {len(raw):,} bytes, {what[key]}" for key, raw in HTML_LOADS.items()
    )


def record_acks(
    acked: dict[str, Acked], server: Server, drive: Drive, unknown: bool = False
) -> None:
    if server.key in acked:
        acked[server.key].count += drive.sent
        acked[server.key].ids += drive.ids
        acked[server.key].unknown |= unknown


def fail(text: str) -> int:
    print(text, file=sys.stderr)
    return 2


# --- point 4: soak and kill -9 -----------------------------------------------------------------


async def soak(args: argparse.Namespace) -> int:
    """``--soak-sessions`` concurrent sessions for ``--soak-seconds``: zero protocol errors,
    every acknowledged message stored."""
    with workspace() as workdir:
        server = start_sinkd(workdir, args.soak_variant)
        deadline = time.monotonic() + args.soak_seconds
        try:
            cpu0 = server.cpu()
            drive = await client_drive(
                server.port,
                dot_stuff(source_like_message(1024)),
                args.soak_sessions,
                until=lambda: time.monotonic() >= deadline,
            )
            cpu = server.cpu() - cpu0
            peak = server.peak_mib()
        finally:
            stop_process(server.process)
        assert server.db is not None
        rows = stored_rows(server.db)
        found = stored_ids(server.db, drive.ids)
    ok = not drive.errors and len(found) == len(drive.ids) == drive.sent and rows == drive.sent
    print(
        f"soak: sinkd {SINKD_VARIANTS[args.soak_variant][1]}, {args.soak_sessions} concurrent "
        f"sessions, {drive.seconds:.0f} s, 1 KB: {drive.sent} acknowledged "
        f"({drive.sent / drive.seconds:.0f}/s), protocol errors {len(drive.errors)}, "
        f"latency p50 {pct(drive.latencies, 0.5) * 1000:.0f} ms p99 "
        f"{pct(drive.latencies, 0.99) * 1000:.0f} ms, CPU {cpu / max(1, drive.sent) * 1000:.2f} "
        f"ms/msg, peak RSS {peak:.0f} MiB; store rows {rows}, acknowledged ids found "
        f"{len(found)}/{len(drive.ids)}: {'OK' if ok else 'FAILED'} (load average {loadavg()})"
    )
    for error in drive.errors[:10]:
        print(f"  error: {error}")
    return 0 if ok else 1


async def kill9(args: argparse.Namespace) -> int:
    """kill -9 sinkd while 20 sessions send; restart on the same store; every acknowledged id
    must be there. Repeated ``--kill9-rounds`` times on one store."""
    failures = 0
    with workspace() as workdir:
        db = workdir / "kill9.db"
        all_ids: list[str] = []
        for round_no in range(args.kill9_rounds):
            server = start_sinkd(workdir, args.soak_variant, db=db)
            stop = asyncio.Event()
            task = asyncio.ensure_future(
                client_drive(
                    server.port,
                    dot_stuff(source_like_message(1024)),
                    args.sessions,
                    until=stop.is_set,
                )
            )
            await asyncio.sleep(args.kill9_after)
            os.kill(server.pid, signal.SIGKILL)  # mid-load: replies in flight are lost
            server.process.wait()
            drive = await task
            all_ids += drive.ids
            restarted = start_sinkd(workdir, args.soak_variant, db=db)
            try:
                # The restarted server opens (and recovers) the store; read what it holds.
                found = stored_ids(db, all_ids)
            finally:
                stop_process(restarted.process)
            missing = len(all_ids) - len(found)
            failures += missing > 0
            print(
                f"kill -9 round {round_no + 1}: killed after {args.kill9_after:g} s under "
                f"{args.sessions} sessions; acknowledged this round {drive.sent} (connections "
                f"cut: {len(drive.errors)}); acknowledged so far {len(all_ids)}, found after "
                f"restart {len(found)}, missing {missing}: {'OK' if not missing else 'FAILED'}"
            )
        rows = stored_rows(db)
    print(f"kill -9: store rows {rows} ≥ acknowledged {len(all_ids)}: {rows >= len(all_ids)}")
    return 1 if failures else 0


async def rss(args: argparse.Namespace) -> int:
    """Resident memory after ``--rss`` messages (1 KB, smtp-source), per variant."""
    status = 0
    with workspace() as workdir:
        for variant in args.rss_variants:
            server = start_sinkd(workdir, variant)
            try:
                idle, idle_parts = tree_rss_mib(server.pid)
                marks: list[str] = []
                total = 0
                step = max(1, args.rss // 4)
                start = time.perf_counter()
                cpu0 = server.cpu()
                while total < args.rss:
                    n = min(step, args.rss - total)
                    drive = await smtp_source_drive(server.port, 1024, n, args.sessions)
                    total += drive.sent
                    if drive.errors:
                        print(f"  errors: {drive.errors[:3]}")
                        status = 1
                        break
                    now, parts = tree_rss_mib(server.pid)
                    marks.append(f"{total}: {now:.0f} ({parts})")
                    log(f"rss {variant}: {total} messages, RSS {now:.0f} MiB ({parts})")
                seconds = time.perf_counter() - start
                cpu = server.cpu() - cpu0
                after, after_parts = tree_rss_mib(server.pid)
                peak = server.peak_mib()
            finally:
                stop_process(server.process)
            assert server.db is not None
            rows = stored_rows(server.db)
            ok = after <= 80
            status |= 0 if ok else 1
            print(
                f"rss: sinkd {SINKD_VARIANTS[variant][1]} (server + store writer process): idle "
                f"{idle:.0f} MiB ({idle_parts}); after {total} messages RSS {after:.0f} MiB "
                f"({after_parts}), peak {peak:.0f} MiB (target ≤ 80: "
                f"{'met' if ok else 'NOT met'}); RSS MiB by messages: {', '.join(marks)}; "
                f"{total / seconds:.0f} msgs/s, CPU {cpu / max(1, total) * 1000:.2f} ms/msg; "
                f"store rows {rows} (load average {loadavg()})"
            )
    return status


# --- profiling sinkd ---------------------------------------------------------------------------

# Where a sampled stack's time goes: the first pattern found anywhere in the stack wins, so
# cross-cutting costs (socket syscalls, logging) come before the SMTP stages that cause them.
# py-spy's raw frames read "Class.function (/full/path/file.py:line)".
PHASES: list[tuple[str, re.Pattern[str]]] = [
    ("imports (should be none after warm-up)", re.compile(r"importlib")),
    (
        "socket writes: one send() per reply line",
        re.compile(r"Transport\.write |StreamWriter\.write "),
    ),
    ("socket reads (recv, data_received)", re.compile(r"_read_ready")),
    ("epoll wait/dispatch", re.compile(r"Selector\.select ")),
    (
        "aiosmtpd sanitized_log (debug-log formatting, on every command)",
        re.compile(r"sanitized_log"),
    ),
    ("sinkd verdict log line (logging)", re.compile(r"log_verdict|/logging/")),
    ("event hub publish (record.to_json again)", re.compile(r"Recorder\.publish ")),
    (
        "store hand-off (prepare, pickle, send, answers; the writes are another process)",
        re.compile(r"SqliteStore\.save |SqliteStore\._submit |WriterClient\.|WriterProcess\."),
    ),
    (
        "MAIL/RCPT: aiosmtpd address parsing + sinkd hooks",
        re.compile(r"smtp_MAIL |smtp_RCPT |handle_MAIL |handle_RCPT "),
    ),
    (
        "email parsing (sinkd.core.message, email package)",
        re.compile(r"sinkd/message\.py|/email/|mimetree\.py"),
    ),
    (
        "engine: filters, verdict, strip",
        re.compile(r"sinkd/engine\.py|sinkd/core/filters/|sinkd/strip\.py|authres"),
    ),
    ("handle_DATA rest (commit bookkeeping, reply text)", re.compile(r"handle_DATA |_commit ")),
    ("DATA reading (up to each '.\\r\\n', unstuffing)", re.compile(r"smtp_DATA |_read_data ")),
    (
        "connection setup (protocol init, greeting, EHLO)",
        re.compile(r"connection_made |SMTP\.__init__ |smtp_EHLO |smtp_HELO "),
    ),
    ("reply formatting (push, enhance)", re.compile(r"\.push |enhance ")),
    ("aiosmtpd command loop (readline, dispatch)", re.compile(r"_handle_client ")),
    ("asyncio machinery (tasks, futures, callbacks)", re.compile(r"/asyncio/")),
    # py-spy cuts some deep stacks (email's recursive header parser) short of their callers.
    (
        "email header/address parser, stack cut short (MAIL/RCPT or parse)",
        re.compile(r"TokenList|get_atext|AddrlistClass|FeedParser"),
    ),
]


def classify(stack: str) -> str:
    for name, pattern in PHASES:
        if pattern.search(stack):
            return name
    return "other"


async def unprofiled_cpu(
    workdir: Path, variant: str, count: int, sessions: int, persistent: bool
) -> tuple[float, float, float]:
    """msgs/s, and CPU seconds per message at 1 KB without any profiler: the server and its
    children (the store writer process), and the server process alone (what py-spy samples)."""
    server = start_sinkd(workdir, variant, db=workdir / f"plain-{persistent}.db")
    try:
        await client_drive(server.port, dot_stuff(source_like_message(1024)), 4, count=100)
        cpu0, own0 = server.cpu(), cpu_seconds(server.pid, reaped=False)
        drive = await smtp_source_drive(server.port, 1024, count, sessions, persistent=persistent)
        sent = max(1, drive.sent)
        own = (cpu_seconds(server.pid, reaped=False) - own0) / sent
        return drive.sent / drive.seconds, (server.cpu() - cpu0) / sent, own
    finally:
        stop_process(server.process)


async def profile_sinkd(args: argparse.Namespace) -> int:
    """Where sinkd's time goes at 1 KB × ``--sessions`` (smtp-source -d):

    1. CPU per message without a profiler, persistent sessions and a new connection per
       message (the difference is the per-connection cost);
    2. wall time per stage from ``bench/sinkd_timed.py`` (DATA read, engine, commit wait);
    3. py-spy attached after warm-up (or cProfile): each phase's share of the CPU samples ×
       the CPU per message of step 1 = µs per message per phase.
    """
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    use_spy = Path(py_spy).is_file() and not args.cprofile  # noqa: ASYNC240 (before any load)
    count, sessions, variant = args.messages, args.sessions, args.profile_variant
    name = SINKD_VARIANTS[variant][1]
    with workspace() as workdir:
        rate, per_msg, own_per_msg = await unprofiled_cpu(workdir, variant, count, sessions, True)
        conn_count = max(200, count // 3)
        rate_new, per_msg_new, _ = await unprofiled_cpu(
            workdir, variant, conn_count, sessions, False
        )
        print(
            f"sinkd {name}, 1 KB, {sessions} sessions, load average {loadavg()}:\n"
            f"- persistent sessions (smtp-source -d, {count} msgs): {rate:.0f} msgs/s, server "
            f"CPU {per_msg * 1e6:.0f} µs/msg (server process {own_per_msg * 1e6:.0f}, store "
            f"writer process {(per_msg - own_per_msg) * 1e6:.0f})\n"
            f"- new connection per message ({conn_count} msgs): {rate_new:.0f} msgs/s, server "
            f"CPU {per_msg_new * 1e6:.0f} µs/msg → connection setup + QUIT ≈ "
            f"{(per_msg_new - per_msg) * 1e6:.0f} µs per connection"
        )
        # 2. stage wall times
        timings = workdir / "timings.json"
        runner = [sys.executable, str(HERE / "sinkd_timed.py"), str(timings)]
        server = start_sinkd(workdir, variant, db=workdir / "timed.db", runner=runner)
        try:
            await client_drive(server.port, dot_stuff(source_like_message(1024)), 4, count=100)
            cpu0 = server.cpu()
            drive = await smtp_source_drive(server.port, 1024, count, sessions)
            timed_cpu = (server.cpu() - cpu0) / max(1, drive.sent)
        finally:
            stop_process(server.process)
        import json

        print(
            f"\nWall time per stage under that load (bench/sinkd_timed.py wrappers; "
            f"{drive.sent / drive.seconds:.0f} msgs/s, {timed_cpu * 1e6:.0f} µs CPU/msg with "
            f"the wrappers):\n"
        )
        print("| stage | n | p50 | p99 | mean |")
        print("|---|---|---|---|---|")
        for stage, v in json.loads(timings.read_text()).items():
            unit = "" if stage.startswith("writer batch size") else " µs"
            print(
                f"| {stage} | {v['n']:.0f} | {v['p50']:.0f}{unit} | {v['p99']:.0f}{unit} "
                f"| {v['mean']:.0f}{unit} |"
            )
        # 3. CPU by phase
        server = start_sinkd(
            workdir,
            variant,
            db=workdir / "profiled.db",
            runner=[
                sys.executable,
                "-m",
                "cProfile",
                "-o",
                str(workdir / "sinkd.prof"),
                "-m",
                "sinkd",
            ]
            if not use_spy
            else None,
        )
        raw_path = workdir / "spy.txt"
        spy: subprocess.Popen[bytes] | None = None
        try:
            await client_drive(server.port, dot_stuff(source_like_message(1024)), 4, count=100)
            if use_spy:
                # Not awaited: py-spy runs beside the load and is stopped with SIGINT.
                spy = subprocess.Popen(  # noqa: ASYNC220
                    [
                        py_spy,
                        "record",
                        "--pid",
                        str(server.pid),
                        "--format",
                        "raw",
                        "--rate",
                        "500",
                        "--threads",
                        "--nonblocking",
                        "--output",
                        str(raw_path),
                    ],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=(workdir / "py-spy.log").open("wb"),
                )
                await asyncio.sleep(1.0)  # attached
            drive = await smtp_source_drive(server.port, 1024, count, sessions)
            if spy is not None:
                spy.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
                spy.wait(timeout=60)
        finally:
            stop_process(server.process)
            if spy is not None and spy.poll() is None:
                stop_process(spy)
        if not use_spy:
            import pstats

            stats = pstats.Stats(str(workdir / "sinkd.prof"))
            stats.sort_stats("tottime").print_stats(40)
            return 0
        phases: Counter[str] = Counter()
        total = 0
        for line in raw_path.read_text("utf-8", "replace").splitlines():
            stack, _, n = line.rpartition(" ")
            if not n.isdigit():
                continue
            phases[classify(stack)] += int(n)
            total += int(n)
        print(
            f"\nCPU by phase (py-spy attached after warm-up, {total} samples at 500 Hz over "
            f"{drive.sent} messages; µs = share × the server process's unprofiled "
            f"{own_per_msg * 1e6:.0f} µs/msg):\n"
        )
        print("| phase | share of CPU samples | µs per message |")
        print("|---|---|---|")
        for phase, n in phases.most_common():
            print(f"| {phase} | {n / total * 100:.1f}% | {n / total * own_per_msg * 1e6:.0f} |")
        if args.keep_profile:
            shutil.copy(raw_path, args.keep_profile)
            print(f"\nraw py-spy stacks kept in {args.keep_profile}")
    return 0


# --- command line ------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer messages, one round (~1-2 min)")
    parser.add_argument("--sizes", default="1,20,500", help="smtp-source body sizes in KiB")
    parser.add_argument(
        "--new-connections",
        action="store_true",
        help="smtp-source opens a connection per message (no -d), as the issue's figures did",
    )
    parser.add_argument("--sessions", type=int, default=20, help="concurrent sessions per driver")
    parser.add_argument("--messages", type=int, help="messages per round at 1 KB (others scaled)")
    parser.add_argument("--rounds", type=int, help="interleaved rounds at 1 and 20 KB")
    parser.add_argument("--variants", default="a,b,c", help="sinkd variants to run (a,b,c)")
    parser.add_argument("--no-html", action="store_true", help="skip the HTML loads")
    parser.add_argument(
        "--html-loads",
        default=",".join(HTML_BUILDERS),
        help="HTML loads to run: html (newsletter), grid (second newsletter), receipt",
    )
    parser.add_argument("--core-runs", type=int, help="in-process filter core runs per message")
    parser.add_argument("--output", help="also write the report (markdown) to this file")
    parser.add_argument("--soak", action="store_true", help="point 4: many sessions for a while")
    parser.add_argument("--soak-sessions", type=int, default=200)
    parser.add_argument("--soak-seconds", type=float, default=60.0)
    parser.add_argument("--soak-variant", default="a", choices=["a", "b", "a2", "b2"])
    parser.add_argument("--kill9", action="store_true", help="point 4: kill -9 under load")
    parser.add_argument("--kill9-rounds", type=int, default=3)
    parser.add_argument("--kill9-after", type=float, default=2.0, help="seconds of load")
    parser.add_argument("--rss", type=int, metavar="N", help="RSS after N messages")
    parser.add_argument("--rss-variants", default="a,b")
    parser.add_argument("--profile-sinkd", action="store_true", help="where sinkd's CPU goes")
    parser.add_argument("--profile-variant", default="a", choices=["a", "b", "a2", "b2"])
    parser.add_argument("--cprofile", action="store_true", help="cProfile instead of py-spy")
    parser.add_argument("--keep-profile", help="copy py-spy's raw stacks here")
    args = parser.parse_args()
    global PERSISTENT
    PERSISTENT = not args.new_connections
    args.variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    args.rss_variants = [v.strip() for v in args.rss_variants.split(",") if v.strip()]
    args.html_loads = [k.strip() for k in args.html_loads.split(",") if k.strip()]
    unknown = [k for k in args.html_loads if k not in HTML_BUILDERS]
    if unknown:
        parser.error(f"unknown --html-loads {unknown}: choose from {', '.join(HTML_BUILDERS)}")
    if args.messages is None:
        args.messages = 800 if args.quick else 3000
    if args.rounds is None:
        args.rounds = 1 if args.quick else 3
    if args.core_runs is None:
        args.core_runs = 50 if args.quick else 200
    if args.soak:
        sys.exit(asyncio.run(soak(args)))
    if args.kill9:
        sys.exit(asyncio.run(kill9(args)))
    if args.rss:
        sys.exit(asyncio.run(rss(args)))
    if args.profile_sinkd:
        sys.exit(asyncio.run(profile_sinkd(args)))
    sys.exit(asyncio.run(compare(args)))


if __name__ == "__main__":
    main()
