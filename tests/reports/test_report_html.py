"""The HTML report renders in a real browser (Debian's headless Chromium): no script errors,
a non-trivial screenshot (the one the docs show, docs/images/report.png, with
SINKD_SCREENSHOTS=1: see tests/support/screenshots.py), and the chart and the per-profile table
in the rendered DOM."""

from __future__ import annotations

import contextlib
import io
import re
import subprocess
from pathlib import Path

from sinkd.cli import EXIT_OK, main
from tests.conftest import SpamdProcess, require_executable
from tests.support.screenshots import assert_screenshot, screenshot_path
from tests.support.web import CHROMIUM_ARGS

# The fixed window of the screenshot: the summary, the chart and the profile table fit in it.
WINDOW = (1200, 1600)


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


def make_report(tmp_path: Path, *options: str) -> Path:
    message = tmp_path / "newsletter.eml"
    message.write_bytes(
        b"From: News <news@shop.example>\r\nTo: bob@corp.example\r\n"
        b"Subject: October news <b>&amp; offers</b>\r\n"
        b"MIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
        b'<html><body><div style="display:none">Win the lottery at our casino</div>'
        b"<p>Hello Sam, pay by wire transfer.</p></body></html>\r\n"
    )
    # Named relatively, as a user would: the report's heading shows the name it was given
    # (and the screenshot in the docs then no temporary path).
    with contextlib.chdir(tmp_path):
        argv = ["report", message.name, "--html", "report.html", *options]
        code = main(argv, out=io.StringIO())
    assert code == EXIT_OK
    return tmp_path / "report.html"


def console_errors(stderr: str) -> list[str]:
    return [
        line
        for line in stderr.splitlines()
        if "Uncaught" in line or re.search(r"CONSOLE\(\d+\)|console.*error", line, re.I)
    ]


def test_the_report_renders_in_headless_chromium_without_script_errors(
    tmp_path: Path, spamd: SpamdProcess
) -> None:
    binary = require_executable("chromium", "chromium")
    # With a real spamd, as a user judging every profile would run it: the screenshot shows
    # spamassassin-default's verdict, not a scanner that could not answer.
    report = make_report(tmp_path, "--spamd", f"{spamd.host}:{spamd.port}")
    shot = screenshot_path("report.png", tmp_path)
    result = chromium(
        binary,
        tmp_path / "profile-shot",
        f"--screenshot={shot}",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
        "--hide-scrollbars",
        report.as_uri(),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert_screenshot(shot, *WINDOW)  # a blank 1200x1600 page is a few KB
    assert console_errors(result.stderr) == []


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
