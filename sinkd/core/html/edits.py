"""The scan's record: hits in document order and the edits that strip them.

Owns the plan a scan writes while it walks (``Plan``: hit slots, planned edits, which slots
each edited element produced) and applying those edits to the parsed tree. It decides nothing
about what is forbidden (the detectors in ``detectors`` do) and never parses HTML.
"""

from __future__ import annotations

from dataclasses import dataclass

from selectolax.lexbor import LexborNode

from sinkd.core.html.report import HtmlHit

__all__ = [
    "DROP_ATTR",
    "ENDING",
    "REMOVE",
    "SET_SHEET",
    "SET_STYLE",
    "SET_TEXT",
    "UNWRAP",
    "Action",
    "Found",
    "Plan",
    "apply_actions",
]

# strip_html's edits. They are applied in reverse document order, so a descendant is always
# edited before an ancestor that may be removed: a removed node must never be touched again.
REMOVE, UNWRAP, DROP_ATTR, SET_STYLE, SET_SHEET, SET_TEXT = range(6)
ENDING = (REMOVE, UNWRAP)  # edits after which the node is gone


@dataclass(slots=True)
class Found:
    hit: HtmlHit
    doomed: bool = False  # itself or inside an element that strip_html removes


@dataclass(slots=True)
class Action:
    order: int
    kind: int
    node: LexborNode
    arg: str = ""
    slot: int = -1  # the hit a text-node edit belongs to (elements: Plan.spans)


class Plan:
    """What one walk found and, for the classes in ``strip``, how to remove it."""

    def __init__(self, strip: frozenset[str]) -> None:
        self.strip = strip
        self.slots: list[Found | None] = []  # hits in document order; None: not known yet
        self.actions: list[Action] = []
        # Element order -> the range of slots its own hits took, for elements strip_html edits
        # (the dashboard's marking labels each edit with the hits that caused it).
        self.spans: dict[int, tuple[int, int]] = {}

    def hit(self, cls: str, what: str, remote: bool = False, label: str = "") -> None:
        self.slots.append(Found(HtmlHit(cls, what, remote=remote, label=label or what)))

    def reserve(self) -> int:
        """A slot for a hit whose text is only known at the end of the walk."""
        self.slots.append(None)
        return len(self.slots) - 1

    def found(self) -> list[Found]:
        return [found for found in self.slots if found is not None]


def apply_actions(actions: list[Action], root: LexborNode | None) -> None:
    """Apply ``actions`` to their tree; ``root`` is a document's root element (None: fragment)."""
    # Later nodes first; on one node, attribute edits before the unwrap or removal ends it.
    actions.sort(key=lambda a: (a.order, a.kind not in ENDING), reverse=True)
    for action in actions:
        node = action.node
        if action.kind == REMOVE:
            if root is not None and node.mem_id == root.mem_id:
                # <html hidden> (also what an <html hidden> tag later in the body makes, as
                # its attributes move onto the root: WHATWG HTML, the "in body" insertion
                # mode, parsing.html#parsing-main-inbody): the document element itself
                # cannot go, everything inside it does.
                _empty(node)
                continue
            node.decompose()
        elif action.kind == UNWRAP:
            node.unwrap(delete_empty=True)  # without it, lexbor leaves an empty form be
        elif action.kind == DROP_ATTR:
            if action.arg in node.attrs:
                del node.attrs[action.arg]
        elif action.kind == SET_STYLE:
            if action.arg:
                node.attrs["style"] = action.arg
            elif "style" in node.attrs:
                del node.attrs["style"]
        elif action.kind == SET_SHEET:
            text = node.first_child
            if text is not None:
                text.replace_with(action.arg)
        elif action.kind == SET_TEXT:
            node.replace_with(action.arg)  # a str becomes a text node, escaped on output


def _empty(node: LexborNode) -> None:
    """Remove every child of ``node``."""
    child = node.last_child
    while child is not None:
        before = child.prev
        child.decompose()
        child = before
