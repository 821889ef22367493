"""``GET /metrics`` against a real ``Sinkd`` (SMTP and HTTP on free ports): a short load sent
with ``smtplib``, then one scrape read with prometheus-client's parser. The counters match
what was sent and what the store holds; the endpoint is behind ``--http-auth`` and the
``Host`` rule like the rest of the API; with ``--workers 2`` every worker's mail, commits,
judging time and open sessions are counted."""

from __future__ import annotations

import asyncio
import json
import smtplib
from collections import Counter

import httpx

from sinkd import __version__
from sinkd.server.runtime import Sinkd
from sinkd.store import Query
from tests.conftest import StartServer
from tests.support.metrics import by_label, open_session, scrape, send_load
from tests.support.smtp import GTUBE_MESSAGE, SPAMMY_MESSAGE, TIMEOUT, message
from tests.support.web import assert_error, base_url

AUTH = ("ann", "s3cret")
LOAD = [message(f"figures {n}") for n in range(5)] + [SPAMMY_MESSAGE] * 3 + [GTUBE_MESSAGE] * 2


def smtp(app: Sinkd) -> tuple[str, int]:
    assert app.smtp_address is not None
    return app.smtp_address


async def stored_json(app: Sinkd) -> list[dict[str, object]]:
    assert app.store is not None
    return [m.data for m in await app.store.list(Query(limit=500))]


def finding_list(stored: dict[str, object]) -> list[dict[str, object]]:
    findings = stored["findings"]
    assert isinstance(findings, list)
    return findings


async def test_a_scrape_after_a_short_load_counts_every_message_finding_and_reply(
    start_server: StartServer,
) -> None:
    app = await start_server(http=True)
    accepted = await send_load(*smtp(app), LOAD, per_connection=4)
    stored = await stored_json(app)
    assert len(stored) == len(LOAD) and accepted < len(LOAD)  # GTUBE is refused at DATA
    async with httpx.AsyncClient(base_url=base_url(app), timeout=TIMEOUT) as http:
        samples = await scrape(http)

    messages = by_label(samples, "sinkd_messages_total", "profile", "verdict", "disposition")
    assert messages == Counter(
        (str(m["profile"]), str(m["verdict"]), str(m["disposition"])) for m in stored
    )
    assert sum(messages.values()) == len(LOAD)
    assert {verdict for _, verdict, _ in messages} >= {"accept", "quarantine", "reject"}
    findings = by_label(samples, "sinkd_findings_total", "code")
    assert findings == Counter((str(f["code"]),) for m in stored for f in finding_list(m))
    assert findings[("CONTENT_GTUBE",)] == 2
    # Every reply on the wire, by the command it answered: smtplib greets, says EHLO once
    # and QUIT on each of the 3 connections, and sends RSET after a refused DATA.
    refused = len(LOAD) - accepted
    replies = by_label(samples, "sinkd_smtp_replies_total", "class", "stage")
    assert replies == Counter(
        {
            ("2xx", "connect"): 3,
            ("2xx", "ehlo"): 3,
            ("2xx", "mail"): len(LOAD),
            ("2xx", "rcpt"): len(LOAD),
            ("3xx", "data"): len(LOAD),
            ("2xx", "data"): accepted,
            ("5xx", "data"): refused,
            ("2xx", "rset"): refused,
            ("2xx", "quit"): 3,
        }
    )
    assert samples[("sinkd_store_commit_seconds_count", frozenset())] == len(LOAD)
    assert samples[("sinkd_filter_seconds_count", frozenset())] == len(LOAD)
    assert samples[("sinkd_build_info", frozenset({("version", __version__)}))] == 1


async def test_an_smtp_connection_counts_as_an_open_session_while_it_is_open(
    start_server: StartServer,
) -> None:
    app = await start_server(http=True)
    async with httpx.AsyncClient(base_url=base_url(app), timeout=TIMEOUT) as http:
        before = await scrape(http)
        client: smtplib.SMTP = await asyncio.to_thread(open_session, *smtp(app))
        try:
            during = await scrape(http)
        finally:
            await asyncio.to_thread(client.close)
    assert before[("sinkd_smtp_sessions_open", frozenset())] == 0
    assert during[("sinkd_smtp_sessions_open", frozenset())] == 1


async def test_replies_to_no_recognised_command_and_to_refused_commands_are_counted(
    start_server: StartServer,
) -> None:
    app = await start_server(http=True)

    def converse(host: str, port: int) -> list[int]:
        client = open_session(host, port)
        try:
            codes = [client.docmd("FROBNICATE")[0], client.docmd("RCPT TO:<bob@corp.example>")[0]]
            codes.append(client.docmd("MAIL FROM:<alice@sender.example> SIZE=x")[0])
            return codes
        finally:
            client.close()

    codes = await asyncio.to_thread(converse, *smtp(app))
    assert codes == [500, 503, 501]
    async with httpx.AsyncClient(base_url=base_url(app), timeout=TIMEOUT) as http:
        samples = await scrape(http)
    replies = by_label(samples, "sinkd_smtp_replies_total", "class", "stage")
    assert replies == Counter(
        {
            ("2xx", "connect"): 1,
            ("2xx", "ehlo"): 1,
            ("5xx", "other"): 1,  # aiosmtpd's "500 Error: command not recognized"
            ("5xx", "rcpt"): 1,  # 503: need MAIL first
            ("5xx", "mail"): 1,  # 501: a SIZE that is no number
        }
    )


async def test_metrics_need_the_http_auth_credentials(start_server: StartServer) -> None:
    app = await start_server(http=True, http_auth=AUTH)
    async with httpx.AsyncClient(base_url=base_url(app), timeout=TIMEOUT) as http:
        refused = await http.get("/metrics")
        assert_error(refused, 401, detail="--http-auth")
        assert refused.headers["www-authenticate"] == 'Basic realm="sinkd"'
        assert_error(await http.get("/metrics", auth=("ann", "wrong")), 401)
        samples = await scrape(http, auth=AUTH)
    assert ("sinkd_build_info", frozenset({("version", __version__)})) in samples


async def test_metrics_are_refused_under_a_foreign_host_name(start_server: StartServer) -> None:
    app = await start_server(http=True)
    async with httpx.AsyncClient(base_url=base_url(app), timeout=TIMEOUT) as http:
        refused = await http.get("/metrics", headers={"Host": "evil.example:8025"})
        assert_error(refused, 403, detail="--http-allowed-host evil.example")
        assert (await http.get("/metrics", headers={"Host": "localhost"})).status_code == 200


async def test_with_two_workers_the_primary_counts_every_workers_messages(
    start_server: StartServer,
) -> None:
    app = await start_server(http=True, profile="no-filter", workers=2)
    assert app.workers is not None and app.workers.count == 2
    load = [message(f"figures {n}") for n in range(12)]
    async with httpx.AsyncClient(base_url=base_url(app), timeout=TIMEOUT) as http:
        # The workers' records reach the primary after the writer committed them, maybe
        # after the client's 250: the event stream says when the primary has seen them all.
        async with http.stream("GET", "/api/v1/events") as events:
            lines = events.aiter_lines()
            accepted = await send_load(*smtp(app), load, per_connection=2)  # 6 connections
            seen = 0
            async with asyncio.timeout(TIMEOUT):
                async for line in lines:
                    if line.startswith("data:") and json.loads(line[5:])["profile"]:
                        seen += 1
                        if seen == len(load):
                            break
        # A session open on a worker: counted there, summed in at the primary's scrape.
        client: smtplib.SMTP = await asyncio.to_thread(open_session, *smtp(app))
        try:
            samples = await scrape(http)
        finally:
            await asyncio.to_thread(client.close)
    assert accepted == len(load)
    messages = by_label(samples, "sinkd_messages_total", "profile", "verdict", "disposition")
    assert messages == Counter({("no-filter", "accept", "inbox"): len(load)})
    # Sent by the workers and summed in at the scrape: 6 connections and the open session.
    replies = by_label(samples, "sinkd_smtp_replies_total", "class", "stage")
    assert replies == Counter(
        {
            ("2xx", "connect"): 7,
            ("2xx", "ehlo"): 7,
            ("2xx", "mail"): len(load),
            ("2xx", "rcpt"): len(load),
            ("3xx", "data"): len(load),
            ("2xx", "data"): len(load),
            ("2xx", "quit"): 6,
        }
    )
    # Measured in the workers, which serve every SMTP connection, and sent up at the scrape.
    assert samples[("sinkd_store_commit_seconds_count", frozenset())] == len(load)
    assert samples[("sinkd_filter_seconds_count", frozenset())] == len(load)
    assert samples[("sinkd_smtp_sessions_open", frozenset())] == 1
