"""What the HTML scan reports: the five HTML classes, one hit, and a body's report.

Owns these plain values only, so that the parsed message and the ``mime`` filter can name them
without loading the HTML parser; it never parses anything.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["HTML_CLASSES", "HtmlHit", "HtmlReport"]

HTML_CLASSES: tuple[str, ...] = (
    "images",
    "tracking_pixels",
    "multimedia",
    "active_script",
    "hidden_text",
)


@dataclass(frozen=True, slots=True)
class HtmlHit:
    """One forbidden thing: its class, a short human description and, for hidden text, the text."""

    cls: str
    what: str
    text: str | None = None
    remote: bool = False  # an image the mail client fetches from the network to show it
    # The element as a reason names it for a reader: its tag and one identifying thing, such as
    # "<iframe> from www.youtube.com", "inline <script>", "onclick handler on <a>".
    label: str = ""


@dataclass(frozen=True, slots=True)
class HtmlReport:
    """Every hit in one HTML body, in document order, or why the body could not be inspected."""

    hits: tuple[HtmlHit, ...]
    problem: str | None = None  # set when the HTML was not inspected (too deeply nested)

    def of(self, cls: str) -> list[HtmlHit]:
        return [hit for hit in self.hits if hit.cls == cls]

    def classes(self) -> frozenset[str]:
        return frozenset(hit.cls for hit in self.hits)
