"""Authentication-Results (RFC 8601): the value built from the findings, forged fields claiming
our authserv-id removed, every other byte kept, and the engine putting it on delivered mail."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from sinkd.core.authres import (
    AUTHSERV_ID,
    add_authentication_results,
    authentication_results,
    authserv_id_of,
)
from sinkd.core.engine import Pipeline
from sinkd.core.message import parse
from sinkd.core.model import (
    Action,
    Category,
    ClientIdentity,
    Envelope,
    Finding,
    Stage,
    StripPlan,
    Unjudged,
    VerdictAction,
)
from tests.support.judging import compile_yaml

ENVELOPE = Envelope(ClientIdentity("192.0.2.10"), "bounce@shop.example", ("bob@corp.example",))
RAW = (
    b"Received: from mail.shop.example by mx.corp.example; Fri, 10 Apr 2026 10:00:00 +0000\r\n"
    b"From: news@shop.example\r\n"
    b"Subject: Sale\r\n"
    b"\r\n"
    b"Hello.\r\n"
)


def auth(code: str, **detail: Any) -> Finding:
    return Finding(
        code=code,
        filter=code.split("_")[0].lower(),
        category=Category.AUTHENTICATION,
        action=Action.NONE,
        reason="",
        detail=detail,
    )


# --- the value --------------------------------------------------------------------------------


def test_the_value_lists_spf_sender_id_dkim_and_dmarc_in_that_order() -> None:
    findings = [
        auth("DMARC_FAIL", domain="shop.example", policy="reject", disposition="quarantine"),
        auth("DKIM_PASS", domain="shop.example", selector="s1", result="pass"),
        auth("DKIM_FAIL", domain="esp.example", selector="k2", error="body hash mismatch"),
        auth("SPF_PASS", identity="mail_from", domain="shop.example", sender="b@shop.example"),
        auth("SPF_HELO_NONE", identity="helo", domain="mail.shop.example", result="none"),
        auth("SENDERID_FAIL", scope="pra", pra="news@shop.example", pra_header="From"),
        auth("SENDERID_MFROM_PASS", scope="mfrom", domain="shop.example", result="pass"),
    ]
    assert authentication_results("sinkd.local", findings) == (
        "sinkd.local; spf=pass smtp.mailfrom=b@shop.example; "
        "spf=none smtp.helo=mail.shop.example; "
        "sender-id=fail header.from=news@shop.example; "
        "dkim=pass header.d=shop.example header.s=s1; "
        'dkim=fail reason="body hash mismatch" header.d=esp.example header.s=k2; '
        "dmarc=fail (p=reject dis=quarantine) header.from=shop.example"
    )


def test_findings_of_other_categories_or_unknown_results_are_left_out() -> None:
    findings = [
        Finding("DKIM_PASS", "x", Category.CONTENT, Action.NONE, "", detail={"domain": "a.b"}),
        auth("SPF_LOOKUPS", identity="mail_from", domain="shop.example"),
        auth("DMARC_NONE", domain="shop.example"),
    ]
    assert authentication_results("sinkd.local", findings) == (
        "sinkd.local; dmarc=none header.from=shop.example"
    )


def test_checks_judged_without_dns_data_are_none_or_neutral_with_a_comment_never_fail() -> None:
    def unjudged(finding: Finding, why: Unjudged = Unjudged.NO_DNS_DATA) -> Finding:
        return Finding(**{**_fields(finding), "unjudged": why})

    findings = [
        unjudged(auth("SPF_NONE", identity="mail_from", domain="a.example", result="none")),
        unjudged(auth("SENDERID_NONE", scope="pra", pra="x@a.example", result="none")),
        unjudged(auth("DKIM_NEUTRAL", domain="a.example", selector="s1", result="neutral")),
        unjudged(auth("DMARC_FAIL", domain="a.example", result="fail")),
        unjudged(auth("SPF_TEMPERROR", identity="helo", domain="h.example"), Unjudged.UNAVAILABLE),
    ]
    value = authentication_results("sinkd.local", findings)
    assert value == (
        "sinkd.local; spf=none (not judged: no DNS data) smtp.mailfrom=a.example; "
        "spf=temperror (not judged: DNS did not answer) smtp.helo=h.example; "
        "sender-id=none (not judged: no DNS data) header.from=x@a.example; "
        "dkim=neutral (not judged: no DNS data) header.d=a.example header.s=s1; "
        "dmarc=none (not judged: no DNS data) header.from=a.example"
    )


def test_no_result_at_all_is_reported_as_none() -> None:
    assert authentication_results("sinkd.local", []) == "sinkd.local; none"


def test_values_that_are_not_tokens_are_quoted() -> None:
    finding = auth("DKIM_PERMERROR", domain='we"ird d', error='bad "b=" \\ tag')
    assert authentication_results("sinkd.local", [finding]) == (
        'sinkd.local; dkim=permerror reason="bad \\"b=\\" \\\\ tag" header.d="we\\"ird d"'
    )


# --- on a message -----------------------------------------------------------------------------

VALUE = "sinkd.local; spf=pass smtp.mailfrom=b@shop.example"
HEADER = b"Authentication-Results: sinkd.local; spf=pass smtp.mailfrom=b@shop.example\r\n"


def test_the_field_goes_on_top_and_nothing_else_changes() -> None:
    assert add_authentication_results(RAW, VALUE, "sinkd.local") == HEADER + RAW


@pytest.mark.parametrize(
    "forged",
    [
        b"Authentication-Results: sinkd.local; spf=pass smtp.mailfrom=evil.example\r\n",
        b"Authentication-Results:\r\n sinkd.local;\r\n\tdkim=pass\r\n header.d=evil.example\r\n",
        b"authentication-results: SINKD.LOCAL 1; dmarc=pass\r\n",
        b'Authentication-Results : (forged) "sinkd.local"; dkim=pass\r\n',
        b"Authentication-Results: sinkd.local\r\n",
    ],
)
def test_a_forged_field_claiming_our_id_is_removed(forged: bytes) -> None:
    head, _, rest = RAW.partition(b"From:")
    raw = head + forged + b"From:" + rest
    assert add_authentication_results(raw, VALUE, "sinkd.local") == HEADER + RAW


def test_fields_of_other_authserv_ids_and_lookalikes_in_the_body_are_kept() -> None:
    others = (
        b"Authentication-Results: mx.google.com; spf=pass smtp.mailfrom=shop.example\r\n"
        b"Authentication-Results: sinkd.local.evil.example; dkim=pass\r\n"
        b"Authentication-Results: (sinkd.local) mx.corp.example; dmarc=pass\r\n"
    )
    body = b"Authentication-Results: sinkd.local; spf=pass\r\n"
    raw = others + RAW + body
    assert add_authentication_results(raw, VALUE, "sinkd.local") == HEADER + raw


def test_every_other_byte_is_kept_even_odd_ones() -> None:
    raw = (
        b"X-Odd:  two spaces \xff\xfe and 8-bit\r\n"
        b"Authentication-Results: sinkd.local; spf=fail\r\n"
        b"Subject: folded\r\n  over lines\r\n"
        b"\r\n"
        b"body without final newline"
    )
    expected = HEADER + raw.replace(b"Authentication-Results: sinkd.local; spf=fail\r\n", b"")
    assert add_authentication_results(raw, VALUE, "sinkd.local") == expected


def test_octets_that_were_not_utf8_in_the_envelope_are_written_as_sent() -> None:
    # MAIL FROM:<j\xf6rg@...> without SMTPUTF8: the address holds the octet as a surrogate escape.
    findings = [
        auth(
            "SPF_NONE", identity="mail_from", domain="sender.example", sender="j\udcf6rg@x.example"
        )
    ]
    value = authentication_results("sinkd.local", findings)
    assert add_authentication_results(RAW, value, "sinkd.local") == (
        b'Authentication-Results: sinkd.local; spf=none smtp.mailfrom="j\xf6rg@x.example"\r\n' + RAW
    )


def test_a_message_with_bare_lf_line_ends_gets_an_lf_field() -> None:
    raw = RAW.replace(b"\r\n", b"\n")
    assert (
        add_authentication_results(raw, VALUE, "sinkd.local")
        == HEADER.replace(b"\r\n", b"\n") + raw
    )


def test_a_long_value_is_folded_between_results() -> None:
    value = "sinkd.local; " + "; ".join(f"dkim=pass header.d=sub{n}.shop.example" for n in range(5))
    header = add_authentication_results(b"\r\n", value, "sinkd.local")[: -len(b"\r\n\r\n")]
    lines = header.split(b"\r\n")
    assert len(lines) > 1 and all(len(line) <= 78 for line in lines)
    assert re.sub(rb"\r\n[ \t]+", b" ", header).decode() == f"Authentication-Results: {value}"


def test_the_authserv_id_is_read_past_comments_and_folding() -> None:
    assert (
        authserv_id_of(b" (a (nested) comment)\r\n\tMX.Example.COM 1; spf=pass") == "mx.example.com"
    )
    assert authserv_id_of(b' "quoted.example"; none') == "quoted.example"
    assert authserv_id_of(b" ; none") is None


# --- in the engine ----------------------------------------------------------------------------


@pytest.fixture
def pipeline(tmp_path: Path) -> Pipeline:
    return compile_yaml(tmp_path, "scoring:\n  thresholds: {}\n")


def decide(pipeline: Pipeline, raw: bytes, *findings: Finding) -> Any:
    return pipeline.decide(
        list(findings),
        stage=Stage.DATA,
        envelope=ENVELOPE,
        message_id="m1",
        message=parse(raw),
    )


def test_the_delivered_copy_gets_the_field_when_authentication_was_checked(
    pipeline: Pipeline,
) -> None:
    forged = b"Authentication-Results: sinkd.local; dmarc=pass header.from=shop.example\r\n"
    dkim = auth("DKIM_PASS", domain="shop.example", selector="s1")
    verdict = decide(pipeline, forged + RAW, dkim)
    assert AUTHSERV_ID == "sinkd.local"
    expected = (
        b"Authentication-Results: sinkd.local;\r\n"  # folded: one line would pass 78 characters
        b"\tdkim=pass header.d=shop.example header.s=s1\r\n" + RAW
    )
    assert verdict.filtered == expected


def test_without_authentication_findings_the_message_is_left_alone(pipeline: Pipeline) -> None:
    content = Finding("CONTENT_X", "words", Category.CONTENT, Action.SCORE, "", score=1)
    assert decide(pipeline, RAW, content).filtered is None


def test_a_refused_message_gets_no_delivered_copy(pipeline: Pipeline) -> None:
    refused = auth("DMARC_FAIL", domain="shop.example")
    refused = Finding(**{**_fields(refused), "action": Action.REJECT})
    verdict = decide(pipeline, RAW, refused)
    assert verdict.verdict is VerdictAction.REJECT
    assert verdict.filtered is None


def test_the_field_goes_on_top_of_the_stripped_message(pipeline: Pipeline) -> None:
    raw = (
        b"From: news@shop.example\r\nSubject: Files\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: text/plain\r\n\r\nSee attached.\r\n"
        b"--b\r\nContent-Type: application/octet-stream\r\n"
        b'Content-Disposition: attachment; filename="run.exe"\r\n\r\nMZ\r\n'
        b"--b--\r\n"
    )
    strip = Finding(
        "MIME_EXECUTABLE",
        "mime",
        Category.ATTACHMENTS,
        Action.STRIP,
        "",
        strip=StripPlan(parts={"2": "run.exe was removed."}),
    )
    verdict = decide(pipeline, raw, strip, auth("SPF_PASS", identity="mail_from", domain="a.b"))
    assert verdict.filtered is not None
    head, _, rest = verdict.filtered.partition(b"\r\n")
    assert head == b"Authentication-Results: sinkd.local; spf=pass smtp.mailfrom=a.b"
    assert b"run.exe was removed." in rest and b"MZ" not in rest
    assert verdict.stripped


def _fields(finding: Finding) -> dict[str, Any]:
    return {name: getattr(finding, name) for name in finding.__dataclass_fields__}


def _split_top_one_char_at_a_time(value: str) -> list[str]:
    """The plain reading of RFC 8601's top level, one character at a time (the oracle)."""
    parts: list[str] = []
    current: list[str] = []
    depth, quoted, escaped = 0, False, False
    for char in value:
        if escaped:
            escaped = False
        elif char == "\\" and (quoted or depth):
            escaped = True
        elif quoted:
            quoted = char != '"'
        elif char == '"' and not depth:
            quoted = True
        elif char == "(":
            depth += 1
        elif char == ")" and depth:
            depth -= 1
        elif char == ";" and not depth:
            parts.append("".join(current).strip())
            current = []
            continue
        current.append(char)
    parts.append("".join(current).strip())
    return [p for p in parts if p]


def test_splitting_at_top_level_semicolons_matches_a_character_by_character_reading() -> None:
    import random

    from sinkd.core.authres import _split_top

    pieces = ["a", " ", '"', "\\", "(", ")", ";", "x=y", "é", '\\"', "\\\\", "((", ";;"]
    rng = random.Random(3)
    for _ in range(20_000):
        value = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 20)))
        assert _split_top(value) == _split_top_one_char_at_a_time(value), value
