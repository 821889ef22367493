"""The CI gate of ``sinkd check --fail-on``: which checked files fail, the summary table and the
JUnit XML report.

Owns the gate's ladder, the table and the XML. The ladder is the deliverability report's
(``sinkd.population.Outcome``): ``intact < stripped < quarantine < reject``, where tagged and
junk-foldered mail counts as intact, as in the report. A file fails when its worst verdict is
at or above the ``--fail-on`` level. It judges no mail (the verdicts come from the engine
through the CLI) and writes no files: ``sinkd.cli`` writes what these functions return.

The XML follows the schema Jenkins' xUnit plugin validates against (``junit-10.xsd``, which
pytest's ``junit_family=xunit2`` also follows), the strictest of the readers: GitLab, GitHub
test-report actions and Jenkins' JUnit plugin read a subset of it. That schema allows
``<properties>`` only on a ``<testsuite>`` and no ``file`` attribute on a ``<testcase>``, so a
file's verdict and score ride in the testcase's ``<system-out>`` and the failure message.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TextIO

from sinkd import __version__
from sinkd.model import Verdict
from sinkd.population import Outcome, culprits, is_threshold, outcome_of

LADDER: tuple[Outcome, ...] = tuple(Outcome)
FAIL_ON_CHOICES: tuple[str, ...] = tuple(o.value for o in LADDER[1:])  # failing on intact: no


def rank(outcome: Outcome) -> int:
    return LADDER.index(outcome)


@dataclass(frozen=True, slots=True)
class Checked:
    """One message file and its verdicts (one per profile its recipients reached)."""

    file: str  # as given on the command line, or found in a directory argument
    verdicts: Sequence[Verdict]
    seconds: float  # wall time of the evaluation

    @property
    def outcome(self) -> Outcome:
        return max((outcome_of(v) for v in self.verdicts), key=rank)

    def fails(self, fail_on: Outcome) -> bool:
        return any(_fails(v, fail_on) for v in self.verdicts)


def deciding_reason(verdict: Verdict) -> str:
    """The one reason a person reads first: the deciding finding's (for a score threshold with
    the findings that added the points), else what pushed the message away from intact (a
    strip), else ``-``."""
    pushed = culprits(verdict)
    decided = verdict.deciding
    if decided is None:
        return pushed[0].reason if pushed else "-"
    if is_threshold(decided):
        points = [f"{f.code} {f.score:+g}" for f in pushed if f.score]
        if points:
            return f"{decided.reason} Points: {', '.join(points)}."
    return decided.reason


def _fails(verdict: Verdict, fail_on: Outcome) -> bool:
    return rank(outcome_of(verdict)) >= rank(fail_on)


# --- the summary table ------------------------------------------------------------------------


def write_table(checked: Sequence[Checked], fail_on: Outcome, out: TextIO) -> None:
    """One row per file and profile, the deciding reason last (it is the long column, and
    never cut: CI logs are wide), then one total line."""
    header = ("result", "file", "profile", "verdict", "stage", "score", "stripped", "reason")
    rows = [header]
    for item in checked:
        for v in item.verdicts:
            rows.append(
                (
                    "FAIL" if _fails(v, fail_on) else "pass",
                    item.file,
                    v.profile,
                    outcome_of(v).value,
                    v.stage.value,
                    f"{v.score:g}",
                    str(len(v.stripped)),
                    deciding_reason(v),
                )
            )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        print("  ".join([*cells, row[-1]]).rstrip(), file=out)
    print(total_line(checked, fail_on), file=out)


def total_line(checked: Sequence[Checked], fail_on: Outcome) -> str:
    counts = {o: 0 for o in LADDER}
    for item in checked:
        counts[item.outcome] += 1
    failed = sum(item.fails(fail_on) for item in checked)
    tally = ", ".join(f"{counts[o]} {o.value}" for o in LADDER)
    noun = "file" if len(checked) == 1 else "files"
    if failed:
        return f"FAILED: {failed} of {len(checked)} {noun} at or above {fail_on.value} ({tally})"
    return f"passed: {len(checked)} {noun}, none at or above {fail_on.value} ({tally})"


# --- JUnit XML --------------------------------------------------------------------------------


# Characters XML 1.0 cannot hold at all (not even escaped); message-derived text (file names,
# quoted phrases) may contain them. They are written as \xNN, as pytest's junitxml does.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _xml_safe(text: str) -> str:
    return _NOT_XML.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def _seconds(value: float) -> str:
    return f"{value:.3f}"  # the schema's SUREFIRE_TIME: at most three decimals


def _summary(verdict: Verdict) -> str:
    """The verdict as plain text: what the testcase's output and the failure body show."""
    reply = verdict.reply
    lines = [
        f"verdict: {outcome_of(verdict).value} ({verdict.action.value}, "
        f"{verdict.disposition.value})",
        f"profile: {verdict.profile}",
        f"stage: {verdict.stage.value}",
        f"score: {verdict.score:g}",
        f"reply: {reply.code} {reply.enhanced} {reply.text}",
    ]
    lines.extend(f"stripped: {item}" for item in verdict.stripped)
    for f in verdict.findings:
        mark = "*" if f.decided else "-"
        score = f" {f.score:+g}" if f.score else ""
        lines.append(f"{mark} {f.code} ({f.action.value}{score}): {f.reason}")
    return "\n".join(lines) + "\n"


def junit_xml(
    checked: Sequence[Checked], fail_on: Outcome, *, timestamp: datetime, command: str
) -> bytes:
    """One ``<testsuite>`` per profile (in the order profiles first appear), one ``<testcase>``
    per file judged by it; a ``<failure>`` for each at or above ``fail_on``, its ``type`` the
    outcome and its ``message`` the deciding reason."""
    profiles: dict[str, list[tuple[Checked, Verdict]]] = {}
    for item in checked:
        for v in item.verdicts:
            profiles.setdefault(v.profile, []).append((item, v))
    root = ET.Element("testsuites", name="sinkd check")
    total_tests = total_failures = 0
    for profile, cases in profiles.items():
        failures = sum(_fails(v, fail_on) for _, v in cases)
        elapsed = sum(item.seconds for item, _ in cases)
        suite = ET.SubElement(
            root,
            "testsuite",
            name=profile,
            tests=str(len(cases)),
            failures=str(failures),
            errors="0",
            skipped="0",
            time=_seconds(elapsed),
            timestamp=timestamp.isoformat(timespec="seconds"),
        )
        properties = ET.SubElement(suite, "properties")
        for name, value in (
            ("profile", profile),
            ("fail_on", fail_on.value),
            ("sinkd_version", __version__),
            ("command", command),
        ):
            ET.SubElement(properties, "property", name=name, value=value)
        for item, v in cases:
            case = ET.SubElement(
                suite, "testcase", name=item.file, classname=profile, time=_seconds(item.seconds)
            )
            outcome = outcome_of(v)
            if _fails(v, fail_on):
                failure = ET.SubElement(
                    case,
                    "failure",
                    message=f"{outcome.value} at {v.stage.value}: {deciding_reason(v)}",
                    type=outcome.value,
                )
                reasons = [f"{f.code}: {f.reason}" for f in culprits(v)]
                failure.text = "\n".join(reasons or [deciding_reason(v)]) + "\n"
            ET.SubElement(case, "system-out").text = _summary(v)
        total_tests += len(cases)
        total_failures += failures
    root.set("tests", str(total_tests))
    root.set("failures", str(total_failures))
    root.set("errors", "0")
    root.set("time", _seconds(sum(item.seconds for item in checked)))
    for element in root.iter():
        if element.text:
            element.text = _xml_safe(element.text)
        for key, value in element.attrib.items():
            element.set(key, _xml_safe(value))
    ET.indent(root)
    document: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return document + b"\n"
