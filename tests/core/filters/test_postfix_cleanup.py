"""The postfix_cleanup filter: header/body checks and message_size_limit as Postfix's cleanup(8)
and smtpd(8) answer them (header_checks(5); replies observed in tests/e2e/test_postfix_gateway.py
and compared message by message in tests/e2e/test_postfix_cleanup_e2e.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sinkd.core.engine import Pipeline
from sinkd.core.filters.postfix_cleanup import (
    SUPPORTED_ACTIONS,
    SUPPORTED_PARAMETERS,
    reject_reply,
)
from sinkd.core.model import Action, Disposition, Reply, Stage, Verdict, VerdictAction
from sinkd.core.profiles import ProfileError
from tests.support.judging import compile_yaml, judge


def cleanup_profile(
    tmp_path: Path,
    *,
    header: list[tuple[str, str]] | None = None,
    body: list[tuple[str, str]] | None = None,
    extra: str = "",
    parameters: dict[str, str] | None = None,
) -> Pipeline:
    """A profile with one postfix_cleanup filter: ``header`` and ``body`` are regexp tables of
    (pattern, action) in file order, entry n's source "header_checks:n"."""

    def table(name: str, entries: list[tuple[str, str]]) -> str:
        rows = "".join(
            f"\n                  - {{key: {json.dumps(key)}, value: {json.dumps(value)},"
            f' source: "{name}:{n}"}}'
            for n, (key, value) in enumerate(entries, 1)
        )
        return f"""
              {name}:
                type: regexp
                entries:{rows or " []"}"""

    tables = ""
    refs = ""
    if header is not None:
        tables += table("header_checks", header)
        refs += "\n            header_checks: {table: header_checks}"
    if body is not None:
        tables += table("body_checks", body)
        refs += "\n            body_checks: {table: body_checks}"
    params = "".join(
        f"\n              {k}: {{value: {json.dumps(v)}}}" for k, v in (parameters or {}).items()
    )
    return compile_yaml(
        tmp_path,
        f"""\
        filters:
          - kind: postfix_cleanup
            name: cleanup
            parameters: {{}}{params}{refs}{extra}
            tables: {{}}{tables}
        """.replace("parameters: {}\n", "parameters:\n" if params else "parameters: {}\n").replace(
            "tables: {}\n", "tables:\n" if tables else "tables: {}\n"
        ),
    )


def message(
    subject: str = "Quarterly figures", body: str = "See attached.\r\n", head: str = ""
) -> bytes:
    return (
        f"{head}From: alice@sender.example\r\nTo: bob@corp.example\r\nSubject: {subject}\r\n"
        f"Message-ID: <test@sender.example>\r\n\r\n{body}"
    ).encode()


async def verdict_of(pipeline: Pipeline, raw: bytes) -> Verdict:
    return await judge(pipeline, raw, helo="client.example")


async def test_a_header_reject_with_text_is_550_5_7_1_text_at_end_of_data(tmp_path: Path) -> None:
    pipeline = cleanup_profile(
        tmp_path, header=[("/^Subject:.*lottery/", "REJECT Subject rejected by policy")]
    )
    verdict = await verdict_of(pipeline, message(subject="Your lottery prize"))
    assert verdict.stage is Stage.DATA
    assert verdict.reply == Reply(550, "5.7.1", "Subject rejected by policy")
    assert verdict.codes == ["POSTFIX_CLEANUP_REJECT"]
    detail = verdict.findings[0].detail
    assert detail["entry"] == "header_checks:1"
    assert detail["check"] == "header_checks"
    assert detail["text"] == "Subject: Your lottery prize"
    assert detail["line"] == 3
    assert (await verdict_of(pipeline, message())).verdict is VerdictAction.ACCEPT


async def test_a_body_reject_without_text_is_message_content_rejected(tmp_path: Path) -> None:
    pipeline = cleanup_profile(tmp_path, body=[("/you are a winner/", "REJECT")])
    verdict = await verdict_of(pipeline, message(body="Congratulations, you are a winner!\r\n"))
    assert verdict.reply == Reply(550, "5.7.1", "message content rejected")


@pytest.mark.parametrize(
    ("text", "reply"),
    [
        ("", Reply(550, "5.7.1", "message content rejected")),
        ("no thanks", Reply(550, "5.7.1", "no thanks")),
        ("5.7.0 go away", Reply(550, "5.7.0", "go away")),
        ("4.7.1 try later", Reply(451, "4.7.1", "try later")),
        ("2.0.0 odd", Reply(451, "4.0.0", "odd")),  # cleanup_act: need 4.x.x or 5.x.x
        ("554 not a dsn", Reply(550, "5.7.1", "554 not a dsn")),
        ("5.7.1x not a dsn", Reply(550, "5.7.1", "5.7.1x not a dsn")),
    ],
)
def test_a_reject_text_keeps_its_own_rfc_3463_code_as_dsn_prepend_does(
    text: str, reply: Reply
) -> None:
    assert reject_reply(text) == reply


async def test_a_reject_with_a_4xx_code_defers(tmp_path: Path) -> None:
    pipeline = cleanup_profile(tmp_path, header=[("/^Subject: later/", "REJECT 4.7.1 not now")])
    verdict = await verdict_of(pipeline, message(subject="later"))
    assert verdict.disposition is Disposition.DEFERRED
    assert verdict.reply == Reply(451, "4.7.1", "not now")
    assert verdict.codes == ["POSTFIX_CLEANUP_DEFER"]


async def test_a_reject_ends_the_inspection(tmp_path: Path) -> None:
    pipeline = cleanup_profile(
        tmp_path,
        header=[("/^From:/", "REJECT first"), ("/^Subject:/", "WARN never seen")],
        body=[("/attached/", "REJECT not reached")],
    )
    verdict = await verdict_of(pipeline, message())
    assert verdict.codes == ["POSTFIX_CLEANUP_REJECT"]
    assert verdict.reply == Reply(550, "5.7.1", "first")


async def test_a_discard_is_accepted_then_dropped_and_ends_the_inspection(tmp_path: Path) -> None:
    pipeline = cleanup_profile(
        tmp_path, header=[("/^X-Drop-Me:/", "DISCARD dropped"), ("/^Subject:/", "REJECT")]
    )
    verdict = await verdict_of(pipeline, message(head="X-Drop-Me: yes\r\n"))
    assert verdict.disposition is Disposition.DISCARDED
    assert verdict.codes == ["POSTFIX_CLEANUP_DISCARD"]


async def test_a_hold_quarantines_once_and_a_later_reject_still_refuses(tmp_path: Path) -> None:
    pipeline = cleanup_profile(
        tmp_path, header=[("/^X-Hold-Me:/", "HOLD held"), ("/^X-Bad:/", "REJECT bad")]
    )
    held = await verdict_of(pipeline, message(head="X-Hold-Me: 1\r\nX-Hold-Me: 2\r\n"))
    assert held.disposition is Disposition.QUARANTINED
    assert held.codes == ["POSTFIX_CLEANUP_HOLD"]
    refused = await verdict_of(pipeline, message(head="X-Hold-Me: 1\r\nX-Bad: 1\r\n"))
    assert refused.disposition is Disposition.REJECTED
    assert refused.reply == Reply(550, "5.7.1", "bad")


@pytest.mark.parametrize(
    ("action", "code"),
    [
        ("WARN noticed", "POSTFIX_CLEANUP_WARN"),
        ("INFO noted", "POSTFIX_CLEANUP_INFO"),
        ("IGNORE", "POSTFIX_CLEANUP_IGNORE"),
        ("STRIP", "POSTFIX_CLEANUP_STRIP"),
        ("PREPEND X-Seen: yes", "POSTFIX_CLEANUP_PREPEND"),
        ("REPLACE X-Was-Warn: yes", "POSTFIX_CLEANUP_REPLACE"),
        ("FILTER smtp:[127.0.0.1]:10025", "POSTFIX_CLEANUP_FILTER"),
        ("BCC audit@corp.example", "POSTFIX_CLEANUP_BCC"),
        ("bogus", "POSTFIX_CLEANUP_UNKNOWN"),
    ],
)
async def test_actions_that_edit_route_or_log_are_recorded_and_the_inspection_goes_on(
    tmp_path: Path, action: str, code: str
) -> None:
    pipeline = cleanup_profile(
        tmp_path, header=[("/^X-Warn-Me:/", action)], body=[("/attached/", "REJECT body")]
    )
    verdict = await verdict_of(pipeline, message(head="X-Warn-Me: yes\r\n"))
    assert verdict.codes == [code, "POSTFIX_CLEANUP_REJECT"]
    assert verdict.findings[0].action is Action.NONE
    assert verdict.reply == Reply(550, "5.7.1", "body")


@pytest.mark.parametrize("action", ["PASS", "REDIRECT audit@corp.example"])
async def test_pass_and_redirect_end_the_inspection(tmp_path: Path, action: str) -> None:
    pipeline = cleanup_profile(
        tmp_path, header=[("/^X-Warn-Me:/", action)], body=[("/attached/", "REJECT body")]
    )
    verdict = await verdict_of(pipeline, message(head="X-Warn-Me: yes\r\n"))
    assert verdict.verdict is VerdictAction.ACCEPT
    assert len(verdict.findings) == 1


@pytest.mark.parametrize(
    "action", ["REDIRECT nobody", "BCC nobody", "FILTER nocolon", "PREPEND not a header"]
)
async def test_an_action_with_a_wrong_argument_is_ignored_as_cleanup_does(
    tmp_path: Path, action: str
) -> None:
    pipeline = cleanup_profile(
        tmp_path, header=[("/^X-Warn-Me:/", action)], body=[("/attached/", "REJECT body")]
    )
    verdict = await verdict_of(pipeline, message(head="X-Warn-Me: yes\r\n"))
    assert verdict.codes == ["POSTFIX_CLEANUP_REJECT"]


async def test_dunno_ends_the_lookup_of_that_line_only(tmp_path: Path) -> None:
    pipeline = cleanup_profile(
        tmp_path,
        header=[("/^Subject: ok/", "DUNNO"), ("/^Subject:/", "REJECT subject"), ("/^To:/", "OK")],
    )
    assert (await verdict_of(pipeline, message(subject="ok fine"))).verdict is VerdictAction.ACCEPT
    assert (await verdict_of(pipeline, message(subject="other"))).reply == Reply(
        550, "5.7.1", "subject"
    )


async def test_a_regexp_substitution_reaches_the_reply(tmp_path: Path) -> None:
    pipeline = cleanup_profile(tmp_path, body=[(r"/(casino|lottery) offer/", "REJECT no $1 here")])
    verdict = await verdict_of(pipeline, message(body="a casino offer\r\n"))
    assert verdict.reply == Reply(550, "5.7.1", "no casino here")


MULTIPART = (
    "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n",
    "--b\r\nContent-Type: message/rfc822\r\n\r\nSubject: inner lottery\r\n\r\nhi\r\n--b--\r\n",
)


async def test_mime_and_nested_headers_read_header_checks_by_default(tmp_path: Path) -> None:
    pipeline = cleanup_profile(
        tmp_path,
        header=[("/^Content-Type: message/", "WARN mime"), ("/^Subject: inner/", "REJECT nested")],
    )
    verdict = await verdict_of(pipeline, message(head=MULTIPART[0], body=MULTIPART[1]))
    assert [f.detail["check"] for f in verdict.findings] == [
        "mime_header_checks",
        "nested_header_checks",
    ]
    assert verdict.reply == Reply(550, "5.7.1", "nested")


async def test_an_empty_mime_or_nested_class_reads_nothing(tmp_path: Path) -> None:
    pipeline = cleanup_profile(
        tmp_path,
        header=[("/^Content-Type: message/", "WARN mime"), ("/^Subject: inner/", "REJECT nested")],
        extra="\n            mime_header_checks: {table: null, source: 'main.cf:9'}"
        "\n            nested_header_checks: {table: null}",
    )
    verdict = await verdict_of(pipeline, message(head=MULTIPART[0], body=MULTIPART[1]))
    assert verdict.verdict is VerdictAction.ACCEPT
    assert not verdict.findings


async def test_body_checks_read_boundaries_and_undecoded_base64(tmp_path: Path) -> None:
    pipeline = cleanup_profile(
        tmp_path, body=[("/^--b$/", "WARN boundary"), ("/^aGVsbG8=$/", "REJECT b64")]
    )
    body = "--b\r\nContent-Transfer-Encoding: base64\r\n\r\naGVsbG8=\r\n--b--\r\n"
    verdict = await verdict_of(pipeline, message(head=MULTIPART[0], body=body))
    assert verdict.codes == ["POSTFIX_CLEANUP_WARN", "POSTFIX_CLEANUP_REJECT"]


async def test_smtpd_s_received_header_is_inspected_first(tmp_path: Path) -> None:
    pipeline = cleanup_profile(
        tmp_path,
        header=[
            (r"/^Received: from client\.example \(unknown \[203\.0\.113\.5\]\)/", "REJECT rcvd")
        ],
        parameters={"myhostname": "gateway.test"},
    )
    verdict = await verdict_of(pipeline, message())
    assert verdict.reply == Reply(550, "5.7.1", "rcvd")
    assert verdict.findings[0].detail["line"] == 0
    assert "by gateway.test (Postfix)" in verdict.findings[0].detail["text"]


async def test_over_message_size_limit_is_552_message_file_too_big_whatever_the_checks(
    tmp_path: Path,
) -> None:
    raw = message(subject="lottery")
    pipeline = cleanup_profile(
        tmp_path,
        header=[("/lottery/", "REJECT lottery")],
        parameters={"message_size_limit": str(len(raw) - 1)},
    )
    verdict = await verdict_of(pipeline, raw)
    assert verdict.reply == Reply(552, "5.3.4", "Error: message file too big")
    assert verdict.codes == ["POSTFIX_CLEANUP_SIZE"]
    assert verdict.findings[0].detail["size"] == len(raw)
    at_limit = cleanup_profile(
        tmp_path, header=[], parameters={"message_size_limit": str(len(raw))}
    )
    assert (await verdict_of(at_limit, raw)).verdict is VerdictAction.ACCEPT


async def test_a_zero_message_size_limit_is_no_limit(tmp_path: Path) -> None:
    pipeline = cleanup_profile(tmp_path, parameters={"message_size_limit": "0"})
    assert (await verdict_of(pipeline, message())).verdict is VerdictAction.ACCEPT


@pytest.mark.parametrize(
    ("parameters", "extra", "error"),
    [
        ({"smtpd_banner": "x"}, "", r"parameters\.smtpd_banner.*unknown parameter"),
        ({"message_size_limit": "10m"}, "", r"message_size_limit must be a whole number"),
        ({"disable_mime_input_processing": "maybe"}, "", r"must be yes or no"),
        ({}, "\n            body_checks: {table: missing}", r"body_checks\.table.*unknown table"),
    ],
)
def test_a_bad_parameter_or_table_reference_is_a_located_error(
    tmp_path: Path, parameters: dict[str, str], extra: str, error: str
) -> None:
    with pytest.raises(ProfileError, match=error):
        cleanup_profile(tmp_path, parameters=parameters, extra=extra)


def test_the_importer_reads_what_this_kind_supports() -> None:
    assert {"REJECT", "DISCARD", "HOLD", "WARN", "IGNORE", "DUNNO", "FILTER"} <= SUPPORTED_ACTIONS
    assert "DEFER" not in SUPPORTED_ACTIONS  # access(5)'s, not header_checks(5)'s
    assert {"message_size_limit", "body_checks_size_limit", "header_size_limit"} <= (
        SUPPORTED_PARAMETERS
    )


def received(count: int) -> str:
    return "".join(f"Received: from hop{n}.example by relay{n}.example\r\n" for n in range(count))


async def test_fifty_received_headers_with_postfix_s_own_are_too_many_hops(tmp_path: Path) -> None:
    pipeline = cleanup_profile(tmp_path, header=[("/^Subject: bad/", "REJECT bad")])
    # smtpd's own Received: header is the 50th.
    verdict = await verdict_of(pipeline, message(subject="bad", head=received(49)))
    assert verdict.reply == Reply(554, "5.4.0", "Error: too many hops")
    assert verdict.codes == ["POSTFIX_CLEANUP_HOPS"]
    assert verdict.findings[0].detail["received"] == 50
    fine = await verdict_of(pipeline, message(head=received(48)))
    assert fine.verdict is VerdictAction.ACCEPT


async def test_a_header_reject_with_a_4xx_code_is_answered_before_too_many_hops(
    tmp_path: Path,
) -> None:
    pipeline = cleanup_profile(tmp_path, header=[("/^Subject: later/", "REJECT 4.7.1 not now")])
    verdict = await verdict_of(pipeline, message(subject="later", head=received(60)))
    assert verdict.reply == Reply(451, "4.7.1", "not now")


async def test_a_line_with_octets_that_are_no_utf8_is_shown_and_answered_as_utf8(
    tmp_path: Path,
) -> None:
    # spam-1/00056 of the public corpus has a Windows-1252 quote (0x93) in a header line: the
    # finding's reason, its detail and a reply quoting the line ($1) must be text a JSON
    # document, a log line and an SMTP reply can carry.
    raw = message(subject="Your \x93free\x94 offer").replace(b"\xc2\x93", b"\x93")
    raw = raw.replace(b"\xc2\x94", b"\x94")
    assert b"\x93free\x94" in raw
    for action, refused in (("WARN seen", False), ("REJECT no thanks: $1", True)):
        pipeline = cleanup_profile(tmp_path, header=[("/^Subject: (.*)/", action)])
        verdict = await verdict_of(pipeline, raw)
        (finding,) = [f for f in verdict.findings if f.filter == "cleanup"]
        json.dumps(finding.to_json(), ensure_ascii=False).encode("utf-8")  # no lone surrogate
        assert "\ufffdfree\ufffd" in finding.reason
        if refused:
            assert verdict.reply.text == "no thanks: Your \ufffdfree\ufffd offer"
