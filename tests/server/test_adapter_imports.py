"""The SMTP adapter's modules import in one direction: the protocol builds on the handler,
the session, XCLIENT's parsing and the options; none of those imports the protocol back (the
handler sees it only through ``session.SmtpServer``), so there is no import cycle to hide."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import sinkd.server

SERVER = Path(sinkd.server.__file__).parent


def imported_modules(module: str) -> set[str]:
    """Every module ``sinkd/server/<module>.py`` imports, at any level of its code."""
    tree = ast.parse((SERVER / f"{module}.py").read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found |= {node.module, *(f"{node.module}.{alias.name}" for alias in node.names)}
    return found


@pytest.mark.parametrize("module", ["handler", "session", "xclient", "options"])
def test_a_module_below_the_protocol_never_imports_it(module: str) -> None:
    assert "sinkd.server.protocol" not in imported_modules(module)


@pytest.mark.parametrize("module", ["xclient", "options"])
def test_xclient_and_the_options_import_no_other_part_of_the_adapter(module: str) -> None:
    adapter = {f"sinkd.server.{name}" for name in ("protocol", "handler", "session")}
    assert not adapter & imported_modules(module)


def test_the_session_never_imports_the_handler() -> None:
    assert "sinkd.server.handler" not in imported_modules("session")
