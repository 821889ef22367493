"""Relay status everywhere a message is shown (``--relay``): the JSON of one message and of the
list, the dashboard's message page, ``GET /metrics`` (queue depth, outcomes per recipient) and
the OpenAPI document; against a real SMTP target (tests/support/relay_target.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from sinkd.server.runtime import Sinkd
from sinkd.services.settings import parse_relay_url
from sinkd.store import Query, relay_queued
from tests.conftest import StartServer, require_executable
from tests.support.metrics import by_label, scrape
from tests.support.relay_target import RelayTarget, relay_attempts, relay_settled
from tests.support.smtp import SPAMMY_MESSAGE, TIMEOUT, message, send
from tests.support.web import CHROMIUM_ARGS, base_url

pytestmark = pytest.mark.usefixtures("no_internal_errors")


@pytest.fixture
async def target() -> AsyncIterator[RelayTarget]:
    relay_target = RelayTarget(
        reject=frozenset({"gone@corp.example"}), defer=frozenset({"later@corp.example"})
    )
    await relay_target.start()
    yield relay_target
    await relay_target.stop()


@pytest.fixture
async def app(start_server: StartServer, target: RelayTarget) -> Sinkd:
    # A long backoff: the deferred recipient stays queued for the whole test.
    return await start_server(
        http=True, relay=parse_relay_url(target.url), relay_starttls="off", relay_backoff=(600, 600)
    )


async def send_and_settle(app: Sinkd, *rcpts: str) -> str:
    events = app.hub.subscribe()
    await send(app, message(), "alice@sender.example", *rcpts)
    assert app.store is not None
    (newest,) = await app.store.list(Query(limit=1))
    await relay_attempts(events, newest.id, 1)
    return newest.id


async def test_the_message_json_and_the_list_carry_the_relay_state(app: Sinkd) -> None:
    delivered = await send_and_settle(app, "bob@corp.example")
    async with httpx.AsyncClient(base_url=base_url(app)) as http:
        one = (await http.get(f"/api/v1/messages/{delivered}")).json()
        listed = (await http.get("/api/v1/messages")).json()["messages"]

    assert one["relay"]["status"] == "delivered"
    assert set(one["relay"]) == set(relay_queued([], "2026-01-01T00:00:00.000Z"))
    assert [m["relay"] for m in listed] == [one["relay"]]


async def test_the_message_page_shows_the_relay_status_attempts_and_last_reply(
    app: Sinkd,
) -> None:
    delivered = await send_and_settle(app, "bob@corp.example")
    failed = await send_and_settle(app, "gone@corp.example")
    async with httpx.AsyncClient(base_url=base_url(app)) as http:
        delivered_page = (await http.get(f"/messages/{delivered}")).text
        failed_page = (await http.get(f"/messages/{failed}")).text

    assert 'id="relay"' in delivered_page
    assert "delivered</span> after 1 attempt:" in delivered_page
    assert "250 2.0.0 Ok: queued" in delivered_page
    assert "failed</span> after 1 attempt:" in failed_page
    assert "550 5.1.1 &lt;gone@corp.example&gt;: Recipient address rejected" in failed_page


async def test_a_message_that_is_not_relayed_shows_no_relay_line(
    start_server: StartServer,
) -> None:
    app = await start_server(http=True)
    await send(app, message(), "alice@sender.example", "bob@corp.example")
    assert app.store is not None
    (newest,) = await app.store.list(Query(limit=1))
    async with httpx.AsyncClient(base_url=base_url(app)) as http:
        page = (await http.get(f"/messages/{newest.id}")).text
    assert newest.data["relay"] is None
    assert 'id="relay"' not in page


async def test_metrics_count_relay_outcomes_per_recipient_and_the_queue_depth(
    app: Sinkd,
) -> None:
    await send_and_settle(app, "bob@corp.example", "carol@corp.example")
    await send_and_settle(app, "gone@corp.example")
    await send_and_settle(app, "later@corp.example", "dave@corp.example")
    async with httpx.AsyncClient(base_url=base_url(app)) as http:
        samples = await scrape(http)

    assert by_label(samples, "sinkd_relay_attempts_total", "outcome") == {
        ("delivered",): 3,
        ("failed",): 1,
        ("deferred",): 1,
    }
    assert samples[("sinkd_relay_queue_depth", frozenset())] == 1  # later@ waits its retry


async def test_the_openapi_document_describes_the_relay_field(app: Sinkd) -> None:
    async with httpx.AsyncClient(base_url=base_url(app)) as http:
        schemas = (await http.get("/api/v1/openapi.json")).json()["components"]["schemas"]

    assert "relay" in schemas["Message"]["properties"]
    shape = relay_queued(["a@example.org"], "2026-01-01T00:00:00.000Z")
    assert set(schemas["Relay"]["required"]) == set(shape)
    recipient = schemas["Relay"]["properties"]["recipients"]["items"]
    assert set(recipient["required"]) == set(shape["recipients"][0])


async def test_settled_relays_are_the_ones_the_live_events_announce(app: Sinkd) -> None:
    events = app.hub.subscribe()
    await send(app, message(), "alice@sender.example", "bob@corp.example")
    assert app.store is not None
    (newest,) = await app.store.list(Query(limit=1))
    state = await relay_settled(events, newest.id)
    assert (await app.store.get(newest.id)).data["relay"] == state


async def test_the_release_button_relays_a_quarantined_message_from_the_dashboard(
    app: Sinkd, target: RelayTarget
) -> None:
    executable = require_executable("chromium", "chromium")
    from playwright.async_api import async_playwright  # heavy: only for the browser test

    events = app.hub.subscribe()
    await send(app, SPAMMY_MESSAGE, "alice@sender.example", "bob@corp.example")
    assert app.store is not None
    (newest,) = await app.store.list(Query(limit=1))
    assert newest.data["verdict"] == "quarantine" and newest.data["relay"] is None

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            tab = await browser.new_page(base_url=base_url(app))
            tab.set_default_timeout(TIMEOUT * 1000)
            await tab.goto(f"/messages/{newest.id}")
            await tab.click("#release-button")
            await tab.wait_for_selector("#relay")  # the page again, with its relay line
            await relay_settled(events, newest.id)
            await tab.reload()
            line = await tab.locator("#relay").inner_text()
            assert await tab.locator("#release-button").count() == 0
        finally:
            await browser.close()

    assert line.startswith("delivered after 1 attempt")
    (delivery,) = await target.wait_for(1)
    assert b"Win the lottery" in delivery.data


async def test_without_relay_a_release_queues_nothing(start_server: StartServer) -> None:
    app = await start_server(http=True)
    await send(app, SPAMMY_MESSAGE, "alice@sender.example", "bob@corp.example")
    assert app.store is not None
    (newest,) = await app.store.list(Query(limit=1))
    async with httpx.AsyncClient(base_url=base_url(app)) as http:
        released = await http.post(
            f"/api/v1/messages/{newest.id}/release",
            content=b"{}",
            headers={"Content-Type": "application/json"},
        )
    assert released.status_code == 200
    assert released.json()["released_at"] is not None
    assert released.json()["relay"] is None
    assert await app.store.relay_depth() == 0
