"""The HTML report renders in a real browser (Debian's headless Chromium): no script errors,
a non-trivial screenshot, and the chart and the per-profile table in the rendered DOM."""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
from pathlib import Path

from sinkd.cli import EXIT_OK, main
from tests.conftest import require_executable
from tests.support.web import CHROMIUM_ARGS

SCREENSHOT_COPY = os.environ.get("SINKD_REPORT_SCREENSHOT")  # e.g. /tmp/report.png


def chromium(binary: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            binary,
            "--headless",
            *CHROMIUM_ARGS,
            f"--user-data-dir={profile}",
            "--enable-logging=stderr",
            "--v=0",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


def make_report(tmp_path: Path) -> Path:
    message = tmp_path / "newsletter.eml"
    message.write_bytes(
        b"From: News <news@shop.example>\r\nTo: bob@corp.example\r\n"
        b"Subject: October news <b>&amp; offers</b>\r\n"
        b"MIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
        b'<html><body><div style="display:none">Win the lottery at our casino</div>'
        b"<p>Hello Sam, pay by wire transfer.</p></body></html>\r\n"
    )
    report = tmp_path / "report.html"
    assert main(["report", str(message), "--html", str(report)], out=io.StringIO()) == EXIT_OK
    return report


def console_errors(stderr: str) -> list[str]:
    return [
        line
        for line in stderr.splitlines()
        if "Uncaught" in line or re.search(r"CONSOLE\(\d+\)|console.*error", line, re.I)
    ]


def test_the_report_renders_in_headless_chromium_without_script_errors(tmp_path: Path) -> None:
    binary = require_executable("chromium", "chromium")
    report = make_report(tmp_path)
    shot = tmp_path / "shot.png"
    result = chromium(
        binary,
        tmp_path / "profile-shot",
        f"--screenshot={shot}",
        "--window-size=1200,1600",
        report.as_uri(),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert shot.is_file()
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 20_000, len(data)  # a blank 1200x1600 page is a few KB
    assert console_errors(result.stderr) == []
    if SCREENSHOT_COPY:
        shutil.copyfile(shot, SCREENSHOT_COPY)


def test_the_rendered_dom_holds_the_chart_and_the_profile_table(tmp_path: Path) -> None:
    binary = require_executable("chromium", "chromium")
    report = make_report(tmp_path)
    result = chromium(binary, tmp_path / "profile-dom", "--dump-dom", report.as_uri())
    assert result.returncode == 0, result.stderr[-3000:]
    dom = result.stdout
    assert '<svg id="population-chart"' in dom
    assert dom.count('class="slice ') >= 2  # several shares drawn
    assert '<table id="profiles">' in dom
    assert dom.count("<tr>") >= 9  # header + 8 built-in profiles, at least
    assert "typical-corporate" in dom and "quarantine" in dom
    assert "&lt;b&gt;&amp;amp; offers&lt;/b&gt;" in dom  # the subject stays text
    assert "<b>" not in dom
    assert console_errors(result.stderr) == []
