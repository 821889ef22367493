"""A bare aiosmtpd sink for the peer benchmark: every message gets 250, nothing is kept.

The floor any Python SMTP sink stands on: aiosmtpd's own protocol handling (greeting, EHLO,
MAIL, RCPT, DATA read line by line, dot-unstuffing) and nothing else. ``bench/peers.py``
starts it as a subprocess; it prints ``bare ready smtp=HOST:PORT`` once it listens and stops
on SIGTERM or SIGINT.

    python bench/bare_aiosmtpd.py [--host 127.0.0.1] [--port 0] [--dump FILE]

``--dump FILE`` writes the first message's raw bytes there (to see what a driver sends).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP


class BareSMTP(SMTP):
    # sinkd accepts lines up to 64 KiB (ESP-made HTML often has lines over RFC 5322's 998);
    # the bare sink must take the same messages, so it gets the same limit.
    line_length_limit = 65536


class Handler:
    """Answers 250 to DATA; optionally keeps the first message for inspection."""

    def __init__(self, dump: Path | None) -> None:
        self.dump = dump

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.dump is not None:
            self.dump.write_bytes(envelope.original_content)
            self.dump = None
        return "250 2.0.0 Ok: queued"


async def serve(host: str, port: int, dump: Path | None) -> None:
    handler = Handler(dump)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: BareSMTP(handler, decode_data=False, hostname="bare.bench", data_size_limit=0),
        host=host,
        port=port,
        reuse_address=True,
    )
    bound = server.sockets[0].getsockname()
    print(f"bare ready smtp={bound[0]}:{bound[1]}", flush=True)
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    server.close()
    await server.wait_closed()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--dump", type=Path)
    args = parser.parse_args()
    asyncio.run(serve(args.host, args.port, args.dump))


if __name__ == "__main__":
    main()
