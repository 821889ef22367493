"""Changing the profile and recipient routes of a running ``Sinkd`` over HTTP, and forgetting
its greylist and rate-limit memory: real SMTP and HTTP on free ports."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from sinkd.server.runtime import Sinkd
from tests.conftest import StartServer
from tests.support.delivery import BODY, RCPT, SENDER, gateway, greylisted_then_accepted
from tests.support.smtp import SPAMMY_MESSAGE, TIMEOUT, newest, raw_client, send
from tests.support.web import JSON, assert_error, base_url

ROUTING = "/api/v1/routing"
DELIVERY = "/api/v1/delivery-state"


@pytest.fixture
async def app(start_server: StartServer) -> Sinkd:
    return await start_server(http=True, routes={"finance.example": "strict-finance"})


async def put_routing(http: httpx.AsyncClient, body: Any, **headers: str) -> httpx.Response:
    return await http.put(ROUTING, content=json.dumps(body), headers=JSON | headers)


async def test_get_routing_names_the_default_profile_the_routes_and_the_profiles_to_choose(
    http: httpx.AsyncClient,
) -> None:
    body = (await http.get(ROUTING)).json()
    assert body["profile"] == "typical-corporate"
    assert body["routes"] == {"finance.example": "strict-finance"}
    assert {"no-filter", "strict-finance", "typical-corporate"} <= set(body["profiles"])


async def test_put_routing_changes_the_profile_that_judges_the_next_message(
    app: Sinkd, http: httpx.AsyncClient
) -> None:
    await send(app, SPAMMY_MESSAGE, "carol@promo.example", "dave@corp.example")
    before = await newest(app)
    response = await put_routing(http, {"profile": "no-filter"})
    assert response.status_code == 200, response.text
    assert (response.json()["profile"], response.json()["routes"]) == ("no-filter", {})
    await send(app, SPAMMY_MESSAGE, "carol@promo.example", "dave@corp.example")
    after = await newest(app)
    assert (before.data["profile"], before.data["verdict"]) == ("typical-corporate", "quarantine")
    assert (after.data["profile"], after.data["verdict"]) == ("no-filter", "accept")
    assert (await http.get(ROUTING)).json()["profile"] == "no-filter"


async def test_put_routing_routes_a_recipient_domain_and_its_subdomains_to_another_profile(
    app: Sinkd, http: httpx.AsyncClient
) -> None:
    body = {"profile": "typical-corporate", "routes": {"Partner.Example.": "no-filter"}}
    response = await put_routing(
        http, body | {"routes": body["routes"] | {"*.sub.example": "no-filter"}}
    )
    assert response.json()["routes"] == {
        "partner.example": "no-filter",
        "*.sub.example": "no-filter",
    }
    for rcpt in ("dave@partner.example", "erin@mx.sub.example", "frank@corp.example"):
        await send(app, SPAMMY_MESSAGE, "carol@promo.example", rcpt)
        judged = await newest(app)
        expected = "typical-corporate" if rcpt.endswith("corp.example") else "no-filter"
        assert judged.data["profile"] == expected, rcpt


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ({"profile": "no-such-profile"}, "no profile 'no-such-profile'; available: "),
        ({"profile": "../profiles/no-filter.yaml"}, "no profile '../profiles/no-filter.yaml'"),
        ({"profile": "no-filter", "routes": {"a.example": "nope"}}, "routes['a.example']"),
    ],
)
async def test_an_unknown_profile_is_422_listing_the_available_ones_and_nothing_changes(
    http: httpx.AsyncClient, body: dict[str, Any], detail: str
) -> None:
    error = assert_error(await put_routing(http, body), 422, detail=detail)
    assert error["error"] == "unknown profile" and "strict-finance" in error["detail"]
    unchanged = (await http.get(ROUTING)).json()
    assert (unchanged["profile"], unchanged["routes"]) == (
        "typical-corporate",
        {"finance.example": "strict-finance"},
    )


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (["no-filter"], "expected a JSON object"),
        ({"routes": {}}, "profile:"),
        ({"profile": "no-filter", "extra": 1}, "unknown field 'extra'"),
        ({"profile": "no-filter", "routes": ["a.example"]}, "routes:"),
        ({"profile": "no-filter", "routes": {"not a domain": "no-filter"}}, "expected a domain"),
        ({"profile": "no-filter", "routes": {"a.example": 7}}, "expected a profile id"),
    ],
)
async def test_a_malformed_routing_body_is_422_naming_the_field(
    http: httpx.AsyncClient, body: Any, detail: str
) -> None:
    assert_error(await put_routing(http, body), 422, detail=detail)


async def test_routing_changes_are_refused_cross_origin_and_without_a_json_content_type(
    http: httpx.AsyncClient,
) -> None:
    body = {"profile": "no-filter"}
    assert_error(await put_routing(http, body, Origin="http://evil.example"), 403)
    assert_error(await put_routing(http, body, **{"Sec-Fetch-Site": "cross-site"}), 403)
    plain = await http.put(
        ROUTING, content=json.dumps(body), headers={"Content-Type": "text/plain"}
    )
    assert_error(plain, 415)
    assert_error(await http.delete(DELIVERY, headers={"Origin": "http://evil.example"}), 403)
    assert (await http.get(ROUTING)).json()["profile"] == "typical-corporate"


async def test_a_routed_profile_named_by_path_at_start_can_be_routed_again_by_its_id(
    start_server: StartServer, tmp_path: Path
) -> None:
    app = await start_server(http=True, profile=gateway(tmp_path, "my-gateway"))
    async with httpx.AsyncClient(base_url=base_url(app), timeout=TIMEOUT) as http:
        assert "my-gateway" in (await http.get(ROUTING)).json()["profiles"]
        assert (await put_routing(http, {"profile": "no-filter"})).status_code == 200
        response = await put_routing(http, {"profile": "my-gateway"})
        assert response.status_code == 200, response.text
        assert response.json()["profile"] == "my-gateway"


async def test_deleting_the_delivery_state_makes_a_passed_triplet_greylisted_again(
    start_server: StartServer, tmp_path: Path
) -> None:
    app = await start_server(http=True, profile=gateway(tmp_path), greylist_delay=0)
    async with httpx.AsyncClient(base_url=base_url(app), timeout=TIMEOUT) as http:
        await greylisted_then_accepted(app)
        assert (await http.get(DELIVERY)).json()["entries"] >= 1
        async with raw_client(app) as client:  # remembered: passes at once
            await client.mail(BODY, SENDER, RCPT)
            await client.quit()
        forgotten = (await http.request("DELETE", DELIVERY, headers=JSON)).json()["forgotten"]
        assert forgotten >= 1
        assert (await http.get(DELIVERY)).json() == {"entries": 0}
        async with raw_client(app) as client:  # a stranger again
            await client.ok(f"MAIL FROM:<{SENDER}>")
            await client.ok(f"RCPT TO:<{RCPT}>", 451)
            await client.quit()
