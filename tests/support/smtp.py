"""sinkd's SMTP side as the end-to-end tests drive it: a raw client that sends exact bytes, an
aiosmtplib client, the stock test messages, profile files, reading the store back, and the check
that sinkd logged no internal error."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiosmtplib

from sinkd.core.matching import GTUBE
from sinkd.server.runtime import Sinkd
from sinkd.store import Query, StoredMessage

TIMEOUT = 10.0  # a bound on a hung server, never a threshold a passing test comes near
# Ids are opaque upper-case hex (their length is the id scheme's business, not the protocol's).
QUEUED = re.compile(r"^250 2\.0\.0 Ok: queued as ([0-9A-F]{12,40}(?: [0-9A-F]{12,40})*)$")


# --- a raw SMTP client: exact bytes on the wire, replies as they come ----------------------


@dataclass(frozen=True)
class Answer:
    """One SMTP reply: its code and every line as received (without CRLF)."""

    code: int
    lines: list[str]

    @property
    def line(self) -> str:
        """The last line, e.g. ``250 2.0.0 Ok: queued as ...``."""
        return self.lines[-1]

    @property
    def ids(self) -> list[str]:
        match = QUEUED.match(self.line)
        assert match, f"not a 'queued as' reply: {self.line!r}"
        return match.group(1).split()


def stuff(body: bytes) -> bytes:
    """RFC 5321 §4.5.2 transparency for ``body``, plus the end-of-data line.

    Only lines that start after a CRLF are stuffed: that is what the server un-stuffs, so
    whatever bytes are sent (bare LF, smuggling look-alikes) come back unchanged.
    """
    stuffed = re.sub(rb"(\A|\r\n)\.", rb"\1..", body)
    if not stuffed.endswith(b"\r\n"):
        stuffed += b"\r\n"
    return stuffed + b".\r\n"


class RawSMTP:
    """A minimal SMTP client on an asyncio stream that sends exactly the bytes it is given."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.greeting: Answer | None = None

    async def read(self) -> Answer:
        lines: list[str] = []
        async with asyncio.timeout(TIMEOUT):
            while True:
                raw = await self.reader.readline()
                assert raw.endswith(b"\r\n"), f"connection closed mid-reply: {lines} {raw!r}"
                line = raw[:-2].decode("utf-8")
                lines.append(line)
                if line[3:4] != "-":
                    return Answer(int(line[:3]), lines)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def command(self, line: str | bytes) -> Answer:
        data = line if isinstance(line, bytes) else line.encode("utf-8")
        await self.send(data + b"\r\n")
        return await self.read()

    async def ok(self, line: str | bytes, code: int = 250) -> Answer:
        answer = await self.command(line)
        assert answer.code == code, f"{line!r} -> {answer.lines}"
        return answer

    async def data(self, body: bytes) -> Answer:
        await self.ok("DATA", 354)
        await self.send(stuff(body))
        return await self.read()

    async def mail(self, body: bytes, mail_from: str, *rcpts: str) -> Answer:
        """MAIL, RCPT... (all expected to pass), DATA: the answer to the end of data."""
        await self.ok(f"MAIL FROM:<{mail_from}>")
        for rcpt in rcpts:
            await self.ok(f"RCPT TO:<{rcpt}>")
        return await self.data(body)

    async def quit(self) -> Answer:
        answer = await self.command("QUIT")
        assert answer.line == "221 2.0.0 Bye"
        return answer

    async def aclose(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


@contextlib.asynccontextmanager
async def raw_client(
    app: Sinkd, *, preamble: bytes = b"", ehlo: str | None = "client.example"
) -> AsyncIterator[RawSMTP]:
    """A connected ``RawSMTP`` (greeted, and EHLO'd unless ``ehlo`` is None)."""
    assert app.smtp_address is not None
    reader, writer = await asyncio.open_connection(*app.smtp_address, limit=1 << 20)
    client = RawSMTP(reader, writer)
    try:
        if preamble:
            await client.send(preamble)
        client.greeting = await client.read()
        assert client.greeting.code == 220
        if ehlo is not None:
            await client.ok(f"EHLO {ehlo}")
        yield client
    finally:
        await client.aclose()


def aio_client(app: Sinkd, *, start_tls: bool = False, **kwargs: Any) -> aiosmtplib.SMTP:
    """aiosmtplib on the server; plain text unless asked (it would try STARTTLS by itself)."""
    assert app.smtp_address is not None
    host, port = app.smtp_address
    return aiosmtplib.SMTP(hostname=host, port=port, start_tls=start_tls, timeout=TIMEOUT, **kwargs)


# --- messages and profiles ---------------------------------------------------------------------


def message(
    subject: str = "Quarterly figures",
    body: str = "Hello Bob,\r\n\r\nthe figures are attached as promised.\r\n",
    *,
    sender: str = "alice@sender.example",
    to: str = "bob@corp.example",
) -> bytes:
    head = (
        f"From: Alice <{sender}>\r\n"
        f"To: Bob <{to}>\r\n"
        f"Subject: {subject}\r\n"
        "Date: Mon, 03 Jun 2024 10:00:00 +0000\r\n"
        "Message-ID: <test-1@sender.example>\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
    )
    return (head + "\r\n" + body).encode("utf-8")


GTUBE_MESSAGE = message("test", "This is the GTUBE.\r\n" + GTUBE.decode() + "\r\n")
# Three trigger words of typical-corporate: 9 points, over quarantine (8), under reject (15).
SPAMMY_MESSAGE = message("Win the lottery", "Pay the casino in bitcoin today.\r\n")


def write_profile(directory: Path, profile_id: str, body: str) -> Path:
    path = directory / f"{profile_id}.yaml"
    path.write_text(f"schema: sinkd.profile/v1\nid: {profile_id}\n{body}", encoding="utf-8")
    return path


# --- store helpers -----------------------------------------------------------------------------


async def stored(app: Sinkd, message_id: str) -> StoredMessage:
    assert app.store is not None
    return await app.store.get(message_id, with_raw=True)


async def count(app: Sinkd) -> int:
    assert app.store is not None
    return await app.store.count()


async def newest(app: Sinkd) -> StoredMessage:
    assert app.store is not None
    (record,) = await app.store.list(Query(limit=1))
    return await app.store.get(record.id, with_raw=True)


def codes(record: StoredMessage) -> list[str]:
    return [f["code"] for f in record.data["findings"]]


async def send(app: Sinkd, raw: bytes, sender: str, *rcpts: str) -> None:
    """``raw`` from ``sender`` to ``rcpts`` over SMTP; a rejected message is still stored."""
    async with aio_client(app) as smtp:
        with contextlib.suppress(aiosmtplib.SMTPDataError):
            await smtp.sendmail(sender, list(rcpts), raw)
