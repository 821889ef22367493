"""A message file as an SMTP client would send it (``core.as_sent``), and what is no message."""

from __future__ import annotations

import email.generator
import email.message
import io
import smtplib

import pytest

from sinkd.core.as_sent import as_sent, not_a_message

LF = b"From: a@sender.example\nTo: b@corp.example\nSubject: Hi\n\nLine one.\nLine two.\n"
CRLF = LF.replace(b"\n", b"\r\n")


# --- line endings ----------------------------------------------------------------------------


def test_a_file_with_lf_throughout_becomes_the_crlf_message() -> None:
    assert as_sent(LF) == CRLF


def test_a_file_with_crlf_throughout_is_kept_byte_for_byte() -> None:
    assert as_sent(CRLF) == CRLF


def test_lf_conversion_matches_what_pythons_smtplib_sends_for_a_text_message() -> None:
    # smtplib.sendmail(str) passes the text through _fix_eols before DATA.
    assert smtplib._fix_eols(LF.decode()).encode() == as_sent(LF)  # type: ignore[attr-defined]


def test_lf_conversion_matches_what_smtplib_send_message_generates() -> None:
    message = email.message.EmailMessage()
    message["From"] = "a@sender.example"
    message["Subject"] = "Hi"
    message.set_content("Line one.\nLine two.\n")
    with_lf = message.as_bytes()  # the policy's default linesep: "\n"
    buffer = io.BytesIO()
    email.generator.BytesGenerator(buffer).flatten(message, linesep="\r\n")  # as send_message
    assert b"\r\n" not in with_lf
    assert as_sent(with_lf) == buffer.getvalue()


@pytest.mark.parametrize(
    "mixed",
    [
        CRLF.replace(b"Line one.\r\n", b"Line one.\n"),  # one bare LF among CRLF
        LF.replace(b"Line one.\n", b"Line one.\r"),  # a bare CR among LF
        LF.replace(b"Subject: Hi\n", b"Subject: Hi\r\n"),  # one CRLF among LF
    ],
)
def test_a_file_with_mixed_line_endings_is_kept_as_it_is(mixed: bytes) -> None:
    assert as_sent(mixed) == mixed


def test_an_mbox_from_line_is_dropped_as_swaks_does() -> None:
    assert as_sent(b"From a@sender.example  Mon Jul 29 11:28:02 2002\n" + LF) == CRLF
    assert as_sent(b"From a@sender.example  Mon Jul 29 11:28:02 2002\r\n" + CRLF) == CRLF


def test_a_from_header_field_is_not_an_mbox_line() -> None:
    assert as_sent(CRLF).startswith(b"From: a@sender.example")


def test_a_file_without_a_final_line_end_keeps_its_last_line() -> None:
    assert as_sent(b"Subject: x\n\nlast") == b"Subject: x\r\n\r\nlast"


# --- what is no message ----------------------------------------------------------------------


def test_a_message_is_a_message() -> None:
    assert not_a_message(CRLF) is None
    assert not_a_message(b"Subject: only a header") is None  # the body is optional


def test_an_obsolete_space_before_the_colon_is_still_a_header_field() -> None:
    assert not_a_message(b"Subject : x\r\n\r\nbody") is None  # RFC 5322 §4.5.3


def test_a_nul_in_a_header_field_is_left_to_the_format_filter() -> None:
    assert not_a_message(b"Subject: a\x00b\r\n\r\nbody") is None


def test_an_empty_file_is_named_empty() -> None:
    assert str(not_a_message(b"")).startswith("the file is empty")


@pytest.mark.parametrize(
    "data",
    [
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",
        b"PK\x03\x04\x14\x00\x00\x00\x08\x00",
        b"\x1f\x8b\x08\x00\x00\x00\x00\x00",
        b"MZ\x90\x00\x03\x00\x00\x00",
    ],
)
def test_images_archives_and_executables_are_named_binary(data: bytes) -> None:
    assert str(not_a_message(as_sent(data))).startswith("binary data")


def test_plain_text_without_a_header_block_is_named_headerless() -> None:
    problem = str(not_a_message(b"Hello world\r\nthis is text\r\n"))
    assert problem.startswith("no header block: the first line is not a header field")
    assert "'Hello world'" in problem


def test_a_file_that_begins_with_an_empty_line_has_no_header_block() -> None:
    assert "begins with an empty line" in str(not_a_message(b"\r\nSubject: x\r\n"))


def test_a_byte_order_mark_is_named() -> None:
    assert "byte order mark" in str(not_a_message(b"\xef\xbb\xbf" + CRLF))


def test_a_long_first_line_is_quoted_shortened() -> None:
    problem = str(not_a_message(b"x" * 500 + b"\r\n"))
    assert "x" * 40 + "'…" in problem
    assert "x" * 41 not in problem
