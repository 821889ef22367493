"""Live events and releasing quarantined messages against a real ``Sinkd`` (SMTP and HTTP on
free ports): subscribers read ``GET /api/v1/events`` while messages are sent over SMTP."""

from __future__ import annotations

import asyncio
import json
import logging

import httpx
import pytest

from sinkd.server.runtime import Sinkd
from sinkd.store import Query
from sinkd.web.hub import QUEUE_SIZE, Hub
from tests.support.events import subscribed
from tests.support.smtp import SPAMMY_MESSAGE, TIMEOUT, message, send
from tests.support.web import JSON, MESSAGES, assert_error


async def stored_ids(app: Sinkd) -> list[str]:
    assert app.store is not None
    return [m.id for m in await app.store.list(Query(limit=10))]


# --- events ---------------------------------------------------------------------------------


async def test_a_subscriber_receives_a_verdict_event_with_the_stored_message(
    app: Sinkd, http: httpx.AsyncClient
) -> None:
    async with subscribed(http) as stream:
        await send(app, message(), "alice@sender.example", "bob@corp.example")
        kind, data = await stream.event()
    (ident,) = await stored_ids(app)
    assert (kind, data["id"], data["verdict"]) == ("verdict", ident, "accept")
    assert data == (await http.get(f"{MESSAGES}/{ident}")).json()


async def test_two_subscribers_both_receive_the_event(app: Sinkd, http: httpx.AsyncClient) -> None:
    async with subscribed(http) as one, subscribed(http) as two:
        await send(app, SPAMMY_MESSAGE, "carol@promo.example", "dave@corp.example")
        first, second = await one.event(), await two.event()
    assert first == second
    assert first[0] == "verdict" and first[1]["verdict"] == "quarantine"


async def test_a_stored_re_evaluation_is_published_too(app: Sinkd, http: httpx.AsyncClient) -> None:
    await send(app, message(), "alice@sender.example", "bob@corp.example")
    (ident,) = await stored_ids(app)
    async with subscribed(http) as stream:
        body = json.dumps({"profile": "no-filter", "store": True})
        response = await http.post(f"{MESSAGES}/{ident}/evaluate", content=body, headers=JSON)
        (verdict,) = response.json()["verdicts"]
        kind, data = await stream.event()
    assert (kind, data["id"], data["profile"]) == ("verdict", verdict["id"], "no-filter")


async def test_a_quiet_stream_gets_a_comment_heartbeat(app: Sinkd, http: httpx.AsyncClient) -> None:
    assert app.http is not None
    app.http.app.state.heartbeat = 0.05  # type: ignore[attr-defined]
    async with subscribed(http) as stream:
        assert await stream.next() == ("comment", "heartbeat")


async def test_the_stream_ends_cleanly_when_the_server_stops(
    app: Sinkd, http: httpx.AsyncClient
) -> None:
    async with subscribed(http) as stream:
        await asyncio.wait_for(app.stop(), TIMEOUT)
        assert await stream.next() == ("end", None)
    assert app.hub.subscribers == 0


async def test_a_client_disconnect_ends_its_subscription(
    app: Sinkd, http: httpx.AsyncClient
) -> None:
    async with subscribed(http):
        assert app.hub.subscribers == 1
    # The stream is closed mid-body; the server notices at once, not at the next heartbeat.
    await asyncio.wait_for(app.hub.wait_for_subscribers(0), TIMEOUT)


async def test_a_slow_subscriber_is_dropped_with_a_log_line_and_others_keep_theirs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    hub = Hub()
    slow, fast = hub.subscribe("slow"), hub.subscribe("fast")
    for n in range(QUEUE_SIZE):
        hub.publish("verdict", {"n": n})
        assert await fast.next() is not None
    hub.publish("verdict", {"n": QUEUE_SIZE})
    assert hub.subscribers == 1
    assert "event subscriber slow dropped" in caplog.text
    assert await fast.next() is not None
    for _ in range(QUEUE_SIZE):
        assert await slow.next() is not None  # what was queued is still delivered, then the end
    assert await slow.next() is None


# --- release --------------------------------------------------------------------------------


async def release(http: httpx.AsyncClient, ident: str) -> httpx.Response:
    return await http.post(f"{MESSAGES}/{ident}/release", content=b"{}", headers=JSON)


async def test_release_marks_a_quarantined_message_released_and_publishes_it(
    app: Sinkd, http: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="sinkd")
    await send(app, SPAMMY_MESSAGE, "carol@promo.example", "dave@corp.example")
    (ident,) = await stored_ids(app)
    assert (await http.get(f"{MESSAGES}/{ident}")).json()["released_at"] is None
    async with subscribed(http) as stream:
        response = await release(http, ident)
        assert response.status_code == 200, response.text
        kind, data = await stream.event()
    released = response.json()
    assert released["id"] == ident and released["released_at"].endswith("Z")
    assert (kind, data) == ("released", released)
    assert (await http.get(f"{MESSAGES}/{ident}")).json() == released
    assert f"released id={ident}" in caplog.text


async def test_release_is_409_when_already_released_or_not_quarantined(
    app: Sinkd, http: httpx.AsyncClient
) -> None:
    await send(app, SPAMMY_MESSAGE, "carol@promo.example", "dave@corp.example")
    (quarantined,) = await stored_ids(app)
    await send(app, message(), "alice@sender.example", "bob@corp.example")
    accepted = (await stored_ids(app))[0]
    assert (await release(http, quarantined)).status_code == 200
    assert_error(await release(http, quarantined), 409, detail="was released at")
    assert_error(await release(http, accepted), 409, detail="accept")
    assert (await http.get(f"{MESSAGES}/{accepted}")).json()["released_at"] is None


async def test_release_of_an_unknown_id_is_404(http: httpx.AsyncClient) -> None:
    assert_error(await release(http, "0123456789ABCDEF01"), 404, detail="0123")
