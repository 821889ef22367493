"""How the filter core's cost grows: with message size and with the trigger-word list.

Issue 9, point 3. In process, without sockets (as ``bench/content.py``): the engine's staged
transaction (MAIL, RCPT, DATA: parse, filters, verdict) per message, CPU time p50 over runs.

* message size: plain-text messages of 1 KB to 10 MB through ``typical-corporate`` (its size
  limit is 25 MiB, so every one is judged in full) and ``no-filter``;
* trigger words: a ``content`` filter whose word list holds 10 to 100,000 entries, on a 20 KB
  message; compile time (once per profile load) and time per message.

For each series it prints the least-squares slope (ms per MB; µs per 1,000 words) and how far
the largest point is from the line through the smallest ones ("linear" when within 25%).
The third scaling axis, stored messages for the API's list query, is ``bench/api_list.py``.

    python bench/scaling.py [--runs 30]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

from sinkd.core.engine import Router, compile_profile
from sinkd.core.profiles import ProfileSet

sys.path.insert(0, str(Path(__file__).resolve().parent))
from content import measure, plain_message

SIZES = [1_000, 10_000, 100_000, 1_000_000, 10_000_000]
WORD_COUNTS = [10, 100, 1_000, 10_000, 100_000]


async def core_ms(router: Router, raw: bytes, runs: int) -> float:
    """The core's CPU per message, p50 in ms, after two warm-up runs (imports, caches)."""
    await measure(router, raw, 2)
    return statistics.median(await measure(router, raw, runs)) * 1000


def slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of y over x."""
    mx = statistics.fmean(x for x, _ in points)
    my = statistics.fmean(y for _, y in points)
    num = sum((x - mx) * (y - my) for x, y in points)
    den = sum((x - mx) ** 2 for x, _ in points)
    return num / den if den else 0.0


def shape(points: list[tuple[float, float]]) -> str:
    """Flat, linear or worse: the largest point against the line through the others."""
    *small, (x_big, y_big) = points
    if y_big <= 1.5 * max(y for _, y in small):
        return "flat"
    k = slope(small)
    intercept = statistics.fmean(y for _, y in small) - k * statistics.fmean(x for x, _ in small)
    predicted = intercept + k * x_big
    ratio = y_big / predicted if predicted > 0 else float("inf")
    return f"linear (largest point {ratio:.2f}x the line)" if ratio <= 1.25 else f"{ratio:.2f}x"


def words_profile(directory: Path, count: int) -> Path:
    words = ", ".join(f"w{i:06d}x" for i in range(count))
    path = directory / f"words-{count}.yaml"
    path.write_text(
        "schema: sinkd.profile/v1\n"
        f"id: words-{count}\n"
        f'title: "{count} trigger words"\n'
        "description: bench/scaling.py\n"
        "models: [{what: a word list of growing size, source: bench/scaling.py}]\n"
        f"lists:\n  trigger_words: {{kind: word, entries: [{words}]}}\n"
        "filters:\n"
        "  - kind: content\n"
        "    name: trigger-words\n"
        "    rules:\n"
        '      - {id: TRIGGER_WORD, words: "@trigger_words", parts: [subject, body], score: 1.0}\n',
        encoding="utf-8",
    )
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    profiles = ProfileSet()

    print("message size: filter core CPU per message (p50 ms)")
    print(f"{'bytes':>12} {'no-filter':>11} {'typical-corporate':>18}")
    series: dict[str, list[tuple[float, float]]] = {"no-filter": [], "typical-corporate": []}
    routers = {name: Router(compile_profile(profiles.resolve(name))) for name in series}
    for size in SIZES:
        raw = plain_message(size)
        runs = args.runs if size < 1_000_000 else max(3, args.runs // 10)
        row = []
        for name, router in routers.items():
            ms = asyncio.run(core_ms(router, raw, runs))
            series[name].append((size / 1e6, ms))
            row.append(ms)
        print(f"{size:>12,} {row[0]:>11.3f} {row[1]:>18.3f}")
    for name, points in series.items():
        print(f"  {name}: slope {slope(points):.1f} ms per MB; {shape(points)}")

    print("\ntrigger words: compile (ms, once per profile load) and a 20 KB message (p50 ms)")
    print(f"{'words':>8} {'compile':>9} {'per message':>12}")
    raw = plain_message(20_000)
    compile_points: list[tuple[float, float]] = []
    message_points: list[tuple[float, float]] = []
    with tempfile.TemporaryDirectory(prefix="sinkd-bench-words-") as tmp:
        for count in WORD_COUNTS:
            path = words_profile(Path(tmp), count)
            loaded = ProfileSet().resolve(str(path))
            start = time.process_time()
            pipeline = compile_profile(loaded)
            compiled = (time.process_time() - start) * 1000
            ms = asyncio.run(core_ms(Router(pipeline), raw, args.runs))
            compile_points.append((count / 1000, compiled))
            message_points.append((count / 1000, ms))
            print(f"{count:>8,} {compiled:>9.1f} {ms:>12.3f}")
    print(
        f"  compile: slope {slope(compile_points) * 1000:.1f} µs per 1,000 words; "
        f"{shape(compile_points)}"
    )
    print(
        f"  per message: slope {slope(message_points) * 1000:.2f} µs per 1,000 words; "
        f"{shape(message_points)}"
    )


if __name__ == "__main__":
    main()
