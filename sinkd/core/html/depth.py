"""Cheap lexical looks at an HTML text, taken before (and instead of) parsing it.

Owns two: how deep the element nesting goes, found with a regular expression over tag names
only and stopping as soon as a limit is passed (lexbor's tree building grows with the square of
nesting depth: 40,000 nested ``<div>``s take about 2 s, so callers check this before parsing a
large HTML body), and whether the text is a whole document or a fragment (which decides how it
is parsed). Pure; it never parses HTML for meaning.
"""

from __future__ import annotations

import re

# Far deeper than any real newsletter (a few dozen levels), yet cheap for lexbor (about 60 ms).
MAX_DEPTH = 6000
# Below this size the worst nesting costs lexbor a few milliseconds: skip the scan.
CHECK_ABOVE = 16 * 1024

_TAG = re.compile(r"<(/?)([A-Za-z][A-Za-z0-9]*)")
# HTML void elements (WHATWG HTML §13.1.2): they never open a level.
_VOID = frozenset(
    [
        "area",
        "base",
        "br",
        "col",
        "embed",
        "hr",
        "img",
        "input",
        "link",
        "meta",
        "param",
        "source",
        "track",
        "wbr",
    ]
)


def too_deep(html: str, limit: int = MAX_DEPTH) -> int | None:
    """The depth reached once it passes ``limit``, or None when ``html`` stays within it."""
    if len(html) <= CHECK_ABOVE:
        return None
    if html.count("<") - html.count("</") <= limit:
        return None  # fewer opening tags than the limit: it cannot nest deeper (C-speed count)
    depth = 0
    for match in _TAG.finditer(html):
        if match.group(2).lower() in _VOID:
            continue
        if match.group(1):
            depth = max(0, depth - 1)
        else:
            depth += 1
            if depth > limit:
                return depth
    return None


def is_document(html: str) -> bool:
    """Whether ``html`` is a whole document (kept whole) rather than a fragment (kept a fragment).

    A lexical look for the four document-level start tags, not a parse: lexbor's fragment and
    document modes differ in exactly this (a document moves <style> and <title> into <head>).
    """
    lowered = html.lower()
    for marker in ("<html", "<body", "<head", "<!doctype"):
        start = lowered.find(marker)
        while start >= 0:
            after = lowered[start + len(marker) : start + len(marker) + 1]
            if after in ("", ">", "/", " ", "\t", "\n", "\r", "\f"):
                return True
            start = lowered.find(marker, start + 1)
    return False
