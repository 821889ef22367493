"""``sinkd serve``: run the SMTP sink (and its HTTP API) until SIGINT or SIGTERM.

Owns the serve options (generated from ``sinkd.services.settings``, each also read from its
``SINKD_*`` variable), the readiness line on standard output and the signal handling. The
server itself is ``sinkd.server.runtime.Sinkd``; this module holds no policy.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from typing import TextIO

from sinkd.cli.base import EXIT_OK
from sinkd.server.logs import setup as setup_logging
from sinkd.server.runtime import Sinkd
from sinkd.services.settings import Settings, add_options, from_namespace


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_options(parser, "serve")


def run(args: argparse.Namespace, out: TextIO) -> int:
    setup_logging(args.log_format)
    return asyncio.run(_serve(from_namespace(args), out))


async def _serve(settings: Settings, out: TextIO) -> int:
    app = Sinkd(settings)
    await app.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    assert app.smtp_address is not None
    host, port = app.smtp_address
    # The readiness line: scripts and tests wait for it instead of sleeping. smtp= stays first.
    ready = f"sinkd ready smtp={host}:{port}"
    if app.http_address is not None:
        ready += " http={}:{}".format(*app.http_address)
    print(ready, file=out, flush=True)
    try:
        await stop.wait()
    finally:
        await app.stop()
    return EXIT_OK
