"""The CI gate: ``sinkd check --fail-on LEVEL`` over files and directories, its summary table,
exit codes and JUnit XML report."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from sinkd.cli import main

GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"
MESSAGES = Path(__file__).parent / "messages"


@pytest.fixture(autouse=True)
def _no_sinkd_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("SINKD_"):
            monkeypatch.delenv(name)


def run(*argv: str | Path) -> tuple[int, str]:
    out = io.StringIO()
    code = main([str(a) for a in argv], out=out)
    return code, out.getvalue()


def write(path: Path, subject: str, body: str, content_type: str = "text/plain") -> Path:
    path.write_bytes(
        (
            "From: Alice <alice@sender.example>\r\nTo: Bob <bob@corp.example>\r\n"
            f"Subject: {subject}\r\nMIME-Version: 1.0\r\n"
            f"Content-Type: {content_type}; charset=utf-8\r\n\r\n"
            + body.replace("\r\n", "\n").replace("\n", "\r\n")
            + "\r\n"
        ).encode()
    )
    return path


@pytest.fixture
def templates(tmp_path: Path) -> Path:
    """Four templates, one per rung of typical-corporate's ladder, and a file that is no .eml."""
    folder = tmp_path / "templates"
    folder.mkdir()
    write(folder / "a-welcome.eml", "Welcome aboard", "See you at noon.")
    preheader = (MESSAGES / "content" / "hidden-preheader.html").read_text(encoding="utf-8")
    write(folder / "b-statement.eml", "Your statement", preheader, "text/html")
    write(folder / "c-casino.eml", "Casino night", "Win the lottery with bitcoin")
    write(folder / "d-gtube.eml", "Test", GTUBE)
    (folder / "notes.txt").write_text("not a message")
    return folder


def table_rows(out: str) -> list[list[str]]:
    """The table's rows without the header and total: result, file, profile, verdict, ..."""
    lines = out.splitlines()
    assert lines[0].split()[:4] == ["result", "file", "profile", "verdict"]
    return [line.split(maxsplit=7) for line in lines[1:-1]]


# --- levels and exit codes --------------------------------------------------------------------


def test_fail_on_quarantine_fails_the_quarantined_and_rejected_templates_with_exit_1(
    templates: Path,
) -> None:
    code, out = run("check", templates, "--fail-on", "quarantine")
    assert code == 1
    rows = table_rows(out)
    assert [(r[0], Path(r[1]).name, r[3]) for r in rows] == [
        ("pass", "a-welcome.eml", "intact"),
        ("pass", "b-statement.eml", "stripped"),
        ("FAIL", "c-casino.eml", "quarantine"),
        ("FAIL", "d-gtube.eml", "reject"),
    ]
    assert out.splitlines()[-1] == (
        "FAILED: 2 of 4 files at or above quarantine (1 intact, 1 stripped, 1 quarantine, 1 reject)"
    )


def test_the_table_names_stage_score_stripped_count_and_the_deciding_reason(
    templates: Path,
) -> None:
    _, out = run("check", templates, "--fail-on", "quarantine")
    by_name = {Path(r[1]).name: r for r in table_rows(out)}
    statement, casino = by_name["b-statement.eml"], by_name["c-casino.eml"]
    gtube = by_name["d-gtube.eml"]
    assert statement[6] != "0"  # something was stripped
    assert "hidden" in statement[7].lower()
    # A score decision names the findings that added the points.
    assert casino[4:6] == ["data", "9.5"]
    assert "quarantine threshold of 8" in casino[7]
    assert "CONTENT_TRIGGER_WORD +9" in casino[7]
    assert gtube[4] == "data"
    assert "GTUBE" in gtube[7].upper()


def test_fail_on_reject_lets_a_quarantined_template_pass(templates: Path) -> None:
    code, out = run("check", templates / "c-casino.eml", "--fail-on", "reject")
    assert code == 0
    assert out.splitlines()[-1] == (
        "passed: 1 file, none at or above reject (0 intact, 0 stripped, 1 quarantine, 0 reject)"
    )


def test_fail_on_stripped_fails_a_template_that_loses_its_hidden_text(templates: Path) -> None:
    assert run("check", templates / "b-statement.eml", "--fail-on", "stripped")[0] == 1
    assert run("check", templates / "a-welcome.eml", "--fail-on", "stripped")[0] == 0


def test_the_gate_uses_the_given_profile(templates: Path) -> None:
    # strict-finance quarantines at 5 points and quarantines (rather than strips) hidden text.
    statement = templates / "b-statement.eml"
    code, out = run("check", statement, "--profile", "strict-finance", "--fail-on", "quarantine")
    assert code == 1
    [row] = table_rows(out)
    assert row[2:4] == ["strict-finance", "quarantine"]


def test_without_fail_on_check_keeps_its_verdict_exit_codes_and_output(templates: Path) -> None:
    code, out = run("check", templates / "c-casino.eml")
    assert code == 3
    assert "QUARANTINE (quarantined) profile=typical-corporate" in out.splitlines()[0]


def test_fail_on_with_json_prints_the_verdicts_and_exits_by_the_gate(templates: Path) -> None:
    code, out = run("check", templates / "c-casino.eml", "--json", "--fail-on", "reject")
    assert code == 0
    assert '"verdict": "quarantine"' in out


def test_an_unknown_fail_on_level_is_a_usage_error(
    templates: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run("check", templates, "--fail-on", "junk")[0] == 2
    assert "--fail-on: invalid choice: 'junk'" in capsys.readouterr().err


# --- directories and files --------------------------------------------------------------------


def test_a_directory_stands_for_its_eml_files_in_name_order(templates: Path) -> None:
    _, out = run("check", templates, "--fail-on", "reject")
    assert [r[1] for r in table_rows(out)] == [
        str(templates / n)
        for n in ("a-welcome.eml", "b-statement.eml", "c-casino.eml", "d-gtube.eml")
    ]


def test_a_directory_without_eml_files_exits_2_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "readme.txt").write_text("nothing to check")
    assert run("check", tmp_path, "--fail-on", "quarantine")[0] == 2
    assert capsys.readouterr().err == f"sinkd: {tmp_path}: a directory with no *.eml files in it\n"


def test_a_missing_file_exits_2_before_any_table_or_report(
    templates: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing, report = tmp_path / "missing.eml", tmp_path / "junit.xml"
    code, out = run(
        "check", templates / "a-welcome.eml", missing, "--fail-on", "quarantine",
        "--junit-xml", report,
    )  # fmt: skip
    assert code == 2
    assert out == ""
    assert not report.exists()
    assert capsys.readouterr().err == f"sinkd: {missing}: no such file\n"


def test_a_directory_of_one_file_writes_filtered_copies_into_the_target_directory(
    tmp_path: Path,
) -> None:
    folder, target = tmp_path / "one", tmp_path / "filtered"
    folder.mkdir()
    target.mkdir()
    write(folder / "welcome.eml", "Welcome aboard", "See you at noon.")
    assert run("check", folder, "--write-filtered", target)[0] == 0
    assert [p.name for p in target.iterdir()] == ["welcome.filtered.eml"]


def test_the_gate_runs_as_a_process_with_exit_1(templates: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SINKD_")}
    result = subprocess.run(
        [sys.executable, "-m", "sinkd", "check", str(templates), "--fail-on", "quarantine"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1, result.stderr
    assert result.stdout.splitlines()[-1].startswith("FAILED: 2 of 4 files")


# --- JUnit XML --------------------------------------------------------------------------------

# The structure Jenkins' xUnit plugin validates against (junit-10.xsd, also pytest's xunit2
# family), the strictest reader; GitLab and GitHub report actions read a subset of it.
SUREFIRE_TIME = re.compile(r"(([0-9]{0,3},)*[0-9]{3}|[0-9]{0,3})*(\.[0-9]{0,3})?")
SCHEMA: dict[str, tuple[set[str], set[str], set[str]]] = {
    # element: (required attributes, optional attributes, allowed children)
    "testsuites": (set(), {"name", "time", "tests", "failures", "errors"}, {"testsuite"}),
    "testsuite": (
        {"name", "tests", "failures", "errors"},
        {
            "group",
            "time",
            "skipped",
            "timestamp",
            "hostname",
            "id",
            "package",
            "file",
            "log",
            "url",
            "version",
        },
        {"testsuite", "properties", "testcase", "system-out", "system-err"},
    ),
    "properties": (set(), set(), {"property"}),
    "property": ({"name", "value"}, set(), set()),
    "testcase": (
        {"name"},
        {"time", "classname", "group"},
        {"skipped", "errors", "failure", "system-out", "system-err"},
    ),
    "failure": (set(), {"type", "message"}, set()),
    "system-out": (set(), set(), set()),
}


def assert_xunit_schema(element: ET.Element) -> None:
    required, optional, children = SCHEMA[element.tag]
    assert required <= set(element.attrib), (element.tag, element.attrib)
    assert set(element.attrib) <= required | optional, (element.tag, element.attrib)
    if "time" in element.attrib and element.tag != "testcase":
        assert SUREFIRE_TIME.fullmatch(element.attrib["time"]), element.attrib["time"]
    for child in element:
        assert child.tag in children, (element.tag, child.tag)
        assert_xunit_schema(child)


@pytest.fixture
def report(templates: Path, tmp_path: Path) -> ET.Element:
    path = tmp_path / "junit.xml"
    code, _ = run("check", templates, "--fail-on", "quarantine", "--junit-xml", path)
    assert code == 1
    return ET.parse(path).getroot()


def test_junit_xml_follows_the_xunit_schema_ci_systems_read(report: ET.Element) -> None:
    assert report.tag == "testsuites"
    assert_xunit_schema(report)


def test_junit_xml_has_a_testcase_per_file_and_a_failure_for_those_at_the_level(
    report: ET.Element, templates: Path
) -> None:
    [suite] = report.findall("testsuite")
    assert suite.get("name") == "typical-corporate"
    cases = suite.findall("testcase")
    assert [c.get("name") for c in cases] == [
        str(templates / n)
        for n in ("a-welcome.eml", "b-statement.eml", "c-casino.eml", "d-gtube.eml")
    ]
    assert {c.get("classname") for c in cases} == {"typical-corporate"}
    failed = {Path(str(c.get("name"))).name: c.find("failure") for c in cases}
    assert failed["a-welcome.eml"] is None and failed["b-statement.eml"] is None
    casino, gtube = failed["c-casino.eml"], failed["d-gtube.eml"]
    assert casino is not None and gtube is not None
    assert casino.get("type") == "quarantine"
    assert str(casino.get("message")).startswith("quarantine at data: The message scored 9.5")
    assert "CONTENT_TRIGGER_WORD:" in str(casino.text)
    assert gtube.get("type") == "reject"
    # Counts agree with the elements, at both levels.
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("4", "2", "0")
    assert (report.get("tests"), report.get("failures")) == ("4", "2")
    assert float(str(report.get("time"))) >= float(str(cases[0].get("time")))


def test_junit_xml_carries_the_verdict_and_score_of_every_file_and_the_gate_as_properties(
    report: ET.Element,
) -> None:
    suite = report.find("testsuite")
    assert suite is not None
    properties = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert properties["profile"] == "typical-corporate"
    assert properties["fail_on"] == "quarantine"
    outputs = [str(c.findtext("system-out")) for c in suite.findall("testcase")]
    assert outputs[1].splitlines()[:4] == [
        "verdict: stripped (accept, inbox)",
        "profile: typical-corporate",
        "stage: data",
        outputs[1].splitlines()[3],
    ]
    assert "score: 9.5" in outputs[2].splitlines()
    assert "reply: 554 5.7.1 Gtube pattern" in outputs[3].splitlines()


def test_junit_xml_has_one_testsuite_per_profile_the_recipients_reach(
    templates: Path, tmp_path: Path
) -> None:
    path = tmp_path / "junit.xml"
    code, _ = run(
        "check", templates / "c-casino.eml", "--profile", "no-filter",
        "--route", "finance.example=strict-finance",
        "--rcpt", "a@corp.example", "--rcpt", "b@finance.example",
        "--fail-on", "quarantine", "--junit-xml", path,
    )  # fmt: skip
    assert code == 1
    root = ET.parse(path).getroot()
    assert_xunit_schema(root)
    suites = {s.get("name"): s for s in root.findall("testsuite")}
    assert list(suites) == ["no-filter", "strict-finance"]
    assert suites["no-filter"].get("failures") == "0"
    assert suites["strict-finance"].get("failures") == "1"


def test_junit_xml_without_fail_on_marks_quarantine_and_worse_and_keeps_the_exit_code(
    templates: Path, tmp_path: Path
) -> None:
    path = tmp_path / "junit.xml"
    code, out = run("check", templates / "b-statement.eml", templates / "c-casino.eml",
                    "--junit-xml", path)  # fmt: skip
    assert code == 3
    assert "QUARANTINE (quarantined)" in out
    types = [f.get("type") for f in ET.parse(path).getroot().iter("failure")]
    assert types == ["quarantine"]


def test_junit_xml_stays_well_formed_for_text_xml_cannot_hold(tmp_path: Path) -> None:
    # A control character in a file name reaches the testcase name; XML 1.0 cannot carry it.
    odd = write(tmp_path / "odd\x1bname.eml", "Casino night", "Win the lottery with bitcoin")
    path = tmp_path / "junit.xml"
    assert run("check", odd, "--fail-on", "quarantine", "--junit-xml", path)[0] == 1
    [case] = ET.parse(path).getroot().iter("testcase")
    assert str(case.get("name")).endswith("odd\\x1bname.eml")


def test_an_unwritable_junit_path_exits_2_naming_it(
    templates: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "no-such-dir" / "junit.xml"
    assert run("check", templates, "--fail-on", "quarantine", "--junit-xml", target)[0] == 2
    assert capsys.readouterr().err.startswith(f"sinkd: --junit-xml {target}: cannot write:")
