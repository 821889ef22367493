"""Human descriptions of what the HTML scan finds: the ``what`` and ``label`` of a hit.

Owns how an element, a URL's origin, a hidden passage or zero-width characters are written for
a reader of a finding ("<iframe> from www.youtube.com", a shortened quote). Pure string work: it
never parses HTML or CSS and decides nothing.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

__all__ = [
    "DROP_INVISIBLE",
    "JOINERS",
    "QUOTE_CHARS",
    "REMOTE",
    "SOFT_HYPHEN",
    "URL_LEADING",
    "WHAT_VALUE_CHARS",
    "ZERO_WIDTH",
    "css_url",
    "host_of",
    "mark_zero_width",
    "origin",
    "quote",
    "short",
    "source_kind",
    "tag_text",
]

QUOTE_CHARS = 80
WHAT_VALUE_CHARS = 60

# Zero-width characters that make visible text carry hidden content or break words for filters.
# ZWNJ and ZWJ are also real typography (Persian and Indic ligature control, emoji sequences),
# so between two non-ASCII characters they are left alone.
ZERO_WIDTH = frozenset("\u200b\u200c\u200d\u2060\ufeff")
JOINERS = frozenset("\u200c\u200d")
SOFT_HYPHEN = "\u00ad"
# Invisible characters dropped from quotes and from the "is there any text" test; preheader
# padding is made of them (&zwnj;&nbsp;&#847;).
DROP_INVISIBLE = {
    ord(c): None for c in "\u200b\u200c\u200d\u200e\u200f\u2060\u2061\u2062\u2063\u2064\ufeff"
}
DROP_INVISIBLE.update({0x00AD: None, 0x034F: None, 0x180E: None})

REMOTE = ("http://", "https://", "//")
# Browsers drop these before a URL's scheme (the URL standard's C0 control or space).
URL_LEADING = "".join(chr(c) for c in range(33))


def short(text: str, limit: int = WHAT_VALUE_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def tag_text(tag: str, attrs: Mapping[str, str | None], *names: str) -> str:
    """``<tag name="value" ...>`` with only ``names`` (those present), values shortened."""
    parts = [tag]
    for name in names:
        if name in attrs:
            value = attrs[name]
            parts.append(name if value is None else f'{name}="{short(value)}"')
    return "<" + " ".join(parts) + ">"


def quote(text: str) -> str:
    """Hidden text as a reader of the hit wants it: no invisible characters, spaces collapsed."""
    collapsed = " ".join(text.translate(DROP_INVISIBLE).split())
    return short(collapsed, QUOTE_CHARS)


def source_kind(src: str) -> str:
    lowered = src.strip()[:8].lower()  # only its scheme is read
    if lowered.startswith("cid:"):
        return "cid: attachment"
    if lowered.startswith("data:"):
        return f"data: URI, {_size(len(src))}"
    if lowered.startswith(REMOTE):
        return "remote http(s):"
    return "relative URL" if lowered else "no src"


_CSS_URL = re.compile(r"""url\(\s*['"]?([^'")\s]*)""", re.IGNORECASE)


def css_url(text: str) -> str:
    """The first ``url(...)`` in CSS text, or ""."""
    match = _CSS_URL.search(text)
    return match.group(1) if match else ""


_AUTHORITY_END = re.compile(r"[/?#\\]")  # the path, query or fragment after the authority


def host_of(url: str) -> str | None:
    """The host of an http(s) or protocol-relative URL, lower-case and without a port."""
    text = url.strip(URL_LEADING)
    if not text[:8].lower().startswith(REMOTE):  # only its scheme is read
        return None
    authority = _AUTHORITY_END.split(text.partition("//")[2], maxsplit=1)[0]
    host = authority.rpartition("@")[2]
    if not host.startswith("["):
        host = host.partition(":")[0]
    return short(host.lower(), 60) or None


def origin(src: str) -> str:
    """Where an element's content comes from, as a reason says it: " from cdn.example.com",
    " cid:logo@example" (an attached part), " (data: URI)", ' src="img/a.png"', or ""."""
    text = src.strip(URL_LEADING)
    if not text:
        return ""
    host = host_of(text)
    if host is not None:
        return f" from {host}"
    lowered = text[:5].lower()  # only its scheme is read
    if lowered.startswith("cid:"):
        return f" {short(text, 40)}"
    if lowered.startswith("data:"):
        return " (data: URI)"
    return f' src="{short(text, 40)}"'


def _size(chars: int) -> str:
    if chars >= 1024 * 1024:
        return f"{chars / (1024 * 1024):.1f} MB"
    return f"{max(1, round(chars / 1024))} KB"


def mark_zero_width(text: str) -> str:
    """``text`` with its zero-width characters made visible, cut around the first of them."""
    marked = "".join(
        f"[U+{ord(c):04X}]" if c in ZERO_WIDTH or c == SOFT_HYPHEN else c for c in text
    )
    marked = " ".join(marked.split())
    first = marked.find("[U+")
    if first > QUOTE_CHARS // 2:
        marked = "…" + marked[first - QUOTE_CHARS // 3 :]
    return short(marked, QUOTE_CHARS)
