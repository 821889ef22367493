"""Dashboard marking: the original HTML with what the filters stripped shown in place.

Owns ``mark_html``: the same scan ``strip_html`` makes (sinkd.core.html.scan), with its planned
edits turned into marks (an attribute and a small label element) instead of being applied. Only
the dashboard's "original, marked" view uses it, so it lives in the web layer, not the core.
Nothing of the mail is removed or rewritten: the caller keeps treating the result as the
hostile mail it is.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from html import escape

from selectolax.lexbor import LexborHTMLParser, LexborNode

from sinkd.core.html import HTML_CLASSES, HtmlHit
from sinkd.core.html.depth import too_deep
from sinkd.core.html.describe import short
from sinkd.core.html.edits import ENDING, REMOVE, Action
from sinkd.core.html.scan import Scan

__all__ = ["MARK_TAG", "mark_html"]

# What a mark's label says, by the class of its first hit.
_MARK_LABELS = {
    "images": "image removed",
    "tracking_pixels": "tracking pixel removed",
    "multimedia": "media removed",
    "active_script": "script removed",
    "hidden_text": "hidden text removed",
}
MARK_TAG = "sinkd-mark"  # the label element; a custom element name no mail uses for layout
# Labels inside these would not render (or would move <head> content into <body>).
_NO_LABEL_INSIDE = frozenset({"head", "svg", "math", "select", "template", "noscript"})
_MARK_ATTR = re.compile(r"data-[a-z0-9][a-z0-9-]{0,40}")


def mark_html(html: str, classes: Collection[str], attr: str) -> tuple[str, int]:
    """``html`` with what ``strip_html(html, classes)`` would edit marked instead, and how many
    marks there are.

    Every element strip_html would remove or change gets the attribute ``attr`` (``removed``
    or ``changed``), and a ``<sinkd-mark attr="label" title="what">`` element with a short label
    is inserted before it (or before hidden text), unless it sits where a label cannot render.
    Nothing of the mail is removed or rewritten, so the caller must keep treating the result as
    the hostile mail it is; what is added is attributes and text only (escaped when serialized),
    and ``attr`` must be an attribute name the caller chose (validated here), so that a mail
    cannot forge a mark a stylesheet selects by it.
    """
    if not _MARK_ATTR.fullmatch(attr):
        raise ValueError(f"mark attribute {attr!r}: expected data-[a-z0-9-]+")
    wanted = frozenset(classes)
    unknown = wanted.difference(HTML_CLASSES)
    if unknown:
        raise ValueError(f"unknown HTML classes {sorted(unknown)}; known: {list(HTML_CLASSES)}")
    if not wanted or too_deep(html) is not None:
        return html, 0
    scan = Scan(html)
    found = scan.run(wanted)
    if not any(f.hit.cls in wanted for f in found):
        return html, 0
    marks = 0
    labelled: set[int] = set()  # hidden passages already labelled
    by_order: dict[int, list[Action]] = {}
    for action in scan.plan.actions:
        by_order.setdefault(action.order, []).append(action)
    for order, actions in sorted(by_order.items()):
        node = actions[0].node
        removed = any(a.kind in ENDING for a in actions)
        hits = _mark_hits(scan, order, actions, removed)
        if node.tag == "-text":
            if any(a.kind == REMOVE for a in actions) and _starts_soft(labelled, actions[0].slot):
                continue  # one label per hidden passage: only at its first text node
        else:
            node.attrs[attr] = "removed" if removed else "changed"
        if _label_fits(node):
            node.insert_before(_label(hits, attr, removed or node.tag == "-text"))
            marks += 1
        elif node.tag != "-text":
            marks += 1
    return scan.serialize(), marks


def _mark_hits(scan: Scan, order: int, actions: list[Action], removed: bool) -> list[HtmlHit]:
    slots: list[int] = [a.slot for a in actions if a.slot >= 0]
    if not slots:
        start, end = scan.plan.spans.get(order, (0, 0))
        slots = list(range(start, end))
    hits = []
    for index in slots:
        found = scan.plan.slots[index]
        if found is None:
            continue
        if removed or (found.hit.cls in scan.strip and found.hit.cls != "hidden_text"):
            hits.append(found.hit)
    return hits


def _starts_soft(labelled: set[int], slot: int) -> bool:
    """False for the first text node of a hidden passage, True for its later ones."""
    if slot in labelled:
        return True
    labelled.add(slot)
    return False


def _label_fits(node: LexborNode) -> bool:
    """Whether a label before ``node`` renders where it stands (a fragment's top-level nodes
    have no parent to insert into)."""
    parent = node.parent
    if parent is None or node.tag == "html":  # nothing renders outside the document element
        return False
    while parent is not None:
        if parent.tag in _NO_LABEL_INSIDE:
            return False
        parent = parent.parent
    return True


def _label(hits: list[HtmlHit], attr: str, removed: bool) -> LexborNode:
    if hits:
        text = _MARK_LABELS.get(hits[0].cls, "removed")
        if not removed:
            text += " from this element"
        quote = next((h.text for h in hits if h.text), None)
        if quote:
            text += f": “{short(quote, 48)}”"
        title = "; ".join(dict.fromkeys(h.what for h in hits))
    else:
        text, title = "removed", "removed with the element around it"
    # Escaped text parsed as a fragment: it can only ever become this one element with text.
    fragment = LexborHTMLParser(
        f'<{MARK_TAG} {attr}="label" title="{escape(title, quote=True)}">'
        f"✂ {escape(text, quote=False)}</{MARK_TAG}>",
        is_fragment=True,
    )
    label = fragment.root
    assert label is not None
    return label
