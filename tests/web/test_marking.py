"""web.marking: the dashboard's original with what strip_html would remove marked in place."""

from __future__ import annotations

import pytest

from sinkd.core.html import HTML_CLASSES, strip_html
from sinkd.web.marking import mark_html
from tests.support.html import content_html

MARK = "data-sinkd-test"


def test_marking_labels_every_removed_element_and_removes_nothing() -> None:
    html = content_html("hidden-preheader.html")
    marked, count = mark_html(html, HTML_CLASSES, MARK)
    assert count == 1
    assert f'<sinkd-mark {MARK}="label" title="&lt;div style=&quot;display: none;' in marked
    assert "✂ hidden text removed: “Your statement is ready – plus 20% off renewals…”" in marked
    assert (
        f'opacity: 0; overflow: hidden; mso-hide: all;" {MARK}="removed">Your statement' in marked
    )
    _, removed = strip_html(html, HTML_CLASSES)
    assert [hit.cls for hit in removed] == ["hidden_text"]
    for text in ["View your statement", "Your statement is ready"]:
        assert text in marked  # marked, not stripped


def test_marking_labels_edits_and_removals_with_their_hits() -> None:
    marked, count = mark_html(content_html("script-zoo.html"), ["active_script"], MARK)
    assert count >= 10
    assert f'<a href="javascript:alert(1)" {MARK}="changed">' in marked
    assert "✂ script removed from this element" in marked
    assert f'<script {MARK}="removed">document.title = "inline";</script>' in marked
    head = marked.split("</head>", 1)[0]
    assert f'<script {MARK}="removed">' in head and "<sinkd-mark" not in head  # no labels there


def test_a_label_is_escaped_text_whatever_the_mail_contains() -> None:
    html = (
        "<html><body><p>x</p>"
        '<img src="https://x.example/a.png?&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;">'
        "</body></html>"
    )
    marked, count = mark_html(html, ["images"], MARK)
    assert count == 1
    label = marked.split("<sinkd-mark", 1)[1].split("</sinkd-mark>", 1)[0]
    assert "<script" not in label and "&lt;script&gt;" in label


def test_marking_nothing_or_with_a_bad_attribute_name() -> None:
    clean = "<p>Hello</p>"
    assert mark_html(clean, HTML_CLASSES, MARK) == (clean, 0)
    assert mark_html(content_html("script-zoo.html"), [], MARK)[1] == 0
    for bad in ["onclick", "data-x onload=alert(1)", 'data-"x"', "style"]:
        with pytest.raises(ValueError, match="mark attribute"):
            mark_html(clean, HTML_CLASSES, bad)
    with pytest.raises(ValueError, match="unknown HTML classes"):
        mark_html(clean, ["fonts"], MARK)


def test_a_hidden_root_element_is_marked_removed_without_a_label() -> None:
    html = "<body><p>Visible at first</p><html hidden><p>Secret words</p>"
    marked, count = mark_html(html, ["hidden_text"], MARK)
    assert count == 1 and marked.startswith(f'<html hidden="" {MARK}="removed">')
