"""The documentation site for tests: its pages and the generator hook that fills them.

``docs/hooks/sinkd_docs.py`` is a mkdocs hook, loaded by mkdocs from its path rather than
imported as a package; tests load it the same way, once, and read pages from ``docs/``.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from functools import cache
from pathlib import Path
from types import ModuleType

from tests.support.paths import DOCS, ROOT

HOOK = DOCS / "hooks" / "sinkd_docs.py"
MKDOCS_YML = ROOT / "mkdocs.yml"


@cache
def hook() -> ModuleType:
    """The hook module, loaded from its file as mkdocs loads it."""
    spec = importlib.util.spec_from_file_location("sinkd_docs_hook", HOOK)
    assert spec is not None and spec.loader is not None, HOOK
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses and typing look the module up by name
    spec.loader.exec_module(module)
    return module


def page(name: str) -> str:
    """The Markdown source of ``docs/<name>``."""
    return (DOCS / name).read_text(encoding="utf-8")


def rendered(name: str) -> str:
    """``docs/<name>`` with its generator markers expanded, as the built site shows it."""
    expanded: str = hook().expand(page(name), name)
    return expanded


def pages() -> list[Path]:
    """Every Markdown page of the site (the hook's directory holds code, not pages)."""
    return sorted(p for p in DOCS.rglob("*.md") if "hooks" not in p.relative_to(DOCS).parts)


def markers(text: str) -> list[str]:
    """The generator names a page's ``<!-- sinkd:NAME -->`` lines ask for."""
    return re.findall(r"^<!-- sinkd:([a-z-]+) -->[ \t]*$", text, flags=re.MULTILINE)
