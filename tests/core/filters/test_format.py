"""The format filter: smuggling look-alikes, bare line ends, NUL bytes, long lines, MIME defects
and the RFC 5322 §3.6 header fields (From, Date, Message-ID, fields that may occur once)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sinkd.core.model import Action, Category, Disposition, Reply, Verdict
from tests.support.judging import compile_yaml, judge

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
HEADER = (
    "From: alice@sender.example\r\nTo: bob@corp.example\r\nSubject: Hi\r\n"
    "Date: Mon, 1 Jan 2024 10:00:00 +0000\r\nMessage-ID: <1@sender.example>\r\n"
)
CLEAN = (HEADER + "\r\nHello there.\r\n").encode()


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
    assert verdict.findings[0].detail == {"bare_lf": 7, "bare_cr": 0}
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
        HEADER.encode()
        + b'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="nowhere"\r\n\r\n'
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


# --- RFC 5322 §3.6: the header fields -------------------------------------------------------

HEADERS = """\
filters:
  - kind: format
    name: hygiene
    missing_from: {action: reject, reply: "550 5.7.1 no ${field} field"}
    invalid_from: {action: quarantine}
    multiple_from_addresses: {action: junk}
    missing_date: {action: score, score: 1.5}
    missing_message_id: {action: reject, reply: "550 5.7.1 missing a valid ${field}"}
    invalid_message_id: {action: reject, reply: "550 5.7.1 invalid ${field}"}
    duplicate_headers: {action: reject, reply: "550 5.7.1 Multiple '${field}' headers found."}
"""
RECORD_ONLY = "filters:\n  - {kind: format, name: hygiene}\n"


def without(field: str, header: str = HEADER) -> str:
    return "".join(
        line + "\r\n"
        for line in header.split("\r\n")
        if line and not line.lower().startswith(field.lower() + ":")
    )


def mail(header: str, body: str = "Hello there.\r\n") -> bytes:
    return (header + "\r\n" + body).encode()


async def test_a_message_without_from_is_refused_with_a_reply_naming_the_field(
    tmp_path: Path,
) -> None:
    verdict = await judge(compile_yaml(tmp_path, HEADERS), mail(without("From")))
    assert by_code(verdict) == {"FORMAT_MISSING_FROM": Action.REJECT}
    finding = verdict.findings[0]
    assert finding.decided
    assert finding.detail == {"field": "From"}
    assert "no From header field" in finding.reason
    assert "RFC 5322 §3.6" in finding.reason
    assert verdict.reply == Reply(550, "5.7.1", "no From field")


async def test_a_message_without_from_is_only_recorded_by_default(tmp_path: Path) -> None:
    verdict = await judge(compile_yaml(tmp_path, RECORD_ONLY), mail(without("From")))
    assert verdict.codes == ["FORMAT_MISSING_FROM"]
    assert verdict.findings[0].action is Action.NONE
    assert verdict.disposition is Disposition.INBOX


@pytest.mark.parametrize(
    "value",
    ["undisclosed", "<>", "alice@", "@sender.example", "Alice <alice at sender.example>", ""],
)
async def test_a_from_field_without_a_readable_address_is_invalid(
    tmp_path: Path, value: str
) -> None:
    header = without("From") + f"From: {value}\r\n"
    verdict = await judge(compile_yaml(tmp_path, HEADERS), mail(header))
    assert by_code(verdict) == {"FORMAT_INVALID_FROM": Action.QUARANTINE}
    assert verdict.findings[0].detail == {"field": "From", "value": value}
    assert f"({value!r})" in verdict.findings[0].reason


@pytest.mark.parametrize(
    "value",
    [
        "alice@sender.example",
        "Alice Example <alice@sender.example>",
        '"Example, Alice" <alice@sender.example>',
        "=?utf-8?q?Al=C3=AFce?= <alice@sender.example>",
        "alice@sender.example (Alice)",
        "Alice <alice@[192.0.2.1]>",
        "Alice\r\n <alice@sender.example>",
    ],
)
async def test_an_ordinary_from_field_raises_no_finding(tmp_path: Path, value: str) -> None:
    header = without("From") + f"From: {value}\r\n"
    verdict = await judge(compile_yaml(tmp_path, HEADERS), mail(header))
    assert verdict.findings == ()


async def test_a_from_field_with_two_authors_is_flagged_with_both(tmp_path: Path) -> None:
    header = without("From") + "From: Alice <alice@sender.example>, bob@other.example\r\n"
    verdict = await judge(compile_yaml(tmp_path, HEADERS), mail(header))
    assert by_code(verdict) == {"FORMAT_FROM_MULTIPLE_ADDRESSES": Action.JUNK}
    assert verdict.findings[0].detail == {
        "field": "From",
        "addresses": ["alice@sender.example", "bob@other.example"],
        "count": 2,
    }


async def test_a_message_without_date_scores(tmp_path: Path) -> None:
    verdict = await judge(compile_yaml(tmp_path, HEADERS), mail(without("Date")))
    assert by_code(verdict) == {"FORMAT_MISSING_DATE": Action.SCORE}
    assert verdict.score == 1.5
    assert "no Date header field" in verdict.findings[0].reason


async def test_a_message_without_message_id_is_refused(tmp_path: Path) -> None:
    verdict = await judge(compile_yaml(tmp_path, HEADERS), mail(without("Message-ID")))
    assert by_code(verdict) == {"FORMAT_MISSING_MESSAGE_ID": Action.REJECT}
    assert "RFC 5322 §3.6.4" in verdict.findings[0].reason
    assert verdict.reply == Reply(550, "5.7.1", "missing a valid Message-ID")


@pytest.mark.parametrize(
    "value", ["1@sender.example", "<no-at-sign>", "<a@b> <c@d>", "<a b@sender.example>", ""]
)
async def test_a_message_id_not_of_the_form_left_at_right_in_brackets_is_invalid(
    tmp_path: Path, value: str
) -> None:
    header = without("Message-ID") + f"Message-ID: {value}\r\n"
    verdict = await judge(compile_yaml(tmp_path, HEADERS), mail(header))
    assert by_code(verdict) == {"FORMAT_INVALID_MESSAGE_ID": Action.REJECT}
    assert verdict.findings[0].detail == {"field": "Message-ID", "value": value}
    assert verdict.reply == Reply(550, "5.7.1", "invalid Message-ID")


@pytest.mark.parametrize(
    "value",
    ["<x.y.z@sender.example>", " <1@[192.0.2.1]> (generated)", "\r\n <folded@sender.example>"],
)
async def test_a_well_formed_message_id_raises_no_finding(tmp_path: Path, value: str) -> None:
    header = without("Message-ID") + f"Message-ID:{value}\r\n"
    verdict = await judge(compile_yaml(tmp_path, HEADERS), mail(header))
    assert verdict.findings == ()


SINGLE = [
    ("Date", "Tue, 2 Jan 2024 10:00:00 +0000"),
    ("From", "mallory@evil.example"),
    ("Sender", "alice@sender.example"),
    ("Reply-To", "alice@sender.example"),
    ("To", "carol@corp.example"),
    ("Cc", "dave@corp.example"),
    ("Bcc", "erin@corp.example"),
    ("Message-ID", "<2@sender.example>"),
    ("In-Reply-To", "<0@corp.example>"),
    ("References", "<0@corp.example>"),
    ("Subject", "Hi again"),
]


@pytest.mark.parametrize(("field", "value"), SINGLE)
async def test_each_field_rfc_5322_allows_once_is_flagged_when_repeated(
    tmp_path: Path, field: str, value: str
) -> None:
    header = HEADER + f"{field}: {value}\r\n"
    if field in ("Sender", "Reply-To", "Cc", "Bcc", "In-Reply-To", "References"):
        header += f"{field}: {value}\r\n"  # absent from HEADER: give it twice
    verdict = await judge(compile_yaml(tmp_path, HEADERS), mail(header))
    assert by_code(verdict) == {"FORMAT_DUPLICATE_HEADER": Action.REJECT}
    assert verdict.findings[0].detail == {"field": field, "count": 2}
    assert f"2 {field} header fields" in verdict.findings[0].reason
    assert verdict.reply == Reply(550, "5.7.1", f"Multiple '{field}' headers found.")


async def test_field_names_are_compared_without_regard_to_case(tmp_path: Path) -> None:
    verdict = await judge(compile_yaml(tmp_path, HEADERS), mail(HEADER + "SUBJECT: again\r\n"))
    assert verdict.findings[0].detail == {"field": "Subject", "count": 2}


async def test_each_repeated_field_has_its_own_finding(tmp_path: Path) -> None:
    header = HEADER + "Subject: again\r\nTo: carol@corp.example\r\nTo: dave@corp.example\r\n"
    verdict = await judge(compile_yaml(tmp_path, HEADERS), mail(header))
    assert [(f.code, f.detail["field"], f.detail["count"]) for f in verdict.findings] == [
        ("FORMAT_DUPLICATE_HEADER", "To", 3),
        ("FORMAT_DUPLICATE_HEADER", "Subject", 2),
    ]


async def test_fields_rfc_5322_lets_repeat_are_not_duplicates(tmp_path: Path) -> None:
    header = HEADER + (
        "Received: from a by b; Mon, 1 Jan 2024 10:00:00 +0000\r\n" * 2
        + "Comments: one\r\nComments: two\r\nKeywords: a\r\nKeywords: b\r\n"
        + "Resent-Date: Mon, 1 Jan 2024 11:00:00 +0000\r\n" * 2
        + "X-Mailer: a\r\nX-Mailer: b\r\n"
    )
    verdict = await judge(compile_yaml(tmp_path, HEADERS), mail(header))
    assert verdict.findings == ()


async def test_a_forwarded_message_inside_is_not_judged_as_this_message(tmp_path: Path) -> None:
    header = HEADER + 'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b"\r\n'
    body = (
        "--b\r\nContent-Type: text/plain\r\n\r\nSee below.\r\n"
        "--b\r\nContent-Type: message/rfc822\r\n\r\n"
        "Subject: one\r\nSubject: two\r\n\r\nNo From, no Date, no Message-ID.\r\n"
        "--b--\r\n"
    )
    verdict = await judge(compile_yaml(tmp_path, HEADERS), mail(header, body))
    assert verdict.findings == ()


async def test_a_bare_message_records_every_missing_field_by_default(tmp_path: Path) -> None:
    raw = b"Subject: only this\r\n\r\nHello.\r\n"
    verdict = await judge(compile_yaml(tmp_path, RECORD_ONLY), raw)
    assert verdict.codes == [
        "FORMAT_MISSING_FROM",
        "FORMAT_MISSING_DATE",
        "FORMAT_MISSING_MESSAGE_ID",
    ]
    assert all(f.action is Action.NONE for f in verdict.findings)
    assert verdict.disposition is Disposition.INBOX
