"""Where the suite's files are, for test modules at any depth: the repository, the built-in
profiles, the test messages and the documentation."""

from __future__ import annotations

from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
ROOT = TESTS.parent
PROFILES = ROOT / "profiles"
MESSAGES = TESTS / "messages"
README = ROOT / "README.md"
DOCS = ROOT / "docs"  # the documentation site's pages (mkdocs.yml)
