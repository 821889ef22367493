"""A message file as an SMTP client would send it, and whether a file is a message at all.

Owns two pure functions over a file's bytes, used wherever sinkd judges a *file* (``sinkd
check``, ``sinkd report``): ``as_sent`` turns the file into the DATA an SMTP client would
transmit, and ``not_a_message`` says why a file cannot be judged as mail (empty, binary, no
header block). It must never be used on what arrived over SMTP: that is judged exactly as it
arrived, bare line endings and all. No I/O.

Why files need this: an ``.eml`` saved on Unix ends its lines with LF, but SMTP ends every line
with CRLF (RFC 5321 §2.3.8), and the clients people test with write CRLF on the wire:

- swaks drops a leading mbox ``From `` line and turns every LF not preceded by CR into CRLF
  unless ``--no-data-fixup`` / ``--no-strip-from`` (``swaks`` source, the DATA fix-up before
  "add a trailing dot"; swaks(1) ``--no-strip-from``);
- Python's ``smtplib`` sends ``sendmail(..., str)`` through ``_fix_eols`` (LF and lone CR become
  CRLF) and ``send_message`` through ``BytesGenerator.flatten(linesep="\\r\\n")``
  (CPython ``Lib/smtplib.py``); only bytes given to ``sendmail`` go out untouched.

So a file whose lines all end in LF is the CRLF message a client would send, and is judged as
that. A file that already mixes CRLF with bare LF or CR was most likely captured from the wire
(or built byte by byte to test exactly that); it is kept as it is, so ``FORMAT_BARE_LINE_ENDING``
still reports it. Dot-stuffing is transport (RFC 5321 §4.5.2) and undone by the receiver, so it
is not applied.
"""

from __future__ import annotations

import re

_MBOX_FROM = re.compile(rb"From [^\n]*\n")  # swaks: s/^From [^\n]*\n// on the DATA
# RFC 5322 §3.6.8: field-name = 1*ftext, ftext = %d33-57 / %d59-126 (printable US-ASCII but
# ":"); §4.5.3 (obsolete syntax, which receivers must accept) allows WSP before the colon.
_FIELD = re.compile(rb"[\x21-\x39\x3b-\x7e]+[ \t]*:")
_BOM = b"\xef\xbb\xbf"
_QUOTE = 40  # bytes of a bad first line quoted in the message
_SNIFF = 8000  # bytes searched for a NUL when the first line is no header field (as Git)
_CONTROL = re.compile(rb"[\x00-\x08\x0b-\x1f\x7f]")  # but TAB and LF (CR is stripped)


def as_sent(data: bytes) -> bytes:
    """The DATA an SMTP client would send for this file: a leading mbox ``From `` line
    dropped, and LF line endings made CRLF when the file uses LF throughout."""
    found = _MBOX_FROM.match(data)
    if found:
        data = data[found.end() :]
    crlf = data.count(b"\r\n")
    bare_lf = data.count(b"\n") - crlf
    bare_cr = data.count(b"\r") - crlf
    if bare_lf and not crlf and not bare_cr:
        return data.replace(b"\n", b"\r\n")
    return data  # CRLF throughout, or mixed: as it is


def not_a_message(data: bytes) -> str | None:
    """Why these bytes (as ``as_sent`` returns them) cannot be judged as a message, in words
    naming the problem; None when they can.

    RFC 5322 §2.1: a message is header fields, then optionally an empty line and a body, so
    the first line must be a header field; past it, anything goes (a NUL byte or bare CR in a
    header or body is for the ``format`` filter to report, as over SMTP). A file whose first
    line is not a header field is reported as binary when its first ``_SNIFF`` bytes hold a
    NUL (Git's test for binary content: ``buffer_is_binary`` in ``xdiff-interface.c``, over
    the first 8000 bytes) or its first line a control character; else as having no header
    block. Images, archives and executables are caught by the first.
    """
    if not data:
        return "the file is empty: a message needs at least one header field (RFC 5322 §2.1)"
    first = data.split(b"\n", 1)[0].rstrip(b"\r")
    if _FIELD.match(first):
        return None
    if b"\x00" in data[:_SNIFF] or _CONTROL.search(first):
        return "binary data, not a message file (its first line is no header field)"
    if not first:
        return (
            "no header block: the file begins with an empty line, so there are no header "
            "fields before the body (RFC 5322 §2.1)"
        )
    if first.startswith(_BOM):
        return (
            "no header block: the file begins with a UTF-8 byte order mark, which no header "
            "field name may hold (RFC 5322 §3.6.8); save it without the BOM"
        )
    shown = first[:_QUOTE].decode("ascii", "backslashreplace")
    more = "…" if len(first) > _QUOTE else ""
    return (
        f"no header block: the first line is not a header field ('Name: value', "
        f"RFC 5322 §2.2): {shown!r}{more}"
    )
