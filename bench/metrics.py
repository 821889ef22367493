"""What ``GET /metrics`` costs a message: the counting sinkd does per message, in process.

Metrics are always on (there is no switch to compare a server with and without them), so this
measures the work itself: for one 1 KB message over one connection, what the handler, the
protocol and the recorder do to ``Metrics`` (a session opened and closed, six SMTP replies
counted, the filter-core and commit histograms observed, the stored record counted with its
findings), and a scrape's rendering at a realistic number of series. Compare the per-message
figure with the server's CPU per message in bench/RESULTS.md (issue 18: ~0.3 ms for 1 KB
typical-corporate in the core alone).

    python bench/metrics.py [--runs 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import content  # noqa: E402  (bench/content.py: the 1 KB plain message)
import core  # noqa: E402  (bench/core.py: the judge sinkd serve builds, one staged message)

from sinkd.core.model import Verdict  # noqa: E402
from sinkd.services.metrics import Metrics  # noqa: E402
from sinkd.services.recorder import Recorder  # noqa: E402

REPLIES = (("2", "connect"), ("2", "ehlo"), ("2", "mail"), ("2", "rcpt"), ("3", "data"))


async def one_record() -> tuple:  # type: ignore[type-arg]
    """The record a 1 KB message judged by typical-corporate is stored as."""
    judge = core.judge_for("typical-corporate")
    raw = content.plain_message(1024)
    verdicts: list[Verdict] = []
    client = core.ClientIdentity(ip=core.peers.CLIENT_IP, helo="mx.shop.example")
    transaction = judge.transaction(core.Identity(client))
    await transaction.mail(core.peers.SENDER, len(raw))
    await transaction.rcpt(core.peers.RECIPIENT)
    verdicts.extend(await transaction.data(raw))
    return Recorder.records(verdicts, raw)


def per_message(metrics: Metrics, records: tuple) -> None:  # type: ignore[type-arg]
    metrics.sessions.inc()
    for digit, stage in REPLIES:
        metrics.reply(digit, stage)
    metrics.filter_seconds.observe(0.0003)
    metrics.commit_seconds.observe(0.001)
    metrics.count(records)
    metrics.reply("2", "data")
    metrics.reply("2", "quit")
    metrics.sessions.dec()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20_000)
    args = parser.parse_args()
    records = asyncio.run(one_record())
    metrics = Metrics()
    rounds = []
    for _ in range(5):
        started = time.process_time()
        for _ in range(args.runs):
            per_message(metrics, records)
        rounds.append((time.process_time() - started) / args.runs)
    codes = sorted({f.code for r in records for f in r.verdict.findings})
    print(f"per message ({len(codes)} finding codes: {', '.join(codes) or '-'}):")
    print(f"  median of 5 x {args.runs}: {statistics.median(rounds) * 1e6:.2f} us CPU")
    renders = []
    for _ in range(50):
        started = time.process_time()
        text = metrics.render()
        renders.append(time.process_time() - started)
    print(f"a scrape's rendering ({len(text)} bytes): {statistics.median(renders) * 1e3:.2f} ms")


if __name__ == "__main__":
    main()
