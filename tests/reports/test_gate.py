"""The CI gate: ``sinkd check --fail-on LEVEL`` over files and directories, its summary table,
exit codes (5 for a verdict not fully judged) and JUnit XML report. The templates are judged
by a profile written here, so the gate's tests do not move when a built-in profile does."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from sinkd.cli import main
from tests.conftest import refused_port

GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"


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


# A profile written here, one rung of the gate's ladder per template, so that the gate's tests
# do not move when a built-in profile is re-audited.
LADDER_PROFILE = """\
schema: sinkd.profile/v1
id: ladder
title: One rung of the gate's ladder per subject
models:
  - {what: "a test profile", source: "tests/reports/test_gate.py"}
scoring:
  thresholds: {quarantine: 8.0}
filters:
  - kind: content
    name: words
    gtube: {action: reject}
    rules:
      - {id: TAG_ME, words: [tagme], parts: [subject], action: tag}
      - {id: JUNK_ME, words: [junkme], parts: [subject], action: junk}
      - {id: CASINO, words: [casino], parts: [subject, body], score: 9.0}
  - kind: mime
    name: rich
    classes:
      active_script: {action: strip}
"""
# The same profile with spamd at an address nobody answers: every verdict is incomplete.
SPAMD_DOWN = """\
  - kind: spamassassin
    name: spamd
    host: 127.0.0.1
    port: {port}
    timeout: 5
    on_error: {{action: none}}
"""
SCRIPT = "<html><body><p>Hello</p><script>alert(1)</script></body></html>"


@pytest.fixture
def profiles(tmp_path: Path) -> Path:
    folder = tmp_path / "profiles"
    folder.mkdir()
    (folder / "ladder.yaml").write_text(LADDER_PROFILE, encoding="utf-8")
    (folder / "lenient.yaml").write_text(
        LADDER_PROFILE.split("scoring:")[0].replace("id: ladder", "id: lenient"),
        encoding="utf-8",
    )
    return folder


@pytest.fixture
def gate(profiles: Path) -> Callable[..., tuple[int, str]]:
    """``sinkd check ARGS --profiles-dir DIR --profile ladder``."""

    def check(*argv: str | Path, profile: str = "ladder") -> tuple[int, str]:
        return run("check", *argv, "--profiles-dir", profiles, "--profile", profile)

    return check


@pytest.fixture
def templates(tmp_path: Path) -> Path:
    """Six templates, one per rung of the ladder profile, and a file that is no .eml."""
    folder = tmp_path / "templates"
    folder.mkdir()
    write(folder / "a-welcome.eml", "Welcome aboard", "See you at noon.")
    write(folder / "b-tagged.eml", "Please tagme", "See you at noon.")
    write(folder / "c-script.eml", "Your statement", SCRIPT, "text/html")
    write(folder / "d-junk.eml", "Please junkme", "See you at noon.")
    write(folder / "e-casino.eml", "Casino night", "casino casino")
    write(folder / "f-gtube.eml", "Test", GTUBE)
    (folder / "notes.txt").write_text("not a message")
    return folder


NAMES = ("a-welcome.eml", "b-tagged.eml", "c-script.eml", "d-junk.eml", "e-casino.eml",
         "f-gtube.eml")  # fmt: skip


def table_rows(out: str) -> list[list[str]]:
    """The table's rows without the header, notes and total: result, file, profile, ..."""
    lines = out.splitlines()
    assert lines[0].split()[:4] == ["result", "file", "profile", "verdict"]
    rows = [line.split(maxsplit=7) for line in lines[1:-1]]
    return [row for row in rows if row[0] in ("pass", "FAIL", "INCOMPLETE")]


# --- levels and exit codes --------------------------------------------------------------------


def test_fail_on_quarantine_fails_the_quarantined_and_rejected_templates_with_exit_1(
    gate: Callable[..., tuple[int, str]], templates: Path
) -> None:
    code, out = gate(templates, "--fail-on", "quarantine")
    assert code == 1
    rows = table_rows(out)
    assert [(r[0], Path(r[1]).name, r[3]) for r in rows] == [
        ("pass", "a-welcome.eml", "intact"),
        ("pass", "b-tagged.eml", "tagged"),
        ("pass", "c-script.eml", "stripped"),
        ("pass", "d-junk.eml", "junk"),
        ("FAIL", "e-casino.eml", "quarantine"),
        ("FAIL", "f-gtube.eml", "reject"),
    ]
    assert out.splitlines()[-1] == (
        "FAILED: 2 of 6 files at or above quarantine (1 intact, 1 tagged, 1 stripped, 1 junk, "
        "1 quarantine, 1 reject)"
    )


@pytest.mark.parametrize(
    ("level", "failing"),
    [
        ("tagged", NAMES[1:]),
        ("stripped", NAMES[2:]),
        ("junk", NAMES[3:]),
        ("quarantine", NAMES[4:]),
        ("reject", NAMES[5:]),
    ],
)
def test_each_fail_on_level_fails_the_templates_at_or_above_it_on_the_ladder(
    gate: Callable[..., tuple[int, str]], templates: Path, level: str, failing: tuple[str, ...]
) -> None:
    code, out = gate(templates, "--fail-on", level)
    assert code == 1
    assert tuple(Path(r[1]).name for r in table_rows(out) if r[0] == "FAIL") == failing


def test_fail_on_junk_fails_a_message_filed_as_junk_and_passes_a_stripped_one(
    gate: Callable[..., tuple[int, str]], templates: Path
) -> None:
    code, out = gate(templates / "d-junk.eml", "--fail-on", "junk")
    assert code == 1
    [row] = table_rows(out)
    assert row[3] == "junk"
    assert "JUNK_ME" in row[7] or "junk" in row[7].lower()
    assert gate(templates / "c-script.eml", "--fail-on", "junk")[0] == 0
    assert gate(templates / "b-tagged.eml", "--fail-on", "junk")[0] == 0


def test_fail_on_stripped_now_also_fails_junk_and_fail_on_tagged_passes_only_intact(
    gate: Callable[..., tuple[int, str]], templates: Path
) -> None:
    # Junk is further from the reader than a stripped message: it fails a stripped gate.
    assert gate(templates / "d-junk.eml", "--fail-on", "stripped")[0] == 1
    assert gate(templates / "b-tagged.eml", "--fail-on", "tagged")[0] == 1
    assert gate(templates / "a-welcome.eml", "--fail-on", "tagged")[0] == 0


def test_the_table_names_stage_score_stripped_count_and_the_deciding_reason(
    gate: Callable[..., tuple[int, str]], templates: Path
) -> None:
    _, out = gate(templates, "--fail-on", "quarantine")
    by_name = {Path(r[1]).name: r for r in table_rows(out)}
    script, casino = by_name["c-script.eml"], by_name["e-casino.eml"]
    gtube = by_name["f-gtube.eml"]
    assert script[6] != "0"  # something was stripped
    assert "script" in script[7].lower()
    # A score decision names the findings that added the points.
    assert casino[4:6] == ["data", "9"]
    assert "quarantine threshold of 8" in casino[7]
    assert "CONTENT_CASINO +9" in casino[7]
    assert gtube[4] == "data"
    assert "GTUBE" in gtube[7].upper()


def test_fail_on_reject_lets_a_quarantined_template_pass(
    gate: Callable[..., tuple[int, str]], templates: Path
) -> None:
    code, out = gate(templates / "e-casino.eml", "--fail-on", "reject")
    assert code == 0
    assert out.splitlines()[-1] == (
        "passed: 1 file, none at or above reject (0 intact, 0 tagged, 0 stripped, 0 junk, "
        "1 quarantine, 0 reject)"
    )


def test_the_gate_uses_the_given_profile(
    gate: Callable[..., tuple[int, str]], templates: Path
) -> None:
    code, out = gate(templates / "e-casino.eml", "--fail-on", "tagged", profile="lenient")
    assert code == 0
    [row] = table_rows(out)
    assert row[2:4] == ["lenient", "intact"]


def test_without_fail_on_check_keeps_its_verdict_exit_codes_and_output(
    gate: Callable[..., tuple[int, str]], templates: Path
) -> None:
    code, out = gate(templates / "e-casino.eml")
    assert code == 3
    assert "QUARANTINE (quarantined) profile=ladder" in out.splitlines()[0]
    # Junk and tagged mail is accepted: exit 0 without a gate.
    assert gate(templates / "d-junk.eml")[0] == 0


def test_fail_on_with_json_prints_the_verdicts_and_exits_by_the_gate(
    gate: Callable[..., tuple[int, str]], templates: Path
) -> None:
    code, out = gate(templates / "e-casino.eml", "--json", "--fail-on", "reject")
    assert code == 0
    assert '"verdict": "quarantine"' in out


def test_an_unknown_fail_on_level_is_a_usage_error(
    templates: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run("check", templates, "--fail-on", "spam")[0] == 2
    err = capsys.readouterr().err
    assert err.startswith("sinkd check: argument --fail-on: invalid choice: 'spam'")


def test_help_documents_the_ladder_and_every_exit_code(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        main(["check", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "intact < tagged (inbox, marked as spam) < stripped" in text
    assert "< junk (junk folder) < quarantine" in text
    for code in ("0 accepted", "1 with --fail-on", "3 quarantined", "4 refused", "5 not fully"):
        assert code in text
    assert "2 bad options or input" in text


# --- a verdict that was not fully judged ------------------------------------------------------


@pytest.fixture
def spamd_down(profiles: Path) -> Iterator[None]:
    """The ladder profile plus a spamassassin filter whose spamd refuses connections."""
    with refused_port() as port:
        (profiles / "ladder.yaml").write_text(
            LADDER_PROFILE + SPAMD_DOWN.format(port=port), encoding="utf-8"
        )
        yield


@pytest.mark.usefixtures("spamd_down")
def test_a_verdict_reached_without_spamd_exits_5_and_says_which_check_did_not_answer(
    gate: Callable[..., tuple[int, str]],
    templates: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out = gate(templates / "a-welcome.eml")
    assert code == 5
    assert "ACCEPT (inbox)" in out.splitlines()[0]
    assert "  not fully judged: SPAMASSASSIN_ERROR could not answer (unavailable): " in out
    assert "a-welcome.eml" in capsys.readouterr().err


@pytest.mark.usefixtures("spamd_down")
def test_exit_5_wins_over_the_verdict_exit_codes(
    gate: Callable[..., tuple[int, str]], templates: Path
) -> None:
    # A quarantine reached without spamd: the caller must not read 3 as a judged verdict.
    assert gate(templates / "e-casino.eml")[0] == 5


@pytest.mark.usefixtures("spamd_down")
def test_the_gate_passes_no_file_that_was_not_fully_judged(
    gate: Callable[..., tuple[int, str]], templates: Path
) -> None:
    code, out = gate(templates / "a-welcome.eml", "--fail-on", "reject")
    assert code == 5
    [row] = table_rows(out)
    assert row[0] == "INCOMPLETE"
    assert any("not fully judged: SPAMASSASSIN_ERROR" in line for line in out.splitlines())
    assert out.splitlines()[-1] == (
        "INCOMPLETE: 1 of 1 file could not be fully judged, none at or above reject "
        "(1 intact, 0 tagged, 0 stripped, 0 junk, 0 quarantine, 0 reject)"
    )


@pytest.mark.usefixtures("spamd_down")
def test_a_failed_gate_wins_over_exit_5(
    gate: Callable[..., tuple[int, str]], templates: Path
) -> None:
    code, out = gate(templates / "d-junk.eml", templates / "a-welcome.eml", "--fail-on", "junk")
    assert code == 1
    assert out.splitlines()[-1].endswith("; 2 not fully judged")


@pytest.mark.usefixtures("spamd_down")
def test_junit_xml_fails_a_file_that_was_not_fully_judged(
    gate: Callable[..., tuple[int, str]], templates: Path, tmp_path: Path
) -> None:
    path = tmp_path / "junit.xml"
    assert gate(templates / "a-welcome.eml", "--fail-on", "reject", "--junit-xml", path)[0] == 5
    root = ET.parse(path).getroot()
    assert_xunit_schema(root)
    [failure] = root.iter("failure")
    assert failure.get("type") == "incomplete"
    assert str(failure.get("message")).startswith("incomplete: not fully judged: SPAMASSASSIN_")
    assert root.get("failures") == "1"


def test_checks_left_without_dns_data_are_named_in_one_line_after_the_table(
    profiles: Path, templates: Path
) -> None:
    (profiles / "ladder.yaml").write_text(
        LADDER_PROFILE + "  - kind: spf\n    name: spf\n", encoding="utf-8"
    )
    code, out = run(
        "check", templates / "a-welcome.eml", templates / "b-tagged.eml",
        "--profiles-dir", profiles, "--profile", "ladder", "--fail-on", "junk",
    )  # fmt: skip
    assert code == 0  # offline DNS without data is reported, not a failure
    notes = [line for line in out.splitlines() if line.startswith("judged without DNS data")]
    assert len(notes) == 1
    assert "SPF_" in notes[0] and "sender.example" in notes[0]
    assert notes[0].endswith("give it with --dns-zone FILE or --dns live")
    assert out.splitlines()[-1].startswith("passed: 2 files")


# --- directories and files --------------------------------------------------------------------


def test_a_directory_stands_for_its_eml_files_in_name_order(
    gate: Callable[..., tuple[int, str]], templates: Path
) -> None:
    _, out = gate(templates, "--fail-on", "reject")
    assert [r[1] for r in table_rows(out)] == [str(templates / n) for n in NAMES]


def test_a_directory_without_eml_files_exits_2_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "readme.txt").write_text("nothing to check")
    assert run("check", tmp_path, "--fail-on", "quarantine")[0] == 2
    assert capsys.readouterr().err == (
        f"sinkd check: {tmp_path}: a directory with no *.eml files in it\n"
    )


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
    assert capsys.readouterr().err == f"sinkd check: {missing}: no such file\n"


def test_a_directory_of_one_file_writes_filtered_copies_into_the_target_directory(
    gate: Callable[..., tuple[int, str]], tmp_path: Path
) -> None:
    folder, target = tmp_path / "one", tmp_path / "filtered"
    folder.mkdir()
    target.mkdir()
    write(folder / "welcome.eml", "Welcome aboard", "See you at noon.")
    assert gate(folder, "--write-filtered", target)[0] == 0
    assert [p.name for p in target.iterdir()] == ["welcome.filtered.eml"]


def test_the_gate_runs_as_a_process_with_exit_1(profiles: Path, templates: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SINKD_")}
    result = subprocess.run(
        [sys.executable, "-m", "sinkd", "check", str(templates), "--profiles-dir", str(profiles),
         "--profile", "ladder", "--fail-on", "quarantine"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert result.stdout.splitlines()[-1].startswith("FAILED: 2 of 6 files")


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
def report(gate: Callable[..., tuple[int, str]], templates: Path, tmp_path: Path) -> ET.Element:
    path = tmp_path / "junit.xml"
    code, _ = gate(templates, "--fail-on", "quarantine", "--junit-xml", path)
    assert code == 1
    return ET.parse(path).getroot()


def test_junit_xml_follows_the_xunit_schema_ci_systems_read(report: ET.Element) -> None:
    assert report.tag == "testsuites"
    assert_xunit_schema(report)


def test_junit_xml_has_a_testcase_per_file_and_a_failure_for_those_at_the_level(
    report: ET.Element, templates: Path
) -> None:
    [suite] = report.findall("testsuite")
    assert suite.get("name") == "ladder"
    cases = suite.findall("testcase")
    assert [c.get("name") for c in cases] == [str(templates / n) for n in NAMES]
    assert {c.get("classname") for c in cases} == {"ladder"}
    failed = {Path(str(c.get("name"))).name: c.find("failure") for c in cases}
    assert [name for name, f in failed.items() if f is None] == list(NAMES[:4])
    casino, gtube = failed["e-casino.eml"], failed["f-gtube.eml"]
    assert casino is not None and gtube is not None
    assert casino.get("type") == "quarantine"
    assert str(casino.get("message")).startswith("quarantine at data: The message scored 9 ")
    assert "CONTENT_CASINO:" in str(casino.text)
    assert gtube.get("type") == "reject"
    # Counts agree with the elements, at both levels.
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("6", "2", "0")
    assert (report.get("tests"), report.get("failures")) == ("6", "2")
    assert float(str(report.get("time"))) >= float(str(cases[0].get("time")))


def test_junit_xml_failure_types_follow_the_ladder(
    gate: Callable[..., tuple[int, str]], templates: Path, tmp_path: Path
) -> None:
    path = tmp_path / "junit.xml"
    assert gate(templates, "--fail-on", "tagged", "--junit-xml", path)[0] == 1
    types = [f.get("type") for f in ET.parse(path).getroot().iter("failure")]
    assert types == ["tagged", "stripped", "junk", "quarantine", "reject"]


def test_junit_xml_carries_the_verdict_and_score_of_every_file_and_the_gate_as_properties(
    report: ET.Element,
) -> None:
    suite = report.find("testsuite")
    assert suite is not None
    properties = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert properties["profile"] == "ladder"
    assert properties["fail_on"] == "quarantine"
    outputs = [str(c.findtext("system-out")) for c in suite.findall("testcase")]
    assert outputs[2].splitlines()[:4] == [
        "verdict: stripped (accept, inbox)",
        "profile: ladder",
        "stage: data",
        outputs[2].splitlines()[3],
    ]
    assert outputs[3].splitlines()[0] == "verdict: junk (accept, junk)"
    assert "score: 9" in outputs[4].splitlines()
    assert any(line.startswith("reply: 554 5.7.1") for line in outputs[5].splitlines())


def test_junit_xml_has_one_testsuite_per_profile_the_recipients_reach(
    profiles: Path, templates: Path, tmp_path: Path
) -> None:
    path = tmp_path / "junit.xml"
    code, _ = run(
        "check", templates / "e-casino.eml", "--profiles-dir", profiles, "--profile", "lenient",
        "--route", "finance.example=ladder",
        "--rcpt", "a@corp.example", "--rcpt", "b@finance.example",
        "--fail-on", "quarantine", "--junit-xml", path,
    )  # fmt: skip
    assert code == 1
    root = ET.parse(path).getroot()
    assert_xunit_schema(root)
    suites = {s.get("name"): s for s in root.findall("testsuite")}
    assert list(suites) == ["lenient", "ladder"]
    assert suites["lenient"].get("failures") == "0"
    assert suites["ladder"].get("failures") == "1"


def test_junit_xml_without_fail_on_marks_quarantine_and_worse_and_keeps_the_exit_code(
    gate: Callable[..., tuple[int, str]], templates: Path, tmp_path: Path
) -> None:
    path = tmp_path / "junit.xml"
    code, out = gate(templates / "d-junk.eml", templates / "e-casino.eml", "--junit-xml", path)
    assert code == 3
    assert "QUARANTINE (quarantined)" in out
    types = [f.get("type") for f in ET.parse(path).getroot().iter("failure")]
    assert types == ["quarantine"]


def test_junit_xml_stays_well_formed_for_text_xml_cannot_hold(
    gate: Callable[..., tuple[int, str]], tmp_path: Path
) -> None:
    # A control character in a file name reaches the testcase name; XML 1.0 cannot carry it.
    odd = write(tmp_path / "odd\x1bname.eml", "Casino night", "casino casino")
    path = tmp_path / "junit.xml"
    assert gate(odd, "--fail-on", "quarantine", "--junit-xml", path)[0] == 1
    [case] = ET.parse(path).getroot().iter("testcase")
    assert str(case.get("name")).endswith("odd\\x1bname.eml")


def test_an_unwritable_junit_path_exits_2_naming_it(
    templates: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "no-such-dir" / "junit.xml"
    assert run("check", templates, "--fail-on", "quarantine", "--junit-xml", target)[0] == 2
    assert capsys.readouterr().err.startswith(f"sinkd check: --junit-xml {target}: cannot write:")
