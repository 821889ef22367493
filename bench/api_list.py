"""Latency of the API's message list against the number of stored messages.

Fills a SQLite store with realistic, varied records (senders, recipients, subjects with some
non-ASCII text, verdicts, profiles, finding codes), starts a real ``Sinkd`` (uvicorn on a free
loopback port, the Starlette app, the SQLite store) and times ``GET /api/v1/messages`` with
httpx for each filter: the first page and a deep page (through the ``next`` cursor's
``before=`` when the server offers one, else ``offset=``), p50 and p99 over repeats. It prints
one table per size, PASS/FAIL against the 100 ms target (issue 6), and with several sizes the
slope of each query in ms per 100,000 stored messages (issue 9: flat or linear).

    python bench/api_list.py                            # 100,000 messages
    python bench/api_list.py --sizes 0,10000,100000,1000000
    python bench/api_list.py --insert-rate 20000        # also: save() throughput, 50 at a time

Filling: records go in through ``SqliteStore.save`` (the real writer thread and its group
commit) with many saves in flight, unless ``--fill bulk`` is given, which hands them to
``bulk_load`` (the same per-record SQL as the writer, in large transactions with
``synchronous=OFF``; a bench-only shortcut that makes 1,000,000 messages take about a minute
instead of several). Sizes are filled incrementally in one file, smallest first.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from sinkd.core.model import (
    Action,
    Category,
    ClientIdentity,
    Disposition,
    Envelope,
    Finding,
    Reply,
    Stage,
    Verdict,
    VerdictAction,
)
from sinkd.server.runtime import Sinkd
from sinkd.services.settings import Settings
from sinkd.store import MessageRecord
from sinkd.store.sqlite import open_sqlite
from sinkd.web.messages import list_query

TARGET_MS = 100.0
T0 = datetime(2026, 1, 1, tzinfo=UTC)

# --- realistic records ---------------------------------------------------------------------

_DOMAINS = [f"{w}{i}.example" for w in ("shop", "news", "bank", "corp", "promo") for i in range(60)]
_USERS = ["alice", "bob", "carol", "dave", "eve", "frank", "grace", "heidi", "ivan", "judy"]
_SUBJECT_WORDS = [
    "quarterly",
    "figures",
    "invoice",
    "meeting",
    "offer",
    "spring",
    "collection",
    "password",
    "reset",
    "your",
    "order",
    "shipped",
    "delivery",
    "update",
    "newsletter",
    "webinar",
    "invitation",
    "report",
    "weekly",
    "lottery",
    "winner",
    "free",
    "gift",
    "urgent",
    "action",
    "required",
    "account",
    "statement",
    "Rechnung",
    "Bestellung",
    "Lieferung",
    "façade",
    "café",
    "Ärger",
    "Grüße",
    "résumé",
    "naïve",
    "Überweisung",
]
_PROFILES = ["typical-corporate"] * 6 + ["strict-finance"] * 2 + ["no-filter", "google-like"]
_CODES = [
    "CONTENT_TRIGGER_WORD",
    "CONTENT_SPAM_WORD",
    "SPF_FAIL",
    "SPF_SOFTFAIL",
    "DKIM_NONE",
    "DKIM_FAIL",
    "DMARC_FAIL",
    "DNSBL_LISTED",
    "MIME_EXECUTABLE",
    "MIME_STRIPPED",
    "FORMAT_NO_DATE",
    "FORMAT_BARE_LF",
    "ENVELOPE_BLOCKLIST",
    "SCORE_TOTAL",
]
_DISPOSITION = {
    VerdictAction.ACCEPT: Disposition.INBOX,
    VerdictAction.QUARANTINE: Disposition.QUARANTINED,
    VerdictAction.REJECT: Disposition.REJECTED,
}
RAW = b"From: a@b.example\r\nSubject: hi\r\n\r\n" + b"x" * 400 + b"\r\n"


def _address(rng: random.Random) -> str:
    return f"{rng.choice(_USERS)}{rng.randrange(200)}@{rng.choice(_DOMAINS)}"


def record(n: int, rng: random.Random) -> MessageRecord:
    """Message ``n`` of a synthetic but varied history: about one a second, a little out of
    order (sessions finish in another order than they start)."""
    verdict = rng.choices(list(VerdictAction), weights=(75, 15, 10))[0]
    codes = rng.sample(_CODES, rng.choice((0, 1, 1, 2, 2, 3, 4)))
    if rng.random() < 0.001:
        codes.append("SIZE_OVER_LIMIT")  # a rare code: 1 in 1,000
    findings = tuple(
        Finding(
            code=code,
            filter=code.split("_")[0].lower(),
            category=Category.CONTENT,
            action=Action.SCORE,
            reason="The body uses a phrase spam filters look for.",
            score=1.5,
            detail={"word": rng.choice(_SUBJECT_WORDS)},
        )
        for code in codes
    )
    subject = " ".join(rng.choices(_SUBJECT_WORDS, k=rng.randint(2, 6))) + f" #{n}"
    rcpts = tuple(_address(rng) for _ in range(rng.choice((1, 1, 1, 2, 3))))
    message_id = f"B{n:011d}"
    v = Verdict(
        profile=rng.choice(_PROFILES),
        verdict=verdict,
        disposition=_DISPOSITION[verdict],
        score=1.5 * len(codes),
        stage=Stage.DATA,
        reply=Reply(250, "2.0.0", f"OK queued as {message_id}"),
        findings=findings,
        envelope=Envelope(
            client=ClientIdentity(ip=f"192.0.2.{n % 250 + 1}", helo="mx.example"),
            mail_from=_address(rng),
            rcpt_to=rcpts,
        ),
        subject=subject,
        id=message_id,
    )
    received = T0 + timedelta(seconds=n, milliseconds=rng.randrange(-3000, 3000))
    return MessageRecord(message_id, received, f"T{n:011d}", v, RAW)


def records(start: int, stop: int) -> Iterator[MessageRecord]:
    for n in range(start, stop):
        yield record(n, random.Random(n))


# --- filling --------------------------------------------------------------------------------


async def fill(path: Path, start: int, stop: int, how: str) -> float:
    """Add records ``start`` .. ``stop - 1``; return records per second."""
    began = time.perf_counter()
    if how == "bulk":
        from sinkd.store.sqlite import bulk_load

        await asyncio.to_thread(bulk_load, path, records(start, stop))
    else:
        store = await open_sqlite(path)
        try:
            chunk: list[MessageRecord] = []
            for rec in records(start, stop):
                chunk.append(rec)
                if len(chunk) == 2000:
                    await asyncio.gather(*(store.save(r) for r in chunk))
                    chunk = []
            await asyncio.gather(*(store.save(r) for r in chunk))
        finally:
            await store.close()
    return (stop - start) / max(time.perf_counter() - began, 1e-9)


async def insert_rate(path: Path, count: int, concurrency: int) -> float:
    """Records per second through ``save`` with ``concurrency`` saves in flight at a time, as
    that many SMTP sessions would (each waits for its commit before the next)."""
    store = await open_sqlite(path)
    rec = iter(records(10**9, 10**9 + count))
    try:

        async def session() -> None:
            for r in rec:
                await store.save(r)

        began = time.perf_counter()
        await asyncio.gather(*(session() for _ in range(concurrency)))
        return count / (time.perf_counter() - began)
    finally:
        await store.close()


# --- the queries ----------------------------------------------------------------------------

QUERIES: list[tuple[str, dict[str, str]]] = [
    ("all", {}),
    ("verdict=quarantine", {"verdict": "quarantine"}),
    ("profile=strict-finance", {"profile": "strict-finance"}),
    ("to=corp (common)", {"to": "corp"}),
    ("to=one address (rare)", {"to": "alice7@shop7.example"}),
    ("from=BANK12 (case)", {"from": "BANK12"}),
    ("subject=invoice", {"subject": "invoice"}),
    ("subject=GRÜSSE/grüße (unicode)", {"subject": "GRÜßE"}),
    ("subject=#4242 (rare)", {"subject": "#4242"}),
    ("subject=zq (2 chars, none)", {"subject": "zq"}),
    ("subject=nothing (none)", {"subject": "no-such-subject"}),
    ("code=DKIM_FAIL (common)", {"code": "DKIM_FAIL"}),
    ("code=SIZE_OVER_LIMIT (rare)", {"code": "SIZE_OVER_LIMIT"}),
    ("since=last hour", {"since": "@recent"}),
    ("since..until (middle day)", {"since": "@mid", "until": "@mid+1d"}),
    ("until=first hour", {"until": "@first+1h"}),
    (
        "reject & to=shop & code=SPF_FAIL",
        {"verdict": "reject", "to": "shop", "code": "SPF_FAIL"},
    ),
    (
        "quarantine & subject=invoice & since",
        {"verdict": "quarantine", "subject": "invoice", "since": "@mid"},
    ),
]


def _params(raw: dict[str, str], size: int) -> dict[str, str]:
    last = T0 + timedelta(seconds=max(size - 1, 0))
    moments = {
        "@recent": last - timedelta(hours=1),
        "@mid": T0 + timedelta(seconds=size // 2),
        "@mid+1d": T0 + timedelta(seconds=size // 2, days=1),
        "@first+1h": T0 + timedelta(hours=1),
    }
    return {
        k: moments[v].isoformat().replace("+00:00", "Z") if v in moments else v
        for k, v in raw.items()
    }


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def time_queries(
    app: Sinkd, http: httpx.AsyncClient, size: int, repeats: int, limit: int
) -> dict[str, dict[str, float]]:
    assert app.store is not None
    results: dict[str, dict[str, float]] = {}
    for name, raw in QUERIES:
        params = _params(raw, size) | {"limit": str(limit)}
        first = await _timed(http, params, repeats)
        body = first[1]
        # A deep page: halfway down this filter's own matches. Finding where that is (an
        # exact count, a large offset) is set-up through the store, not timed.
        query = list_query(params)
        half = await app.store.count(query) // 2
        if "next" in body:
            middle = await app.store.list(dataclasses.replace(query, offset=half, limit=1))
            deep_params = params | {"before": str(middle[0].seq if middle else 1)}
        else:  # a server without cursors (before this change): offset it is
            deep_params = params | {"offset": str(half)}
        deep = await _timed(http, deep_params, repeats)
        results[name] = {
            "first_p50": _pct(first[0], 0.5),
            "first_p99": _pct(first[0], 0.99),
            "deep_p50": _pct(deep[0], 0.5),
            "deep_p99": _pct(deep[0], 0.99),
            "rows": float(len(body["messages"])),
            "deep_rows": float(len(deep[1]["messages"])),
        }
    return results


async def _timed(
    http: httpx.AsyncClient, params: dict[str, str], repeats: int
) -> tuple[list[float], dict[str, Any]]:
    times: list[float] = []
    body: dict[str, Any] = {}
    for _ in range(repeats):
        began = time.perf_counter()
        response = await http.get("/api/v1/messages", params=params)
        times.append((time.perf_counter() - began) * 1000)
        if response.status_code != 200:
            raise SystemExit(f"{params}: HTTP {response.status_code} {response.text}")
        body = response.json()
    return times, body


async def measure(path: Path, size: int, repeats: int, limit: int) -> dict[str, dict[str, float]]:
    settings = Settings(
        host="127.0.0.1", port=0, db=path, hostname="bench.test", http=True, http_port=0
    )
    app = Sinkd(settings)
    await app.start()
    try:
        assert app.http_address is not None
        host, port = app.http_address
        async with httpx.AsyncClient(base_url=f"http://{host}:{port}", timeout=60) as http:
            await http.get("/api/v1/messages", params={"limit": "1"})  # warm the readers
            return await time_queries(app, http, size, repeats, limit)
    finally:
        await app.stop()


# --- output ---------------------------------------------------------------------------------


def print_table(size: int, results: dict[str, dict[str, float]]) -> bool:
    print(f"\n{size:,} stored messages: GET /api/v1/messages, ms (p50 / p99)")
    print(f"{'query':40} {'first page':>17} {'deep page':>17} {'rows':>9}  target")
    ok = True
    for name, r in results.items():
        passed = r["first_p99"] < TARGET_MS and r["deep_p99"] < TARGET_MS
        ok &= passed
        print(
            f"{name:40} {r['first_p50']:7.1f} / {r['first_p99']:7.1f} "
            f"{r['deep_p50']:7.1f} / {r['deep_p99']:7.1f} "
            f"{int(r['rows']):4}/{int(r['deep_rows']):<4} " + ("PASS" if passed else "FAIL")
        )
    return ok


def print_slopes(by_size: dict[int, dict[str, dict[str, float]]]) -> None:
    sizes = sorted(by_size)
    if len(sizes) < 2:
        return
    print("\nslope (least squares over sizes), ms per 100,000 stored messages, p50")
    print(f"{'query':40} {'first page':>11} {'deep page':>11}")
    xs = [s / 100_000 for s in sizes]
    for name in by_size[sizes[0]]:
        slopes = []
        for key in ("first_p50", "deep_p50"):
            ys = [by_size[s][name][key] for s in sizes]
            slopes.append(statistics.linear_regression(xs, ys).slope)
        print(f"{name:40} {slopes[0]:11.2f} {slopes[1]:11.2f}")


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000", help="comma-separated, e.g. 0,10000,100000")
    parser.add_argument("--repeats", type=int, default=20, help="requests per query and page")
    parser.add_argument("--limit", type=int, default=50, help="page size")
    parser.add_argument("--fill", choices=("writer", "bulk"), default="bulk")
    parser.add_argument("--dir", type=Path, help="where the store goes (default: a temp dir)")
    parser.add_argument(
        "--insert-rate",
        type=int,
        default=0,
        metavar="N",
        help="also time N saves through the writer, 50 in flight, into the filled store",
    )
    args = parser.parse_args(argv)
    sizes = sorted({int(s.replace("_", "")) for s in args.sizes.split(",")})
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        path = Path(tmp) / "bench.sqlite3"
        by_size: dict[int, dict[str, dict[str, float]]] = {}
        filled = 0
        ok = True
        for size in sizes:
            if size > filled:
                rate = await fill(path, filled, size, args.fill)
                print(f"filled {filled:,} -> {size:,} ({args.fill}): {rate:,.0f} records/s")
                filled = size
            by_size[size] = await measure(path, size, args.repeats, args.limit)
            ok &= print_table(size, by_size[size])
        print_slopes(by_size)
        if args.insert_rate:
            rate = await insert_rate(path, args.insert_rate, 50)
            print(f"\nsave() throughput, 50 in flight, into {filled:,}: {rate:,.0f} records/s")
    print("\n" + ("PASS" if ok else "FAIL") + f": every query p99 < {TARGET_MS:.0f} ms")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
