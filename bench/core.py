"""The filter core alone, in process: CPU per message (p50/p99) for each profile and load.

The quick loop for work on the core (issue 18's core targets): no server, no sockets, no
store, the same staged ``Transaction`` (MAIL, RCPT, DATA: parse, filters, verdict, strip) and
the same lookups ``sinkd serve`` builds (offline DNS over ``profiles/dns/demo.zone``, the
client 192.0.2.25 that SPF passes). ``bench/peers.py`` measures the same way on the messages
it stored; this script needs no peers and takes seconds.

    python bench/core.py                                  # typical-corporate and no-filter
    python bench/core.py --profiles typical-corporate --loads html --runs 500
    python bench/core.py --cprofile html                  # where the time goes (cProfile)
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import content  # noqa: E402  (bench/content.py: the 1 KB plain message)
import peers  # noqa: E402  (bench/peers.py: the HTML loads, the demo zone, the client)

from sinkd.core.delivery_state import DeliveryState  # noqa: E402
from sinkd.core.model import ClientIdentity  # noqa: E402
from sinkd.core.profiles import ProfileSet  # noqa: E402
from sinkd.services.judge import DnsOptions, Identity, Judge  # noqa: E402

LOADS = {
    "plain": ("1 KB plain", lambda: content.plain_message(1024)),
    **{key: (name, build) for key, (name, build) in peers.HTML_BUILDERS.items()},
}


def judge_for(profile: str) -> Judge:
    return Judge(
        ProfileSet([peers.ROOT / "profiles"]),
        profile=profile,
        dns=DnsOptions(zones=(peers.DEMO_ZONE,)),
        delivery=DeliveryState(),
    )


async def one(judge: Judge, raw: bytes) -> None:
    client = ClientIdentity(ip=peers.CLIENT_IP, helo="mx.shop.example", source="option")
    transaction = judge.transaction(Identity(client))
    await transaction.mail(peers.SENDER, len(raw))
    await transaction.rcpt(peers.RECIPIENT)
    await transaction.data(raw)


async def timings(judge: Judge, raw: bytes, runs: int) -> list[float]:
    for _ in range(3):  # warm the caches (DNS answers, imports)
        await one(judge, raw)
    cpu: list[float] = []
    for _ in range(runs):
        c0 = time.process_time()
        await one(judge, raw)
        cpu.append(time.process_time() - c0)
    return cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profiles", default="no-filter,typical-corporate")
    parser.add_argument("--loads", default=",".join(LOADS), help=f"of {', '.join(LOADS)}")
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--cprofile", metavar="LOAD", help="profile one load, print the top")
    args = parser.parse_args()
    print("| profile | load | bytes | core CPU p50 ms | p99 ms |")
    print("|---|---|---|---|---|")
    for profile in args.profiles.split(","):
        judge = judge_for(profile)
        for key in args.loads.split(","):
            name, build = LOADS[key]
            raw = build()
            if args.cprofile == key:
                asyncio.run(timings(judge, raw, 3))
                prof = cProfile.Profile()
                prof.enable()
                asyncio.run(timings(judge, raw, args.runs))
                prof.disable()
                pstats.Stats(prof).sort_stats("cumulative").print_stats(40)
                continue
            cpu = sorted(asyncio.run(timings(judge, raw, args.runs)))
            p99 = cpu[min(len(cpu) - 1, int(len(cpu) * 0.99))]
            print(
                f"| {profile} | {name} | {len(raw):,} | {statistics.median(cpu) * 1000:.2f} "
                f"| {p99 * 1000:.2f} |"
            )


if __name__ == "__main__":
    main()
