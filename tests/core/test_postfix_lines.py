"""The message as Postfix's cleanup(8) inspects it (sinkd.core.postfix_lines): which lookups it
makes, with which check class, in which order. The expectations for the MIME example are what
Postfix 3.7.11 logged for the same message with a WARN-everything table per class; the e2e
test tests/e2e/test_postfix_cleanup_e2e.py compares whole corpora with the real Postfix."""

from __future__ import annotations

from sinkd.core.postfix_lines import (
    CheckClass,
    content_lines,
    received_header,
    records,
    smtpd_size,
)

H, M, N, B = (
    CheckClass.HEADER,
    CheckClass.MIME_HEADER,
    CheckClass.NESTED_HEADER,
    CheckClass.BODY,
)


def lookups(raw: bytes, **limits: int | bool) -> list[tuple[CheckClass, str]]:
    return [(line.check, line.text) for line in content_lines(raw, **limits)]  # type: ignore[arg-type]


MIME_MESSAGE = (
    b"From x@y Mon\r\n"
    b"Subject : hi\r\n there\r\n"
    b'Content-Type: multipart/mixed; boundary="b1"\r\n'
    b"MIME-Version: 1.0\r\n"
    b"\r\n"
    b"preamble\r\n"
    b"--b1\r\n"
    b"Content-Type: message/rfc822\r\n"
    b"X-P: 1\r\n"
    b"\r\n"
    b"From: n@x\r\n"
    b"Content-Type: text/plain\r\n"
    b"\r\n"
    b"nested body\r\n"
    b"--b1--\r\n"
    b"epi\r\n"
)


def test_each_header_body_and_boundary_line_goes_to_the_class_postfix_gives_it() -> None:
    assert lookups(MIME_MESSAGE) == [
        (H, "X-Mailbox-Line: From x@y Mon"),
        (H, "Subject: hi\n there"),
        (M, 'Content-Type: multipart/mixed; boundary="b1"'),
        (M, "MIME-Version: 1.0"),
        (B, "preamble"),
        (B, "--b1"),
        (M, "Content-Type: message/rfc822"),
        (M, "X-P: 1"),
        (N, "From: n@x"),
        (M, "Content-Type: text/plain"),
        (B, "nested body"),
        (B, "--b1--"),
        (B, "epi"),
    ]


def test_body_offsets_restart_in_each_body_segment_and_a_boundary_continues_the_last() -> None:
    offsets = {line.text: line.offset for line in content_lines(MIME_MESSAGE) if line.check is B}
    # The primary header's empty line is offset 0 (not looked up), "preamble" 1, "--b1" 10.
    assert offsets == {"preamble": 1, "--b1": 10, "nested body": 1, "--b1--": 0, "epi": 7}


def test_body_checks_stop_at_body_checks_size_limit_in_each_part() -> None:
    body = b"".join(b"line %d\r\n" % n for n in range(10))
    raw = b"Subject: x\r\n\r\n" + body
    seen = [text for check, text in lookups(raw, body_checks_size_limit=20) if check is B]
    # offsets 1, 8, 15, 22...: records starting before 20 are read.
    assert seen == ["line 0", "line 1", "line 2"]
    assert len([c for c, _ in lookups(raw, body_checks_size_limit=0) if c is B]) == 10


def test_a_long_line_is_looked_up_in_line_length_limit_pieces() -> None:
    raw = b"Subject: x\r\n\r\n" + b"a" * 20 + b"\r\n"
    assert lookups(raw, line_length_limit=13) == [
        (H, "Subject: x"),
        (B, "a" * 13),
        (B, "a" * 7),
    ]
    # smtp_get: a CR ending a full record with LF next ends the line; a full record without
    # one continues, even when only the line ending follows.
    assert [(r.data, r.cont) for r in records(b"abc\r\nabcdefgh\r\n", 4)] == [
        (b"abc", False),
        (b"abcd", True),
        (b"efgh", True),
        (b"", False),
    ]


def test_a_header_longer_than_a_record_is_joined_again() -> None:
    raw = b"Subject: " + b"s" * 30 + b"\r\n\r\n"
    assert lookups(raw, line_length_limit=16) == [(H, "Subject: " + "s" * 30)]


def test_a_boundary_is_not_recognized_in_the_continuation_of_a_long_line() -> None:
    head = b"Content-Type: multipart/mixed; boundary=zz\r\n\r\n"
    part = b"--zz\r\nContent-Type: text/plain\r\n\r\nx\r\n"
    assert lookups(head + part, line_length_limit=16)[1:3] == [
        (B, "--zz"),
        (M, "Content-Type: text/plain"),
    ]
    # "--zz" starts the second record of a long line: still body, so the next line is too.
    assert lookups(head + b"x" * 16 + part, line_length_limit=16)[1:5] == [
        (B, "x" * 16),
        (B, "--zz"),
        (B, "Content-Type: te"),
        (B, "xt/plain"),
    ]


def test_empty_lines_are_never_looked_up() -> None:
    assert lookups(b"Subject: x\r\n\r\n\r\nbody\r\n\r\n") == [(H, "Subject: x"), (B, "body")]


def test_a_first_line_starting_with_white_space_makes_the_whole_message_body() -> None:
    assert lookups(b" Subject: x\r\nTo: y\r\n") == [(B, " Subject: x"), (B, "To: y")]


def test_a_non_header_line_in_the_header_ends_it() -> None:
    assert lookups(b"Subject: x\r\nnot a header\r\nTo: y\r\n") == [
        (H, "Subject: x"),
        (B, "not a header"),
        (B, "To: y"),
    ]


def test_mime_headers_stay_mime_headers_when_mime_processing_is_disabled() -> None:
    raw = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nX-Part: 1\r\n\r\nx\r\n"
    assert lookups(raw, disable_mime_input_processing=True) == [
        (M, "Content-Type: multipart/mixed; boundary=b"),
        (B, "--b"),
        (B, "X-Part: 1"),
        (B, "x"),
    ]
    assert lookups(raw)[2] == (M, "X-Part: 1")


def test_a_digest_part_without_content_type_holds_a_nested_message() -> None:
    raw = (
        b"Content-Type: multipart/digest; boundary=d\r\n\r\n"
        b"--d\r\n\r\nSubject: inner\r\n\r\ntext\r\n--d--\r\n"
    )
    assert (N, "Subject: inner") in lookups(raw)


def test_a_header_is_kept_while_under_header_size_limit() -> None:
    raw = b"Subject: 123456\r\n 7890\r\n abc\r\n\r\n"
    assert lookups(raw, header_size_limit=20) == [(H, "Subject: 123456\n 7890")]


def test_a_stray_cr_is_a_space_and_a_nul_ends_the_lookup() -> None:
    raw = b"Subject: a\rb\r\n\r\nbefore\x00after\r\n"
    assert lookups(raw) == [(H, "Subject: a b"), (B, "before")]


def test_bare_lf_ends_a_line_as_smtpd_reads_it() -> None:
    assert lookups(b"Subject: x\n\nbody\n") == [(H, "Subject: x"), (B, "body")]


def test_smtpd_counts_each_record_plus_two_and_not_a_leading_from_line() -> None:
    assert smtpd_size(b"ab\r\ncd\r\n") == 8
    assert smtpd_size(b"ab\ncd\n") == 8
    assert smtpd_size(b"From x\r\nab\r\n") == 4
    assert smtpd_size(b"abcdefgh\r\n", line_length_limit=4) == 4 + 2 + 4 + 2 + 0 + 2


def test_smtpd_s_received_header_is_read_first() -> None:
    lines = received_header(
        helo="client.example",
        client_name="mail.sender.example",
        client_ip="192.0.2.8",
        myhostname="gateway.test",
        recipients=("bob@corp.example",),
    )
    first = next(iter(content_lines(b"Subject: x\r\n", prepend=lines)))
    assert first.check is H
    assert first.text.startswith(
        "Received: from client.example (mail.sender.example [192.0.2.8])\n"
        "\tby gateway.test (Postfix) with ESMTP id "
    )
    assert "\n\tfor <bob@corp.example>; " in first.text


def test_the_received_header_of_several_recipients_has_no_for_clause() -> None:
    lines = received_header(
        helo=None,
        client_name=None,
        client_ip="2001:db8::1",
        myhostname="gw",
        recipients=("a@x", "b@x"),
        tls=True,
    )
    assert lines[0] == b"Received: from unknown (unknown [IPv6:2001:db8::1])"
    assert lines[1].startswith(b"\tby gw (Postfix) with ESMTPS id ")
    assert lines[1].endswith(b";")
    assert b"for <" not in b"".join(lines)
