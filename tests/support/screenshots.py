"""The screenshots the documentation shows (README.md, docs/), made by the browser tests rather
than by hand, so they show what the code renders today.

Owns where a browser test writes a screenshot and what a usable one is: with
``SINKD_SCREENSHOTS=1`` into ``docs/images/`` (committed), otherwise into the test's temporary
directory, so the capture path runs (and is checked) on every test run without touching the
checkout. It never starts a browser or a server: the tests that own those call it.

To regenerate the committed images (Debian's chromium installed, as .ci/run does)::

    SINKD_SCREENSHOTS=1 python -m pytest -p no:cacheprovider tests/web/test_dashboard.py \\
        tests/reports/test_report_html.py -k "list_screenshot or renders_in_headless"

then look at ``git diff --stat docs/images`` and commit them.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

from tests.support.paths import ROOT

IMAGES = ROOT / "docs" / "images"
# The committed images stay small enough for the repository and the README (GitHub inlines them).
MAX_BYTES = 300_000
# A page of real content; a blank or failed capture at these sizes is a few KB.
MIN_BYTES = 20_000
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def for_docs() -> bool:
    return os.environ.get("SINKD_SCREENSHOTS") == "1"


def screenshot_path(name: str, tmp_path: Path) -> Path:
    """Where the screenshot ``name`` (``dashboard.png``) goes in this run."""
    if for_docs():
        IMAGES.mkdir(parents=True, exist_ok=True)
        return IMAGES / name
    return tmp_path / name


def assert_screenshot(path: Path, width: int, height: int) -> None:
    """A PNG of exactly the fixed viewport's size, with content, under the size limit."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, f"{path}: not a PNG"
    # RFC 2083 §4.1.1: IHDR is the first chunk, width and height its first two fields.
    assert data[12:16] == b"IHDR", f"{path}: no IHDR chunk first"
    assert struct.unpack(">II", data[16:24]) == (width, height), path
    assert MIN_BYTES < len(data) < MAX_BYTES, f"{path}: {len(data)} bytes"
