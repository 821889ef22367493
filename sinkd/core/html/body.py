"""One HTML body of one message, parsed at most once for everyone who reads it.

Owns the lifetime of a body's parse: the ``mime`` filter's inspection, the ``dnsbl`` filter's
link extraction and the strip that follows read the same ``Scan`` (one lexbor parse, one walk),
and the scan planned for stripping is the one the strip applies. The text body rules read is
rendered by the parsed message at its profile's scan sizes (``ParsedMessage._render``), not
here. The parsed message holds one ``HtmlBody`` per distinct HTML text
(``ParsedMessage.html_body``), so nothing here is global. It decides nothing and never raises
on any HTML.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING

from sinkd.core.html.depth import is_document, too_deep
from sinkd.core.html.report import HTML_CLASSES, HtmlHit, HtmlReport

if TYPE_CHECKING:
    from selectolax.lexbor import LexborHTMLParser

    from sinkd.core.html.edits import Found
    from sinkd.core.html.scan import Scan

__all__ = ["HtmlBody", "inspect_html", "strip_html"]


class HtmlBody:
    """An HTML text and, once someone needs it, its parse and scan."""

    def __init__(self, html: str) -> None:
        self.html = html
        self._measured = False
        self._depth: int | None = None
        self._scan: Scan | None = None  # parsed, possibly walked, never yet stripped
        self._found: list[Found] | None = None  # the walk's result, once walked
        self._report: HtmlReport | None = None
        self._urls: list[str] | None = None
        self._fragment: LexborHTMLParser | None = None  # a fragment parsed as a document

    def too_deep(self) -> int | None:
        """The depth past ``depth.MAX_DEPTH`` the body reaches, or None (then it is parsed)."""
        if not self._measured:
            self._depth = too_deep(self.html)
            self._measured = True
        return self._depth

    def inspect(self, plan: Collection[str] = ()) -> HtmlReport:
        """Every hit of every class (a full document or a fragment).

        ``plan`` names the classes a later ``strip`` is likely to remove: a walk not made yet
        then prepares those edits too, so that the strip needs no second parse.
        """
        if self._report is not None:
            return self._report  # the hits never depend on what is planned
        depth = self.too_deep()
        if depth is not None:
            self._report = HtmlReport(
                (), f"HTML nested more than {depth - 1} levels deep; not inspected"
            )
            return self._report
        found = self._walked(frozenset(plan))
        self._report = HtmlReport(tuple(f.hit for f in found))
        return self._report

    def strip(self, classes: Collection[str]) -> tuple[str, list[HtmlHit]]:
        """The HTML with everything of ``classes`` removed, and the hits that went with it.

        A fragment comes back as a fragment and a document as a document, both serialized by
        lexbor. The removed hits are those of ``classes`` plus any other hit inside a removed
        element (a tracking pixel goes with ``images``; an ``<object>``'s script hit goes with
        ``multimedia``). When nothing of ``classes`` is present, the HTML is returned
        unchanged, byte for byte.
        """
        wanted = frozenset(classes)
        unknown = wanted.difference(HTML_CLASSES)
        if unknown:
            raise ValueError(f"unknown HTML classes {sorted(unknown)}; known: {list(HTML_CLASSES)}")
        if not wanted or self.too_deep() is not None:
            return self.html, []  # nothing asked, or too deep to parse safely (unscannable)
        scan, found = self._scan, self._found
        if scan is None or (found is not None and not _same_edits(scan.strip, found, wanted)):
            scan, found = self._new_scan(), None  # none left, or planned for other classes
        if found is None:
            found = scan.run(wanted)
            if scan is self._scan:
                self._found = found  # parsed for the links only: this walk is the body's
        if not any(f.hit.cls in wanted for f in found):
            return self.html, []
        if scan is self._scan:
            self._scan = None  # its tree is about to become the stripped body
        scan.apply()
        removed = [f.hit for f in found if f.hit.cls in wanted or f.doomed]
        return scan.serialize(), removed

    def attribute_values(self, names: tuple[str, ...]) -> list[str]:
        """The non-empty values of the attributes ``names`` as parsed, in document order.

        Link extraction has always read a document parse. A document shares the scan's parse;
        a fragment (no <html>, <head>, <body> or doctype) is parsed as a document of its own,
        since the scan's fragment parse differs for a few hostile inputs (a leading <frameset>
        or <noscript>). The caller checks ``too_deep`` first: so deep a body is never parsed.
        """
        if self._urls is None:
            if is_document(self.html):
                self._urls = self._parsed().attribute_values(names)
            else:
                self._urls = _attribute_values(self._fragment_parsed(), names)
        return list(self._urls)

    def has_element(self, tag: str) -> bool:
        """Whether the HTML, parsed, opens an element ``tag`` (a tag named in text or in a
        comment is none). Read from the same document parse as ``attribute_values``; a body
        too deep to parse (``too_deep``) is never parsed and has none."""
        if self.too_deep() is not None:
            return False
        tree = self._parsed().tree if is_document(self.html) else self._fragment_parsed()
        return tree.css_first(tag) is not None

    # -- the one parse --

    def _parsed(self) -> Scan:
        if self._scan is None:
            self._scan = self._new_scan()
        return self._scan

    def _fragment_parsed(self) -> LexborHTMLParser:
        """A fragment parsed as a document (see ``attribute_values``), once for every reader."""
        if self._fragment is None:
            self._fragment = _parse_document(self.html)
        return self._fragment

    def _walked(self, plan: frozenset[str]) -> list[Found]:
        if self._found is None:
            scan = self._parsed()
            self._found = scan.run(plan)
        return self._found

    def _new_scan(self) -> Scan:
        # Imported on first use: selectolax and tinycss2 are heavy, and a message without HTML
        # must not load them (the parsed message imports this module).
        from sinkd.core.html.scan import Scan

        return Scan(self.html)


def _parse_document(html: str) -> LexborHTMLParser:
    # Imported on first use, as in _new_scan: only a message with HTML loads selectolax.
    from selectolax.lexbor import LexborHTMLParser

    return LexborHTMLParser(html)


def _attribute_values(tree: LexborHTMLParser, names: tuple[str, ...]) -> list[str]:
    # Imported on first use, as in _new_scan.
    from sinkd.core.html.scan import attribute_values

    return attribute_values(tree, names)


def _same_edits(planned: frozenset[str], found: list[Found], wanted: frozenset[str]) -> bool:
    """Whether a walk planned for ``planned`` makes exactly the edits ``wanted`` asks for: it
    planned them all, and the extra classes it planned found nothing to remove."""
    extra = planned - wanted
    return wanted <= planned and not any(f.hit.cls in extra for f in found)


def inspect_html(html: str, *, plan: Collection[str] = ()) -> HtmlReport:
    """Every hit of every class in ``html`` (see ``HtmlBody.inspect``)."""
    return HtmlBody(html).inspect(plan)


def strip_html(html: str, classes: Collection[str]) -> tuple[str, list[HtmlHit]]:
    """``html`` with everything of ``classes`` removed (see ``HtmlBody.strip``)."""
    return HtmlBody(html).strip(classes)
