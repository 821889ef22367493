"""CPU time of the filter core per message: plain text versus an HTML newsletter.

Runs the engine's staged transaction (MAIL, RCPT, DATA: parse, filters, verdict, strip) in
process, without sockets, and prints per-message CPU time (p50/p99) for each profile and
message, with the ratio to the ``no-filter`` baseline measured in the same run. A separate
interpreter checks that a plain-text message never loads the HTML machinery.

    python bench/content.py [--runs 300]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from sinkd.core.engine import Router, Transaction, compile_profile
from sinkd.core.model import ClientIdentity
from sinkd.core.profiles import ProfileSet

HERE = Path(__file__).resolve().parent
NEWSLETTER = HERE.parent / "tests" / "messages" / "content" / "newsletter.html"


def plain_message(size: int = 1024) -> bytes:
    line = "The quarterly figures are attached; let us discuss them on Monday.\r\n"
    body = (line * (size // len(line) + 1))[:size]
    return (
        "From: Alice <alice@sender.example>\r\nTo: bob@corp.example\r\n"
        "Subject: Quarterly figures\r\nMIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n\r\n" + body
    ).encode()


def newsletter_message(target: int = 20 * 1024) -> bytes:
    html = NEWSLETTER.read_text(encoding="utf-8")
    while len(html) < target:  # pad with more of the same rows if the fixture is small
        html = html.replace(
            "</body>", html[html.find("<table") : html.find("</table>") + 8] + "</body>"
        )
    text = "Our spring collection is here. Read it online."
    return (
        "From: News <news@shop.example>\r\nTo: bob@corp.example\r\n"
        "Subject: Spring collection\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/alternative; boundary="b1"\r\n\r\n'
        "--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n" + text + "\r\n"
        "--b1\r\nContent-Type: text/html; charset=utf-8\r\n\r\n" + html + "\r\n--b1--\r\n"
    ).encode()


async def measure(router: Router, raw: bytes, runs: int) -> list[float]:
    client = ClientIdentity(ip="192.0.2.10", helo="mx.sender.example")
    times: list[float] = []
    for _ in range(runs):
        start = time.process_time()
        transaction = Transaction(router, client, lambda: "bench")
        await transaction.mail("alice@sender.example", len(raw))
        await transaction.rcpt("bob@corp.example")
        await transaction.data(raw)
        times.append(time.process_time() - start)
    return times


def pct(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values``, nearest rank; NaN for none (shared by benches)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def html_loaded_for_plain_text() -> bool:
    code = textwrap.dedent(
        """
        import asyncio, sys
        sys.path.insert(0, {here!r})
        from content import plain_message, measure
        from sinkd.core.engine import Router, compile_profile
        from sinkd.core.profiles import ProfileSet
        router = Router(compile_profile(ProfileSet().resolve("typical-corporate")))
        asyncio.run(measure(router, plain_message(), 5))
        print("selectolax" in sys.modules, "tinycss2" in sys.modules)
        """
    ).format(here=str(HERE))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return "True" in out.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=300)
    args = parser.parse_args()
    profiles = ProfileSet()
    routers = {
        name: Router(compile_profile(profiles.resolve(name)))
        for name in ("no-filter", "typical-corporate", "strict-finance", "google-workspace-like")
    }
    messages = {"plain 1 KB": plain_message(), "HTML newsletter": newsletter_message()}
    print(f"filter core CPU per message, {args.runs} runs each (process_time)")
    header = ("message", "bytes", "profile", "p50 ms", "p99 ms", "x no-filter")
    print("{:<18} {:>7} {:<22} {:>8} {:>8} {:>11}".format(*header))
    for label, raw in messages.items():
        baseline = None
        for name, router in routers.items():
            asyncio.run(measure(router, raw, 20))  # warm-up: imports, caches
            times = asyncio.run(measure(router, raw, args.runs))
            p50 = statistics.median(times) * 1000
            baseline = baseline or p50
            print(
                f"{label:<18} {len(raw):>7} {name:<22} {p50:>8.3f} "
                f"{pct(times, 0.99) * 1000:>8.3f} {p50 / baseline:>10.2f}x"
            )
    loaded = html_loaded_for_plain_text()
    print(f"HTML machinery loaded for a plain-text message: {'yes' if loaded else 'no'}")


if __name__ == "__main__":
    main()
