"""What a save costs on the PostgreSQL store against the SQLite store, both with the writer
process ``sinkd serve`` uses: saves/s and CPU per save with 1 and with 20 concurrent savers.

Each variant opens a new, empty store (``writer="process"``), then 1 or 20 saver tasks save
``--messages`` records between them (1 KB each, one finding; each task awaits its own save
before the next, as an SMTP session awaits its 250), and reports the rate and the CPU per save
of the saving process, the writer process and (PostgreSQL) the database server's processes
(from /proc, so Linux only; the server's only for the private server, not with --url).
PostgreSQL runs as configured by default: fsync on, ``synchronous_commit = on`` (a 250
survives a database crash). Without ``--url`` a private
server is started for the run (``tests/support/postgres.py``: initdb into a temporary directory,
loopback only) and removed at the end.

    python bench/store_pg.py [--messages 2000] [--rounds 3] [--url postgresql://...]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sinkd.store import Store  # noqa: E402
from sinkd.store.postgres import open_postgres  # noqa: E402
from sinkd.store.sqlite import open_sqlite  # noqa: E402
from tests.support.store import make_record  # noqa: E402

BODY = b"Subject: bench\r\n\r\n" + b"x" * 1000 + b"\r\n"
TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Result:
    rate: float  # saves/s
    cpu_us: float  # CPU per save, all processes involved
    own_us: float  # of it: the saving process (the SMTP process in sinkd serve)


def cpu_of(pid: int) -> float:
    """Seconds of CPU (user + system) process ``pid`` has used; 0 when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS


def server_pids(data: Path | None) -> list[int]:
    """The processes of the PostgreSQL server whose data directory is ``data``: its postmaster
    (first line of postmaster.pid) and that one's children (backends, background workers).
    Other servers on the machine are not counted."""
    if data is None:
        return []
    try:
        postmaster = int((data / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return []
    found = [postmaster]
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
        except OSError:
            continue
        if f"\nPPid:\t{postmaster}\n" in status:
            found.append(int(entry.name))
    return found


async def one(
    store: Store, writer_pid: int, messages: int, savers: int, pg_data: Path | None
) -> Result:
    records = [make_record(n, raw=BODY, message_id=f"b{n:07d}") for n in range(messages)]
    pids = server_pids(pg_data)
    before_pg = {pid: cpu_of(pid) for pid in pids}
    before_writer = cpu_of(writer_pid)
    before_own = resource.getrusage(resource.RUSAGE_SELF)
    queue = iter(records)

    async def saver() -> None:
        for record in queue:
            await store.save(record)

    start = time.perf_counter()
    await asyncio.gather(*(saver() for _ in range(savers)))
    elapsed = time.perf_counter() - start
    after_own = resource.getrusage(resource.RUSAGE_SELF)
    writer_cpu = cpu_of(writer_pid) - before_writer
    pg_cpu = sum(cpu_of(pid) - before_pg.get(pid, 0.0) for pid in server_pids(pg_data))
    own = (after_own.ru_utime - before_own.ru_utime) + (after_own.ru_stime - before_own.ru_stime)
    assert await store.count() == messages
    return Result(
        rate=messages / elapsed,
        cpu_us=(own + writer_cpu + pg_cpu) / messages * 1e6,
        own_us=own / messages * 1e6,
    )


async def variant(
    kind: str, url: str | None, messages: int, savers: int, data: Path | None
) -> Result:
    with tempfile.TemporaryDirectory(prefix="sinkd-bench-") as directory:
        store: Store
        if kind == "sqlite":
            store = await open_sqlite(Path(directory) / "bench.db", writer="process")
        else:
            assert url is not None
            store = await open_postgres(url, writer="process", migrate=True)
        try:
            process = store.writer_process  # type: ignore[attr-defined]
            pid = process._process.pid
            return await one(store, pid, messages, savers, data if kind == "postgresql" else None)
        finally:
            await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--url", default=None, help="an existing PostgreSQL database to use")
    args = parser.parse_args()

    server = None
    if args.url is None:
        from tests.support.postgres import PostgresServer

        server = PostgresServer().start()
    try:
        rows = []
        for savers in (1, 20):
            for kind in ("sqlite", "postgresql"):
                results = []
                for _ in range(args.rounds):
                    url = args.url or (server.create_database() if server else None)
                    data = server.data if server else None
                    results.append(asyncio.run(variant(kind, url, args.messages, savers, data)))
                rows.append(
                    (
                        kind,
                        savers,
                        statistics.median(r.rate for r in results),
                        statistics.median(r.cpu_us for r in results),
                        statistics.median(r.own_us for r in results),
                    )
                )
        print(f"{'store':<11} {'savers':>6} {'saves/s':>9} {'CPU/save':>10} {'of it saver':>12}")
        for kind, savers, rate, cpu, own in rows:
            print(f"{kind:<11} {savers:>6} {rate:>9.0f} {cpu:>8.0f}us {own:>10.0f}us")
    finally:
        if server is not None:
            server.stop()


if __name__ == "__main__":
    main()
