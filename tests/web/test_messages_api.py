"""The messages and profiles endpoints against a real ``Sinkd`` (SMTP and HTTP on free ports):
messages are sent over SMTP first, then listed, read, re-evaluated and deleted over HTTP."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from sinkd.server.runtime import Sinkd
from sinkd.store import Query
from tests.support.smtp import (
    GTUBE_MESSAGE,
    SPAMMY_MESSAGE,
    count,
    message,
    send,
)
from tests.support.web import JSON, MESSAGES, assert_error


@pytest.fixture
async def three(app: Sinkd) -> dict[str, str]:
    """An accepted, a quarantined and a rejected message, sent in that order: verdict -> id."""
    await send(app, message(), "alice@sender.example", "bob@corp.example")
    await send(app, SPAMMY_MESSAGE, "carol@promo.example", "dave@corp.example")
    await send(app, GTUBE_MESSAGE, "eve@spam.example", "Frank@Other.example")
    assert app.store is not None
    return {m.data["verdict"]: m.id for m in await app.store.list(Query(limit=10))}


async def listed(http: httpx.AsyncClient, **params: str) -> dict[str, Any]:
    response = await http.get(MESSAGES, params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def ids(body: dict[str, Any]) -> list[str]:
    return [m["id"] for m in body["messages"]]


async def delete(http: httpx.AsyncClient, path: str, **headers: str) -> httpx.Response:
    return await http.request("DELETE", path, headers=JSON | headers)


# --- list -----------------------------------------------------------------------------------


async def test_list_gives_every_message_newest_first_in_the_one_json_shape(
    http: httpx.AsyncClient, three: dict[str, str]
) -> None:
    body = await listed(http)
    assert (body["total"], body["limit"], body["offset"]) == (3, 50, 0)
    assert ids(body) == [three["reject"], three["quarantine"], three["accept"]]
    first = body["messages"][0]
    assert {"id", "received_at", "verdict", "envelope", "findings", "size"} <= set(first)


async def test_list_filters_by_verdict_and_profile(
    http: httpx.AsyncClient, three: dict[str, str]
) -> None:
    assert ids(await listed(http, verdict="quarantine")) == [three["quarantine"]]
    assert (await listed(http, profile="typical-corporate"))["total"] == 3
    assert (await listed(http, profile="strict-finance"))["total"] == 0


async def test_list_filters_by_recipient_and_sender_substring_ignoring_case(
    http: httpx.AsyncClient, three: dict[str, str]
) -> None:
    assert ids(await listed(http, to="frank@other")) == [three["reject"]]
    assert ids(await listed(http, to="corp.example")) == [three["quarantine"], three["accept"]]
    assert ids(await listed(http, **{"from": "PROMO"})) == [three["quarantine"]]


async def test_list_filters_by_subject_substring_ignoring_case(
    http: httpx.AsyncClient, three: dict[str, str]
) -> None:
    assert ids(await listed(http, subject="LOTTERY")) == [three["quarantine"]]
    assert ids(await listed(http, subject="figures")) == [three["accept"]]


async def test_list_filters_by_finding_code(http: httpx.AsyncClient, three: dict[str, str]) -> None:
    assert ids(await listed(http, code="CONTENT_TRIGGER_WORD")) == [three["quarantine"]]
    assert (await listed(http, code="NO_SUCH_CODE"))["total"] == 0


async def test_list_filters_by_a_received_at_window_in_rfc_3339(
    http: httpx.AsyncClient, three: dict[str, str]
) -> None:
    now = datetime.now(UTC)
    past = (now - timedelta(hours=1)).isoformat()
    future = (now + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert (await listed(http, since=past, until=future))["total"] == 3
    assert (await listed(http, since=future))["total"] == 0
    assert (await listed(http, until=past))["total"] == 0


async def test_list_pages_with_limit_and_offset_and_reports_the_total(
    http: httpx.AsyncClient, three: dict[str, str]
) -> None:
    page = await listed(http, limit="2", offset="1")
    assert (page["total"], page["limit"], page["offset"]) == (3, 2, 1)
    assert ids(page) == [three["quarantine"], three["accept"]]
    assert ids(await listed(http, limit="1", offset="3")) == []


async def test_list_pages_with_the_next_cursor_and_a_new_arrival_shifts_nothing(
    app: Sinkd, http: httpx.AsyncClient, three: dict[str, str]
) -> None:
    first = await listed(http, limit="2")
    assert ids(first) == [three["reject"], three["quarantine"]]
    assert (first["total"], first["total_exact"]) == (3, True)
    assert isinstance(first["next"], int)
    await send(app, message("Arrived while paging"), "zed@late.example", "bob@corp.example")
    second = await listed(http, limit="2", before=str(first["next"]))
    assert ids(second) == [three["accept"]]  # not the newcomer, not a repeat
    assert second["next"] is None
    assert (await listed(http))["total"] == 4


async def test_the_prev_cursor_pages_back_to_exactly_the_rows_above_an_older_page(
    app: Sinkd, http: httpx.AsyncClient, three: dict[str, str]
) -> None:
    await send(app, message("Fourth"), "alice@sender.example", "bob@corp.example")
    await send(app, message("Fifth"), "alice@sender.example", "bob@corp.example")
    first = await listed(http, limit="2")
    assert first["prev"] is None  # the newest page: nothing is newer
    second = await listed(http, limit="2", before=str(first["next"]))
    assert ids(second) == [three["reject"], three["quarantine"]]
    assert isinstance(second["prev"], int) and isinstance(second["next"], int)
    await send(app, message("Arrived while paging"), "zed@late.example", "bob@corp.example")
    back = await listed(http, limit="2", after=str(second["prev"]))
    assert ids(back) == ids(first)  # the rows just above, not the newcomer
    assert back["next"] == first["next"]  # and Older from there is the same page again
    assert isinstance(back["prev"], int)  # the newcomer is above it now
    newest = await listed(http, limit="2", after=str(back["prev"]))
    assert [m["subject"] for m in newest["messages"]] == ["Arrived while paging"]
    assert newest["prev"] is None
    assert ids(await listed(http, limit="2", before=str(newest["next"]))) == ids(first)
    last = await listed(http, limit="2", before=str(second["next"]))
    assert ids(last) == [three["accept"]] and last["next"] is None
    assert ids(await listed(http, limit="2", after=str(last["prev"]))) == ids(second)
    # Past either end: an empty page whose one cursor leads back to the rows beside it.
    below = await listed(http, limit="2", before=str(last["prev"]))
    assert ids(below) == [] and below["next"] is None
    above_below = await listed(http, limit="2", after=str(below["prev"]))
    assert ids(above_below) == [three["quarantine"], three["accept"]]
    assert app.store is not None
    (top,) = await app.store.list(Query(limit=1))
    beyond = await listed(http, limit="2", after=str(top.seq))
    assert ids(beyond) == [] and beyond["prev"] is None
    newest_page = await listed(http, limit="2")
    assert ids(await listed(http, limit="2", before=str(beyond["next"]))) == ids(newest_page)


async def test_list_total_is_capped_and_says_so(
    app: Sinkd, http: httpx.AsyncClient, three: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from sinkd.web import messages

    monkeypatch.setattr(messages, "TOTAL_CAP", 2)
    body = await listed(http)
    assert (body["total"], body["total_exact"], len(body["messages"])) == (2, False, 3)
    assert (await listed(http, verdict="reject"))["total_exact"] is True


async def test_list_subject_filter_folds_unicode_case(app: Sinkd, http: httpx.AsyncClient) -> None:
    await send(
        app, message("=?utf-8?q?Gr=C3=BC=C3=9Fe_aus_K=C3=B6ln?="), "a@x.example", "b@y.example"
    )
    await send(app, message("Plain"), "a@x.example", "b@y.example")
    (found,) = (await listed(http, subject="GRÜSSE AUS köln"))["messages"]
    assert found["subject"] == "Grüße aus Köln"


@pytest.mark.parametrize(
    "params",
    [
        {"limit": "0"},
        {"limit": "501"},
        {"limit": "ten"},
        {"offset": "-1"},
        {"verdict": "spam"},
        {"since": "yesterday"},
        {"until": "2026-01-01T00:00:00"},  # no offset: not RFC 3339
        {"subject": ""},
        {"to": "a\nb"},
        {"before": "0"},
        {"before": "x"},
        {"after": "x"},
        {"after": "-1"},
        {"before": "3", "after": "1"},
        {"colour": "red"},
    ],
)
async def test_list_answers_400_json_naming_a_bad_parameter(
    http: httpx.AsyncClient, params: dict[str, str]
) -> None:
    body = assert_error(await http.get(MESSAGES, params=params), 400)
    assert next(iter(params)) in body["detail"]


# --- one message ----------------------------------------------------------------------------


async def test_get_gives_the_stored_json_and_findings_its_findings(
    http: httpx.AsyncClient, three: dict[str, str]
) -> None:
    ident = three["quarantine"]
    one = (await http.get(f"{MESSAGES}/{ident}")).json()
    assert (one["id"], one["verdict"], one["subject"]) == (ident, "quarantine", "Win the lottery")
    findings = (await http.get(f"{MESSAGES}/{ident}/findings")).json()
    assert findings["id"] == ident
    assert "CONTENT_TRIGGER_WORD" in [f["code"] for f in findings["findings"]]
    assert findings["findings"] == one["findings"]


async def test_raw_gives_the_exact_bytes_as_an_rfc822_attachment(
    http: httpx.AsyncClient, three: dict[str, str]
) -> None:
    response = await http.get(f"{MESSAGES}/{three['accept']}/raw")
    assert response.status_code == 200
    assert response.headers["content-type"] == "message/rfc822"
    assert response.headers["content-disposition"] == (
        f'attachment; filename="{three["accept"]}.eml"'
    )
    assert response.content.rstrip(b"\r\n") == message().rstrip(b"\r\n")


async def test_filtered_gives_the_delivered_copy_and_409_for_a_refused_message(
    http: httpx.AsyncClient, three: dict[str, str]
) -> None:
    delivered = await http.get(f"{MESSAGES}/{three['accept']}/filtered")
    assert delivered.status_code == 200
    assert delivered.headers["content-type"] == "message/rfc822"
    assert delivered.headers["content-disposition"].endswith('.filtered.eml"')
    # The delivered copy: the gateway's trace headers on top of the original message.
    assert delivered.content.startswith(b"Authentication-Results:")
    assert delivered.content.rstrip(b"\r\n").endswith(message().rstrip(b"\r\n"))
    assert_error(await http.get(f"{MESSAGES}/{three['reject']}/filtered"), 409, detail="refused")


@pytest.mark.parametrize("suffix", ["", "/raw", "/filtered", "/findings"])
async def test_an_unknown_id_is_404_json(http: httpx.AsyncClient, suffix: str) -> None:
    assert_error(await http.get(f"{MESSAGES}/0123456789ABCDEF01{suffix}"), 404, detail="0123")


async def test_a_malformed_id_is_400_json(http: httpx.AsyncClient) -> None:
    assert_error(await http.get(f"{MESSAGES}/bad%20id..x"), 400, detail="not a message id")


# --- delete ---------------------------------------------------------------------------------


async def test_delete_removes_one_message_with_204_then_it_is_404(
    app: Sinkd, http: httpx.AsyncClient, three: dict[str, str]
) -> None:
    response = await delete(http, f"{MESSAGES}/{three['accept']}")
    assert response.status_code == 204 and response.content == b""
    assert_error(await http.get(f"{MESSAGES}/{three['accept']}"), 404)
    assert_error(await delete(http, f"{MESSAGES}/{three['accept']}"), 404)
    assert await count(app) == 2
    assert (await listed(http, code="CONTENT_TRIGGER_WORD"))["total"] == 1


async def test_delete_all_clears_the_store_and_says_how_many(
    app: Sinkd, http: httpx.AsyncClient, three: dict[str, str]
) -> None:
    response = await delete(http, MESSAGES)
    assert (response.status_code, response.json()) == (200, {"deleted": 3})
    assert await count(app) == 0
    assert (await listed(http))["total"] == 0


async def test_a_cross_origin_delete_is_refused_with_403_and_deletes_nothing(
    app: Sinkd, http: httpx.AsyncClient, three: dict[str, str]
) -> None:
    assert_error(await delete(http, MESSAGES, Origin="http://evil.example"), 403)
    assert_error(await delete(http, f"{MESSAGES}/{three['accept']}", Origin="null"), 403)
    assert await count(app) == 3


# --- profiles -------------------------------------------------------------------------------


async def test_profiles_lists_every_built_in_profile_with_its_title(
    http: httpx.AsyncClient,
) -> None:
    body = (await http.get("/api/v1/profiles")).json()
    names = {p["id"]: p["title"] for p in body["profiles"]}
    assert {"typical-corporate", "strict-finance", "no-filter"} <= set(names)
    assert all(isinstance(title, str) and title for title in names.values())


async def test_a_profile_is_shown_as_json_and_an_unknown_or_path_name_is_404(
    http: httpx.AsyncClient,
) -> None:
    shown = (await http.get("/api/v1/profiles/strict-finance")).json()
    assert shown["id"] == "strict-finance" and shown["schema"] == "sinkd.profile/v1"
    assert shown["filters"]
    assert_error(await http.get("/api/v1/profiles/no-such"), 404, detail="no-such")
    assert_error(await http.get("/api/v1/profiles/..%2Fprofiles%2Fno-filter.yaml"), 404)


# --- evaluate -------------------------------------------------------------------------------


async def evaluate(http: httpx.AsyncClient, ident: str, body: Any) -> httpx.Response:
    return await http.post(f"{MESSAGES}/{ident}/evaluate", content=json.dumps(body), headers=JSON)


async def test_evaluate_judges_the_stored_message_against_another_profile_without_storing(
    app: Sinkd, http: httpx.AsyncClient, three: dict[str, str]
) -> None:
    response = await evaluate(http, three["quarantine"], {"profile": "no-filter"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["id"], body["profile"], body["stored"]) == (
        three["quarantine"],
        "no-filter",
        False,
    )
    (verdict,) = body["verdicts"]
    assert (verdict["profile"], verdict["verdict"]) == ("no-filter", "accept")
    assert verdict["envelope"]["rcpt_to"] == ["dave@corp.example"]
    assert await count(app) == 3


async def test_evaluate_with_store_true_stores_the_new_verdict_with_its_raw_bytes(
    app: Sinkd, http: httpx.AsyncClient, three: dict[str, str]
) -> None:
    response = await evaluate(http, three["accept"], {"profile": "no-filter", "store": True})
    assert response.status_code == 200, response.text
    (verdict,) = response.json()["verdicts"]
    assert response.json()["stored"] is True
    assert await count(app) == 4
    again = (await http.get(f"{MESSAGES}/{verdict['id']}")).json()
    assert (again["profile"], again["verdict"]) == ("no-filter", "accept")
    raw = await http.get(f"{MESSAGES}/{verdict['id']}/raw")
    assert raw.content.rstrip(b"\r\n") == message().rstrip(b"\r\n")
    assert ids(await listed(http, profile="no-filter")) == [verdict["id"]]


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"profile": "no-such"}, 404),
        ({"profile": "../../etc/passwd"}, 404),
        ({}, 422),
        ({"profile": "no-filter", "store": "yes"}, 422),
        ({"profile": "no-filter", "extra": 1}, 422),
        (["no-filter"], 422),
    ],
)
async def test_evaluate_refuses_a_bad_body_with_json_and_stores_nothing(
    app: Sinkd, http: httpx.AsyncClient, three: dict[str, str], body: Any, status: int
) -> None:
    assert_error(await evaluate(http, three["accept"], body), status)
    assert await count(app) == 3


async def test_evaluate_answers_400_for_non_json_404_for_an_unknown_id_and_415_without_json(
    http: httpx.AsyncClient,
) -> None:
    url = f"{MESSAGES}/0123456789ABCDEF01/evaluate"
    assert_error(await http.post(url, content=b"{", headers=JSON), 400)
    assert_error(await evaluate(http, "0123456789ABCDEF01", {"profile": "no-filter"}), 404)
    assert_error(await http.post(url, content=b"{}", headers={"Content-Type": "text/plain"}), 415)
