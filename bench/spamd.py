"""spamd on its own versus spamd behind sinkd: messages per second and per-message latency.

Starts a private spamd (Debian's, loopback only, a free port, ``--max-children 4``), then in
the same run sends the same messages (sample-nonspam.txt and a ~20 KB HTML newsletter from
bench/content.py, interleaved) two ways, round after round:

  spamc  straight to spamd: ``spamc -R`` (a REPORT, as sinkd asks), 4 processes at a time;
  sinkd  ``python -m sinkd serve --port 0 --spamd HOST:PORT`` with a profile holding only the
         spamassassin filter (mode own, max_concurrency 4), fed by 4 concurrent aiosmtplib
         senders, each on its own SMTP connection.

It prints both rates, the ratio sinkd/spamc with sinkd's overhead in percent (pooled and per
round), latency p50/p99 per message for each (spamc: one process; sinkd: MAIL, RCPT and DATA
to the 250), and CPU per message from /proc: the spamc processes, the sinkd server, spamd. On
a small shared machine the rates drift between rounds; sinkd's CPU beside spamd's is the
steadier measure of what sinkd adds.
Everything it starts (spamd, sinkd) is stopped at the end. The target: sinkd adds no more
than 10% to spamd's own cost.

    python bench/spamd.py [--count 40] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiosmtplib

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from content import newsletter_message, pct  # noqa: E402

HOST = "127.0.0.1"
CONCURRENCY = 4
START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0
NONSPAM = Path("/usr/share/doc/spamassassin/examples/sample-nonspam.txt")
READY = re.compile(r"^sinkd ready smtp=(?P<host>[^:\s]+):(?P<port>\d+)$")
PROFILE = """\
schema: sinkd.profile/v1
id: bench-spamd
title: "spamd only (bench/spamd.py)"
models:
  - {what: "SpamAssassin's score decides alone", source: "bench/spamd.py"}
filters:
  - kind: spamassassin
    name: spamd
    timeout: 60
    max_concurrency: 4
    mode: own
    thresholds: {tag: 5.0}
    on_error: {action: tempfail}
"""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def cpu_seconds(pid: int, *, reaped_children: bool = False) -> float:
    """CPU time (user + system) of a live process, from /proc; 0 once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "; comm may hold spaces
    ticks = int(fields[11]) + int(fields[12])  # utime, stime
    if reaped_children:
        ticks += int(fields[13]) + int(fields[14])  # cutime, cstime
    return ticks / os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(pid: int) -> float:
    """CPU time of spamd: the parent, its reaped children and its live children."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        children = []
    return cpu_seconds(pid, reaped_children=True) + sum(cpu_seconds(int(c)) for c in children)


def children_cpu_seconds() -> float:
    """CPU time of this process's reaped children (the spamc processes)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


# --- a private spamd ---------------------------------------------------------------------------


@dataclass
class Spamd:
    process: subprocess.Popen[str]
    port: int
    home: Path
    lines: list[str] = field(default_factory=list)
    ready: threading.Event = field(default_factory=threading.Event)

    def drain(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:  # read to the end, or spamd blocks on a full pipe
            self.lines.append(line.rstrip("\n"))
            if "server started on" in line:
                self.ready.set()
        self.ready.set()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)  # its own session: spamd and children
            self.process.wait(timeout=STOP_TIMEOUT)
        shutil.rmtree(self.home, ignore_errors=True)


@contextlib.contextmanager
def private_spamd() -> Iterator[Spamd]:
    """spamd on a free loopback port, ready ("server started on"), stopped on exit."""
    spamd_path = shutil.which("spamd")
    if spamd_path is None:
        sys.exit("spamd not found: install the Debian packages 'spamd' and 'spamc'")
    home = Path(tempfile.mkdtemp(prefix="sinkd-bench-spamd-"))
    home.chmod(0o777)  # started as root, spamd runs as nobody
    port = free_port()
    command = [spamd_path, "--local", "-p", str(port), "-i", HOST, "-A", HOST]
    command += ["--max-children", str(CONCURRENCY), "-H", str(home)]
    command += ["--pidfile", str(home / "spamd.pid"), "-s", "stderr"]
    if os.geteuid() == 0:
        command += ["-u", "nobody"]
    process = subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        errors="replace",
        start_new_session=True,
    )
    spamd = Spamd(process, port, home)
    reader = threading.Thread(target=spamd.drain, daemon=True)
    reader.start()
    try:
        if not spamd.ready.wait(START_TIMEOUT) or process.poll() is not None:
            tail = "\n".join(spamd.lines[-20:])
            sys.exit(f"spamd did not start within {START_TIMEOUT:g} s:\n{tail}")
        yield spamd
    finally:
        spamd.stop()
        reader.join(timeout=STOP_TIMEOUT)


# --- sinkd serve -------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def sinkd_serve(workdir: Path, spamd_port: int) -> AsyncIterator[tuple[str, int, int]]:
    profile = workdir / "bench-spamd.yaml"
    profile.write_text(PROFILE, encoding="utf-8")
    log = (workdir / "sinkd.log").open("wb")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SINKD_")}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "sinkd",
        "serve",
        "--host",
        HOST,
        "--port",
        "0",
        "--db",
        str(workdir / "sinkd.db"),
        "--profile",
        str(profile),
        "--spamd",
        f"{HOST}:{spamd_port}",
        "--hostname",
        "sinkd.bench",
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=log,
        env=env | {"PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stdout is not None
        async with asyncio.timeout(START_TIMEOUT):
            line = (await process.stdout.readline()).decode().strip()
        match = READY.match(line)
        if not match:
            log.flush()
            tail = (workdir / "sinkd.log").read_text("utf-8", "replace")[-2000:]
            sys.exit(f"sinkd did not start: {line!r}\n{tail}")
        yield match["host"], int(match["port"]), process.pid
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(STOP_TIMEOUT):
            await process.wait()
        log.close()


# --- the two ways ------------------------------------------------------------------------------


@dataclass
class Run:
    label: str
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    rounds: list[float] = field(default_factory=list)  # seconds of each round
    client_cpu: float = 0.0  # spamc processes, or the sinkd server
    spamd_cpu: float = 0.0

    def per_message_ms(self, seconds: float) -> float:
        return seconds / len(self.latencies) * 1000

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.seconds


async def workers(messages: list[bytes], work: Callable[[bytes], Awaitable[None]]) -> float:
    """Run ``work(raw)`` over the messages with CONCURRENCY workers; the wall time."""
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for raw in messages:
        queue.put_nowait(raw)

    async def worker() -> None:
        while not queue.empty():
            await work(queue.get_nowait())

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return time.perf_counter() - start


async def with_spamc(messages: list[bytes], port: int, run: Run) -> None:
    async def one(raw: bytes) -> None:
        start = time.perf_counter()
        process = await asyncio.create_subprocess_exec(
            "spamc",
            "-d",
            HOST,
            "-p",
            str(port),
            "-R",
            "-t",
            "60",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await process.communicate(raw)
        elapsed = time.perf_counter() - start
        if process.returncode != 0 or b"Content analysis details" not in out:
            run.failures.append(f"spamc exit {process.returncode}: {err.decode()[:200]}")
        else:
            run.latencies.append(elapsed)

    elapsed = await workers(messages, one)
    run.seconds += elapsed
    run.rounds.append(elapsed)


async def with_sinkd(messages: list[bytes], address: tuple[str, int], run: Run) -> None:
    clients = [
        aiosmtplib.SMTP(hostname=address[0], port=address[1], start_tls=False, timeout=120)
        for _ in range(CONCURRENCY)
    ]
    await asyncio.gather(*(c.connect() for c in clients))
    free: asyncio.Queue[aiosmtplib.SMTP] = asyncio.Queue()
    for client in clients:
        free.put_nowait(client)

    async def one(raw: bytes) -> None:
        client = await free.get()
        start = time.perf_counter()
        try:
            _, text = await client.sendmail("news@sender.example", ["bob@corp.example"], raw)
        except aiosmtplib.SMTPException as exc:
            run.failures.append(f"sinkd: {exc}")
        else:
            if text.startswith("2.0.0 Ok: queued as"):
                run.latencies.append(time.perf_counter() - start)
            else:
                run.failures.append(f"sinkd: {text}")
        free.put_nowait(client)

    try:
        elapsed = await workers(messages, one)
        run.seconds += elapsed
        run.rounds.append(elapsed)
    finally:
        await asyncio.gather(*(c.quit() for c in clients), return_exceptions=True)


# --- main --------------------------------------------------------------------------------------


async def bench(nonspam: bytes, newsletter: bytes, count: int, rounds: int) -> int:
    messages = [raw for _ in range(count) for raw in (nonspam, newsletter)]
    spamc, sinkd = Run("spamc"), Run("sinkd")
    with private_spamd() as spamd:
        workdir = Path(tempfile.mkdtemp(prefix="sinkd-bench-"))
        try:
            async with sinkd_serve(workdir, spamd.port) as (host, port, sinkd_pid):
                address = (host, port)
                # Warm-up: spamd's children compile and cache on their first messages.
                await with_spamc(messages[: 4 * CONCURRENCY], spamd.port, Run("warm-up"))
                await with_sinkd(messages[: 4 * CONCURRENCY], address, Run("warm-up"))
                for _ in range(rounds):  # alternate, so drift hits both alike
                    spamd_before, client_before = (
                        tree_cpu_seconds(spamd.process.pid),
                        children_cpu_seconds(),
                    )
                    await with_spamc(messages, spamd.port, spamc)
                    spamc.spamd_cpu += tree_cpu_seconds(spamd.process.pid) - spamd_before
                    spamc.client_cpu += children_cpu_seconds() - client_before
                    spamd_before, client_before = (
                        tree_cpu_seconds(spamd.process.pid),
                        cpu_seconds(sinkd_pid),
                    )
                    await with_sinkd(messages, address, sinkd)
                    sinkd.spamd_cpu += tree_cpu_seconds(spamd.process.pid) - spamd_before
                    sinkd.client_cpu += cpu_seconds(sinkd_pid) - client_before
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    print(
        f"spamd 4 children, {len(messages)} messages per round ({count} sample-nonspam "
        f"{len(nonspam)} B + {count} newsletter {len(newsletter)} B), {rounds} rounds, "
        f"concurrency {CONCURRENCY}"
    )
    header = ("path", "msgs", "msg/s", "p50 ms", "p99 ms", "failed", "CPU ms/msg", "spamd CPU")
    print("{:<7} {:>5} {:>8} {:>8} {:>8} {:>7} {:>11} {:>10}".format(*header))
    for run in (spamc, sinkd):
        print(
            f"{run.label:<7} {len(run.latencies):>5} {run.rate:>8.2f} "
            f"{statistics.median(run.latencies) * 1000:>8.1f} "
            f"{pct(run.latencies, 0.99) * 1000:>8.1f} {len(run.failures):>7} "
            f"{run.per_message_ms(run.client_cpu):>11.1f} "
            f"{run.per_message_ms(run.spamd_cpu):>10.1f}"
        )
    print("  (CPU ms/msg: the spamc processes, or the sinkd server; spamd CPU: spamd's, per msg)")
    ratio = sinkd.rate / spamc.rate
    overhead = (spamc.rate / sinkd.rate - 1) * 100
    per_round = [a / b for a, b in zip(spamc.rounds, sinkd.rounds, strict=True)]
    print(
        f"sinkd/spamc rate ratio {ratio:.3f}: sinkd adds {overhead:+.1f}% to spamd's cost "
        f"(per round: {', '.join(f'{r:.3f}' for r in per_round)}; "
        f"median {statistics.median(per_round):.3f})"
    )
    sinkd_share = sinkd.client_cpu / sinkd.spamd_cpu * 100
    print(f"sinkd's own CPU is {sinkd_share:.1f}% of spamd's CPU for the same messages")
    for failure in (spamc.failures + sinkd.failures)[:5]:
        print(f"  failure: {failure}")
    return 1 if spamc.failures or sinkd.failures else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=40, help="messages of each kind per round")
    parser.add_argument("--rounds", type=int, default=3, help="spamc/sinkd rounds, alternating")
    args = parser.parse_args()
    if not NONSPAM.is_file():
        sys.exit(f"{NONSPAM} not found: install the Debian package 'spamassassin'")
    nonspam = re.sub(rb"\r?\n", b"\r\n", NONSPAM.read_bytes())  # CRLF, as an MTA sends it
    sys.exit(asyncio.run(bench(nonspam, newsletter_message(), args.count, args.rounds)))


if __name__ == "__main__":
    main()
