"""What each entry point imports: ``sinkd --help`` and ``sinkd check`` load no server, web app
or store, and the worker module does not import the runtime that starts it.

Each case runs in a fresh interpreter and reads its ``sys.modules``: a test of what is
imported, never of how long it takes (``bench/startup.py`` measures that)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

# The adapters and heavy dependencies a command that neither serves nor reads the store
# must not pay for.
SERVER_SIDE = ("aiosmtpd", "starlette", "uvicorn", "sinkd.server", "sinkd.web", "sinkd.store")

PROBE = """
import contextlib, io, json, sys
import sinkd.cli
with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):
    sinkd.cli.main({argv!r})
print(json.dumps(sorted(sys.modules)))
"""


def imported_by(*argv: str) -> set[str]:
    """The modules (top-level packages and sinkd's own) loaded by ``sinkd ARGV``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SINKD_")}
    result = subprocess.run(
        [sys.executable, "-c", PROBE.format(argv=list(argv))],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=True,
    )
    return set(json.loads(result.stdout.splitlines()[-1]))


def loaded(modules: set[str], names: tuple[str, ...]) -> list[str]:
    return sorted(m for m in modules if any(m == n or m.startswith(n + ".") for n in names))


@pytest.mark.parametrize("argv", [["--help"], ["--version"]])
def test_sinkd_help_imports_no_server_web_store_or_pydantic(argv: list[str]) -> None:
    modules = imported_by(*argv)
    assert loaded(modules, (*SERVER_SIDE, "pydantic", "yaml", "dns")) == []
    assert loaded(modules, ("sinkd.cli",)) == ["sinkd.cli", "sinkd.cli.base", "sinkd.cli.main"]


def test_sinkd_check_imports_no_server_web_or_store(tmp_path: Path) -> None:
    message = tmp_path / "one.eml"
    message.write_text("From: a@example.com\nTo: b@example.com\nSubject: hi\n\nhello\n")
    modules = imported_by("check", str(message))
    assert "sinkd.cli.check" in modules
    assert loaded(modules, SERVER_SIDE) == []
    assert loaded(modules, ("sinkd.cli.serve", "sinkd.cli.messages", "sinkd.cli.readyz")) == []


def test_sinkd_check_of_an_unsigned_message_without_spamd_imports_neither_dkimpy_nor_aiospamc(
    tmp_path: Path,
) -> None:
    message = tmp_path / "one.eml"
    message.write_text("From: a@example.com\nTo: b@example.com\nSubject: hi\n\nhello\n")
    modules = imported_by("check", str(message))
    lazy = ("aiospamc", "loguru", "sinkd.lookups.spamd_client", "dkim", "nacl")
    assert loaded(modules, lazy) == []


def test_the_worker_module_does_not_import_the_runtime_that_starts_it() -> None:
    code = "import json, sys, sinkd.server.workers; print(json.dumps(sorted(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert "sinkd.server.runtime" not in json.loads(result.stdout)
