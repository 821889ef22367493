"""core.html.body: one HTML body's parse, shared by inspection, link reading and the strip."""

from __future__ import annotations

from sinkd.core.html import HtmlBody, inspect_html, strip_html
from sinkd.core.message import parse

DOCUMENT = (
    "<html><body><p>Hello</p>"
    '<img src="https://cdn.example/a.png" width="1" height="1">'
    '<a href="https://shop.example/" onclick="go()">Shop</a>'
    '<span style="display:none">secret words</span></body></html>'
)
LINKS = ("href", "src")


def test_a_body_inspected_with_a_plan_strips_like_a_lone_strip_html() -> None:
    body = HtmlBody(DOCUMENT)
    assert body.inspect(plan={"images", "hidden_text"}) == inspect_html(DOCUMENT)

    assert body.strip({"images", "hidden_text"}) == strip_html(DOCUMENT, {"images", "hidden_text"})


def test_a_strip_of_other_classes_than_planned_is_still_the_lone_strip_html_result() -> None:
    body = HtmlBody(DOCUMENT)
    body.inspect(plan={"images", "active_script"})

    assert body.strip({"images"}) == strip_html(DOCUMENT, {"images"})


def test_links_read_before_the_strip_are_those_of_the_received_html() -> None:
    body = HtmlBody(DOCUMENT)
    before = body.attribute_values(LINKS)
    body.strip({"images", "active_script"})

    assert before == ["https://cdn.example/a.png", "https://shop.example/"]
    assert body.attribute_values(LINKS) == before


def test_links_read_after_the_strip_are_read_from_a_fresh_parse_of_the_received_html() -> None:
    body = HtmlBody(DOCUMENT)
    body.inspect(plan={"images"})
    body.strip({"images"})

    assert body.attribute_values(LINKS) == ["https://cdn.example/a.png", "https://shop.example/"]


def test_a_message_gives_one_body_per_html_text_whatever_its_line_endings() -> None:
    message = parse(b"Subject: x\r\n\r\nhi\r\n")

    first = message.html_body("<p>a</p>\r\n<p>b</p>")
    assert message.html_body("<p>a</p>\n<p>b</p>") is first
    assert message.html_body("<p>other</p>") is not first
