"""The format filter: smuggling look-alikes, bare line ends, NUL bytes, long lines, MIME defects."""

from __future__ import annotations

import itertools
import textwrap
from pathlib import Path

import pytest

from sinkd.engine import Pipeline, Router, Transaction, compile_profile
from sinkd.model import Action, Category, ClientIdentity, Disposition, Reply, Verdict
from sinkd.profiles import ProfileSet

HEAD = """\
schema: sinkd.profile/v1
id: {id}
title: Test profile
models:
  - {{what: "a test", source: "the test suite"}}
"""
STRICT = """\
scoring:
  thresholds: {reject: 100}
filters:
  - kind: format
    name: hygiene
    smuggling: {action: reject, reply: "550 5.5.2 Message refused: bare end-of-data sequences"}
    bare_lf: {action: quarantine}
    nul_bytes: {action: score, score: 2.5}
    long_lines: {action: tag}
    mime_defects: {action: junk, score: 0.5}
"""
CLEAN = b"From: alice@sender.example\r\nTo: bob@corp.example\r\nSubject: Hi\r\n\r\nHello there.\r\n"


def compile_yaml(tmp_path: Path, body: str, profile_id: str = "test") -> Pipeline:
    path = tmp_path / f"{profile_id}.yaml"
    path.write_text(HEAD.format(id=profile_id) + textwrap.dedent(body), encoding="utf-8")
    return compile_profile(ProfileSet([tmp_path]).resolve(str(path)))


async def judge(pipeline: Pipeline, raw: bytes) -> Verdict:
    ids = (f"id{n}" for n in itertools.count(1))
    tx = Transaction(Router(pipeline), ClientIdentity(ip="203.0.113.5"), lambda: next(ids))
    assert await tx.mail("alice@sender.example") is None
    assert await tx.rcpt("bob@corp.example") is None
    [verdict] = await tx.data(raw)
    return verdict


def by_code(verdict: Verdict) -> dict[str, Action]:
    return {f.code: f.action for f in verdict.findings}


async def test_a_clean_message_has_no_format_findings(tmp_path: Path) -> None:
    verdict = await judge(compile_yaml(tmp_path, STRICT), CLEAN)
    assert verdict.findings == ()
    assert verdict.disposition is Disposition.INBOX


async def test_smuggling_look_alike_is_rejected_with_the_profile_reply(tmp_path: Path) -> None:
    raw = CLEAN + b"line\n.\nMAIL FROM:<evil@example>\r\n"
    verdict = await judge(compile_yaml(tmp_path, STRICT), raw)
    assert by_code(verdict) == {
        "FORMAT_SMUGGLING": Action.REJECT,
        "FORMAT_BARE_LINE_ENDING": Action.QUARANTINE,
    }
    assert verdict.disposition is Disposition.REJECTED
    assert verdict.reply == Reply(550, "5.5.2", "Message refused: bare end-of-data sequences")
    smuggling = verdict.findings[0]
    assert smuggling.code == "FORMAT_SMUGGLING"
    assert smuggling.decided
    assert smuggling.category is Category.FORMAT
    assert smuggling.detail == {"sequences": 1}
    assert not verdict.findings[1].decided


async def test_bare_lf_line_endings_are_quarantined_and_counted(tmp_path: Path) -> None:
    raw = CLEAN.replace(b"\r\n", b"\n")
    verdict = await judge(compile_yaml(tmp_path, STRICT), raw)
    assert by_code(verdict) == {"FORMAT_BARE_LINE_ENDING": Action.QUARANTINE}
    assert verdict.disposition is Disposition.QUARANTINED
    assert verdict.findings[0].detail == {"bare_lf": 5, "bare_cr": 0}
    assert verdict.reply.code == 250


async def test_bare_cr_counts_as_a_bare_line_ending(tmp_path: Path) -> None:
    raw = CLEAN + b"one\rtwo\r\n"
    verdict = await judge(compile_yaml(tmp_path, STRICT), raw)
    assert verdict.findings[0].code == "FORMAT_BARE_LINE_ENDING"
    assert verdict.findings[0].detail == {"bare_lf": 0, "bare_cr": 1}


async def test_nul_bytes_add_the_profile_score(tmp_path: Path) -> None:
    raw = CLEAN + b"a\x00b\x00c\r\n"
    verdict = await judge(compile_yaml(tmp_path, STRICT), raw)
    assert by_code(verdict) == {"FORMAT_NUL_BYTES": Action.SCORE}
    assert verdict.score == 2.5
    assert verdict.findings[0].detail == {"count": 2}
    assert verdict.disposition is Disposition.INBOX


async def test_lines_over_998_octets_are_tagged(tmp_path: Path) -> None:
    raw = CLEAN + b"y" * 999 + b"\r\n" + b"z" * 998 + b"\r\n" + b"w" * 1500 + b"\r\n"
    verdict = await judge(compile_yaml(tmp_path, STRICT), raw)
    assert by_code(verdict) == {"FORMAT_LONG_LINES": Action.TAG}
    assert verdict.findings[0].detail == {"count": 2, "longest": 1500}
    assert verdict.disposition is Disposition.TAGGED


async def test_mime_defects_send_the_message_to_junk(tmp_path: Path) -> None:
    raw = (
        b"From: alice@sender.example\r\nTo: bob@corp.example\r\nSubject: Hi\r\n"
        b'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="nowhere"\r\n\r\n'
        b"no boundary ever appears\r\n"
    )
    verdict = await judge(compile_yaml(tmp_path, STRICT), raw)
    assert by_code(verdict) == {"FORMAT_MIME_DEFECTS": Action.JUNK}
    finding = verdict.findings[0]
    assert finding.detail["count"] >= 1
    assert any("boundary" in d for d in finding.detail["defects"])
    assert finding.reason.startswith("The message is not well-formed MIME: ")
    assert verdict.disposition is Disposition.JUNK
    assert verdict.score == 0.5


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (CLEAN + b"x\n.\ny\r\n", "FORMAT_SMUGGLING"),
        (CLEAN.replace(b"\r\n", b"\n"), "FORMAT_BARE_LINE_ENDING"),
        (CLEAN + b"\x00\r\n", "FORMAT_NUL_BYTES"),
        (CLEAN + b"q" * 2000 + b"\r\n", "FORMAT_LONG_LINES"),
    ],
)
async def test_by_default_format_problems_are_recorded_only(
    tmp_path: Path, raw: bytes, code: str
) -> None:
    pipeline = compile_yaml(tmp_path, "filters:\n  - {kind: format, name: hygiene}\n")
    verdict = await judge(pipeline, raw)
    assert code in verdict.codes
    assert all(f.action is Action.NONE for f in verdict.findings)
    assert verdict.disposition is Disposition.INBOX
    assert verdict.score == 0


async def test_tempfail_on_a_format_problem_defers_with_the_tempfail_reply(
    tmp_path: Path,
) -> None:
    pipeline = compile_yaml(
        tmp_path, "filters:\n  - {kind: format, name: hygiene, nul_bytes: {action: tempfail}}\n"
    )
    verdict = await judge(pipeline, CLEAN + b"\x00\r\n")
    assert verdict.disposition is Disposition.DEFERRED
    assert verdict.reply == Reply(451, "4.7.1", "Try again later")
