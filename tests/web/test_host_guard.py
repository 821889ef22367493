"""The ``Host`` allowlist against DNS rebinding (docs/security.md), over real HTTP to a real
``Sinkd``: a foreign ``Host`` is refused on every route family with the JSON 403 that names
``--http-allowed-host``; loopback names, IP literals, the bind address and allowed names pass;
``*`` passes everything; ``/livez`` and ``/readyz`` stay open. Then a headless Chromium whose
resolver maps a foreign name to 127.0.0.1, as a rebinding attack does."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from sinkd.cli import build_parser
from sinkd.errors import ConfigError
from sinkd.server.runtime import Sinkd
from sinkd.services.settings import from_namespace
from sinkd.store import Query
from sinkd.web.app import HostGuard
from tests.conftest import StartServer, require_executable
from tests.support.smtp import TIMEOUT, send
from tests.support.web import CHROMIUM_ARGS, base_url, http_port, mail, raw_exchange

SECRET = "https://app.example/reset?token=6f1c0ffee"  # what a rebinding page is after
FOREIGN = "evil.example:8025"


async def started(start_server: StartServer, **settings: Any) -> tuple[Sinkd, str]:
    """A sinkd serving HTTP with one captured message holding ``SECRET``, and that message's id."""
    app = await start_server(http=True, **settings)
    raw = mail("Reset your password", f"Open {SECRET} to choose a new password.")
    await send(app, raw, "alice@sender.example", "bob@corp.example")
    assert app.store is not None
    return app, (await app.store.list(Query(limit=1)))[0].id


@pytest.fixture
async def app_and_id(start_server: StartServer) -> tuple[Sinkd, str]:
    return await started(start_server)


@pytest.fixture
async def http(app_and_id: tuple[Sinkd, str]) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=base_url(app_and_id[0]), timeout=TIMEOUT) as client:
        yield client


def every_route_family(message_id: str) -> list[str]:
    """One GET of each route family: API, dashboard pages, renderings, events, OpenAPI."""
    return [
        "/api/v1/messages",
        f"/api/v1/messages/{message_id}",
        f"/api/v1/messages/{message_id}/raw",
        f"/api/v1/messages/{message_id}/filtered",
        "/api/v1/chaos",
        "/api/v1/routing",
        "/api/v1/delivery-state",
        "/api/v1/profiles",
        "/api/v1/profiles/typical-corporate",
        "/",
        f"/messages/{message_id}",
        f"/compare/{message_id}",
        f"/messages/{message_id}/report",
        "/profiles/typical-corporate",
        "/static/dashboard.js",
        f"/messages/{message_id}/render/original",
        f"/messages/{message_id}/render/filtered",
        "/api/v1/events",
        "/api/v1/openapi.json",
        "/no-such-page",
    ]


def assert_refused(response: httpx.Response) -> None:
    assert response.status_code == 403, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["error"] == "forbidden"
    assert "--http-allowed-host evil.example" in body["detail"]
    assert "SINKD_HTTP_ALLOWED_HOSTS" in body["detail"]
    assert SECRET not in response.text
    assert "Reset your password" not in response.text


async def test_a_foreign_host_is_refused_on_every_route_family(
    app_and_id: tuple[Sinkd, str], http: httpx.AsyncClient
) -> None:
    _, message_id = app_and_id
    for path in every_route_family(message_id):
        # stream: the events route must refuse before it starts an event stream
        async with http.stream("GET", path, headers={"Host": FOREIGN}) as response:
            await response.aread()
            assert_refused(response)


async def test_a_foreign_host_is_refused_for_state_changing_requests_and_heads_too(
    app_and_id: tuple[Sinkd, str], http: httpx.AsyncClient
) -> None:
    _, message_id = app_and_id
    foreign = {"Host": FOREIGN}
    assert_refused(await http.put("/api/v1/chaos", json={"triggers": ""}, headers=foreign))
    assert_refused(await http.delete(f"/api/v1/messages/{message_id}", headers=foreign))
    evaluate = f"/api/v1/messages/{message_id}/evaluate"
    assert_refused(await http.post(evaluate, json={"profile": "strict-finance"}, headers=foreign))
    head = await http.head("/api/v1/messages", headers=foreign)
    assert head.status_code == 403
    assert (await http.get(f"/api/v1/messages/{message_id}")).status_code == 200  # not deleted


async def test_loopback_names_and_ip_literals_pass_and_every_route_family_serves_them(
    app_and_id: tuple[Sinkd, str], http: httpx.AsyncClient
) -> None:
    _, message_id = app_and_id
    port = http_port(app_and_id[0])
    hosts = [
        f"localhost:{port}",
        "LOCALHOST",  # names are case-insensitive (RFC 4343)
        "localhost.",  # the absolute form of the same name
        f"dashboard.localhost:{port}",  # RFC 6761 §6.3: *.localhost is loopback
        "127.0.0.1",
        "127.8.9.10:18025",  # all of 127.0.0.0/8; a published port differs from the bound one
        f"[::1]:{port}",
        "192.0.2.7:8025",  # an IP literal cannot be rebound (sinkd.web.app.HostGuard)
    ]
    for host in hosts:
        response = await http.get(f"/api/v1/messages/{message_id}", headers={"Host": host})
        assert response.status_code == 200, (host, response.text)
    for path in every_route_family(message_id):
        if path in ("/api/v1/events", "/no-such-page"):
            continue  # an endless stream; a 404
        response = await http.get(path, headers={"Host": f"localhost:{port}"})
        assert response.status_code == 200, (path, response.text)


async def test_health_checks_stay_open_to_any_host(http: httpx.AsyncClient) -> None:
    for path in ("/livez", "/readyz"):
        response = await http.get(path, headers={"Host": FOREIGN})
        assert response.status_code == 200
        assert response.json()["status"] == "ok"


async def test_a_name_given_with_http_allowed_host_passes_and_others_are_still_refused(
    start_server: StartServer,
) -> None:
    app, message_id = await started(start_server, http_allowed_hosts=["sinkd", "Staging.Corp"])
    async with httpx.AsyncClient(base_url=base_url(app), timeout=TIMEOUT) as http:
        for host in ("sinkd:8025", "sinkd", "staging.corp:18025"):
            response = await http.get(f"/api/v1/messages/{message_id}", headers={"Host": host})
            assert response.status_code == 200, host
        for host in ("evil.example", "sinkd.evil.example", "www.staging.corp"):
            response = await http.get("/api/v1/messages", headers={"Host": host})
            assert response.status_code == 403, host


async def test_a_star_turns_the_check_off(start_server: StartServer) -> None:
    app, message_id = await started(start_server, http_allowed_hosts=["*"])
    async with httpx.AsyncClient(base_url=base_url(app), timeout=TIMEOUT) as http:
        for path in every_route_family(message_id):
            if path in ("/api/v1/events", "/no-such-page"):
                continue
            response = await http.get(path, headers={"Host": FOREIGN})
            assert response.status_code == 200, path
    head = f"GET /api/v1/messages/{message_id} HTTP/1.0\r\n\r\n".encode()
    assert (await raw_exchange(app, head)).status == 200


async def test_a_request_without_a_host_is_refused(app_and_id: tuple[Sinkd, str]) -> None:
    app, _ = app_and_id
    # HTTP/1.0 lets a client omit Host; no browser does, but the guard leaves no request unchecked.
    response = await raw_exchange(app, b"GET /api/v1/messages HTTP/1.0\r\n\r\n")
    assert response.status == 403
    assert response.json()["error"] == "forbidden"
    assert "without a Host" in response.json()["detail"]
    assert SECRET.encode() not in response.body
    livez = await raw_exchange(app, b"GET /livez HTTP/1.0\r\n\r\n")
    assert livez.status == 200


def test_the_bind_address_passes_when_it_is_a_name() -> None:
    # Binding to a name needs that name to resolve to this machine, which a test cannot arrange
    # portably: the rule itself, then.
    guard = HostGuard(app=None, allowed=[], bind_host="mail-sink.internal")  # type: ignore[arg-type]
    assert guard.allows("mail-sink.internal:8025")
    assert guard.allows("MAIL-SINK.internal")
    assert not guard.allows("other.internal")
    wildcard = HostGuard(app=None, allowed=[], bind_host="0.0.0.0")  # type: ignore[arg-type]
    assert wildcard.allows("10.1.2.3:8025")
    assert not wildcard.allows("sinkd:8025")
    assert not wildcard.allows("")
    assert not wildcard.allows("evil.example:notaport")


def test_allowed_hosts_come_from_the_option_and_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    parse = build_parser().parse_args
    settings = from_namespace(
        parse(["serve", "--http-allowed-host", "sinkd", "--http-allowed-host", "x"])
    )
    assert settings.http_allowed_hosts == ["sinkd", "x"]
    assert from_namespace(parse(["serve"])).http_allowed_hosts == []
    monkeypatch.setenv("SINKD_HTTP_ALLOWED_HOSTS", "sinkd, staging.corp")
    assert from_namespace(build_parser().parse_args(["serve"])).http_allowed_hosts == [
        "sinkd",
        "staging.corp",
    ]
    for bad in ("sinkd:8025", "http://sinkd", ""):
        with pytest.raises(ConfigError, match="--http-allowed-host"):
            from_namespace(parse(["serve", "--http-allowed-host", bad]))


async def test_a_page_under_a_rebound_name_cannot_read_the_message_list(
    app_and_id: tuple[Sinkd, str],
) -> None:
    """DNS rebinding, modelled faithfully enough: the attacker's page lives at
    ``http://evil.test:<port>/``; once its script runs, the attacker re-points ``evil.test`` to
    127.0.0.1 and the page's same-origin ``fetch('/api/v1/messages')`` reaches sinkd. Same
    origin, so CORS allows the read; only the ``Host: evil.test:<port>`` it carries gives it
    away. Chromium's ``--host-resolver-rules`` plays the rebound DNS: ``evil.test`` resolves to
    127.0.0.1 from the start, so the page at that origin is sinkd's own (a 403 document), which
    changes nothing for the script: it runs in the ``http://evil.test:<port>`` origin as the
    attacker's would after rebinding. The same fetch from ``http://localhost:<port>/`` reads
    the captured message, so the refusal is the guard's, not the browser's."""
    app, _ = app_and_id
    executable = require_executable("chromium", "chromium")
    from playwright.async_api import async_playwright

    port = http_port(app)
    steal = """async () => {
        const response = await fetch('/api/v1/messages?limit=50');
        return {status: response.status, text: await response.text()};
    }"""
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=executable,
            args=[*CHROMIUM_ARGS, "--host-resolver-rules=MAP evil.test 127.0.0.1"],
        )
        try:
            context = await browser.new_context()
            tab = await context.new_page()
            tab.set_default_timeout(TIMEOUT * 1000)
            await tab.goto(f"http://evil.test:{port}/")
            stolen = await tab.evaluate(steal)
            await tab.goto(f"http://localhost:{port}/")
            own = await tab.evaluate(steal)
            await context.close()
        finally:
            await browser.close()
    assert stolen["status"] == 403
    assert "Reset your password" not in stolen["text"]
    assert '"error":"forbidden"' in stolen["text"].replace(" ", "")
    assert own["status"] == 200
    assert "Reset your password" in own["text"]
