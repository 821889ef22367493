"""A running sinkd's HTTP API and SMTP port as the web tests reach them: its base URL and API
paths, a chaos PUT, the one JSON error shape, a message sent over SMTP, raw HTTP/1.1 exchanges
that no client library would send (a lying ``Content-Length``, an unfinished chunked body, no
``Host``), and what the browser tests share: the Chromium flags, a page, and a local HTTP
server counting the requests that reach it (remote content a rendering must not load)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

from sinkd.server.runtime import Sinkd
from tests.support.smtp import TIMEOUT

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@contextlib.asynccontextmanager
async def browser_page(app: Sinkd, chromium: str) -> AsyncIterator[Any]:
    """A Playwright page of a headless ``chromium`` (the executable's path) on ``app``'s
    dashboard, closed with its browser afterwards."""
    # Imported here: Playwright is a test-only dependency of the browser tests alone.
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            context = await browser.new_context(
                base_url=base_url(app), viewport={"width": 1360, "height": 900}
            )
            tab = await context.new_page()
            tab.set_default_timeout(TIMEOUT * 1000)
            yield tab
            await context.close()
        finally:
            await browser.close()


CHAOS = "/api/v1/chaos"
MESSAGES = "/api/v1/messages"
JSON = {"Content-Type": "application/json"}


def base_url(app: Sinkd) -> str:
    assert app.http_address is not None
    host, port = app.http_address
    return f"http://{host}:{port}"


async def put_chaos(http: httpx.AsyncClient, body: Any, **headers: str) -> httpx.Response:
    return await http.put(CHAOS, content=json.dumps(body), headers=JSON | headers)


def assert_error(response: httpx.Response, status: int, *, detail: str = "") -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body: dict[str, Any] = response.json()
    assert set(body) == {"error", "detail"} and body["error"]
    assert detail in str(body["detail"])
    return body


def http_port(app: Sinkd) -> int:
    assert app.http_address is not None
    return app.http_address[1]


def mail(subject: str, body: str) -> bytes:
    return (
        "From: Alice <alice@sender.example>\r\nTo: Bob <bob@corp.example>\r\n"
        f"Subject: {subject}\r\nDate: Thu, 01 Jan 2026 10:00:00 +0000\r\n"
        "Message-ID: <reset-1@sender.example>\r\nMIME-Version: 1.0\r\n"
        f"Content-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n"
    ).encode()


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes
    closed: bool  # the server closed the connection after the answer

    def json(self) -> Any:
        return json.loads(self.body)


async def raw_exchange(app: Sinkd, head: bytes, *body: bytes) -> RawResponse:
    """Send ``head`` (request line and headers, ending in an empty line) and ``body`` parts,
    then read one answer, whatever of the request the server has not read yet. The server must
    close the connection after it (HTTP/1.0, ``Connection: close``, or a refusal that closes
    it); ``closed`` says whether it did so at once."""
    assert app.http_address is not None
    host, port = app.http_address
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(head)
        for part in body:
            writer.write(part)
        await writer.drain()
        return await asyncio.wait_for(_read_response(reader), TIMEOUT)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def _read_response(reader: asyncio.StreamReader) -> RawResponse:
    status_line = await reader.readline()
    status = int(status_line.split()[1])
    headers: dict[str, str] = {}
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    closed = await reader.read(1) == b""
    return RawResponse(status, headers, body, closed)


class HitCounter:
    """A local HTTP server that counts every request it gets."""

    def __init__(self) -> None:
        self.hits: list[str] = []
        hits = self.hits

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                hits.append(self.path)
                self.send_response(204)
                self.end_headers()

            do_POST = do_GET

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()
