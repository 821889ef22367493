"""What ``--relay`` costs the sink, and how fast it drains: sinkd with and without relaying.

Starts a bare aiosmtpd sink (``bench/bare_aiosmtpd.py``: answers 250 to everything) as the relay
target, then, in interleaved rounds, ``sinkd serve --profile no-filter`` twice on free loopback
ports: without ``--relay``, and with ``--relay smtp://`` that sink. Each round sends ``--messages``
1 KB messages over ``--sessions`` persistent sessions (``bench/peers.py``'s own client) and
reports, per variant (median over rounds): messages/s acknowledged, p50 acknowledgement latency,
server CPU per message (the sinkd process tree: with ``--relay`` that includes the relaying),
and for the relay variant the time from the first message sent until every one was relayed
(read from the store's relay table) with the drain rate. It checks that every acknowledged
message was delivered onward exactly as the store says (status ``delivered``).

    python bench/relay.py [--messages 2000] [--sessions 10] [--rounds 3] [--concurrency 4]

Everything it starts is stopped at the end; nothing listens off loopback.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sqlite3
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import peers  # noqa: E402  (bench/peers.py: servers, the client, the 1 KB message)

DRAIN_TIMEOUT = 600.0


@dataclass
class Result:
    rate: float
    p50_ms: float
    cpu_ms: float
    drain_s: float | None = None  # relay only: first message sent -> every one relayed


def relay_counts(db: Path) -> dict[str, int]:
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        return dict(conn.execute("SELECT status, count(*) FROM relay GROUP BY status").fetchall())


def start(workdir: Path, name: str, extra: list[str]) -> peers.Server:
    """``sinkd serve --profile no-filter`` with ``extra`` options and a store of its own."""
    return peers.start_sinkd(workdir, "a", db=workdir / f"{name}.db", extra=extra)


async def one_round(
    workdir: Path, name: str, extra: list[str], stuffed: bytes, args: argparse.Namespace
) -> Result:
    server = start(workdir, name, extra)
    try:
        cpu0 = server.cpu()
        started = time.perf_counter()
        drive = await peers.client_drive(server.port, stuffed, args.sessions, count=args.messages)
        if drive.errors:
            raise SystemExit(f"{name}: {drive.errors[:3]}")
        drain: float | None = None
        if extra:
            assert server.db is not None
            deadline = time.monotonic() + DRAIN_TIMEOUT
            while relay_counts(server.db).get("delivered", 0) < drive.sent:
                if time.monotonic() > deadline:
                    raise SystemExit(f"{name}: not drained: {relay_counts(server.db)}")
                await asyncio.sleep(0.05)
            drain = time.perf_counter() - started
            counts = relay_counts(server.db)
            if counts != {"delivered": drive.sent}:
                raise SystemExit(f"{name}: relay table {counts}, {drive.sent} acknowledged")
        cpu = server.cpu() - cpu0
        return Result(
            drive.sent / drive.seconds,
            statistics.median(drive.latencies) * 1000,
            cpu / drive.sent * 1000,
            drain,
        )
    finally:
        stop(server, workdir / "sinkd-a.log")


def stop(server: peers.Server, log_path: Path) -> None:
    """Stop a round's sinkd and remove its store and log (rounds start afresh)."""
    peers.stop_process(server.process)
    log_path.unlink(missing_ok=True)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{server.db}{suffix}").unlink(missing_ok=True)


async def main_async(args: argparse.Namespace) -> None:
    stuffed = peers.dot_stuff(peers.source_like_message(1024))
    with peers.workspace() as workdir:
        target = peers.start_bare(workdir)
        try:
            relay = ["--relay", f"smtp://{peers.HOST}:{target.port}"]
            relay += ["--relay-concurrency", str(args.concurrency)]
            variants = {"without --relay": [], "with --relay": relay}
            results: dict[str, list[Result]] = {name: [] for name in variants}
            for n in range(args.rounds):
                for name, extra in variants.items():
                    result = await one_round(workdir, f"r{n}-{len(extra)}", extra, stuffed, args)
                    results[name].append(result)
                    peers.log(f"round {n + 1} {name}: {result.rate:.0f} msg/s")
        finally:
            peers.stop_process(target.process)
    print(f"\n{peers.machine()}; {args.messages} x 1 KB, {args.sessions} sessions, no-filter")
    print(f"{args.rounds} interleaved rounds, medians; relay target: bare aiosmtpd\n")
    print("| sinkd | msg/s | ratio | p50 ack ms | CPU ms/msg | all relayed after s | relay msg/s |")
    print("|---|---|---|---|---|---|---|")
    base = statistics.median(r.rate for r in results["without --relay"])
    for name, rows in results.items():
        rate = statistics.median(r.rate for r in rows)
        drains = [r.drain_s for r in rows if r.drain_s is not None]
        drain = statistics.median(drains) if drains else None
        print(
            f"| {name} | {rate:.0f} | {rate / base:.2f}x "
            f"| {statistics.median(r.p50_ms for r in rows):.1f} "
            f"| {statistics.median(r.cpu_ms for r in rows):.2f} "
            f"| {'-' if drain is None else f'{drain:.1f}'} "
            f"| {'-' if drain is None else f'{args.messages / drain:.0f}'} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--sessions", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=4, help="--relay-concurrency")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
