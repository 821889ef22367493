"""Tests for sinkd.core.message: lazy, never-raising parsing of raw messages."""

from __future__ import annotations

import base64
import subprocess
import sys
import textwrap
from email.message import EmailMessage
from pathlib import Path

import pytest

from sinkd.core.limits import DEFAULT_SCAN_LIMITS, ScanLimits
from sinkd.core.message import BODY_PART_SCAN_SIZE, ParsedMessage, RawIssues, parse
from tests.support.paths import MESSAGES, ROOT

CPYTHON_MESSAGES = sorted((MESSAGES / "cpython").glob("msg_*.txt"))
HOSTILE_MESSAGES = sorted((MESSAGES / "hostile").glob("*.eml"))

PROPERTIES = [
    "message",
    "subject",
    "header_from",
    "header_from_domain",
    "text_body",
    "html_bodies",
    "has_html",
    "html_text",
    "body_text",
    "body_parts",
    "defects",
    "raw_issues",
    "size",
]


def crlf(text: str) -> bytes:
    """A message written as an indented literal, with CRLF line endings."""
    return textwrap.dedent(text).lstrip("\n").replace("\n", "\r\n").encode("utf-8")


def read_everything(msg: ParsedMessage) -> None:
    for name in PROPERTIES:
        getattr(msg, name)


def hostile(name: str) -> ParsedMessage:
    return parse((MESSAGES / "hostile" / name).read_bytes())


# --- headers --------------------------------------------------------------------------------


def test_a_plain_subject_is_returned_as_is() -> None:
    assert parse(crlf("Subject: Hello there\n\nbody\n")).subject == "Hello there"


def test_a_missing_subject_is_none() -> None:
    assert parse(crlf("From: a@example.com\n\nbody\n")).subject is None


def test_a_utf8_encoded_subject_is_decoded() -> None:
    msg = parse(crlf("Subject: =?UTF-8?B?R3LDvMOfZSBhdXMgTcO8bmNoZW4=?=\n\nbody\n"))
    assert msg.subject == "Grüße aus München"
    assert msg.defects == []


def test_an_iso_8859_1_encoded_subject_is_decoded() -> None:
    msg = parse(crlf("Subject: =?iso-8859-1?q?Gr=FC=DFe_aus_M=FCnchen?=\n\nbody\n"))
    assert msg.subject == "Grüße aus München"


def test_white_space_between_encoded_words_is_dropped_but_kept_around_plain_text() -> None:
    # RFC 2047 §6.2; the second word continues a UTF-8 character split across the two.
    msg = parse(crlf("Subject: Re: =?utf-8?q?caf=C3?=\n =?utf-8?q?=A9?= now\n\nbody\n"))
    assert msg.subject == "Re: café now"


def test_an_unknown_subject_charset_is_a_defect_not_an_exception() -> None:
    msg = parse(crlf("Subject: =?x-foo?q?Gr=C3=BC=C3=9Fe?=\n\nbody\n"))
    assert msg.subject == "Grüße"  # the UTF-8 fallback
    assert "unknown charset 'x-foo' in Subject header" in msg.defects


def test_bad_base64_in_an_encoded_word_is_kept_literally() -> None:
    msg = parse(crlf("Subject: =?utf-8?b?A?= tail\n\nbody\n"))
    assert msg.subject == "=?utf-8?b?A?= tail"
    assert "bad base64 in an encoded-word of the Subject header" in msg.defects


def test_raw_latin1_octets_in_the_subject_are_read_as_latin1() -> None:
    msg = hostile("8bit-headers.eml")
    assert msg.subject == "Grüße aus München"
    assert any("raw 8-bit bytes in Subject header" in d for d in msg.defects)


def test_raw_utf8_octets_in_the_subject_are_not_a_defect() -> None:
    # RFC 6532 §3.2 allows UTF-8 in header fields.
    msg = parse("Subject: Grüße\r\n\r\nbody\r\n".encode())
    assert msg.subject == "Grüße"
    assert msg.defects == []


def test_the_from_address_is_the_bare_address() -> None:
    msg = parse(crlf("From: =?utf-8?q?Al=C3=AFce?= <Alice@Example.COM>\n\nbody\n"))
    assert msg.header_from == "Alice@Example.COM"
    assert msg.header_from_domain == "example.com"


def test_a_missing_or_empty_from_is_none() -> None:
    assert parse(crlf("Subject: x\n\nbody\n")).header_from is None
    msg = parse(crlf("From: MAILER DAEMON <>\n\nbody\n"))
    assert msg.header_from is None
    assert msg.header_from_domain is None


def test_a_from_without_domain_has_no_domain() -> None:
    msg = parse(crlf("From: postmaster\n\nbody\n"))
    assert msg.header_from == "postmaster"
    assert msg.header_from_domain is None


# --- bodies ---------------------------------------------------------------------------------

MULTIPART = crlf(
    """
    From: sender@example.com
    Subject: multipart
    MIME-Version: 1.0
    Content-Type: multipart/alternative; boundary="b1"

    --b1
    Content-Type: text/plain; charset=utf-8
    Content-Transfer-Encoding: quoted-printable

    Caf=C3=A9 plain text, soft=
    wrapped.
    --b1
    Content-Type: text/html; charset=utf-8
    Content-Transfer-Encoding: base64

    {html}
    --b1
    Content-Type: text/plain
    Content-Disposition: attachment; filename="notes.txt"

    attached secret words
    --b1--
    """
).replace(
    b"{html}",
    base64.encodebytes(
        b"<html><head><title>Title words</title><style>p { color: red }</style></head>"
        b"<body><script>var hidden = 1;</script><p>Hello <b>wor</b>ld</p>"
        b"<div>second&nbsp;block</div><table><tr><td>cell1</td><td>cell2</td></tr></table>"
        b"</body></html>"
    ).replace(b"\n", b"\r\n"),
)


def test_a_quoted_printable_text_part_is_decoded() -> None:
    assert parse(MULTIPART).text_body == "Café plain text, softwrapped."


def test_attachments_are_not_body_text() -> None:
    assert "attached secret words" not in parse(MULTIPART).body_text


def test_a_base64_html_part_is_decoded() -> None:
    msg = parse(MULTIPART)
    assert msg.has_html
    assert len(msg.html_bodies) == 1
    assert msg.html_bodies[0].startswith("<html><head><title>Title words</title>")


def test_html_text_is_the_html_as_spamassassin_renders_it() -> None:
    html_text = parse(MULTIPART).html_text
    # Inline markup does not split a word, block elements and &nbsp; separate words; the title
    # is rendered (HTML.pm keeps it), scripts and styles are not.
    assert html_text == "Title words Hello world second block cell1 cell2"
    for hidden in ("hidden", "color"):
        assert hidden not in html_text


def test_body_text_joins_plain_and_html_text() -> None:
    msg = parse(MULTIPART)
    assert msg.body_text == msg.text_body + "\n" + msg.html_text


# --- body parts as body rules read them ---------------------------------------------------------

GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"


def test_body_parts_are_every_text_part_with_where_it_is() -> None:
    parts = parse(MULTIPART).body_parts
    assert [(p.index, p.html, p.inline, p.label) for p in parts] == [
        (1, False, True, "text body"),
        (2, True, True, "HTML body"),
        # Message.pm reads every text/plain and text/html leaf, attachments too.
        (3, False, False, "attachment 'notes.txt'"),
    ]
    assert parts[0].text == "Café plain text, softwrapped."
    assert parts[2].text == "attached secret words"


def test_a_quoted_printable_soft_line_break_inside_a_word_is_removed() -> None:
    msg = EmailMessage()
    msg["Subject"] = "x"
    msg.set_content("A line long enough that quoted-printable must wrap it here: " + GTUBE)
    raw = msg.as_bytes()
    assert GTUBE.encode() not in raw
    [part] = parse(raw).body_parts
    assert GTUBE in part.text


def test_a_blank_line_ends_a_paragraph_and_other_white_space_is_one_space() -> None:
    raw = crlf("Subject: x\n\nFirst line\n  still first\t paragraph\n\n \n\nSecond\n")
    [part] = parse(raw).body_parts
    assert part.text == "First line still first paragraph\nSecond"


def test_html_paragraphs_follow_spamassassins_renderer() -> None:
    html = (
        "<html><head><title>The title</title><style>.a{}</style></head><body>"
        "<p>via<b>gra</b>\n\n\nstill one paragraph</p>"
        "<div>div one</div><div>div two</div>a<br>b<table><tr><td>c1</td><td>c2</td></tr></table>"
        "<script>var x;</script><blockquote>quoted</blockquote>tail &nbsp; end</body></html>"
    )
    raw = b"Subject: x\r\nContent-Type: text/html\r\n\r\n" + html.encode()
    [part] = parse(raw).body_parts
    assert part.text.split("\n") == [
        "The title",
        "viagra still one paragraph",
        "div one",  # "</div><div>": two line breaks in a row end a paragraph
        "div two a b c1 c2",  # a lone <br> is a space, table cells are spaces
        "quoted",
        "tail end",
    ]


def test_a_part_named_html_is_rendered_as_html() -> None:
    msg = EmailMessage()
    msg["Subject"] = "x"
    msg.set_content("see attachment")
    msg.add_attachment(
        b"<p>Pay <b>now</b></p>",
        maintype="application",
        subtype="octet-stream",
        filename="invoice.htm",
    )
    parts = parse(msg.as_bytes()).body_parts
    assert [(p.html, p.label, p.text) for p in parts] == [
        (False, "text body", "see attachment"),
        (True, "attachment 'invoice.htm'", "Pay now"),
    ]


def test_a_binary_attachment_is_not_a_body_part() -> None:
    msg = EmailMessage()
    msg.set_content("see attachment")
    msg.add_attachment(b"\x00\x01casino", maintype="application", subtype="pdf", filename="a.pdf")
    assert [p.label for p in parse(msg.as_bytes()).body_parts] == ["text body"]


def test_reading_an_attachment_adds_no_defect() -> None:
    raw = crlf(
        """
        Subject: x
        MIME-Version: 1.0
        Content-Type: multipart/mixed; boundary="b"

        --b
        Content-Type: text/plain

        body
        --b
        Content-Type: text/plain
        Content-Disposition: attachment; filename="n.txt"
        Content-Transfer-Encoding: base64

        Y2FzaW5v=x
        --b--
        """
    )
    before = parse(raw).defects
    msg = parse(raw)
    assert msg.body_parts[1].text == "casino"
    assert msg.defects == before


def test_a_huge_text_part_is_cut_near_the_scan_size_at_a_line_break() -> None:
    line = "x" * 99 + "\n"
    raw = b"Subject: x\r\n\r\n" + (line * 2_000).encode() + b"casino\n"
    [part] = parse(raw).body_parts
    # Message.pm: cut at the first line break after body_part_scan_size (50,000 characters),
    # which ends the 501st line here.
    assert len(part.text) == 501 * 100 - 1
    assert "casino" not in part.text


def test_a_huge_html_part_is_parsed_up_to_its_cap_and_its_text_cut() -> None:
    html = "<p>" + "word " * 200_000 + "</p><p>casino</p>"
    raw = b"Subject: x\r\nContent-Type: text/html\r\n\r\n" + html.encode()
    [part] = parse(raw).body_parts
    assert len(part.text) <= BODY_PART_SCAN_SIZE + 1024
    assert "casino" not in part.text


def test_each_part_is_decoded_once_for_the_bodies_and_the_body_parts() -> None:
    msg = parse(MULTIPART)
    assert msg.text_body.startswith("Café")
    assert msg.html_bodies[0].startswith("<html>")
    decoded = dict(msg._decoded)
    assert msg.body_parts[0].text.startswith("Café")
    assert msg._decoded == decoded  # the view reused the decode, nothing new
    assert msg.body_parts is msg.body_parts


def test_a_message_without_content_type_is_plain_text() -> None:
    msg = parse(crlf("Subject: x\n\nJust text.\n"))
    assert msg.text_body == "Just text.\n"
    assert not msg.has_html
    assert msg.html_bodies == []
    assert msg.html_text == ""


def test_an_unknown_body_charset_falls_back_and_is_a_defect() -> None:
    msg = hostile("unknown-charset.eml")
    assert "Grüße aus München, cash prize inside." in msg.text_body
    assert "unknown charset 'x-foo' in part 0" in msg.defects


def test_undecodable_bytes_are_replaced_and_are_a_defect() -> None:
    raw = b"Content-Type: text/plain; charset=utf-8\r\n\r\ncash \xff\xfe now\r\n"
    msg = parse(raw)
    assert msg.text_body == "cash \ufffd\ufffd now\n"
    assert "undecodable bytes for charset 'utf-8' in part 0" in msg.defects


@pytest.mark.parametrize("charset", ["idna", "undefined", "hex", "zlib", '"utf-8'])
def test_a_charset_naming_an_odd_python_codec_never_raises(charset: str) -> None:
    raw = b"Content-Type: text/html; charset=" + charset.encode() + b"\r\n\r\n<p>ok \xff</p>\r\n"
    msg = parse(raw)
    read_everything(msg)
    assert msg.html_text.startswith("ok")
    assert any(charset.strip('"') in d for d in msg.defects)


def test_undeclared_8bit_body_is_read_as_utf8_or_latin1() -> None:
    assert parse("Subject: x\r\n\r\nGrüße\r\n".encode()).text_body == "Grüße\n"
    assert parse(b"Subject: x\r\n\r\nGr\xfc\xdfe\r\n").text_body == "Grüße\n"


def test_a_broken_boundary_is_a_defect_and_the_text_is_still_read() -> None:
    msg = hostile("broken-boundary.eml")
    assert "MIME boundary never found in the body in part 0" in msg.defects
    assert "Hidden text behind a boundary that was never declared." in msg.body_text


def test_nested_multiparts_without_end_are_defects_and_still_read() -> None:
    msg = hostile("nested-multipart-no-end.eml")
    assert "missing MIME boundary end in part 0" in msg.defects
    assert "missing MIME boundary end in part 1" in msg.defects
    assert "Inner plain text." in msg.text_body
    assert msg.html_text == "Inner html text."


def test_broken_base64_is_decoded_as_far_as_possible() -> None:
    msg = hostile("bad-base64.eml")
    assert msg.text_body.strip() == "Decoded despite the damage: wire transfer!"
    assert "invalid base64 length in part 0" in msg.defects


def test_defects_do_not_depend_on_what_was_read_first() -> None:
    raw = (MESSAGES / "hostile" / "unknown-charset.eml").read_bytes()
    first = parse(raw).defects
    msg = parse(raw)
    read_everything(msg)
    assert msg.defects == first


def test_a_header_with_five_thousand_parameters_parses() -> None:
    params = "; ".join(f"p{i}=v{i}" for i in range(5_000))
    raw = f"Subject: params\r\nContent-Type: text/plain; {params}; charset=utf-8\r\n\r\nbody\r\n"
    msg = parse(raw.encode())
    read_everything(msg)
    assert msg.text_body == "body\n"


def test_absurdly_deep_nesting_is_a_defect_not_an_exception() -> None:
    depth = 2_000
    raw = b"Subject: deep\r\nContent-Type: multipart/mixed; boundary=b0\r\n\r\n"
    raw += b"".join(
        b"--b%d\r\nContent-Type: multipart/mixed; boundary=b%d\r\n\r\n" % (i, i + 1)
        for i in range(depth)
    )
    raw += b"--b%d\r\nContent-Type: text/plain\r\n\r\ndeep text\r\n" % depth
    msg = parse(raw)
    read_everything(msg)
    assert msg.subject == "deep"
    assert "deep text" in msg.body_text


def test_properties_are_computed_once() -> None:
    msg = parse(MULTIPART)
    assert msg.html_bodies is msg.html_bodies
    assert msg.defects is msg.defects
    assert msg.message is msg.message


# --- raw octets -----------------------------------------------------------------------------


def test_a_clean_message_has_no_raw_issues() -> None:
    issues = parse(crlf("Subject: x\n\nbody\n")).raw_issues
    assert issues == RawIssues(
        bare_lf=0, bare_cr=0, nul_bytes=0, long_lines=0, max_line_length=10, smuggling=0
    )


def test_nul_bytes_are_counted() -> None:
    msg = hostile("nul-bytes.eml")
    assert msg.raw_issues.nul_bytes == 3
    assert "NUL" in msg.text_body


def test_bare_lf_bare_cr_and_smuggling_are_counted() -> None:
    issues = hostile("bare-lf.eml").raw_issues
    assert issues.bare_lf == 9
    assert issues.bare_cr == 1
    assert issues.smuggling == 2  # "\n.\n" and "\r\n.\n"


@pytest.mark.parametrize(
    ("body", "count"),
    [
        (b"a\n.\nb", 1),  # <LF>.<LF>
        (b"a\n.\r\nb", 1),  # <LF>.<CRLF>
        (b"a\r\n.\nb", 1),  # <CRLF>.<LF>
        (b"a\r.\rb", 1),  # <CR>.<CR>
        (b"a\r\n.\r\nb", 0),  # the real terminator (cannot survive dot-unstuffing anyway)
        (b"a\r\n..\r\nb", 0),  # a dot-stuffed line
        (b"a\n.\n.\nb", 2),  # overlapping look-alikes all count
        (b"a. b.\r\nc", 0),
    ],
)
def test_smuggling_look_alikes_are_counted(body: bytes, count: int) -> None:
    assert parse(b"Subject: x\r\n\r\n" + body).raw_issues.smuggling == count


def test_long_lines_are_counted_excluding_the_line_ending() -> None:
    raw = b"Subject: x\r\n\r\n" + b"a" * 998 + b"\r\n" + b"b" * 999 + b"\r\n" + b"c" * 1500
    issues = parse(raw).raw_issues
    assert issues.long_lines == 2
    assert issues.max_line_length == 1500


def test_size_is_the_raw_length() -> None:
    assert parse(b"Subject: x\r\n\r\nbody").size == len(b"Subject: x\r\n\r\nbody")


# --- laziness -------------------------------------------------------------------------------


def test_a_message_without_html_never_imports_selectolax() -> None:
    script = textwrap.dedent(
        """
        import sys
        from sinkd.core.message import parse
        msg = parse(b"Subject: x\\r\\nContent-Type: text/plain\\r\\n\\r\\nplain\\r\\n")
        for name in sys.argv[1:]:
            getattr(msg, name)
        assert msg.html_text == ""
        assert "selectolax" not in sys.modules, "selectolax was imported"
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script, *PROPERTIES],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_a_message_with_html_does_import_selectolax() -> None:
    script = textwrap.dedent(
        """
        import sys
        from sinkd.core.message import parse
        msg = parse(b"Content-Type: text/html\\r\\n\\r\\n<p>x</p>\\r\\n")
        assert "selectolax" not in sys.modules
        assert msg.html_text == "x"
        assert "selectolax" in sys.modules
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


# --- corpora --------------------------------------------------------------------------------


def test_the_corpora_are_present() -> None:
    assert len(CPYTHON_MESSAGES) >= 40
    assert len(HOSTILE_MESSAGES) >= 7


@pytest.mark.parametrize("path", CPYTHON_MESSAGES, ids=lambda p: p.name)
def test_every_cpython_corpus_message_parses_without_exception(path: Path) -> None:
    msg = parse(path.read_bytes())
    read_everything(msg)
    assert msg.size == path.stat().st_size


@pytest.mark.parametrize("path", HOSTILE_MESSAGES, ids=lambda p: p.name)
def test_every_hostile_message_parses_without_exception(path: Path) -> None:
    msg = parse(path.read_bytes())
    read_everything(msg)
    assert msg.subject is not None
    assert msg.body_text.strip()


# --- within a profile's scanning limits ---------------------------------------------------------


def test_a_message_within_limits_that_change_nothing_is_itself() -> None:
    parsed = parse(b"Subject: hi\r\n\r\nbody\r\n")
    assert parsed.within(DEFAULT_SCAN_LIMITS) is parsed
    postfix = ScanLimits(header_size_limit=102_400, header_scope="field")
    assert parsed.within(postfix) is parsed  # no field is over the limit


def test_a_header_cut_gives_a_view_parsed_from_the_cut_octets_once() -> None:
    raw = b"Subject: " + b"s" * 300 + b"\r\nTo: bob@corp.example\r\n\r\nbody\r\n"
    parsed = parse(raw)
    limits = ScanLimits(header_size_limit=100, header_scope="field")
    view = parsed.within(limits)
    assert view is not parsed
    assert parsed.within(limits) is view
    assert view.subject == "s" * 91
    assert [(c.name, c.size, c.kept) for c in view.header_cuts] == [("Subject", 309, 100)]
    assert parsed.subject == "s" * 300  # the message itself is untouched
    assert view.body_parts[0].text == "body"


def test_other_body_scan_sizes_give_a_view_that_cuts_at_them() -> None:
    parsed = parse(b"Subject: hi\r\n\r\n" + b"word " * 1000 + b"\r\n")
    view = parsed.within(ScanLimits(body_part_scan_size=100))
    [part] = view.body_parts
    assert len(part.text) < 200
    assert part.text_size == 5001
    assert parsed.body_parts[0].text_size is None
