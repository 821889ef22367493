"""The text body rules read from HTML: the fast marking of break tags puts its marks exactly
where the reference form (one pattern over a lower-cased copy) always put them."""

from __future__ import annotations

import random

import pytest

from sinkd.core.html import render

_NAMES = [
    "p", "P", "pre", "PrE", "br", "bR", "div", "h1", "H6", "h7", "td", "tD", "TH", "thead",
    "li", "span", "b", "plaintext", "xmp", "table", "ſection", "p\u00e9", "br-x", "tr_", "a",
    "ul", "form", "embed", "option", "ol", "blockquote", "address", "figcaption", "header",
]  # fmt: skip
_AFTER = [">", " ", "/", "", "1", "é", "x>", "\u0131", "\u212a"]


@pytest.mark.parametrize(
    "html",
    [
        "<P>One</P><Br>two<DIV>three</div><td>four",
        "<ſection>long s is no s</ſection><p\u00e9>not a p</p\u00e9>",
        "<bloc\u212aquote>a Kelvin sign lower-cases to k</blockquote>",
        "<div\u0130>a dotted capital I lower-cases to two characters</div>",
        "no tags at all",
    ],
)
def test_marking_break_tags_is_the_same_as_the_lower_cased_reference(html: str) -> None:
    assert render._mark_breaks(html) == render._mark_breaks_lowered(html)


def test_marking_random_tag_soup_is_the_same_as_the_lower_cased_reference() -> None:
    rng = random.Random(18)
    for _ in range(5000):
        html = "".join(
            rng.choice(["<", "</", "< ", "x", " ", "<!", "<<"])
            + rng.choice(_NAMES)
            + rng.choice(_AFTER)
            for _ in range(rng.randint(1, 12))
        )
        assert render._mark_breaks(html) == render._mark_breaks_lowered(html), html
