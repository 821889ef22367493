"""HTML fixtures shared by the HTML scan's tests and the dashboard marking's tests."""

from __future__ import annotations

from pathlib import Path

CONTENT = Path(__file__).resolve().parent.parent / "messages" / "content"


def content_html(name: str) -> str:
    """A hand-made HTML body from ``tests/messages/content``."""
    return (CONTENT / name).read_text(encoding="utf-8")
