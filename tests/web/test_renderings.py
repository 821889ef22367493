"""The renderings' ``cid:`` images against a real ``Sinkd`` (SMTP and HTTP on free ports): a
``multipart/related`` message is sent over SMTP, its renderings and the part route are read
with httpx, then a headless Chromium shows the inline images from the message's own parts
while remote images stay blocked."""

from __future__ import annotations

import html
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from sinkd.server.runtime import Sinkd
from sinkd.store import Query
from sinkd.web.renderings import PART_CSP, frame_csp
from tests.conftest import StartServer, free_port, require_executable
from tests.support.images import png, related_message
from tests.support.profiles import STRIPPING_PROFILE_ID, write_stripping_profile
from tests.support.smtp import TIMEOUT, send
from tests.support.web import HitCounter, base_url, browser_page

LOGO = png(37, 23)
BANNER = png(5, 4, (0, 120, 60))
SVG = b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)" width="9" height="9"/>'
PAGE = b"<script>alert(1)</script>"


def inline_message(remote_port: int, *, tag: str = "sender.example") -> bytes:
    """Every place a rendering keeps a ``cid:`` reference, a missing part, an SVG part, an
    HTML part and one remote image."""
    body = (
        f'<img id="logo" src="cid:logo%40{tag}" alt="logo">'  # percent-encoded (RFC 2392)
        f'<table><tr><td id="cell" background="cid:banner@{tag}">cell</td></tr></table>'
        f'<div id="styled" style="background-image:url(\'cid:banner@{tag}\')">styled</div>'
        f"<style>.hero{{background:url(cid:banner@{tag})}}</style>"
        f'<img id="vector" src="cid:vector@{tag}">'
        f'<img id="page" src="cid:page@{tag}">'
        f'<img id="missing" src="cid:nowhere@{tag}">'
        f'<img id="remote" src="http://127.0.0.1:{remote_port}/pixel.png">'
        "<p>INLINE-BODY</p>"
    )
    parts = [
        (f"logo@{tag}", "image/png", LOGO),
        (f"banner@{tag}", "image/png", BANNER),
        (f"vector@{tag}", "image/svg+xml", SVG),
        (f"page@{tag}", "text/html", PAGE),
    ]
    return related_message(f"Inline images {tag}", body, parts, boundary=f"b-{tag}")


async def newest_id(app: Sinkd) -> str:
    assert app.store is not None
    return (await app.store.list(Query(limit=1)))[0].id


def attribute(doc: str, element_id: str, name: str) -> str:
    found = re.search(rf'<[a-z]+ id="{element_id}"[^>]* {name}="([^"]*)"', doc)
    assert found is not None, f"#{element_id} has no {name}"
    return html.unescape(found[1])


async def test_cid_references_point_at_the_part_route_of_the_same_copy(
    app: Sinkd, http: httpx.AsyncClient
) -> None:
    remote = free_port()
    await send(app, inline_message(remote), "alice@sender.example", "bob@corp.example")
    message_id = await newest_id(app)
    for which in ["original", "filtered"]:
        response = await http.get(f"/messages/{message_id}/render/{which}")
        assert response.status_code == 200
        doc = response.text
        route = f"/messages/{message_id}/render/{which}/cid/"
        assert attribute(doc, "logo", "src") == route + "logo@sender.example"
        assert attribute(doc, "cell", "background") == route + "banner@sender.example"
        styled = attribute(doc, "styled", "style")
        assert styled == f'background-image:url("{route}banner@sender.example")'
        assert f'.hero{{background:url("{route}banner@sender.example")}}' in doc
        assert attribute(doc, "remote", "src") == f"http://127.0.0.1:{remote}/pixel.png"
        assert "cid:" not in doc
        # Images from exactly that path and data: only: remote ones stay blocked.
        own = f"{base_url(app)}{route}"
        assert response.headers["content-security-policy"] == frame_csp(False, own)
        assert "http:" not in frame_csp(False, own).replace(own, "")
        widened = await http.get(f"/messages/{message_id}/render/{which}?remote_images=1")
        assert widened.headers["content-security-policy"] == frame_csp(True, own)
        # A CSP host-source cannot name an IPv6 literal: there the origin is 'self'.
        port = base_url(app).rsplit(":", 1)[1]
        by_ipv6 = await http.get(
            f"/messages/{message_id}/render/{which}", headers={"Host": f"[::1]:{port}"}
        )
        assert by_ipv6.headers["content-security-policy"] == frame_csp(False, "'self'")


async def test_the_part_route_answers_the_image_bytes_under_their_declared_type(
    app: Sinkd, http: httpx.AsyncClient
) -> None:
    await send(app, inline_message(free_port()), "alice@sender.example", "bob@corp.example")
    message_id = await newest_id(app)
    for which in ["original", "filtered"]:
        for cid, expected in [("logo%40sender.example", LOGO), ("banner@sender.example", BANNER)]:
            response = await http.get(f"/messages/{message_id}/render/{which}/cid/{cid}")
            assert response.status_code == 200
            assert response.content == expected
            assert response.headers["content-type"] == "image/png"
            assert response.headers["x-content-type-options"] == "nosniff"
            assert response.headers["content-security-policy"] == PART_CSP


@pytest.mark.parametrize(
    "cid", ["nowhere@sender.example", "vector@sender.example", "page@sender.example", ""]
)
async def test_a_missing_svg_or_non_image_part_is_an_empty_404(
    app: Sinkd, http: httpx.AsyncClient, cid: str
) -> None:
    await send(app, inline_message(free_port()), "alice@sender.example", "bob@corp.example")
    message_id = await newest_id(app)
    response = await http.get(f"/messages/{message_id}/render/original/cid/{cid}")
    assert response.status_code == 404
    assert response.content == b""  # an empty image, never the part and never an error page
    assert "content-type" not in response.headers
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["content-security-policy"] == PART_CSP


async def test_another_messages_part_is_not_reachable_through_this_ones_route(
    app: Sinkd, http: httpx.AsyncClient
) -> None:
    await send(app, inline_message(free_port()), "alice@sender.example", "bob@corp.example")
    first = await newest_id(app)
    await send(app, inline_message(free_port(), tag="other.example"), "a@x.example", "b@y.example")
    second = await newest_id(app)
    assert first != second
    own = await http.get(f"/messages/{second}/render/original/cid/logo@other.example")
    assert own.status_code == 200 and own.content == LOGO
    for path in [
        f"/messages/{first}/render/original/cid/logo@other.example",
        f"/messages/{second}/render/original/cid/logo@sender.example",
        f"/messages/{first}/render/bogus/cid/logo@sender.example",
        "/messages/NOPE0000/render/original/cid/logo@sender.example",
    ]:
        response = await http.get(path)
        assert response.status_code == 404 and response.content == b"", path
    # A path that is no message id is not even the part route (the API's JSON 404 answers).
    escaped = await http.get("/messages/..%2F..%2Fetc/render/original/cid/logo@sender.example")
    assert escaped.status_code == 404 and LOGO not in escaped.content


async def test_a_part_stripping_removed_stays_missing_from_the_filtered_copy(
    start_server: StartServer, tmp_path: Path
) -> None:
    write_stripping_profile(tmp_path)
    app = await start_server(http=True, profiles_dirs=[tmp_path], profile=STRIPPING_PROFILE_ID)
    await send(app, inline_message(free_port()), "alice@sender.example", "bob@corp.example")
    message_id = await newest_id(app)
    async with httpx.AsyncClient(base_url=base_url(app), timeout=TIMEOUT) as http:
        stored = (await http.get(f"/api/v1/messages/{message_id}")).json()
        assert "part 2 (image/png)" in stored["stripped"]  # the logo's part was removed
        route = f"/messages/{message_id}/render/{{}}/cid/logo@sender.example"
        original = await http.get(route.format("original"))
        assert original.status_code == 200 and original.content == LOGO
        filtered = await http.get(route.format("filtered"))
        assert filtered.status_code == 404 and filtered.content == b""  # the truth: gone


async def test_a_rendering_without_cid_references_keeps_the_plain_frame_policy(
    app: Sinkd, http: httpx.AsyncClient
) -> None:
    plain = related_message("No inline images", "<p>cid: is only text here</p>", [])
    await send(app, plain, "alice@sender.example", "bob@corp.example")
    message_id = await newest_id(app)
    response = await http.get(f"/messages/{message_id}/render/original")
    assert response.headers["content-security-policy"] == frame_csp(False)
    assert "<p>cid: is only text here</p>" in response.text


# --- in a browser ---------------------------------------------------------------------------


@pytest.fixture
async def page(app: Sinkd) -> AsyncIterator[Any]:
    async with browser_page(app, require_executable("chromium", "chromium")) as tab:
        yield tab


@pytest.fixture
def hit_counter() -> Iterator[HitCounter]:
    counter = HitCounter()
    yield counter
    counter.close()


async def test_an_inline_image_shows_from_its_part_and_remote_images_stay_blocked(
    app: Sinkd, page: Any, hit_counter: HitCounter
) -> None:
    await send(app, inline_message(hit_counter.port), "alice@sender.example", "bob@corp.example")
    message_id = await newest_id(app)
    requested: list[str] = []
    answered: dict[str, int] = {}
    page.on("request", lambda request: requested.append(request.url))
    page.on("response", lambda response: answered.__setitem__(response.url, response.status))
    await page.goto(f"/messages/{message_id}")
    await page.wait_for_load_state("load")  # after the frames, and so after their image loads
    for which in ["original", "filtered"]:
        frame = page.frame_locator(f"iframe.{which}")
        assert "INLINE-BODY" in await frame.locator("body").inner_text()
        logo = frame.locator("#logo")
        assert await logo.evaluate("img => img.complete && img.naturalWidth") == 37
        assert await logo.evaluate("img => img.naturalHeight") == 23
        for broken in ["#missing", "#vector", "#page", "#remote"]:
            assert await frame.locator(broken).evaluate("img => img.naturalWidth") == 0, broken
        banner = f"{base_url(app)}/messages/{message_id}/render/{which}/cid/banner@sender.example"
        assert answered.get(banner) == 200  # the background and the CSS url() loaded it
    assert hit_counter.hits == []  # the CSP blocks remote images by default
    assert not [url for url in requested if url.startswith("cid:")]  # never to the network
    # The toggle works as before, and the inline image still comes from its part.
    await page.get_by_role("link", name="Load remote images").click()
    await page.wait_for_url("**?remote_images=1")
    await page.wait_for_load_state("load")
    assert "/pixel.png" in hit_counter.hits
    logo = page.frame_locator("iframe.original").locator("#logo")
    assert await logo.evaluate("img => img.complete && img.naturalWidth") == 37
