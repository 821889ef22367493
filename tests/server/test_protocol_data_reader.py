"""sinkd's DATA reader against aiosmtpd's own, byte for byte, over real sockets.

``SinkdSMTP.smtp_DATA`` reads up to each ".\\r\\n" instead of line by line. The same wire bytes go
to a plain aiosmtpd server (its own ``smtp_DATA``, with sinkd's line limit) and to sinkd
(``no-filter``, which stores the message as received): the replies' codes and the message
content must agree, for hand-made edge cases and for generated streams of dots, CRs and LFs.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP

from sinkd.server.protocol import DATA_LINE_LIMIT
from sinkd.server.runtime import Sinkd
from tests.conftest import StartServer

TIMEOUT = 10.0
LIMIT = 4096  # a small data size limit, to cross it cheaply


class _Capture:
    def __init__(self) -> None:
        self.contents: list[bytes] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.contents.append(bytes(envelope.content))
        return "250 OK"


class _LongLines(SMTP):
    line_length_limit = DATA_LINE_LIMIT  # as sinkd's


@pytest.fixture
async def reference() -> AsyncIterator[tuple[int, _Capture]]:
    """Plain aiosmtpd: its own smtp_DATA."""
    capture = _Capture()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: _LongLines(capture, data_size_limit=LIMIT, enable_SMTPUTF8=True),
        "127.0.0.1",
        0,
    )
    yield server.sockets[0].getsockname()[1], capture
    server.close()
    await server.wait_closed()


async def _exchange(port: int, wire: bytes) -> int:
    """One transaction with ``wire`` as the DATA bytes (end included); the final reply's code."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)

    async def reply() -> int:
        while True:
            line = await reader.readline()
            assert line, "connection closed"
            if line[3:4] != b"-":
                return int(line[:3])

    try:
        async with asyncio.timeout(TIMEOUT):
            assert await reply() == 220
            for command, code in (
                (b"EHLO client.example", 250),
                (b"MAIL FROM:<a@sender.example>", 250),
                (b"RCPT TO:<b@corp.example>", 250),
                (b"DATA", 354),
            ):
                writer.write(command + b"\r\n")
                assert await reply() == code, command
            writer.write(wire)
            return await reply()
    finally:
        writer.close()


async def _sinkd_content(app: Sinkd) -> bytes | None:
    from sinkd.store import Query

    assert app.store is not None
    (newest,) = await app.store.list(Query(limit=1))
    stored = await app.store.get(newest.id, with_raw=True)
    return stored.raw


CASES = [
    b".\r\n",  # empty message
    b"a\r\n.\r\n",
    b"..\r\n.\r\n",  # a stuffed lone dot
    b".x\r\n..y\r\n...\r\n.\r\n",
    b"Hello.\r\nWorld.\r\n.\r\n",  # lines ending in a dot
    b"a\n.\r\nb\r\n.\r\n",  # bare LF dot: not the end
    b"a\r\n.\n.\r\n.\r\n",  # dot, bare LF, dot: not the end either
    b"a\r.\r\nb\r\n.\r\n",  # bare CR dot
    b"x" * 3000 + b".\r\n" + b"y." * 400 + b"\r\n.\r\n",  # straddles the stream limit? no: small
    b"z" * (DATA_LINE_LIMIT + 10) + b"\r\n.\r\n",  # a line over the limit: 500
    b"w" * (LIMIT + 10) + b"\r\n.\r\n",  # over the size limit: 552
    (b"q" * 100 + b"\r\n") * 30 + b"\r\n.\r\n",  # under it
]


def _generated(count: int) -> list[bytes]:
    rng = random.Random(4552)
    pieces = [b".", b"\r\n", b"\n", b"\r", b"a", b"..", b"\r\n.", b"b" * 50]
    streams = []
    while len(streams) < count:
        body = b"".join(rng.choice(pieces) for _ in range(rng.randint(0, 40)))
        if b"\r\n.\r\n" in b"\r\n" + body + b"\r\n":
            continue  # would end the data early: the rest would be commands
        streams.append(body + b"\r\n.\r\n")
    return streams


async def test_sinkd_reads_data_exactly_as_aiosmtpd_does(
    start_server: StartServer, reference: tuple[int, _Capture]
) -> None:
    ref_port, capture = reference
    app = await start_server(profile="no-filter", max_message_size=LIMIT)
    assert app.smtp_address is not None
    for wire in CASES + _generated(300):
        ref_code = await _exchange(ref_port, wire)
        code = await _exchange(app.smtp_address[1], wire)
        assert code == ref_code, wire
        if code == 250:
            assert await _sinkd_content(app) == capture.contents[-1], wire


async def test_a_large_message_with_dotted_lines_arrives_intact(
    start_server: StartServer, reference: tuple[int, _Capture]
) -> None:
    lines = [f"Line {n}. {'.' * (n % 3)}".encode() for n in range(20000)]
    body = b"\r\n".join(lines) + b"\r\n"
    wire = body.replace(b"\r\n.", b"\r\n..") + b".\r\n"  # every line starts with L: no stuffing
    app = await start_server(profile="no-filter")
    assert app.smtp_address is not None
    assert await _exchange(app.smtp_address[1], wire) == 250
    assert await _sinkd_content(app) == body


BIG_LIMIT = 4 * 1024 * 1024  # room for lines around the line limit, and for many of them


@pytest.fixture
async def big_reference() -> AsyncIterator[tuple[int, _Capture]]:
    """Plain aiosmtpd with a size limit that large messages fit under."""
    capture = _Capture()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: _LongLines(capture, data_size_limit=BIG_LIMIT, enable_SMTPUTF8=True),
        "127.0.0.1",
        0,
    )
    yield server.sockets[0].getsockname()[1], capture
    server.close()
    await server.wait_closed()


def _big_cases() -> list[bytes]:
    """Messages over the line limit in size, with lines around that limit, dot-stuffed lines,
    bare LFs and CRs, and 8-bit octets, where the reader's whole-message steps apply."""
    rng = random.Random(18)
    eight_bit = bytes(range(128, 256)) * 4
    filler = b"".join(
        rng.choice([b"plain text line\r\n", b"..stuffed\r\n", b"bare\nLF\r\n", b"cr\r.\r\n"])
        for _ in range(6000)
    )
    cases = []
    for length in (DATA_LINE_LIMIT - 3, DATA_LINE_LIMIT - 2, DATA_LINE_LIMIT - 1, DATA_LINE_LIMIT):
        long_line = (b"L" * length)[:length]
        cases.append(filler + long_line + b"\r\n" + filler + b".\r\n")
        cases.append(b"." + long_line + b"\r\n" + filler + b".\r\n")  # a stuffed long first line
        cases.append(filler + b"..\r\n" + long_line + b"\r\n.\r\n")  # the last line is long
    cases.append(b"..first\r\n" + filler + eight_bit + b"\r\n" + filler + b".\r\n")
    cases.append((eight_bit + b"\r\n") * 2000 + b".\r\n")
    cases.append(b"x" * (DATA_LINE_LIMIT - 100) + b"\rbare CR\nbare LF" + b"y" * 200 + b"\r\n.\r\n")
    return cases


async def test_large_messages_are_read_exactly_as_aiosmtpd_reads_them(
    start_server: StartServer, big_reference: tuple[int, _Capture]
) -> None:
    ref_port, capture = big_reference
    app = await start_server(profile="no-filter", max_message_size=BIG_LIMIT)
    assert app.smtp_address is not None
    for wire in _big_cases():
        ref_code = await _exchange(ref_port, wire)
        code = await _exchange(app.smtp_address[1], wire)
        assert code == ref_code, (len(wire), wire[:40])
        if code == 250:
            assert await _sinkd_content(app) == capture.contents[-1], (len(wire), wire[:40])
