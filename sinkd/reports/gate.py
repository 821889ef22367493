"""The CI gate of ``sinkd check --fail-on``: which checked files fail, the summary table and the
JUnit XML report.

Owns the gate's ladder, the table and the XML. The ladder orders what each outcome means to
the sender, by how much of the message its reader gets to see::

    intact < tagged < stripped < junk < quarantine < reject

- ``tagged``: all of it, in the inbox, marked as spam (a subject prefix, an ``X-Spam-Flag``);
- ``stripped``: the inbox, with parts removed by a strip action (images, attachments ...);
- ``junk``: the junk folder, which readers seldom open (EOP's and Gmail's spam outcome);
- ``quarantine``: only if an administrator releases it (silently discarded counts here);
- ``reject``: never; the sender gets a refusal (5xx) or a deferral (4xx).

A verdict's level is the highest that applies (a junk-foldered message that also lost an
image is ``junk``). A file fails when its worst verdict is at or above the ``--fail-on``
level. A verdict reached without a check the profile needs (``Verdict.incomplete``: spamd
down, a filter error) is marked in the table and is a failure in the XML whatever its level:
``sinkd check`` exits 5 for it (see ``sinkd.cli``). It judges no mail (the verdicts come from
the engine through the CLI) and writes no files: ``sinkd.cli`` writes what these functions
return.

The XML follows the schema Jenkins' xUnit plugin validates against (``junit-10.xsd``, which
pytest's ``junit_family=xunit2`` also follows), the strictest of the readers: GitLab, GitHub
test-report actions and Jenkins' JUnit plugin read a subset of it. That schema allows
``<properties>`` only on a ``<testsuite>`` and no ``file`` attribute on a ``<testcase>``, so a
file's verdict and score ride in the testcase's ``<system-out>`` and the failure message; its
testcase children are ``failure``, ``skipped`` and ``errors`` (not ``error``), so an incomplete
verdict is a ``<failure type="incomplete">``.
"""

from __future__ import annotations

import enum
import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TextIO

from sinkd import __version__
from sinkd.core.model import DISPOSITION_OF_ACTION, Action, Disposition, Finding, Verdict
from sinkd.core.population import is_threshold


class Level(enum.StrEnum):
    """A verdict's rung on the gate's ladder, in ascending order (see the module docstring)."""

    INTACT = "intact"
    TAGGED = "tagged"
    STRIPPED = "stripped"
    JUNK = "junk"
    QUARANTINE = "quarantine"
    REJECT = "reject"


LADDER: tuple[Level, ...] = tuple(Level)
FAIL_ON_CHOICES: tuple[str, ...] = tuple(o.value for o in LADDER[1:])  # failing on intact: no
INCOMPLETE = "incomplete"  # the failure type of a verdict reached without a needed check

# The dispositions each level stands for (stripped is not a disposition: see level_of).
_DISPOSITIONS: dict[Level, frozenset[Disposition]] = {
    Level.TAGGED: frozenset({Disposition.TAGGED}),
    Level.JUNK: frozenset({Disposition.JUNK}),
    Level.QUARANTINE: frozenset({Disposition.QUARANTINED, Disposition.DISCARDED}),
    Level.REJECT: frozenset({Disposition.REJECTED, Disposition.DEFERRED}),
}


def rank(level: Level) -> int:
    return LADDER.index(level)


def level_of(verdict: Verdict) -> Level:
    """The highest level that applies to the verdict."""
    by_disposition = next(
        (level for level, found in _DISPOSITIONS.items() if verdict.disposition in found),
        Level.INTACT,
    )
    if verdict.stripped and rank(by_disposition) < rank(Level.STRIPPED):
        return Level.STRIPPED
    return by_disposition


def culprits(verdict: Verdict) -> list[Finding]:
    """The findings that put a verdict on its level: strip actions for a stripped message;
    otherwise the findings whose own action leads to that level and, when the score threshold
    led there, every finding that added points."""
    level = level_of(verdict)
    if level is Level.INTACT:
        return []
    if level is Level.STRIPPED:
        return [f for f in verdict.findings if f.action is Action.STRIP]
    wanted = _DISPOSITIONS[level]

    def leads(f: Finding) -> bool:
        return DISPOSITION_OF_ACTION.get(f.action) in wanted

    by_score = any(is_threshold(f) and leads(f) for f in verdict.findings)
    return [
        f
        for f in verdict.findings
        if not is_threshold(f) and (leads(f) or (by_score and f.score > 0))
    ]


def incomplete_notes(verdict: Verdict) -> list[str]:
    """One plain line per check the verdict was reached without because it could not answer
    (scanner down, live lookup timed out, filter error): the verdict is incomplete (exit 5)."""
    return [
        f"not fully judged: {f.code} could not answer ({f.unjudged}): {f.reason}"
        for f in verdict.incomplete
    ]


def dns_note(verdicts: Sequence[Verdict]) -> str | None:
    """One plain line on the checks offline DNS left without data in these verdicts, the names
    that had none and how to give the data; None when there were none. Reported, never a
    failure: it is offline mode's designed state."""
    missing = [f for v in verdicts for f in v.without_dns_data]
    if not missing:
        return None
    names: dict[str, None] = {}
    for f in missing:
        names.update((str(name), None) for name in f.detail.get("dns_names") or ())
    codes = ", ".join(dict.fromkeys(f.code for f in missing))
    about = f" for {', '.join(names)}" if names else ""
    return (
        f"judged without DNS data: {codes} (no DNS data{about}); give it with "
        "--dns-zone FILE or --dns live"
    )


def unjudged_notes(verdict: Verdict) -> list[str]:
    """What one verdict was reached without: ``incomplete_notes`` and ``dns_note``."""
    note = dns_note([verdict])
    return [*incomplete_notes(verdict), *([note] if note else [])]


@dataclass(frozen=True, slots=True)
class Checked:
    """One message file and its verdicts (one per profile its recipients reached)."""

    file: str  # as given on the command line, or found in a directory argument
    verdicts: Sequence[Verdict]
    seconds: float  # wall time of the evaluation

    @property
    def level(self) -> Level:
        return max((level_of(v) for v in self.verdicts), key=rank)

    @property
    def incomplete(self) -> bool:
        return any(v.incomplete for v in self.verdicts)

    def fails(self, fail_on: Level) -> bool:
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


def _fails(verdict: Verdict, fail_on: Level) -> bool:
    return rank(level_of(verdict)) >= rank(fail_on)


# --- the summary table ------------------------------------------------------------------------


def write_table(checked: Sequence[Checked], fail_on: Level, out: TextIO) -> None:
    """One row per file and profile, the deciding reason last (it is the long column, and
    never cut: CI logs are wide), then one total line."""
    header = ("result", "file", "profile", "verdict", "stage", "score", "stripped", "reason")
    rows = [header]
    notes: list[str] = []
    for item in checked:
        for v in item.verdicts:
            notes.extend(f"{item.file} ({v.profile}): {note}" for note in incomplete_notes(v))
            result = "pass"
            if _fails(v, fail_on):
                result = "FAIL"
            elif v.incomplete:
                result = INCOMPLETE.upper()  # fails the run too: exit 5
            rows.append(
                (
                    result,
                    item.file,
                    v.profile,
                    level_of(v).value,
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
    for note in notes:
        print(note, file=out)
    without_dns = dns_note([v for item in checked for v in item.verdicts])
    if without_dns:
        print(without_dns, file=out)
    print(total_line(checked, fail_on), file=out)  # last: what people and scripts read first


def total_line(checked: Sequence[Checked], fail_on: Level) -> str:
    counts = {o: 0 for o in LADDER}
    for item in checked:
        counts[item.level] += 1
    failed = sum(item.fails(fail_on) for item in checked)
    unjudged = sum(item.incomplete for item in checked)
    tally = ", ".join(f"{counts[o]} {o.value}" for o in LADDER)
    noun = "file" if len(checked) == 1 else "files"
    tail = f"; {unjudged} not fully judged" if unjudged else ""
    if failed:
        return (
            f"FAILED: {failed} of {len(checked)} {noun} at or above {fail_on.value} ({tally}){tail}"
        )
    if unjudged:
        return (
            f"INCOMPLETE: {unjudged} of {len(checked)} {noun} could not be fully judged, "
            f"none at or above {fail_on.value} ({tally})"
        )
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
    verdict_and_disposition = f"{verdict.verdict.value}, {verdict.disposition.value}"
    lines = [
        f"verdict: {level_of(verdict).value} ({verdict_and_disposition})",
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
    lines.extend(unjudged_notes(verdict))
    return "\n".join(lines) + "\n"


def junit_xml(
    checked: Sequence[Checked], fail_on: Level, *, timestamp: datetime, command: str
) -> bytes:
    """One ``<testsuite>`` per profile (in the order profiles first appear), one ``<testcase>``
    per file judged by it; a ``<failure>`` for each at or above ``fail_on``, its ``type`` the
    level and its ``message`` the deciding reason, and for each verdict reached without a
    check it needed (below the level) a ``<failure type="incomplete">`` naming the check."""
    profiles: dict[str, list[tuple[Checked, Verdict]]] = {}
    for item in checked:
        for v in item.verdicts:
            profiles.setdefault(v.profile, []).append((item, v))
    root = ET.Element("testsuites", name="sinkd check")
    total_tests = total_failures = 0
    for profile, cases in profiles.items():
        failures = sum(_fails(v, fail_on) or bool(v.incomplete) for _, v in cases)
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
            level = level_of(v)
            notes = [f"{f.code}: {f.reason}" for f in v.incomplete]
            if _fails(v, fail_on):
                failure = ET.SubElement(
                    case,
                    "failure",
                    message=f"{level.value} at {v.stage.value}: {deciding_reason(v)}",
                    type=level.value,
                )
                reasons = [f"{f.code}: {f.reason}" for f in culprits(v)]
                failure.text = "\n".join([*(reasons or [deciding_reason(v)]), *notes]) + "\n"
            elif notes:
                failure = ET.SubElement(
                    case,
                    "failure",
                    message=f"{INCOMPLETE}: not fully judged: {notes[0]}",
                    type=INCOMPLETE,
                )
                failure.text = "\n".join(notes) + "\n"
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
