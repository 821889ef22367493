"""The dashboard against a real ``Sinkd`` (SMTP and HTTP on free ports): server-side checks of
the pages, their headers and escaping with httpx, then a real headless Chromium (Playwright
driving Debian's chromium) for the live list, the message page and the sandboxing of captured
HTML."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import html
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from sinkd.core.model import (
    Action,
    Category,
    ClientIdentity,
    Disposition,
    Envelope,
    Finding,
    Reply,
    Stage,
    Unjudged,
    Verdict,
    VerdictAction,
)
from sinkd.core.profiles import ProfileSet
from sinkd.server.runtime import Sinkd
from sinkd.services.records import StoredFinding
from sinkd.store import Query
from sinkd.web import dashboard
from sinkd.web.compare import REPORT_CSP, _compare_row
from sinkd.web.dashboard import CSP
from sinkd.web.renderings import frame_csp
from tests.conftest import StartServer, free_port, require_executable
from tests.support.campaign import campaign_message
from tests.support.profiles import STRIPPING_PROFILE_ID, write_stripping_profile
from tests.support.screenshots import assert_screenshot, screenshot_path
from tests.support.smtp import GTUBE_MESSAGE, SPAMMY_MESSAGE, TIMEOUT, message, send
from tests.support.web import HitCounter, base_url, browser_page


def html_message(subject: str, html: str, *, sender: str = "alice@sender.example") -> bytes:
    return (
        f"From: Alice <{sender}>\r\n"
        "To: Bob <bob@corp.example>\r\n"
        f"Subject: {subject}\r\n"
        "Date: Mon, 03 Jun 2024 10:00:00 +0000\r\n"
        "Message-ID: <dash-1@sender.example>\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/html; charset=utf-8\r\n"
        "\r\n"
        f"<html><body>{html}</body></html>\r\n"
    ).encode()


HIDDEN = html_message(
    "October news",
    "<h1>October news</h1><p>VISIBLE-MARKER: our autumn range is in.</p>"
    '<div style="display:none">HIDDEN-MARKER 50% off this week only</div>',
)


def hostile(hit_port: int, remote_port: int) -> bytes:
    hit = f"http://127.0.0.1:{hit_port}"
    return html_message(
        "<script>alert(1)</script> Invoice",
        f"<script>document.title='PWNED';fetch('{hit}/script')</script>"
        f'<img src="data:image/png;base64,AAAA" onerror="document.title=\'PWNED\';'
        f"fetch('{hit}/onerror')\">"
        f'<a id="js" href="javascript:fetch(\'{hit}/js\')">open the javascript: link</a>'
        f'<img id="remote" src="http://127.0.0.1:{remote_port}/x.png" alt="remote">'
        f"<p onmouseover=\"fetch('{hit}/hover')\">HOSTILE-BODY</p>",
    )


OWN = STRIPPING_PROFILE_ID


@pytest.fixture
async def app(start_server: StartServer, tmp_path: Path) -> Sinkd:
    write_stripping_profile(tmp_path)
    return await start_server(http=True, profiles_dirs=[tmp_path], profile=OWN)


def profile_names(app: Sinkd) -> list[str]:
    return ProfileSet(app.settings.profiles_dirs).names()


async def newest_id(app: Sinkd) -> str:
    assert app.store is not None
    return (await app.store.list(Query(limit=1)))[0].id


def assert_secured(response: httpx.Response) -> None:
    assert response.headers["content-security-policy"] == CSP
    assert response.headers["x-content-type-options"] == "nosniff"


# --- server side ----------------------------------------------------------------------------


async def test_pages_answer_200_with_the_csp_and_nosniff(
    app: Sinkd, http: httpx.AsyncClient
) -> None:
    await send(app, SPAMMY_MESSAGE, "carol@promo.example", "dave@corp.example")
    message_id = await newest_id(app)
    pages = ["/", "/?verdict=quarantine", f"/messages/{message_id}", "/profiles/no-filter"]
    for path in [*pages, f"/messages/{message_id}?remote_images=1", f"/compare/{message_id}"]:
        response = await http.get(path)
        assert response.status_code == 200, (path, response.text)
        assert response.headers["content-type"].startswith("text/html")
        assert_secured(response)
    static = [("/static/dashboard.js", "text/javascript"), ("/static/dashboard.css", "text/css")]
    for path, media in static:
        response = await http.get(path)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith(media)
        assert_secured(response)


async def test_the_list_shows_badge_subject_envelope_profile_and_deciding_reason(
    app: Sinkd, http: httpx.AsyncClient
) -> None:
    await send(app, message(), "alice@sender.example", "bob@corp.example")
    await send(app, SPAMMY_MESSAGE, "carol@promo.example", "dave@corp.example")
    page = (await http.get("/")).text
    assert page.index("Win the lottery") < page.index("Quarterly figures")  # newest first
    assert 'class="badge v-quarantine"' in page and 'class="badge v-accept"' in page
    assert "carol@promo.example → dave@corp.example" in page
    assert "quarantine threshold" in page and ">accepted<" in page
    await send(app, HIDDEN, "news@sender.example", "bob@corp.example")
    assert ">accepted after stripping hidden text<" in (await http.get("/")).text
    assert f'href="/profiles/{OWN}"' in page
    only = (await http.get("/", params={"verdict": "accept"})).text
    assert "Quarterly figures" in only and "Win the lottery" not in only


async def test_a_hostile_message_appears_only_escaped_or_inside_srcdoc(
    app: Sinkd, http: httpx.AsyncClient
) -> None:
    await send(app, hostile(free_port(), free_port()), "alice@sender.example", "bob@corp.example")
    message_id = await newest_id(app)
    for path in ["/", f"/messages/{message_id}"]:
        page = (await http.get(path)).text
        assert page.count("<script") == 1  # the dashboard's own, from /static
        assert '<script src="/static/dashboard.js"></script>' in page
        assert "onerror=" not in page.replace("onerror=&quot;", "")
        assert 'href="javascript:' not in page
        assert "&lt;script&gt;alert(1)&lt;/script&gt; Invoice" in page
    page = (await http.get(f"/messages/{message_id}")).text
    assert '<iframe class="mail original" sandbox="" ' in page
    assert "allow-scripts" not in page and "allow-same-origin" not in page
    assert f'src="/messages/{message_id}/render/original"' in page
    assert "PWNED" not in page  # the captured HTML is only ever served by the render endpoint


async def test_the_rendering_is_served_under_its_own_sandboxing_csp(
    app: Sinkd, http: httpx.AsyncClient
) -> None:
    await send(app, hostile(free_port(), free_port()), "alice@sender.example", "bob@corp.example")
    message_id = await newest_id(app)
    for which in ["original", "filtered"]:
        response = await http.get(f"/messages/{message_id}/render/{which}")
        assert response.status_code == 200
        assert response.headers["content-security-policy"] == frame_csp(False)
        assert response.headers["x-content-type-options"] == "nosniff"
    csp = frame_csp(False)
    assert "sandbox" in csp.split("; ") and "script-src 'none'" in csp and "img-src data:;" in csp
    original = (await http.get(f"/messages/{message_id}/render/original")).text
    assert "document.title='PWNED'" in original  # as captured (marked), contained by the CSP
    for value in ["0", "yes", "1 ", ""]:  # only exactly 1 turns remote images on
        response = await http.get(
            f"/messages/{message_id}/render/original", params={"remote_images": value}
        )
        assert response.headers["content-security-policy"] == csp
    allowed = await http.get(f"/messages/{message_id}/render/original?remote_images=1")
    widened = allowed.headers["content-security-policy"]
    assert widened == csp.replace("img-src data:;", "img-src data: http: https:;")
    assert "script-src 'none'" in widened and "sandbox" in widened.split("; ")
    for path in [f"/messages/{message_id}/render/bogus", "/messages/NOPE0000/render/original"]:
        missing = await http.get(path)
        assert missing.status_code == 404
        assert missing.headers["content-security-policy"] == csp


async def test_the_original_rendering_marks_what_the_filter_stripped(
    app: Sinkd, http: httpx.AsyncClient
) -> None:
    await send(app, campaign_message(), "news@northwind.example", "bob@corp.example")
    message_id = await newest_id(app)
    original = (await http.get(f"/messages/{message_id}/render/original")).text
    filtered = (await http.get(f"/messages/{message_id}/render/filtered")).text
    attr = re.search(r'<sinkd-mark (data-sinkd-[0-9a-f]{12})="label"', original)
    assert attr is not None
    labels = re.findall(rf'<sinkd-mark {attr[1]}="label" title="[^"]*">([^<]*)<', original)
    assert labels.count("✂ image removed") == 13  # 12 images and the pixel, 13 <img> in all
    assert "open.gif?u=4711&quot;&gt; remote http(s):; &lt;img" in original  # both pixel hits
    assert "✂ script removed" in labels
    assert any(label.startswith("✂ hidden text removed: “PREHEADER-MARKER") for label in labels)
    assert original.count(f'{attr[1]}="removed"') == 15  # preheader, script and 13 <img>
    assert f"[{attr[1]}=removed]{{outline" in original  # the one appended stylesheet
    assert "PREHEADER-MARKER" in original and "sinkd-mark" not in filtered
    again = (await http.get(f"/messages/{message_id}/render/original")).text
    assert attr[1] not in again  # a fresh attribute name per response: a mail cannot forge it


def row_ids(page_html: str) -> list[str]:
    return re.findall(r'<tr data-id="([^"]+)"', page_html)


def link(page_html: str, link_id: str) -> str | None:
    """The href of the pager link with this id (unescaped), or None when it is not a link."""
    found = re.search(rf'id="{link_id}" href="([^"]*)"', page_html)
    return None if found is None else html.unescape(found[1])


async def test_the_list_pages_by_key_through_older_and_newer_messages_with_filters(
    app: Sinkd, http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dashboard, "LIST_LIMIT", 2)
    for n in range(5):
        await send(app, message(f"Report {n}"), "alice@sender.example", "bob@corp.example")
    await send(app, SPAMMY_MESSAGE, "carol@promo.example", "dave@corp.example")
    first = (await http.get("/")).text
    assert "1–2 of 6" in first and "Win the lottery" in first and "Report 4" in first
    older = link(first, "older")
    assert older is not None and re.fullmatch(r"/\?before=\d+", older)
    assert link(first, "newer") is None and link(first, "newest") is None
    assert "offset" not in first
    second = (await http.get(older)).text
    assert "3–4 of 6" in second and "Report 3" in second and "Report 2" in second
    assert link(second, "newest") == "/"
    newer, further = link(second, "newer"), link(second, "older")
    assert newer is not None and re.fullmatch(r"/\?after=\d+", newer)
    assert further is not None and re.fullmatch(r"/\?before=\d+", further)
    last = (await http.get(further)).text
    assert "5–6 of 6" in last and "Report 0" in last and link(last, "older") is None
    back = (await http.get(newer)).text
    assert row_ids(back) == row_ids(first) and "1–2 of 6" in back  # exactly the rows above
    assert link(back, "newer") is None and link(back, "older") == older
    only = (await http.get("/", params={"subject": "report", "verdict": "accept"})).text
    assert "1–2 of 5" in only and "Win the lottery" not in only
    only_older = link(only, "older")
    assert only_older is not None
    assert re.fullmatch(r"/\?verdict=accept&subject=report&before=\d+", only_older)
    only_second = (await http.get(only_older)).text
    assert "3–4 of 5" in only_second and "Win the lottery" not in only_second
    only_newer = link(only_second, "newer")
    assert only_newer is not None
    assert re.fullmatch(r"/\?verdict=accept&subject=report&after=\d+", only_newer)
    assert link(only_second, "newest") == "/?verdict=accept&subject=report"
    assert row_ids((await http.get(only_newer)).text) == row_ids(only)
    quarantined = (await http.get("/", params={"profile": OWN})).text
    assert "of 6" in quarantined
    none = (await http.get("/", params={"profile": "no-filter"})).text
    assert "No messages match." in none and "0–0 of 0" in none
    hand_edited = [
        {"offset": "2"},  # an old offset link: offsets no longer page the dashboard
        {"before": "-1"},
        {"before": "x"},
        {"after": "1e3"},
        {"before": "99999999999"},
        {"before": "3", "after": "1"},
        {"profile": "../etc"},
        {"verdict": "nope"},
    ]
    for params in hand_edited:
        response = await http.get("/", params=params)  # a hand-edited link: the default view
        assert response.status_code == 200 and "1–2 of 6" in response.text, params


async def test_a_message_arriving_while_paging_shifts_and_repeats_no_row_of_older_pages(
    app: Sinkd, http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dashboard, "LIST_LIMIT", 2)
    for n in range(5):
        await send(app, message(f"Report {n}"), "alice@sender.example", "bob@corp.example")
    first = (await http.get("/")).text
    older = link(first, "older")
    assert older is not None
    second = (await http.get(older)).text
    await send(app, message("Arrived while paging"), "zed@late.example", "bob@corp.example")
    again = (await http.get(older)).text
    assert row_ids(again) == row_ids(second)  # the same rows: nothing shifted down into it
    assert "4–5 of 6" in again  # only its position moved
    further = link(again, "older")
    assert further is not None
    last = (await http.get(further)).text
    seen = row_ids(first) + row_ids(again) + row_ids(last)
    assert len(seen) == len(set(seen)) == 5  # every original once, no repeat, no newcomer
    newer = link(again, "newer")
    assert newer is not None
    above = (await http.get(newer)).text
    assert row_ids(above) == row_ids(first)  # the rows just above, not the newcomer
    assert "2–3 of 6" in above and link(above, "newer") is not None
    newest = link(above, "newest")
    assert newest == "/" and "Arrived while paging" in (await http.get(newest)).text


async def test_the_compare_page_judges_the_message_with_every_profile(
    app: Sinkd, http: httpx.AsyncClient
) -> None:
    await send(app, HIDDEN, "news@sender.example", "bob@corp.example")
    message_id = await newest_id(app)
    response = await http.get(f"/compare/{message_id}")
    assert response.status_code == 200
    assert_secured(response)
    rows = re.findall(
        r'<tr(?: class="own")? data-profile="([^"]+)" data-verdict="(\w+)"', response.text
    )
    assert [name for name, _ in rows] == profile_names(app)
    verdicts = dict(rows)
    assert verdicts["no-filter"] == "accept" and verdicts["typical-corporate"] == "accept"
    assert f'<tr class="own" data-profile="{OWN}"' in response.text
    assert "HIDDEN-MARKER 50% off this week only" in response.text  # a deciding reason
    # Offline DNS has no data for sender.example: one banner says so for every profile.
    assert response.text.count('id="dns-note"') == 1
    assert "no fixture has data for sender.example" in response.text
    assert app.store is not None and await app.store.count() == 1  # nothing was stored
    refused = await http.get("/compare/0123456789ABCDEF")
    assert refused.status_code == 404


async def test_the_report_page_is_the_deliverability_report_under_a_strict_csp(
    app: Sinkd, http: httpx.AsyncClient
) -> None:
    await send(app, HIDDEN, "news@sender.example", "bob@corp.example")
    message_id = await newest_id(app)
    response = await http.get(f"/messages/{message_id}/report")
    assert response.status_code == 200
    assert response.headers["content-security-policy"] == REPORT_CSP
    page = response.text
    assert "<h1>Deliverability report</h1>" in page and 'id="population-chart"' in page
    assert f'<a href="/messages/{message_id}">← Back to the message</a>' in page
    assert "MIME_HIDDEN_TEXT" in page  # the population's rich content keeps preheaders now
    assert "<script" not in page and "http://" not in page.replace("http://www.w3.org", "")


async def test_an_unknown_message_or_profile_is_a_404_page(http: httpx.AsyncClient) -> None:
    for path in ["/messages/0123456789ABCDEF", "/messages/bad!id", "/profiles/nope"]:
        response = await http.get(path)
        assert response.status_code == 404, path
        assert response.headers["content-type"].startswith("text/html")
        assert_secured(response)
        assert "<h1>Not found</h1>" in response.text
    traversal = await http.get("/messages/..%2F..%2Fetc%2Fpasswd")  # no route: the API's 404
    assert traversal.status_code == 404 and "root:" not in traversal.text


async def test_the_message_page_explains_the_verdict(app: Sinkd, http: httpx.AsyncClient) -> None:
    await send(app, SPAMMY_MESSAGE, "carol@promo.example", "dave@corp.example")
    page = (await http.get(f"/messages/{await newest_id(app)}")).text
    assert "250 2.0.0 Ok: queued as" in page
    assert '<h3 class="cat">Content</h3>' in page and '<h3 class="cat">Score</h3>' in page
    assert "CONTENT_TRIGGER_WORD" in page and "SCORE_QUARANTINE" in page
    assert "<th>Subject</th><td>Win the lottery</td>" in page


async def test_the_message_page_says_when_checks_were_judged_without_dns_data(
    start_server: StartServer,
) -> None:
    # legacy-sender-id with offline DNS and no fixture: Sender ID and SPF have no data.
    app = await start_server(http=True, profile="legacy-sender-id")
    await send(app, HIDDEN, "news@sender.example", "bob@corp.example")
    async with httpx.AsyncClient(base_url=base_url(app), timeout=TIMEOUT) as http:
        page = (await http.get(f"/messages/{await newest_id(app)}")).text
    assert '<p class="note dns-note" id="dns-note"><strong>Judged without DNS data.</strong>' in (
        page
    )
    assert "no fixture has data for sender.example" in page
    assert "SENDERID_NONE" in page
    assert "<code>--dns-zone FILE</code>" in page and "<code>--dns live</code>" in page
    assert '<span class="marker unjudged">not judged: no-dns-data</span>' in page


def test_the_dns_note_appears_only_for_checks_not_judged_and_names_each_kind() -> None:
    judged = {"code": "SPF_PASS", "unjudged": None, "detail": {}}
    assert dashboard.unjudged_notes([StoredFinding.from_json(judged)]) == ""
    no_data = {"code": "DKIM_NEUTRAL", "unjudged": "no-dns-data", "detail": {"dns_names": ["<s>"]}}
    down = {"code": "SPAMASSASSIN_ERROR", "unjudged": "unavailable", "detail": {}}
    notes = dashboard.unjudged_notes(StoredFinding.from_json(f) for f in (judged, no_data, down))
    assert "no fixture has data for &lt;s&gt;, so DKIM_NEUTRAL could not be judged" in notes
    assert 'id="incomplete-note"' in notes and "SPAMASSASSIN_ERROR could not answer" in notes
    assert "SPF_PASS" not in notes


async def test_the_profile_page_states_the_policy_in_plain_language(
    http: httpx.AsyncClient,
) -> None:
    page = (await http.get("/profiles/typical-corporate")).text
    for title in ["Refuses", "Strips", "Quarantines", "Scores", "Score thresholds"]:
        assert f"<h2>{title}</h2>" in page
    strips = page.split('class="policy strips"')[1].split("</section>")[0]
    assert "multimedia" in strips and "active script" in strips
    assert "rich-content (mime)" in strips
    assert "<th>quarantine</th><td class='num'>8.0</td>" in page
    assert "mimedefang-filter(5)" in page  # a cited source


async def test_the_profile_page_shows_an_assumption_where_a_model_gives_no_source(
    http: httpx.AsyncClient,
) -> None:
    page = (await http.get("/profiles/google-workspace-like")).text
    assert "Assumption: Gmail&#x27;s spam model is proprietary" in page
    assert "Source: None" not in page


# --- in a browser ---------------------------------------------------------------------------


@pytest.fixture
def hit_counter() -> Iterator[HitCounter]:
    counter = HitCounter()
    yield counter
    counter.close()


@pytest.fixture
async def page(app: Sinkd) -> AsyncIterator[Any]:
    async with browser_page(app, require_executable("chromium", "chromium")) as tab:
        yield tab


async def test_the_list_updates_live_when_a_message_arrives(app: Sinkd, page: Any) -> None:
    await send(app, message(), "alice@sender.example", "bob@corp.example")
    await page.goto("/")
    await page.wait_for_selector('#live[data-state="open"]')
    await page.evaluate("window.notReloaded = true")
    await send(app, SPAMMY_MESSAGE, "carol@promo.example", "dave@corp.example")
    await send(app, HIDDEN, "news@sender.example", "bob@corp.example")
    row = page.locator("#messages tbody tr").first
    await row.get_by_text("October news").wait_for()
    assert await page.evaluate("window.notReloaded") is True
    rows = page.locator("#messages tbody tr[data-id]")
    assert await rows.count() == 3
    assert await rows.nth(1).get_attribute("data-verdict") == "quarantine"
    assert "quarantine threshold" in await rows.nth(1).inner_text()
    assert "accepted after stripping hidden text" in await rows.nth(0).inner_text()
    assert await page.locator("#total").inner_text() == "3"


async def test_live_rows_respect_the_verdict_filter(app: Sinkd, page: Any) -> None:
    await page.goto("/")
    await page.select_option("#verdict-filter", "quarantine")
    await page.wait_for_url("**/?verdict=quarantine")
    await page.wait_for_selector('#live[data-state="open"]')
    await send(app, message(), "alice@sender.example", "bob@corp.example")
    await send(app, SPAMMY_MESSAGE, "carol@promo.example", "dave@corp.example")
    await page.get_by_text("Win the lottery").wait_for()
    assert await page.locator("#messages tbody tr[data-id]").count() == 1


async def test_a_message_page_opens_and_shows_the_findings(app: Sinkd, page: Any) -> None:
    await send(app, SPAMMY_MESSAGE, "carol@promo.example", "dave@corp.example")
    await page.goto("/")
    await page.get_by_role("link", name="Win the lottery").click()
    await page.wait_for_url("**/messages/*")
    findings = page.locator("td.finding-reason")
    assert await findings.count() >= 2
    text = await page.locator("section", has_text="Findings").first.inner_text()
    assert "CONTENT_TRIGGER_WORD" in text and "quarantine threshold of 8" in text


# The docs' screenshot of the list (docs/images/dashboard.png with SINKD_SCREENSHOTS=1; see
# tests/support/screenshots.py for how to regenerate it): a fixed viewport, so it is the same
# size every time and small enough for the README.
LIST_SHOT = (1280, 720)


async def test_the_message_list_screenshot_shows_messages_of_every_verdict(
    app: Sinkd, page: Any, tmp_path: Path
) -> None:
    await send(app, message(), "alice@sender.example", "bob@corp.example")
    await send(app, HIDDEN, "news@sender.example", "bob@corp.example")
    await send(app, SPAMMY_MESSAGE, "carol@promo.example", "dave@corp.example")
    await send(app, GTUBE_MESSAGE, "mallory@bulk.example", "bob@corp.example")
    await page.set_viewport_size({"width": LIST_SHOT[0], "height": LIST_SHOT[1]})
    await page.goto("/")
    await page.wait_for_selector('#live[data-state="open"]')  # shown as live, as a user sees it
    rows = page.locator("#messages tbody tr[data-id]")
    assert await rows.count() == 4
    verdicts = {await rows.nth(n).get_attribute("data-verdict") for n in range(4)}
    assert verdicts == {"accept", "quarantine", "reject"}
    shot = screenshot_path("dashboard.png", tmp_path)
    await page.screenshot(path=str(shot))
    assert_screenshot(shot, *LIST_SHOT)


async def test_side_by_side_the_stripped_hidden_text_is_missing_from_the_delivered_copy(
    app: Sinkd, page: Any
) -> None:
    await send(app, HIDDEN, "news@sender.example", "bob@corp.example")
    await page.goto(f"/messages/{await newest_id(app)}")
    original = page.frame_locator("iframe.original")
    filtered = page.frame_locator("iframe.filtered")
    assert "VISIBLE-MARKER" in await original.locator("body").inner_text()
    assert "VISIBLE-MARKER" in await filtered.locator("body").inner_text()
    assert "HIDDEN-MARKER" in await original.locator("body").inner_html()
    assert "HIDDEN-MARKER" not in await filtered.locator("body").inner_html()
    stripped = await page.locator("ul.stripped").inner_text()
    assert 'div style="display:none"' in stripped  # what was removed, next to the filtered view


async def test_captured_html_executes_nothing_and_loads_nothing_remote(
    app: Sinkd, page: Any, hit_counter: HitCounter
) -> None:
    remote_port = hit_counter.port  # the remote image host counts its requests too
    raw = hostile(hit_counter.port, remote_port)
    await send(app, raw, "alice@sender.example", "bob@corp.example")
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    failures: list[str] = []
    page.on("requestfailed", lambda request: failures.append(f"{request.url} {request.failure}"))
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: dialogs.append(dialog.message))
    await page.goto("/")
    await page.get_by_text("Invoice").wait_for()  # the subject, as text
    await page.goto(f"/messages/{await newest_id(app)}")
    original = page.frame_locator("iframe.original")
    assert "HOSTILE-BODY" in await original.locator("body").inner_text()
    await original.locator("p").hover()
    with contextlib.suppress(Exception):  # a blocked javascript: URL may make the click time out
        await original.locator("#js").click(timeout=2000)
    await asyncio.sleep(1.0)
    assert await page.title() != "PWNED"
    for frame in page.frames:
        assert await frame.title() != "PWNED"
    assert hit_counter.hits == []
    assert dialogs == []
    origin = base_url(app)
    leaving = [url for url in requests if not (url.startswith(origin) or url.startswith("data:"))]
    # Chromium reports a request the frame's CSP refused as a request that failed with "csp":
    # it never left the browser (hit_counter, the remote image's host, saw nothing).
    assert [f"{url} csp" for url in leaving] == [f for f in failures if not f.startswith(origin)]


async def test_the_compare_page_fills_with_every_profile(app: Sinkd, page: Any) -> None:
    await send(app, HIDDEN, "news@sender.example", "bob@corp.example")
    await page.goto(f"/messages/{await newest_id(app)}")
    await page.locator("#compare-link").click()
    await page.wait_for_url("**/compare/*")
    rows = page.locator("#compare tbody tr")
    assert await rows.count() == len(profile_names(app))
    own = page.locator("#compare tr.own")
    assert await own.get_attribute("data-profile") == OWN
    assert "HIDDEN-MARKER" in await own.inner_text()
    for index in range(await rows.count()):
        assert await rows.nth(index).locator(".badge").count() == 1


async def test_side_by_side_the_original_marks_the_stripped_element(app: Sinkd, page: Any) -> None:
    await send(app, HIDDEN, "news@sender.example", "bob@corp.example")
    await page.goto(f"/messages/{await newest_id(app)}")
    original = page.frame_locator("iframe.original")
    label = original.locator("sinkd-mark")
    await label.wait_for()
    assert (await label.inner_text()).startswith("✂ hidden text removed: “HIDDEN-MARKER")
    assert await label.is_visible()  # shown although the element it labels is display:none
    colour = await label.evaluate("node => getComputedStyle(node).backgroundColor")
    assert colour == "rgb(194, 24, 91)"  # styled by the appended stylesheet, not by the mail
    assert await page.frame_locator("iframe.filtered").locator("sinkd-mark").count() == 0


def remote_image_message(port: int) -> bytes:
    return html_message(
        "Spring catalogue",
        f'<p>REMOTE-BODY</p><img id="remote" src="http://127.0.0.1:{port}/catalogue.png">',
    )


async def test_remote_images_load_only_when_the_toggle_is_on(
    app: Sinkd, page: Any, hit_counter: HitCounter
) -> None:
    await send(app, remote_image_message(hit_counter.port), "alice@sender.example", "bob@x.example")
    message_id = await newest_id(app)
    await page.goto(f"/messages/{message_id}")
    await page.wait_for_load_state("load")  # after the frames, and so after their image loads
    assert "REMOTE-BODY" in await page.frame_locator("iframe.original").locator("body").inner_text()
    assert hit_counter.hits == []
    await page.get_by_role("link", name="Load remote images").click()
    await page.wait_for_url("**?remote_images=1")
    await page.wait_for_load_state("load")
    assert hit_counter.hits == ["/catalogue.png"]  # the original only: the filtered copy has none
    await page.get_by_role("link", name="Block them again").click()
    await page.wait_for_load_state("load")
    assert hit_counter.hits == ["/catalogue.png"]


async def test_the_report_page_opens_without_console_errors(app: Sinkd, page: Any) -> None:
    await send(app, HIDDEN, "news@sender.example", "bob@corp.example")
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await page.goto(f"/messages/{await newest_id(app)}")
    await page.locator("#report-link").click()
    await page.wait_for_url("**/report")
    await page.locator("#population-chart").wait_for()
    assert "Deliverability report" in await page.title() or await page.locator("h1").count()
    assert errors == []
    await page.get_by_role("link", name="← Back to the message").click()
    await page.wait_for_url("**/messages/*")


async def test_older_and_newer_links_page_through_the_list(
    app: Sinkd, page: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dashboard, "LIST_LIMIT", 2)
    for n in range(3):
        await send(app, message(f"Report {n}"), "alice@sender.example", "bob@corp.example")
    await page.goto("/")
    rows = page.locator("#messages tbody tr[data-id]")
    assert await rows.count() == 2
    await page.locator("#older").click()
    await page.wait_for_url(re.compile(r".*/\?before=\d+$"))
    assert await rows.count() == 1 and "Report 0" in await rows.first.inner_text()
    assert await page.locator("#range").inner_text() == "3–3 of 3"
    await page.wait_for_selector('#live[data-state="open"]')
    await send(app, message("Report 3"), "alice@sender.example", "bob@corp.example")
    await page.get_by_text("1 new on the first page").wait_for()
    assert await rows.count() == 1  # new mail belongs to the first page, not this one
    await page.locator("#newer").click()
    await page.wait_for_url(re.compile(r".*/\?after=\d+$"))
    texts = [await rows.nth(i).inner_text() for i in range(await rows.count())]
    assert len(texts) == 2 and "Report 2" in texts[0] and "Report 1" in texts[1]
    await page.locator("#newest").click()
    await page.wait_for_url(re.compile(r".*/$"))
    assert "Report 3" in await rows.first.inner_text()


def test_a_compare_row_marks_a_verdict_reached_without_a_check() -> None:
    envelope = Envelope(ClientIdentity(ip="192.0.2.1"), "a@sender.example", ("b@corp.example",))
    down = Finding(
        code="SPAMASSASSIN_ERROR",
        filter="spamd",
        category=Category.SCORE,
        action=Action.NONE,
        reason="SpamAssassin could not score the message (connection refused).",
        unjudged=Unjudged.UNAVAILABLE,
    )
    verdict = Verdict(
        profile="spamassassin-default",
        verdict=VerdictAction.ACCEPT,
        disposition=Disposition.INBOX,
        score=0.0,
        stage=Stage.DATA,
        reply=Reply(250, "2.0.0", "Ok: queued as 1"),
        findings=(down,),
        envelope=envelope,
    )
    assert "not fully judged" in _compare_row("spamassassin-default", verdict, own=False)
    judged = dataclasses.replace(verdict, findings=())
    assert "not fully judged" not in _compare_row("spamassassin-default", judged, own=False)
