"""The message as Postfix's cleanup(8) inspects it: logical header lines and body records, each
with the check class that reads it (header_checks, mime_header_checks, nested_header_checks,
body_checks).

Owns the translation of a raw message into what Postfix 3.7's content inspection sees, and the
size smtpd(8) counts against ``message_size_limit``. The facts come from header_checks(5),
postconf(5) and the Postfix 3.7.11 sources (read, not copied): smtpd/smtpd.c reads the DATA
stream into records of at most ``line_length_limit`` octets; global/mime_state.c joins folded
header lines with a newline, recognizes MIME boundaries and message/rfc822 parts and hands
each header and body record to cleanup/cleanup_message.c, which chooses the check class.

It judges nothing, looks nothing up, decodes no transfer encoding and no RFC 2047 word (Postfix
does neither), and never raises on any input. smtpd's own ``Received:`` header comes
from ``received_header`` with placeholders for the queue id and date. It does not model the
8-bit to 7-bit downgrade or ``mime_nesting_limit``.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = [
    "MIME_FIELDS",
    "CheckClass",
    "ContentLine",
    "Record",
    "content_lines",
    "received_header",
    "records",
    "smtpd_size",
]

# src/global/header_opts.c: the headers flagged HDR_OPT_MIME. cleanup_message.c sends these to
# mime_header_checks wherever they appear, also in the primary header block. Content-Length is
# not among them.
MIME_FIELDS = frozenset(
    {
        "content-description",
        "content-disposition",
        "content-id",
        "content-transfer-encoding",
        "content-type",
        "mime-version",
    }
)


class CheckClass(enum.StrEnum):
    """The main.cf parameter whose table reads a line (header_checks(5))."""

    HEADER = "header_checks"
    MIME_HEADER = "mime_header_checks"
    NESTED_HEADER = "nested_header_checks"
    BODY = "body_checks"


@dataclass(frozen=True, slots=True)
class Record:
    """One record of the DATA stream as smtpd reads it: at most ``line_length_limit`` octets,
    line ending removed; ``cont`` when the line goes on in the next record."""

    data: bytes
    cont: bool
    line: int  # 1-based number of the message line it comes from


@dataclass(frozen=True, slots=True)
class ContentLine:
    """One lookup cleanup makes: the check class, the text looked up (a logical header with
    its folded lines joined by "\\n", or one body record) and where it is."""

    check: CheckClass
    text: str
    line: int  # 1-based message line where it starts
    offset: int = 0  # body records: offset in the current body segment (body_checks_size_limit)


def records(raw: bytes, line_length_limit: int = 2048) -> Iterator[Record]:
    """The records smtpd(8) makes of ``raw`` (dot-unstuffed DATA): each line up to LF, with its
    trailing CRs removed (smtp_get with smtpd_forbid_bare_newline = no, the 3.7 default), cut
    every ``line_length_limit`` octets (smtp_get's bound: a longer line continues in further
    records; a CR that ends a full chunk with LF next ends the line there)."""
    bound = max(line_length_limit, 1)
    pos, size, number = 0, len(raw), 1
    while pos < size:
        chunk = raw[pos : pos + bound]
        newline = chunk.find(b"\n")
        if newline >= 0:
            yield Record(chunk[:newline].rstrip(b"\r"), False, number)
            pos += newline + 1
            number += 1
        elif (
            len(chunk) == bound
            and chunk.endswith(b"\r")
            and raw[pos + bound : pos + bound + 1] == b"\n"
        ):
            yield Record(chunk.rstrip(b"\r"), False, number)
            pos += bound + 1
            number += 1
        elif len(chunk) == bound and pos + bound < size:
            yield Record(chunk, True, number)
            pos += bound
        else:  # the last line of a file without a final line break
            yield Record(chunk.rstrip(b"\r"), False, number)
            pos += len(chunk)


def _from_line(data: bytes) -> bool:
    """A UNIX mailbox ``From `` line (smtpd.c: optionally ``>``-quoted), which smtpd turns
    into an ``X-Mailbox-Line:`` header when it starts the message."""
    return data.lstrip(b">").startswith(b"From ")


def smtpd_size(raw: bytes, line_length_limit: int = 2048) -> int:
    """The size smtpd(8) compares with ``message_size_limit``: each record's length plus 2
    (smtpd.c ``act_size += len + 2``), leading ``From `` lines not counted (3.7 writes them
    as X-Mailbox-Line headers before it counts). Over the limit, smtpd answers the end of
    DATA with ``552 5.3.4 Error: message file too big`` (cleanup_strerror.c)."""
    total, first = 0, True
    for record in records(raw, line_length_limit):
        if first and _from_line(record.data):
            continue
        first = False
        total += len(record.data) + 2
    return total


def _text(data: bytes) -> str:
    # cleanup_message.c (cleanup_replace_stray_cr_lf = yes): a stray CR becomes a space. The
    # lookup is a C string, so it ends at the first NUL. UTF-8 with surrogate escapes keeps
    # every octet, so a pattern matches the octets it would match in Postfix.
    cut = data.split(b"\x00", 1)[0].replace(b"\r", b" ")
    return cut.decode("utf-8", "surrogateescape")


def _header_name_length(data: bytes) -> int:
    """is_header.c: the length of the name of a header line (printable ASCII other than ":",
    optionally followed by spaces or tabs, then ":"), or 0 when it is not a header line."""
    length, spaced = 0, False
    for octet in data:
        if octet == 0x3A:  # ":"
            return length if length else 0
        if octet in (0x20, 0x09):
            if not length:
                return 0
            spaced = True
            continue
        if octet < 0x21 or octet > 0x7E or spaced:
            return 0
        length += 1
    return 0


_TSPECIALS = b'()<>@,;:\\"/[]?='


def _tokens(value: bytes) -> list[bytes]:
    """RFC 2045 tokens of a Content-Type value as header_token.c reads them: tspecials are
    tokens of their own, quoted strings one token without the quotes, comments skipped."""
    out: list[bytes] = []
    i, size = 0, len(value)
    while i < size:
        octet = value[i : i + 1]
        if octet in (b" ", b"\t", b"\n", b"\r"):
            i += 1
        elif octet == b"(":
            depth = 0
            while i < size:
                if value[i : i + 1] == b"\\":
                    i += 2
                    continue
                if value[i : i + 1] == b"(":
                    depth += 1
                elif value[i : i + 1] == b")":
                    depth -= 1
                    if depth == 0:
                        i += 1
                        break
                i += 1
        elif octet == b'"':
            i += 1
            quoted = bytearray()
            while i < size and value[i : i + 1] != b'"':
                if value[i : i + 1] == b"\\" and i + 1 < size:
                    i += 1
                if value[i : i + 1] != b"\n":
                    quoted += value[i : i + 1]
                i += 1
            i += 1
            out.append(b'"' + bytes(quoted))
        elif octet in _TSPECIALS:
            out.append(octet)
            i += 1
        else:
            start = i
            while i < size and value[i : i + 1] not in _TSPECIALS and value[i] > 0x20:
                i += 1
            if i == start:  # a control octet: skip it
                i += 1
            else:
                out.append(value[start:i])
    return out


def _plain(token: bytes) -> bytes:
    return token[1:] if token.startswith(b'"') else token


class _Kind(enum.Enum):
    TEXT = "text"
    NESTED = "message/rfc822"  # message/rfc822 or message/global: headers follow
    MULTIPART = "multipart"
    OTHER = "other"


class _State(enum.Enum):
    PRIMARY = "primary"
    MULTIPART = "multipart"  # the header block after a boundary
    NESTED = "nested"  # the header block of an attached message
    BODY = "body"


@dataclass(slots=True)
class _Boundary:
    value: bytes
    digest: bool  # multipart/digest: a part's default type is message/rfc822 (RFC 2046 §5.1.5)


class _Cleanup:
    """mime_state.c's state machine as cleanup drives it, one record at a time."""

    def __init__(
        self, header_size_limit: int, boundary_length_limit: int, mime: bool, body_limit: int
    ) -> None:
        self.header_limit = header_size_limit
        self.boundary_limit = boundary_length_limit
        self.mime = mime
        self.body_limit = body_limit
        self.state = _State.PRIMARY
        self.kind = _Kind.TEXT
        self.stack: list[_Boundary] = []  # innermost last
        self.header = bytearray()
        self.header_line = 0
        self.prev_cont = False
        self.offset = 0

    def _body(self, data: bytes, line: int) -> Iterator[ContentLine]:
        offset = self.offset
        self.offset += len(data) + 1
        # cleanup_message.c: body_checks read a record only while its offset in the body
        # segment is under body_checks_size_limit (0: no limit).
        if not self.body_limit or offset < self.body_limit:
            text = _text(data)
            if text:  # maps.c maps_find: an empty string is never looked up
                yield ContentLine(CheckClass.BODY, text, line, offset)

    def _enter(self, state: _State, kind: _Kind) -> None:
        self.state, self.kind = state, kind
        if state is _State.BODY:
            self.offset = 0

    def _flush(self) -> Iterator[ContentLine]:
        data = bytes(self.header)
        self.header.clear()
        name = data.split(b":", 1)[0].decode("ascii", "replace").lower()
        if self.mime and name == "content-type":
            self._content_type(data[len(name) + 1 :])
        if name in MIME_FIELDS:
            check = CheckClass.MIME_HEADER
        elif self.state is _State.PRIMARY:
            check = CheckClass.HEADER
        elif self.state is _State.MULTIPART:
            check = CheckClass.MIME_HEADER
        else:
            check = CheckClass.NESTED_HEADER
        text = _text(data)
        if text:
            yield ContentLine(check, text, self.header_line)

    def _content_type(self, value: bytes) -> None:
        tokens = _tokens(value)
        if not tokens:
            return
        main = tokens[0].lower()
        sub = tokens[2].lower() if len(tokens) >= 3 and tokens[1] == b"/" else b""
        if main == b"text":
            self.kind = _Kind.TEXT
        elif main == b"message":
            self.kind = _Kind.NESTED if sub in (b"rfc822", b"global") else _Kind.OTHER
        elif main == b"multipart":
            self.kind = _Kind.MULTIPART
            # Every boundary= parameter is pushed, as mime_state.c does (several are illegal
            # but would otherwise hide content); cut at mime_boundary_length_limit.
            for i, token in enumerate(tokens):
                if (
                    token.lower() == b"boundary"
                    and i > 0
                    and tokens[i - 1] == b";"
                    and i + 2 < len(tokens)
                    and tokens[i + 1] == b"="
                    and tokens[i + 2] not in (b";", b"=")
                ):
                    boundary = _plain(tokens[i + 2])[: self.boundary_limit]
                    self.stack.append(_Boundary(boundary, sub == b"digest"))
        else:
            self.kind = _Kind.OTHER

    def feed(self, record: Record) -> Iterator[ContentLine]:
        data = record.data
        if self.state is not _State.BODY:
            if self.header:
                if self.prev_cont:
                    if len(self.header) < self.header_limit:
                        self.header += data
                    self.prev_cont = record.cont
                    return
                if data[:1] in (b" ", b"\t"):
                    if len(self.header) < self.header_limit:
                        self.header += b"\n" + data
                    self.prev_cont = record.cont
                    return
                yield from self._flush()
                self.prev_cont = False
            length = _header_name_length(data)
            if length:
                rest = data[length:].lstrip(b" \t")
                self.header[:] = data[:length] + rest
                self.header_line = record.line
                self.prev_cont = record.cont
                return
            # The header block ends: at an empty line, or (invalid) at any other line.
            if not data:
                self.offset = 0
                if self.kind is _Kind.NESTED:
                    self._enter(_State.NESTED, _Kind.TEXT)
                elif self.kind is _Kind.MULTIPART:
                    self._enter(_State.BODY, _Kind.OTHER)
                else:
                    self._enter(_State.BODY, self.kind)
            else:
                if self.state is _State.PRIMARY:
                    yield from self._body(b"", record.line)
                self._enter(_State.BODY, self.kind)
        yield from self._boundary_then_body(record)
        self.prev_cont = record.cont

    def _boundary_then_body(self, record: Record) -> Iterator[ContentLine]:
        data = record.data
        if self.stack and not self.prev_cont and len(data) > 2 and data.startswith(b"--"):
            for depth in range(len(self.stack) - 1, -1, -1):
                boundary = self.stack[depth]
                end = 2 + len(boundary.value)
                if len(data) >= end and data[2:end] == boundary.value:
                    del self.stack[depth + 1 :]
                    if data[end : end + 2] == b"--":
                        self.stack.pop()
                        self._enter(_State.BODY, _Kind.OTHER)
                    else:
                        self.state = _State.MULTIPART
                        self.kind = _Kind.NESTED if boundary.digest else _Kind.TEXT
                    break
        yield from self._body(data, record.line)

    def finish(self) -> Iterator[ContentLine]:
        if self.state is not _State.BODY and self.header:
            yield from self._flush()


def content_lines(
    raw: bytes,
    *,
    line_length_limit: int = 2048,
    header_size_limit: int = 102400,
    body_checks_size_limit: int = 51200,
    mime_boundary_length_limit: int = 2048,
    disable_mime_input_processing: bool = False,
    prepend: tuple[bytes, ...] = (),
) -> Iterator[ContentLine]:
    """Every lookup cleanup(8) makes for ``raw``, in order (a generator: a caller that stops
    at a REJECT reads no further). Defaults are Postfix 3.7's (``postconf -d``).

    smtpd.c: a ``From `` line starting the message becomes an ``X-Mailbox-Line:`` header; a
    first line starting with white space gets an empty line before it (so the message has no
    header). mime_state.c: a folded header is one lookup, its lines joined by "\\n", kept
    while under ``header_size_limit``; a non-header line ends a header block (the primary
    block's end gives body_checks an empty line first); the empty line ending a header block,
    MIME boundary lines and part bodies go to body_checks; a message/rfc822 (or
    message/global) part's headers are nested headers; part headers are MIME headers, as are
    the MIME fields (``MIME_FIELDS``) everywhere. ``disable_mime_input_processing`` leaves
    Content-Type unparsed, so everything after the primary header block is body. Empty
    lines are never looked up (maps.c). ``prepend`` are physical header lines smtpd writes
    before the message (its own ``Received:`` header, see ``received_header``), line 0."""
    machine = _Cleanup(
        header_size_limit,
        mime_boundary_length_limit,
        not disable_mime_input_processing,
        body_checks_size_limit,
    )
    for data in prepend:
        yield from machine.feed(Record(data, False, 0))
    first = True
    for record in records(raw, line_length_limit):
        if first:
            if _from_line(record.data):
                yield from machine.feed(
                    Record(b"X-Mailbox-Line: " + record.data, record.cont, record.line)
                )
                continue
            first = False
            if record.data[:1] in (b" ", b"\t"):
                yield from machine.feed(Record(b"", False, record.line))
        yield from machine.feed(record)
    yield from machine.finish()


def received_header(
    *,
    helo: str | None,
    client_name: str | None,
    client_ip: str,
    myhostname: str,
    recipients: tuple[str, ...],
    tls: bool = False,
    authenticated: bool = False,
    queue_id: str = "0000000000",
    date: str = "Thu,  1 Jan 1970 00:00:00 +0000 (UTC)",
) -> tuple[bytes, ...]:
    """The physical lines of the ``Received:`` header Postfix 3.7's smtpd writes before the
    message (smtpd.c, smtpd_hide_client_session = no, no TLS details), which cleanup's
    header_checks read first: ``from HELO (NAME [ADDR])``, ``by myhostname (Postfix) with
    ESMTP[S][A] id QUEUEID``, then ``for <rcpt>; DATE`` for one recipient or ``DATE`` alone.
    The queue id and the arrival date are not known to a filter: the defaults are
    placeholders, so a pattern on them is judged against these values, not Postfix's."""
    name = client_name or "unknown"
    address = f"IPv6:{client_ip}" if ":" in client_ip else client_ip
    protocol = "ESMTP" + ("S" if tls else "") + ("A" if authenticated else "")
    lines = [
        f"Received: from {helo or name} ({name} [{address}])",
    ]
    by = f"\tby {myhostname} (Postfix) with {protocol} id {queue_id}"
    if len(recipients) == 1:
        lines += [by, f"\tfor <{recipients[0]}>; {date}"]
    else:
        lines += [by + ";", f"\t{date}"]
    return tuple(line.encode("utf-8", "surrogateescape") for line in lines)
