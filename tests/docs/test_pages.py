"""The hand-written pages keep up with the code where they summarise it: the HTTP API page's
endpoint table names every operation of the OpenAPI document, and the pytest page's option
table every ``--sinkd-*`` option and ``sinkd_*`` ini setting the plugin registers (read from
``pytest --help``, the plugin's own listing)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from sinkd.web.openapi import document
from tests.support.docs import page
from tests.support.paths import ROOT


def _table_rows(markdown: str, header: str) -> list[str]:
    """The rows of the first table whose header line starts with ``header``."""
    lines = markdown.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append(line)
    return rows


def test_the_api_page_summarises_every_operation_of_the_openapi_document() -> None:
    rows = _table_rows(page("http-api.md"), "| endpoint | answer |")
    listed = {m.group(1) for row in rows if (m := re.match(r"^\| `([A-Z]+ [^`]+)` \|", row))}
    operations = {f"{m.upper()} {p}" for p, ms in document()["paths"].items() for m in ms}
    assert sorted(operations - listed) == [], "add a row to docs/http-api.md's endpoint table"
    assert sorted(listed - operations) == [], "docs/http-api.md lists an endpoint sinkd lacks"


def test_the_pytest_page_lists_every_option_and_ini_setting_of_the_plugin() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--help", "-p", "no:cacheprovider"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    options = set(re.findall(r"^\s+(--sinkd-[a-z-]+)", done.stdout, flags=re.MULTILINE))
    ini = set(re.findall(r"^\s+(sinkd_[a-z_]+) \(", done.stdout, flags=re.MULTILINE))
    assert len(options) >= 6 and len(ini) >= 7, done.stdout[-2000:]
    rows = _table_rows(page("pytest.md"), "| option | ini | meaning |")
    shown_options = {m for row in rows for m in re.findall(r"`(--sinkd-[a-z-]+)", row)}
    shown_ini = {m for row in rows for m in re.findall(r"`(sinkd_[a-z_]+)`", row)}
    assert (sorted(options - shown_options), sorted(ini - shown_ini)) == ([], [])
