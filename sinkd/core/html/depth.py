"""A cheap guard against HTML nested deeply enough to stall the parser.

Owns one measurement: how deep the element nesting of an HTML text goes, found with a regular
expression over tag names only, and stopping as soon as a limit is passed. lexbor's tree
building grows with the square of nesting depth (40,000 nested ``<div>``s take about 2 s), so
callers check this before parsing a large HTML body. Pure; it never parses HTML for meaning.
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
