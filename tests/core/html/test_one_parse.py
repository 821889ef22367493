"""One parse of each HTML body per transaction: the mime filter's scan, the dnsbl filter's links
and the strip read the parse the message owns (``ParsedMessage.html_body``)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import selectolax.lexbor

import sinkd.core.html.scan
from tests.support.judging import compile_yaml, judge

PROFILE = """\
filters:
  - kind: mime
    name: rich-content
    classes:
      images: {action: strip}
      hidden_text: {action: strip}
      active_script: {action: score, score: 0.5}
  - kind: dnsbl
    name: blocklists
    zones:
      - {zone: dbl.example, lookup: uri_host}
  - kind: content
    name: words
    rules:
      - {id: SOUP, words: [soup], score: 1.0}
"""

NEWSLETTER = (
    "<!doctype html><html><body><p>Six soups this week.</p>"
    '<img src="https://cdn.example/soup.png" width="600">'
    '<div style="display:none">free soup for everyone</div>'
    '<a href="https://shop.example/soup" onclick="track()">Order</a></body></html>'
)
NOTE = '<p>Reply for the <a href="https://menu.example/">menu</a>.</p>'


def message() -> bytes:
    """A text part, an HTML document and a second inline HTML fragment."""
    parts = [
        ("text/plain", "Six soups this week."),
        ("text/html", NEWSLETTER),
        ("text/html", NOTE),
    ]
    body = "".join(
        f"--b\r\nContent-Type: {ctype}; charset=utf-8\r\nContent-Disposition: inline\r\n\r\n"
        f"{text}\r\n"
        for ctype, text in parts
    )
    return (
        "From: Alice <alice@sender.example>\r\nTo: bob@corp.example\r\nSubject: Soup\r\n"
        'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n'
        f"{body}--b--\r\n"
    ).encode()


@pytest.fixture
def parses(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Every lexbor parse from now on, counted by its input (CRLF read as LF, as lexbor does)."""
    counted: Counter[str] = Counter()
    real = selectolax.lexbor.LexborHTMLParser

    def counting(html: str, *args: Any, **kwargs: Any) -> Any:
        counted[html.replace("\r\n", "\n")] += 1
        return real(html, *args, **kwargs)

    monkeypatch.setattr(selectolax.lexbor, "LexborHTMLParser", counting)
    monkeypatch.setattr(sinkd.core.html.scan, "LexborHTMLParser", counting)
    return counted


async def test_each_html_body_is_parsed_once_for_the_mime_and_dnsbl_filters_and_the_strip(
    tmp_path: Path, parses: Counter[str]
) -> None:
    verdict = await judge(compile_yaml(tmp_path, PROFILE), message())

    # Every filter read the HTML: the strip removed what the mime filter found, and the
    # content rule matched the rendered text.
    assert any("<img" in line for line in verdict.stripped)
    assert any("display:none" in line for line in verdict.stripped)
    assert verdict.filtered is not None and b"free soup" not in verdict.filtered
    assert any(finding.code.endswith("SOUP") for finding in verdict.findings)
    assert parses[NEWSLETTER] == 1
    # A fragment is scanned as a fragment but has always had its links read from a document
    # parse (the two differ for a few hostile inputs), so it is read twice, never more.
    assert parses[NOTE] == 2


async def test_the_rendered_text_for_body_rules_is_one_more_parse_of_each_html_body(
    tmp_path: Path, parses: Counter[str]
) -> None:
    await judge(compile_yaml(tmp_path, PROFILE), message())

    # Body rules read the text rendered from a copy with line-break marks put before block
    # tags (SpamAssassin's paragraphs), which is parsed on its own.
    rendered = [html for html in parses if html not in (NEWSLETTER, NOTE)]
    assert len(rendered) == 2
    assert all(parses[html] == 1 for html in rendered)
