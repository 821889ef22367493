"""``sinkd serve`` with wall-clock timers around its stages: a bench-only hook, no sinkd change.

``bench/peers.py --profile-sinkd`` runs ``python bench/sinkd_timed.py OUT.json serve ...``
instead of ``python -m sinkd serve ...``. Before handing over to ``sinkd.cli.main`` it wraps,
per message: aiosmtpd's DATA command from the 354 to the handler hook (reading the body line
by line, including waiting for the client's bytes), the engine's ``Transaction.data`` (parse,
filters, verdict), the store's ``save`` (from handing the record to the writer process to its
commit: the commit wait the 250 depends on), and the whole ``handle_DATA``. The writer's batches
run in its own process, out of reach of these wrappers. At exit it writes the samples'
p50/p99/mean (µs) to OUT.json.
"""

from __future__ import annotations

import atexit
import json
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from functools import wraps
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP

from sinkd import cli
from sinkd.core import engine
from sinkd.server import handler
from sinkd.store import sqlite

SAMPLES: dict[str, list[float]] = {}


def timed(name: str, fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    samples = SAMPLES.setdefault(name, [])

    @wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return await fn(*args, **kwargs)
        finally:
            samples.append(time.perf_counter() - start)

    return wrapper


def install() -> None:
    SMTP.smtp_DATA = timed("aiosmtpd smtp_DATA: 354 → reply (incl. handler)", SMTP.smtp_DATA)  # type: ignore[method-assign]
    handler.SinkHandler.handle_DATA = timed(
        "handle_DATA: engine + commit + reply text", handler.SinkHandler.handle_DATA
    )  # type: ignore[method-assign]
    engine.Transaction.data = timed(
        "engine Transaction.data (parse, filters, verdict)", engine.Transaction.data
    )  # type: ignore[method-assign]
    engine.Transaction.mail = timed("engine Transaction.mail", engine.Transaction.mail)  # type: ignore[method-assign]
    engine.Transaction.rcpt = timed("engine Transaction.rcpt", engine.Transaction.rcpt)  # type: ignore[method-assign]
    sqlite.SqliteStore.save = timed(
        "store save: queue → committed (commit wait)", sqlite.SqliteStore.save
    )  # type: ignore[method-assign]


def dump(path: Path) -> None:
    summary: dict[str, dict[str, float]] = {}
    for name, values in SAMPLES.items():
        if not values:
            continue
        ordered = sorted(values)
        scale = 1.0 if name.startswith("writer batch size") else 1e6  # counts, or seconds → µs
        summary[name] = {
            "n": len(values),
            "p50": statistics.median(values) * scale,
            "p99": ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] * scale,
            "mean": statistics.fmean(values) * scale,
        }
    path.write_text(json.dumps(summary, indent=1), encoding="utf-8")


def main() -> None:
    out = Path(sys.argv[1])
    install()
    atexit.register(dump, out)
    code = cli.main(sys.argv[2:])
    dump(out)
    sys.exit(code)


if __name__ == "__main__":
    main()
