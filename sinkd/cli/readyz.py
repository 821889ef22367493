"""``sinkd readyz``: is a running sinkd ready? For health checks and CI scripts.

Owns the readiness probe of another sinkd process over its HTTP API (``sinkd.testing.client``)
and the waiting for it; exit 0 ready, 1 not. Must not start or import a server.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import TextIO

from sinkd.cli.base import EXIT_ERROR, EXIT_OK
from sinkd.errors import HttpApiError, HttpApiUnreachable
from sinkd.services.settings import DEFAULT_URL, parse_seconds
from sinkd.testing.client import SinkdClient

READYZ_WAIT = 30.0  # seconds --wait waits by default
READYZ_REQUEST = 5.0  # seconds one readiness request may take
READYZ_BACKOFF = (0.05, 1.0)  # first and longest pause between attempts of --wait


def add_arguments(readyz: argparse.ArgumentParser) -> None:
    readyz.add_argument(
        "--url",
        default=os.environ.get("SINKD_URL") or DEFAULT_URL,
        help="its HTTP API, http://USER:PASS@HOST:PORT under --http-auth "
        f"(default {DEFAULT_URL}; env SINKD_URL)",
    )
    readyz.add_argument(
        "--wait",
        action="store_true",
        help="retry (short backoff, up to 1 s apart) until it is ready or --timeout passes",
    )
    readyz.add_argument(
        "--timeout",
        type=parse_seconds,
        default=None,
        metavar="SECONDS",
        help=f"with --wait: how long to wait in all (default {READYZ_WAIT:g}); "
        f"without: how long the one request may take (default {READYZ_REQUEST:g})",
    )


def run(args: argparse.Namespace, out: TextIO) -> int:
    """One readiness check, or with ``--wait`` checks until ready or the deadline. Waiting
    pauses between attempts (doubling, at most a second): sinkd is another process, and a
    refused connection has no event to wait on. Only "not there yet" (refused, 503) is retried;
    any other answer (401, 404) will not change by waiting."""
    total = args.timeout or (READYZ_WAIT if args.wait else READYZ_REQUEST)
    deadline = time.monotonic() + total
    pause = READYZ_BACKOFF[0]
    with SinkdClient(args.url, timeout=min(total, READYZ_REQUEST)) as client:
        while True:
            try:
                readiness = client.readyz()
            except HttpApiUnreachable as exc:
                why = str(exc.detail)
            except HttpApiError as exc:
                print(f"sinkd: {client.url}: not ready: {exc}", file=sys.stderr)
                return EXIT_ERROR
            else:
                if readiness.ready:
                    print(f"sinkd at {client.url}: ready", file=out)
                    return EXIT_OK
                why = f"{client.url}: {readiness.why_not}"
            left = deadline - time.monotonic()
            if not args.wait or left <= 0:
                waited = f" (waited {total:g} s)" if args.wait else ""
                print(f"sinkd: {why}{waited}", file=sys.stderr)
                return EXIT_ERROR
            time.sleep(min(pause, left))
            pause = min(pause * 2, READYZ_BACKOFF[1])
