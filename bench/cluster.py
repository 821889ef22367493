"""Several sinkd instances on one PostgreSQL against one on SQLite: same run, same load.

Issue 21. Starts, from this checkout, ``sinkd serve`` three ways, one after the other:
  (a) one instance on SQLite (a fresh file);
  (b) one instance on PostgreSQL (a fresh database, ``--migrate``);
  (c) two instances on one PostgreSQL database (a fresh one; the first migrates, the second
      starts once the first is ready);
  (d) only with ``--only``: two instances on two databases of that server, a control that
      shares nothing (no NOTIFY from the other, no common ``seq`` lock or delivery state), so
      that (c) against (d) is what sharing costs, apart from two processes on the same cores.
PostgreSQL is a private server started for the run as the tests start theirs
(``tests/support/postgres.py``: ``initdb`` into a temporary directory, ``pg_ctl`` on a free
127.0.0.1 port, default settings: fsync and synchronous_commit on).

Load: ``--clients`` concurrent SMTP clients (persistent sessions of ``bench/peers.py``'s own
asyncio client), each sending ``--size`` KB plain-text messages for ``--seconds`` seconds after
``--warmup`` seconds not counted. In (c) client k connects to instance k mod 2: client-side
round-robin of connections across the two SMTP ports, no balancer process (which would take
CPU of its own from the same two cores).

For each it prints messages/s, p50/p99 acknowledgement latency (from the final dot of DATA to
its 250), errors (any reply but 250), and CPU per message from /proc (utime+stime): every sinkd
process (each instance, its store writer and workers), every PostgreSQL server process (the
postmaster, its backends and helpers, reaped ones included), and the load driver itself. Then
the ratios (b)/(a), (c)/(a), (c)/(b), and what one more machine would add, reasoned from the
measured CPU split between sinkd and PostgreSQL.

The profile is ``--profile`` (default typical-corporate) with DNS offline (sinkd's default) and
the demo zone, the simulated client 192.0.2.25 as ``bench/peers.py``'s variant (b): nothing
leaves the machine, nothing listens off loopback. Everything started is stopped at the end.

    python bench/cluster.py [--clients 16] [--seconds 20] [--warmup 3] [--size 1]
                            [--profile typical-corporate] [--only a,b,c,d]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))
from peers import (  # noqa: E402
    CLIENT_IP,
    DEMO_ZONE,
    HOST,
    RECIPIENT,
    SENDER,
    SINKD_READY,
    Session,
    SmtpError,
    dot_stuff,
    log,
    machine,
    source_like_message,
    stop_process,
    tree_cpu_seconds,
    wait_for_line,
)

from tests.support.postgres import PostgresServer  # noqa: E402 (the tests' private server)

CONFIGS = {
    "a": "1 instance, SQLite",
    "b": "1 instance, PostgreSQL",
    "c": "2 instances, one PostgreSQL",
    "d": "2 instances, 2 databases",
}


@dataclass
class Run:
    """What one configuration did over the measured window."""

    key: str
    sent: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    sinkd_cpu: float = 0.0
    postgres_cpu: float = 0.0
    driver_cpu: float = 0.0

    @property
    def rate(self) -> float:
        return self.sent / self.seconds if self.seconds else 0.0

    def per_message_ms(self, cpu: float) -> float:
        return cpu / self.sent * 1000 if self.sent else 0.0

    def latency_ms(self, q: float) -> float:
        if not self.latencies:
            return 0.0
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


# --- sinkd instances ---------------------------------------------------------------------------


def start_instance(
    workdir: Path, name: str, store: list[str], profile: str
) -> tuple[subprocess.Popen[bytes], int]:
    """``sinkd serve`` on a free port with ``store`` (its store options); (process, port)."""
    home = workdir / name
    home.mkdir()
    command = [sys.executable, "-m", "sinkd", "serve", "--host", HOST, "--port", "0", "--no-http"]
    command += [*store, "--hostname", "sinkd.bench", "--profile", profile]
    command += ["--dns-zone", str(DEMO_ZONE), "--client-ip", CLIENT_IP, "--helo", "mx.shop.example"]
    log_path = home / "serve.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SINKD_")}
    # Whatever sinkd keeps beside no store file (a certificate) stays in the run's directory.
    env |= {"PYTHONUNBUFFERED": "1", "XDG_DATA_HOME": str(home)}
    process = subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=log_path.open("ab"),
        env=env,
        cwd=home,
    )
    match = wait_for_line(process, SINKD_READY, log_path)
    return process, int(match["port"])


def postmaster_pid(data: Path) -> int:
    """The PostgreSQL server's pid: the first line of ``postmaster.pid`` in its data directory
    (PostgreSQL manual, "Database File Layout")."""
    return int((data / "postmaster.pid").read_text().split()[0])


# --- the load ---------------------------------------------------------------------------------


async def transaction(session: Session, stuffed: bytes) -> float:
    """One message; the seconds from writing the final dot to reading its 250."""
    await session.command(f"MAIL FROM:<{SENDER}>", 250)
    await session.command(f"RCPT TO:<{RECIPIENT}>", 250)
    await session.command("DATA", 354)
    start = time.perf_counter()
    session.writer.write(stuffed)
    code, reply = await session.reply()
    elapsed = time.perf_counter() - start
    if code != 250:
        raise SmtpError(f"end of DATA: {code} {reply}")
    return elapsed


async def drive(ports: list[int], clients: int, stuffed: bytes, warmup: float, seconds: float,
                run: Run, measure: list[int]) -> None:  # fmt: skip
    """``clients`` sessions, client k on ``ports[k % len(ports)]``, sending until the end of
    the measured window; only what is acknowledged inside it counts. CPU is sampled at the
    window's edges (``measure``: pids whose process trees are counted as sinkd's, PostgreSQL's
    postmaster last)."""
    start = time.monotonic()
    begin, end = start + warmup, start + warmup + seconds
    sessions = await asyncio.gather(*(Session.open(ports[k % len(ports)]) for k in range(clients)))

    async def client(session: Session) -> None:
        while True:
            now = time.monotonic()
            if now >= end:
                return
            try:
                latency = await transaction(session, stuffed)
            except (SmtpError, OSError, asyncio.IncompleteReadError) as exc:
                run.errors.append(str(exc))
                return
            if begin <= now and time.monotonic() <= end:
                run.sent += 1
                run.latencies.append(latency)

    async def sample() -> None:
        await asyncio.sleep(max(0.0, begin - time.monotonic()))  # the window's start, a clock
        cpu0 = [tree_cpu_seconds(pid) for pid in measure]
        driver0 = time.process_time()
        await asyncio.sleep(max(0.0, end - time.monotonic()))  # and its end
        cpu1 = [tree_cpu_seconds(pid) for pid in measure]
        run.driver_cpu = time.process_time() - driver0
        deltas = [b - a for a, b in zip(cpu0, cpu1, strict=True)]
        if run.key == "a":
            run.sinkd_cpu = sum(deltas)
        else:
            run.sinkd_cpu, run.postgres_cpu = sum(deltas[:-1]), deltas[-1]

    await asyncio.gather(sample(), *(client(s) for s in sessions))
    run.seconds = seconds
    for session in sessions:
        await session.close()


def configuration(
    key: str, args: argparse.Namespace, workdir: Path, postgres: PostgresServer | None
) -> Run:
    """Start configuration ``key``, drive it, stop it."""
    processes: list[subprocess.Popen[bytes]] = []
    ports: list[int] = []
    try:
        if key == "a":
            store = ["--db", str(workdir / "a.db")]
            stores = [store]
        else:
            assert postgres is not None
            dsn = postgres.create_database()
            stores = [["--store", dsn, "--migrate"]] + [["--store", dsn]] * (key == "c")
            if key == "d":
                stores.append(["--store", postgres.create_database(), "--migrate"])
        for index, store in enumerate(stores):
            process, port = start_instance(workdir, f"{key}{index}", store, args.profile)
            processes.append(process)
            ports.append(port)
        measure = [p.pid for p in processes]
        if postgres is not None and key != "a":
            measure.append(postmaster_pid(postgres.data))
        run = Run(key)
        stuffed = dot_stuff(source_like_message(args.size * 1024))
        log(f"({key}) {CONFIGS[key]}: {args.clients} clients, {args.seconds:g} s")
        asyncio.run(drive(ports, args.clients, stuffed, args.warmup, args.seconds, run, measure))
        return run
    finally:
        for process in processes:
            stop_process(process)


# --- the report -------------------------------------------------------------------------------


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b else "-"


def report(runs: dict[str, Run], args: argparse.Namespace) -> None:
    print(f"machine: {machine()}")
    print(
        f"load: {args.clients} concurrent SMTP clients, {args.size} KB plain text, "
        f"{args.seconds:g} s measured after {args.warmup:g} s warm-up; profile {args.profile}"
    )
    print("(c): client-side round-robin, client k on instance k mod 2 (no balancer process)")
    print(
        f"\n{'configuration':<30} {'msgs/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7} "
        f"{'CPU ms/msg: sinkd':>18} {'PostgreSQL':>11} {'driver':>7}"
    )
    for key, run in runs.items():
        print(
            f"({key}) {CONFIGS[key]:<26} {run.rate:>8.1f} {run.latency_ms(0.5):>8.2f} "
            f"{run.latency_ms(0.99):>8.2f} {len(run.errors):>7} "
            f"{run.per_message_ms(run.sinkd_cpu):>18.2f} "
            f"{run.per_message_ms(run.postgres_cpu):>11.2f} "
            f"{run.per_message_ms(run.driver_cpu):>7.2f}"
        )
        for error in sorted(set(run.errors))[:3]:
            print(f"      error: {error}")
    rates = {key: run.rate for key, run in runs.items()}
    if {"a", "b"} <= set(rates):
        print(f"\nthroughput (b)/(a): {ratio(rates['b'], rates['a'])}", end="")
    if {"a", "c"} <= set(rates):
        print(f"   (c)/(a): {ratio(rates['c'], rates['a'])}", end="")
    if {"b", "c"} <= set(rates):
        print(f"   (c)/(b): {ratio(rates['c'], rates['b'])}  (2 instances against 1)", end="")
    if {"c", "d"} <= set(rates):
        print(f"   (c)/(d): {ratio(rates['c'], rates['d'])}  (sharing one database)", end="")
    print()
    cores = os.cpu_count() or 1
    busy = {
        key: (run.sinkd_cpu + run.postgres_cpu + run.driver_cpu) / run.seconds
        for key, run in runs.items()
        if run.seconds
    }
    print(
        "CPU busy over the window (cores of "
        f"{cores}): " + ", ".join(f"({k}) {v:.2f}" for k, v in busy.items())
    )
    last = runs.get("c") or runs.get("b")
    if last is None or not last.sent:
        return
    sinkd_ms = last.per_message_ms(last.sinkd_cpu)
    pg_ms = last.per_message_ms(last.postgres_cpu)
    driver_ms = last.per_message_ms(last.driver_cpu)
    print(
        f"\nwhat one more machine would add (from ({last.key}): sinkd {sinkd_ms:.2f} ms, "
        f"PostgreSQL {pg_ms:.2f} ms, driver {driver_ms:.2f} ms of CPU per message):"
    )
    here = 1000 * cores / (sinkd_ms + pg_ms + driver_ms) if sinkd_ms + pg_ms + driver_ms else 0
    print(
        f"  on this machine all three share {cores} cores: at most ~{here:.0f} msgs/s when "
        "they are all busy; a second instance here adds no core, only concurrency."
    )
    if sinkd_ms and pg_ms:
        per_machine = 1000 * cores / sinkd_ms
        pg_limit = 1000 * cores / pg_ms
        print(
            f"  each further machine of {cores} cores running one instance (its clients "
            f"elsewhere) adds up to ~{per_machine:.0f} msgs/s of judging, until PostgreSQL's "
            f"own {cores} cores saturate at ~{pg_limit:.0f} msgs/s "
            f"({pg_limit / per_machine:.1f} such machines); network round trips add latency, "
            "not CPU."
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--clients", type=int, default=16, help="concurrent SMTP sessions")
    parser.add_argument("--seconds", type=float, default=20.0, help="measured seconds per run")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds sent, not counted")
    parser.add_argument("--size", type=int, default=1, help="message size in KB")
    parser.add_argument("--profile", default="typical-corporate", help="the profile judged")
    parser.add_argument("--only", default="a,b,c", help="configurations to run (a,b,c,d)")
    args = parser.parse_args()
    keys = list(dict.fromkeys(k for k in args.only.split(",") if k))  # each once, in order
    unknown = set(keys) - set(CONFIGS)
    if unknown:
        parser.error(f"--only: unknown {sorted(unknown)}; choose among a, b, c, d")
    wants_postgres = any(k != "a" for k in keys)
    if wants_postgres and importlib.util.find_spec("sinkd.store.postgres") is None:
        sys.exit(
            "bench/cluster.py: this checkout has no PostgreSQL store (sinkd/store/postgres.py)"
        )
    runs: dict[str, Run] = {}
    with tempfile.TemporaryDirectory(prefix="sinkd-bench-cluster-") as tmp:
        workdir = Path(tmp)
        postgres = None
        if wants_postgres:
            postgres = PostgresServer().start()
        try:
            for key in keys:
                runs[key] = configuration(key, args, workdir, postgres)
        finally:
            if postgres is not None:
                postgres.stop()
    report(runs, args)


if __name__ == "__main__":
    main()
