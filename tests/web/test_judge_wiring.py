"""The HTTP side judges and records through the server's one ``Judge`` and ``Recorder``:
re-evaluations reuse its resolver and spamd, a stored one is logged as SMTP logs, and the
report's estimate sees the stored sender whole (peer, AUTH user, TLS)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import httpx
import pytest

import sinkd.lookups.dns
import sinkd.services.judge
from sinkd.core.population import Estimate, Population
from sinkd.core.ports import Resolver
from sinkd.server.runtime import Sinkd
from sinkd.store import Query
from tests.conftest import StartServer
from tests.support.smtp import aio_client, message
from tests.support.web import JSON, MESSAGES


@pytest.fixture
async def app(start_server: StartServer, tmp_path: Path) -> Sinkd:
    return await start_server(http=True, verdict_log=tmp_path / "verdicts.jsonl")


async def sent_with_tls_and_auth(app: Sinkd) -> str:
    """A message sent under STARTTLS after AUTH as alice; its stored id."""
    async with aio_client(app, start_tls=True, validate_certs=False) as smtp:
        await smtp.login("alice", "secret")
        await smtp.sendmail("alice@sender.example", ["bob@corp.example"], message())
    assert app.store is not None
    (stored,) = await app.store.list(Query(limit=1))
    return stored.id


async def evaluate(http: httpx.AsyncClient, ident: str, body: Any) -> httpx.Response:
    return await http.post(f"{MESSAGES}/{ident}/evaluate", content=json.dumps(body), headers=JSON)


async def test_evaluations_over_the_api_reuse_the_servers_resolver_and_spamd(
    app: Sinkd, http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    ident = await sent_with_tls_and_auth(app)
    built: list[object] = []
    real = sinkd.lookups.dns.build_resolver

    def build(*args: Any) -> Resolver:
        built.append(args)
        return real(*args)

    monkeypatch.setattr(sinkd.services.judge, "build_resolver", build)
    for _ in range(3):
        for profile in ("typical-corporate", "strict-finance"):
            response = await evaluate(http, ident, {"profile": profile})
            assert response.status_code == 200, response.text
    assert built == []  # no zone file read again, no cache thrown away
    assert app.judge is not None and app.handler is not None
    assert app.handler.judge is app.judge
    assert app.judge.resolver_for(list(app.settings.dns_zones)) is app.judge.lookups.resolver


async def test_a_stored_evaluation_is_logged_and_written_to_the_verdict_log_like_smtp(
    app: Sinkd, http: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    ident = await sent_with_tls_and_auth(app)
    caplog.set_level(logging.INFO, logger="sinkd.smtp")
    response = await evaluate(http, ident, {"profile": "no-filter", "store": True})
    assert response.status_code == 200, response.text
    (verdict,) = response.json()["verdicts"]
    lines = [r.getMessage() for r in caplog.records if r.name == "sinkd.smtp"]
    assert [line for line in lines if line.startswith(f"verdict id={verdict['id']} ")]
    assert app.settings.verdict_log is not None
    logged = [json.loads(line) for line in app.settings.verdict_log.read_text().splitlines()]
    assert [entry["id"] for entry in logged][-1] == verdict["id"]
    assert logged[-1] == (await http.get(f"{MESSAGES}/{verdict['id']}")).json()


async def test_an_evaluation_not_stored_is_neither_logged_nor_written(
    app: Sinkd, http: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    ident = await sent_with_tls_and_auth(app)
    caplog.set_level(logging.INFO, logger="sinkd.smtp")
    response = await evaluate(http, ident, {"profile": "no-filter"})
    (verdict,) = response.json()["verdicts"]
    assert not [r for r in caplog.records if verdict["id"] in r.getMessage()]
    assert app.settings.verdict_log is not None
    assert verdict["id"] not in app.settings.verdict_log.read_text()


async def test_the_report_estimates_with_the_stored_peer_auth_user_and_tls(
    app: Sinkd, http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    ident = await sent_with_tls_and_auth(app)
    seen: list[dict[str, Any]] = []
    real = Population.estimate

    async def estimate(self: Population, raw: bytes, **kwargs: Any) -> Estimate:
        seen.append(kwargs)
        return await real(self, raw, **kwargs)

    monkeypatch.setattr(Population, "estimate", estimate)
    response = await http.get(f"/messages/{ident}/report")
    assert response.status_code == 200, response.text
    (given,) = seen
    assert given["client"].peer == "127.0.0.1"
    assert (given["auth_user"], given["tls"]) == ("alice", True)
