"""The cap on request bodies (``sinkd.web.app.BodyLimit``, docs/http-api.md "Body sizes"), over
raw HTTP/1.1 to a real ``Sinkd``: a declared ``Content-Length`` over the cap is refused with a
JSON 413 before one byte of the body has to arrive, a chunked body as soon as it passes the
cap, and bodies up to the cap reach the endpoint."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from sinkd.server.runtime import Sinkd
from sinkd.store import Query
from sinkd.web.app import BODY_LIMIT
from tests.conftest import StartServer
from tests.support.smtp import send
from tests.support.web import RawResponse, mail, raw_exchange

THIRTY_MB = 30 * 1024 * 1024


@pytest.fixture
async def app(start_server: StartServer) -> Sinkd:
    app = await start_server(http=True)
    await send(
        app,
        mail("Quarterly figures", "Hello Bob, the figures are attached."),
        "alice@sender.example",
        "bob@corp.example",
    )
    return app


async def message_id(app: Sinkd) -> str:
    assert app.store is not None
    return (await app.store.list(Query(limit=1)))[0].id


def head(method: str, path: str, *headers: str) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", *headers, "", ""]
    return "\r\n".join(lines).encode()


def assert_too_large(response: RawResponse) -> None:
    assert response.status == 413
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {
        "error": "content too large",
        "detail": f"request bodies are limited to {BODY_LIMIT} bytes (docs/http-api.md)",
    }
    # The server hangs up rather than read the rest of a body it has refused.
    assert response.closed


async def test_a_30_mb_content_length_is_refused_before_the_body_arrives(app: Sinkd) -> None:
    # Only a few bytes of the 30 MB are ever sent: an answer at all proves sinkd did not wait
    # for (or read) the body whole.
    json_body = "Content-Type: application/json"
    targets = [
        ("POST", f"/api/v1/messages/{await message_id(app)}/evaluate"),
        ("PUT", "/api/v1/chaos"),
        ("PUT", "/api/v1/routing"),
        ("POST", f"/api/v1/messages/{await message_id(app)}/release"),
        ("DELETE", "/api/v1/messages"),
        ("GET", "/api/v1/messages"),
    ]
    for method, path in targets:
        request = head(method, path, json_body, f"Content-Length: {THIRTY_MB}")
        assert_too_large(await raw_exchange(app, request, b'{"profile": "'))
    assert (await raw_exchange(app, head("GET", "/livez", "Connection: close"))).status == 200


async def test_a_chunked_body_is_refused_as_soon_as_it_passes_the_cap(app: Sinkd) -> None:
    # Transfer-Encoding: chunked declares no length. The body is never finished (no last
    # chunk): an answer proves sinkd stopped at the cap instead of reading on.
    chunk = b"x" * 16384
    chunks = [b"%x\r\n%s\r\n" % (len(chunk), chunk)] * (BODY_LIMIT // len(chunk) + 1)
    request = head(
        "POST",
        f"/api/v1/messages/{await message_id(app)}/evaluate",
        "Content-Type: application/json",
        "Transfer-Encoding: chunked",
    )
    assert_too_large(await raw_exchange(app, request, *chunks))


async def test_a_body_up_to_the_cap_reaches_the_endpoint_and_one_byte_more_does_not(
    http: httpx.AsyncClient,
) -> None:
    json_type = {"Content-Type": "application/json"}
    at_cap = b'{"triggers": ""}'.ljust(BODY_LIMIT)  # JSON allows trailing whitespace
    response = await http.put("/api/v1/chaos", content=at_cap, headers=json_type)
    assert response.status_code == 200, response.text
    over = await http.put("/api/v1/chaos", content=at_cap + b" ", headers=json_type)
    assert over.status_code == 413
    assert over.json()["error"] == "content too large"


async def test_a_chunked_body_under_the_cap_is_read_whole(
    app: Sinkd, http: httpx.AsyncClient
) -> None:
    async def parts() -> AsyncIterator[bytes]:  # no length known: httpx sends it chunked
        yield b'{"profile": "strict-finance", '
        yield b'"store": false}'

    response = await http.post(
        f"/api/v1/messages/{await message_id(app)}/evaluate",
        content=parts(),
        headers={"Content-Type": "application/json"},
    )
    assert response.request.headers.get("transfer-encoding") == "chunked"
    assert response.status_code == 200, response.text
    assert response.json()["profile"] == "strict-finance"
