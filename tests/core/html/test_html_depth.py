"""The nesting guard that keeps hostile HTML from stalling the parser."""

from __future__ import annotations

from sinkd.core.html import inspect_html, strip_html
from sinkd.core.html.depth import CHECK_ABOVE, MAX_DEPTH, too_deep
from sinkd.core.message import parse


def test_small_html_is_never_scanned() -> None:
    html = "<div>" * (MAX_DEPTH + 1) + "x"
    assert too_deep(html[: CHECK_ABOVE - 1]) is None  # under CHECK_ABOVE bytes: not scanned


def test_deep_nesting_in_a_large_body_is_reported_with_the_depth_reached() -> None:
    html = "<div>" * (MAX_DEPTH + 500) + "x"
    assert len(html) > CHECK_ABOVE
    assert too_deep(html) == MAX_DEPTH + 1


def test_a_large_but_flat_newsletter_passes() -> None:
    html = "<table>" + "<tr><td><img src='a.png'><br>cell</td></tr>" * 2000 + "</table>"
    assert len(html) > CHECK_ABOVE
    assert too_deep(html) is None


def test_closed_deep_nesting_counts_as_deep() -> None:
    depth = MAX_DEPTH * 2
    html = "<div>" * depth + "x" + "</div>" * depth
    assert too_deep(html) is not None


def test_inspect_html_reports_deep_html_instead_of_parsing_it() -> None:
    html = "<div>" * 200_000 + "x"
    report = inspect_html(html)
    assert report.hits == ()
    assert report.problem is not None and "not inspected" in report.problem
    assert strip_html(html, ["hidden_text"]) == (html, [])


def test_message_text_of_deep_html_falls_back_to_dropping_tags() -> None:
    raw = b"Subject: x\r\nContent-Type: text/html\r\n\r\n" + b"<div>" * 200_000 + b"casino"
    assert parse(raw).html_text == "casino"
