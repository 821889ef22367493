"""Map a raw message's MIME structure to byte offsets, and splice parts out or in by those offsets.

``build_tree`` never raises (what it cannot read becomes a ``problems`` sentence); ``rebuild``
replaces only the named parts and leaves every other byte of the message as it was.
"""

from __future__ import annotations

import base64
import binascii
import email.utils
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from email.message import Message
from email.parser import BytesHeaderParser
from email.policy import compat32
from types import MappingProxyType
from typing import Any

from sinkd.core.decoding import (
    MAX_LINE_OCTETS,
    decode_encoded_words,
    decode_text,
    describe_error,
    lenient_b64decode,
    utf8_or_latin1,
)

__all__ = ["MimeNode", "MimeTree", "build_tree", "rebuild"]

_CRLF = b"\r\n"
_LF = b"\n"
# A line that continues the header block, as the email package's feedparser reads it: a field
# name and colon, a folded continuation, or an mbox "From " line. Any other line ends the header
# block without a blank line (the email package's MissingHeaderBodySeparatorDefect).
_HEADER_LINE = re.compile(rb"From |[\x21-\x39\x3b-\x7e]*:|[\t ]")
# A line and its line break. Like the email package, a bare CR ends a line too.
_LINE = re.compile(rb"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+")
_BLANK = frozenset({b"\r\n", b"\n", b"\r"})
_FOLD = re.compile(r"\r\n|[\r\n]")
# RFC 2046 §5.2.1: message/rfc822 may only be 7bit, 8bit or binary; RFC 6532 §3.5 lets
# message/global be encoded, in which case its structure cannot be mapped to raw offsets.
_ENCAPSULATING = frozenset({"message/rfc822", "message/global"})
_ENCODED = frozenset({"base64", "quoted-printable"})
_IDENTITY = frozenset({"7bit", "8bit", "binary"})
_NOTICE_HEADERS = (b"Content-Type: text/plain; charset=utf-8", b"Content-Disposition: inline")
_QP_LINE = 76  # RFC 2045 §6.7 rule 5: encoded lines at most 76 characters
_B64_LINE = 76  # RFC 2045 §6.8: encoded lines at most 76 characters
_MAX_PROBLEMS = 20  # listed one by one; a hostile message could otherwise have one per part
_NO_REMOVALS: Mapping[str, str] = MappingProxyType({})
_NO_REPLACEMENTS: Mapping[str, bytes] = MappingProxyType({})
_NO_HEADERS: Mapping[int, tuple[int, Message]] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class MimeNode:
    """One MIME part located in the raw message; every offset indexes that message's bytes.

    Paths follow IMAP part numbers (RFC 3501 §6.4.5): "" is the message itself, the parts of a
    multipart are "1", "2", ..., nested ones "2.1". A message/rfc822 (or message/global) part
    "N" holds the encapsulated message: if that message is a multipart, its parts are the
    children "N.1", "N.2", ... (the encapsulated multipart has no node of its own, as in IMAP);
    otherwise the encapsulated message, headers and body, is the single child "N.1".
    """

    path: str
    start: int  # first header octet
    body_start: int  # first body octet, after the blank line
    end: int  # just past the body; for a multipart child, before the line break that precedes
    # the next boundary line, which belongs to that boundary (RFC 2046 §5.1.1)
    content_type: str  # lower-case "type/subtype"
    params: Mapping[str, str] = field(hash=False)  # Content-Type parameters, lower-case names
    disposition: str | None  # "inline", "attachment" or None (no Content-Disposition)
    filename: str | None
    transfer_encoding: str  # lower-case, "7bit" when absent (RFC 2045 §6.1)
    children: tuple[MimeNode, ...] = ()

    @property
    def is_multipart(self) -> bool:
        """A multipart/* part whose body was split into parts (otherwise it is a leaf)."""
        return self.content_type.startswith("multipart/") and bool(self.children)

    def headers(self, raw: bytes) -> bytes:
        return raw[self.start : self.body_start]

    def body(self, raw: bytes) -> bytes:
        """The body as it is in the message, still transfer-encoded."""
        return raw[self.body_start : self.end]

    def payload(self, raw: bytes) -> bytes:
        """The body with its Content-Transfer-Encoding undone; never raises."""
        body = self.body(raw)
        if self.transfer_encoding == "base64":
            return _b64decode(body)
        if self.transfer_encoding == "quoted-printable":
            try:
                return binascii.a2b_qp(body)
            except Exception:  # a2b_qp is not known to fail
                return body
        return body  # RFC 2045 §6.2: 7bit, 8bit and binary are the identity encoding

    def text(self, raw: bytes) -> str:
        """The payload read in the part's charset, as the parsed message reads bodies.

        Never raises."""
        return decode_text(self.payload(raw), self.params.get("charset"))[0]

    def walk(self) -> Iterator[MimeNode]:
        """This node and every node below it, depth first, in message order."""
        stack: list[MimeNode] = [self]
        while stack:
            node = stack.pop()
            yield node
            stack.extend(reversed(node.children))


@dataclass(frozen=True, slots=True)
class MimeTree:
    """The MIME structure of one message and what got in the way of reading it."""

    root: MimeNode
    problems: tuple[str, ...]
    # Of the problems, the defects of form every part was read in spite of (a boundary never
    # closed, a multipart with a transfer encoding): the rest left some content unread.
    read_anyway: frozenset[str] = frozenset()

    @property
    def unread(self) -> tuple[str, ...]:
        """The problems that left content unread (not split, not inspected, not listed)."""
        return tuple(p for p in self.problems if p not in self.read_anyway)

    def find(self, path: str) -> MimeNode:
        """The node with this path; KeyError if there is none."""
        node = self.root
        if path:
            for number in path.split("."):
                if not number.isdigit() or not 1 <= int(number) <= len(node.children):
                    raise KeyError(path)
                node = node.children[int(number) - 1]
        if node.path != path:  # "01" and the like
            raise KeyError(path)
        return node

    def leaves(self) -> list[MimeNode]:
        return [node for node in self.root.walk() if not node.children]


# --- building the tree --------------------------------------------------------------------------


@dataclass(slots=True)
class _Part:
    """A node under construction."""

    path: str
    start: int
    body_start: int
    end: int
    content_type: str = "text/plain"
    params: dict[str, str] = field(default_factory=dict)
    disposition: str | None = None
    filename: str | None = None
    transfer_encoding: str = "7bit"
    boundary: bytes | None = None
    expandable: bool = True
    children: list[_Part] = field(default_factory=list)
    node: MimeNode | None = None

    def freeze(self) -> MimeNode:
        children = tuple(c.node for c in self.children if c.node is not None)
        self.node = MimeNode(
            path=self.path,
            start=self.start,
            body_start=self.body_start,
            end=self.end,
            content_type=self.content_type,
            params=MappingProxyType(self.params),
            disposition=self.disposition,
            filename=self.filename,
            transfer_encoding=self.transfer_encoding,
            children=children,
        )
        return self.node


@dataclass(slots=True)
class _Split:
    """Where a multipart body's parts are: (start, end) of each, preamble and epilogue aside."""

    parts: list[tuple[int, int]]
    found: bool  # a boundary line occurs at all
    closed: bool  # the close delimiter occurs
    truncated: bool  # more parts than the limit


def build_tree(
    raw: bytes,
    *,
    max_depth: int = 20,
    max_parts: int = 1000,
    headers: Mapping[int, tuple[int, Message]] = _NO_HEADERS,
) -> MimeTree:
    """Locate every MIME part of ``raw`` (iteratively: deep nesting cannot exhaust the stack).

    Parts nested deeper than ``max_depth`` levels and parts beyond the first ``max_parts`` are
    left unsplit, each limit adding a problem; nothing raises. ``headers`` maps the offset of a
    part to the end of its header block and that block already parsed (compat32), so that a
    header block the message's parse read is not parsed twice (sinkd.core.message's quick
    parse); it is used only where the block ends where this reads it to end, and only read.
    """
    problems: list[str] = []
    read_anyway: list[str] = []  # the problems after which every part was still read
    limits: list[str] = []  # listed first, and never left out
    root = _read_part(raw, 0, len(raw), "", "text/plain", problems, headers)
    count = 1
    order: list[_Part] = []  # depth-first order: every part comes before its children
    stack: list[tuple[_Part, int]] = [(root, 0)]
    while stack:
        part, depth = stack.pop()
        order.append(part)
        if not part.expandable or not (
            part.content_type.startswith("multipart/") or part.content_type in _ENCAPSULATING
        ):
            continue
        if depth >= max_depth:
            limits.append(
                f"multipart nested deeper than {max_depth} levels; deeper parts not inspected"
            )
            continue
        children, truncated = _expand(
            raw, part, max(0, max_parts - count), problems, read_anyway, headers
        )
        if truncated:
            limits.append(f"too many parts (over {max_parts}); the rest not inspected")
        count += len(children)
        part.children = children
        stack.extend((child, depth + 1) for child in reversed(children))
    for part in reversed(order):
        part.freeze()
    assert root.node is not None
    listed = list(dict.fromkeys(problems))
    if len(listed) > _MAX_PROBLEMS:
        more = len(listed) - _MAX_PROBLEMS
        listed[_MAX_PROBLEMS:] = [f"{more} more problems of the MIME structure not listed"]
    return MimeTree(
        root=root.node,
        problems=tuple(dict.fromkeys(limits + listed)),
        read_anyway=frozenset(read_anyway),
    )


def _expand(
    raw: bytes,
    part: _Part,
    limit: int,
    problems: list[str],
    read_anyway: list[str],
    headers: Mapping[int, tuple[int, Message]],
) -> tuple[list[_Part], bool]:
    """The children of a multipart or encapsulated message, at most ``limit`` of them, and
    whether there were more."""
    where = _where(part.path)
    container = part
    if part.content_type in _ENCAPSULATING:
        if part.transfer_encoding in _ENCODED or "uu" in part.transfer_encoding:
            problems.append(
                f"{where} is {part.content_type} with a {part.transfer_encoding} transfer "
                "encoding (RFC 2046 §5.2.1 allows only 7bit, 8bit or binary); "
                "its contents not inspected"
            )
            return [], False
        if limit < 1:
            return [], True
        # RFC 2046 §5.2.1: the body is a whole message, header first.
        path = _child_path(part.path, 1)
        inner = _read_part(raw, part.body_start, part.end, path, "text/plain", problems, headers)
        if not inner.content_type.startswith("multipart/"):
            return [inner], False
        inner.expandable = False  # split here, its parts becoming this part's children, or never
        where = f"the message in {where}"
        container = inner
    split = _split_multipart(raw, container, where, limit, problems, read_anyway)
    if split is None:
        return ([container], False) if container is not part else ([], False)
    # RFC 2046 §5.1.5: in a digest the default content type of a part is message/rfc822.
    default = "message/rfc822" if container.content_type == "multipart/digest" else "text/plain"
    children = [
        _read_part(raw, start, end, _child_path(part.path, number), default, problems, headers)
        for number, (start, end) in enumerate(split.parts, 1)
    ]
    return children, split.truncated


def _split_multipart(
    raw: bytes, part: _Part, where: str, limit: int, problems: list[str], read_anyway: list[str]
) -> _Split | None:
    """Split a multipart's body at its boundary; None (and a problem) if it cannot be.

    A wrong transfer encoding and a missing close delimiter are defects the parts are read in
    spite of (``read_anyway``), as mail clients read them: they leave nothing uninspected.
    """
    if part.transfer_encoding not in _IDENTITY:
        defect = (
            f"{where} is multipart with a {part.transfer_encoding} transfer encoding "
            "(RFC 2045 §6.4 allows only 7bit, 8bit or binary)"
        )
        problems.append(defect)
        read_anyway.append(defect)
    if not part.boundary:
        problems.append(f"{where} is multipart without a boundary parameter; body not split")
        return None
    split = _find_parts(raw, part.body_start, part.end, part.boundary, limit)
    if not split.found:
        problems.append(f"boundary of {where} never found; body not split")
        return None
    if not split.parts and not split.truncated:
        problems.append(f"{where} is multipart without any body part; body not split")
        return None
    if not split.closed and not split.truncated:
        # RFC 2046 §5.1.1 ends the last part with the close delimiter; without it the last
        # part runs to the end of its container, every part read all the same.
        problems.append(f"boundary of {where} never closed")
        read_anyway.append(f"boundary of {where} never closed")
    return split


def _find_parts(raw: bytes, start: int, end: int, boundary: bytes, limit: int) -> _Split:
    """The body parts between the boundary lines in ``raw[start:end]`` (RFC 2046 §5.1.1).

    A boundary line is "--" boundary at the start of a line, "--" more for the close delimiter,
    then optional transport padding (spaces, tabs) and the line break; the line break before it
    belongs to it. Anything else after the boundary (as in "--abcd" when looking for "abc") makes
    it an ordinary line. Boundary lines that directly follow one another delimit no part, as
    the email package reads them. Only bytes.find is used, so the scan is linear.
    """
    marker = b"--" + boundary
    parts: list[tuple[int, int]] = []
    part_start = -1  # -1 while in the preamble
    found = closed = truncated = False
    for at in _line_starts(raw, marker, start, end):
        after = at + len(marker)
        close = raw.startswith(b"--", after, end)
        if close:
            after += 2
        while after < end and raw[after] in b" \t":  # transport padding
            after += 1
        if after < end:
            if raw[after] == 0x0A:
                after += 1
            elif raw[after] == 0x0D:  # CRLF, or a bare CR as the email package reads it
                after += 2 if raw.startswith(_LF, after + 1, end) else 1
            else:
                continue
        found = True
        if part_start >= 0 and at > part_start:
            if len(parts) == limit:
                truncated = True
                break
            # RFC 2046 §5.1.1: the CRLF preceding the boundary line is part of the boundary.
            crlf = at - 2 >= part_start and raw[at - 2 : at] == _CRLF
            parts.append((part_start, at - 2 if crlf else at - 1))
        if close:
            closed = True
            break
        part_start = after
    if not closed and not truncated and part_start >= 0:
        # No close delimiter: the last part runs to the end of the enclosing body.
        if len(parts) == limit:
            truncated = True
        else:
            parts.append((part_start, end))
    return _Split(parts=parts, found=found, closed=closed, truncated=truncated)


def _line_starts(raw: bytes, marker: bytes, start: int, end: int) -> Iterator[int]:
    """Each offset in ``raw[start:end]`` where a line starts with ``marker``, in order.

    A line starts after LF or, as the email package reads lines, after a bare CR.
    """
    if raw.startswith(marker, start, end):
        yield start
    after_lf = raw.find(_LF + marker, start, end)
    after_cr = raw.find(b"\r" + marker, start, end)
    while after_lf >= 0 or after_cr >= 0:
        if after_cr < 0 or 0 <= after_lf < after_cr:
            yield after_lf + 1
            after_lf = raw.find(_LF + marker, after_lf + 1, end)
        else:
            yield after_cr + 1
            after_cr = raw.find(b"\r" + marker, after_cr + 1, end)


def _read_part(
    raw: bytes,
    start: int,
    end: int,
    path: str,
    default_type: str,
    problems: list[str],
    headers: Mapping[int, tuple[int, Message]] = _NO_HEADERS,
) -> _Part:
    """The part in ``raw[start:end]`` with its header read; defaults where it cannot be."""
    parsed = headers.get(start)
    if parsed is not None and parsed[0] <= end and default_type == "text/plain":
        # A block of well-formed fields ended by a blank line inside this part: _header_end
        # would end it there too. Already parsed: read, never changed here.
        body_start, msg = parsed
    else:
        body_start = _header_end(raw, start, end)
        msg = None
    part = _Part(path=path, start=start, body_start=body_start, end=end)
    part.content_type = default_type
    where = _where(path)
    if msg is None:
        try:
            msg = BytesHeaderParser(policy=compat32).parsebytes(raw[start:body_start])
        except Exception as exc:
            problems.append(f"header of {where} could not be parsed ({describe_error(exc)})")
            return part
    # RFC 2045 §5.2: no Content-Type means text/plain (message/rfc822 in a digest); the email
    # package also reads a malformed one as text/plain.
    if default_type != "text/plain":
        msg.set_default_type(default_type)
    try:
        part.content_type = _clean(msg.get_content_type()).strip().lower()
    except Exception as exc:
        problems.append(f"Content-Type of {where} could not be read ({describe_error(exc)})")
    # The Content-Type parameters, read once for the parameters, the boundary and the name:
    # what get_param reads is the first of get_params with that name.
    items: list[tuple[str, Any]] | None = None
    try:
        items = msg.get_params(header="content-type")
        part.params = _params(items)
        boundary = _param(items, "boundary")
        if boundary is not None:
            # As Message.get_boundary: RFC 2231 decoded, trailing spaces dropped.
            boundary = email.utils.collapse_rfc2231_value(boundary).rstrip()
        if boundary:
            part.boundary = boundary.encode("utf-8", "surrogateescape")
    except Exception as exc:
        items = None
        problems.append(
            f"Content-Type parameters of {where} could not be read ({describe_error(exc)})"
        )
    try:
        disposition = msg.get_content_disposition()
        if disposition is not None:
            # RFC 2183 §2.8: an unrecognized disposition type is treated as "attachment".
            part.disposition = "inline" if disposition.strip() == "inline" else "attachment"
    except Exception as exc:
        problems.append(f"Content-Disposition of {where} could not be read ({describe_error(exc)})")
    try:
        filename = _filename(msg, items)
        if filename is not None:
            filename = decode_encoded_words(
                _clean(filename), f"filename of {where}", problems.append
            ).strip()
            part.filename = filename or None
    except Exception as exc:
        problems.append(f"filename of {where} could not be read ({describe_error(exc)})")
    try:
        cte = _raw_header(msg, "content-transfer-encoding")
        if cte is not None:
            part.transfer_encoding = _clean(cte).strip().lower() or "7bit"
    except Exception as exc:
        problems.append(
            f"Content-Transfer-Encoding of {where} could not be read ({describe_error(exc)})"
        )
    return part


def _header_end(raw: bytes, start: int, end: int) -> int:
    """Where the body of the part in ``raw[start:end]`` starts (RFC 2045 §3, RFC 5322 §2.1)."""
    pos = start
    while pos < end:
        line = _LINE.match(raw, pos, end)
        if line is None:  # pragma: no cover - _LINE matches any non-empty text
            break
        if line.group() in _BLANK:
            return line.end()  # the blank line ends the header and belongs to it
        if not _HEADER_LINE.match(raw, pos, line.end()):
            return pos  # no blank line: the body starts at the first non-header line
        pos = line.end()
    return end


def _params(items: list[tuple[str, Any]] | None) -> dict[str, str]:
    params: dict[str, str] = {}
    # The first item is the type itself; RFC 2231 continuations are already joined.
    for name, value in (items or [])[1:]:
        key = _clean(name).strip().lower()
        if key and key not in params:  # the email package reads the first of duplicates
            params[key] = _clean(email.utils.collapse_rfc2231_value(value))
    return params


def _param(items: list[tuple[str, Any]] | None, name: str) -> Any:
    """What ``Message.get_param(name)`` returns, from ``get_params()``'s ``items``: the value
    of the first parameter so named, None if there is none."""
    return next((value for key, value in items or () if key.lower() == name), None)


def _filename(msg: Message, items: list[tuple[str, Any]] | None) -> str | None:
    """``msg.get_filename()``: the Content-Disposition filename, else the Content-Type name
    (from ``items``, its parameters, when they could be read)."""
    missing = object()
    name: Any = msg.get_param("filename", missing, "content-disposition")
    if name is missing:
        if items is None:
            return msg.get_filename()  # unreadable parameters: fail as get_filename fails
        name = _param(items, "name")
        if name is None:
            return None
    return str(email.utils.collapse_rfc2231_value(name).strip())


def _raw_header(msg: Message, name: str) -> str | None:
    # raw_items() gives the stored string; compat32's get() would wrap a value with 8-bit
    # octets in a Header object.
    return next((str(v) for k, v in msg.raw_items() if k.lower() == name), None)


def _clean(value: str) -> str:
    """A header value unfolded, its raw 8-bit octets read as UTF-8 (else latin-1)."""
    value = _FOLD.sub("", value)  # RFC 5322 §2.2.3: unfolding removes the line breaks
    if value.isascii():
        return value
    try:
        octets = value.encode("ascii", "surrogateescape")  # how BytesParser stores them
    except UnicodeEncodeError:
        return value  # real characters already (e.g. from RFC 2231 decoding)
    return utf8_or_latin1(octets)


def _where(path: str) -> str:
    return f"part {path}" if path else "the message"


def _child_path(path: str, number: int) -> str:
    return f"{path}.{number}" if path else str(number)


def _b64decode(data: bytes) -> bytes:
    """Base64 as the email package decodes it, but decoding what it can where that gives up."""
    try:
        # Non-alphabet octets (line breaks included) are skipped; decoding stops at padding.
        return binascii.a2b_base64(data)
    except binascii.Error:
        pass
    try:
        return binascii.a2b_base64(data + b"==")  # missing padding
    except binascii.Error:
        return lenient_b64decode(data)  # e.g. a length that is 1 more than a multiple of 4


# --- rebuilding ---------------------------------------------------------------------------------


def rebuild(
    raw: bytes,
    tree: MimeTree,
    *,
    remove: Mapping[str, str] = _NO_REMOVALS,
    replace_body: Mapping[str, bytes] = _NO_REPLACEMENTS,
) -> bytes:
    """``raw`` with parts replaced by notices and leaf bodies replaced; every other byte kept.

    ``remove`` maps a path to the notice text put in place of that part: a text/plain part,
    except that a whole message (the root, or the message inside a message/rfc822 part) keeps
    its header fields other than Content-*. ``replace_body`` maps the path of a leaf to its new
    decoded body, re-encoded in the part's transfer encoding (quoted-printable when that
    cannot carry it). Paths inside a removed part are ignored. Raises KeyError for a path not
    in ``tree`` and ValueError for ``replace_body`` on a part with children; ``tree`` must be
    ``build_tree(raw)``.
    """
    eol = _dominant_eol(raw)
    removed = set(remove)
    edits: list[tuple[int, int, bytes]] = []
    for path, notice in remove.items():
        if _inside(path, removed):
            continue
        node = tree.find(path)
        new = _notice(raw, tree, node, notice, eol)
        edits.append((node.start, node.end, _unglued(raw, tree, node, eol) + new))
    for path, data in replace_body.items():
        if path in removed or _inside(path, removed):
            continue
        node = tree.find(path)
        if node.children:
            raise ValueError(f"part {path or '(the message)'} has parts; its body is not a leaf")
        new = _replaced(raw, tree, node, data, eol)
        edits.append((node.start, node.end, _unglued(raw, tree, node, eol) + new))
    edits.sort()
    out = bytearray()
    pos = 0
    for start, end, new in edits:
        out += raw[pos:start]
        out += new
        pos = end
    out += raw[pos:]
    return bytes(out)


def _inside(path: str, removed: set[str]) -> bool:
    """Whether a proper ancestor of ``path`` is removed."""
    if not path:
        return False
    if "" in removed:
        return True
    numbers = path.split(".")
    return any(".".join(numbers[:n]) in removed for n in range(1, len(numbers)))


def _notice(raw: bytes, tree: MimeTree, node: MimeNode, notice: str, eol: bytes) -> bytes:
    """The part that takes the place of ``node``: its headers (for a message) and the notice."""
    text = eol.join(line.encode("utf-8") for line in _FOLD.split(notice))
    content = [*_NOTICE_HEADERS]
    if text.isascii() and _fits_identity(raw, tree, node, text, eol):
        content.append(b"Content-Transfer-Encoding: 8bit")
    else:
        # Quoted-printable keeps 8-bit octets out of a message that may have had none.
        content.append(b"Content-Transfer-Encoding: quoted-printable")
        text = _qp_encode(text, eol)
    header = b""
    if _is_message(tree, node):
        fields, _ = _split_header(node.headers(raw))
        # Content-* fields go, and so do mbox "From " lines after the first line (no fields).
        kept = [
            f
            for i, f in enumerate(fields)
            if not _field_name(f).startswith(b"content-") and (i == 0 or not f.startswith(b"From "))
        ]
        if node.path == "" and not any(_field_name(f) == b"mime-version" for f in kept):
            kept.append(b"MIME-Version: 1.0")  # RFC 2045 §4: required in a MIME message
        header = b"".join(_terminated(f, eol) for f in kept)
    header += b"".join(line + eol for line in content) + eol
    if node.end == len(raw) and not text.endswith(eol):
        text += eol  # the message ends with a line break
    return header + text


def _replaced(raw: bytes, tree: MimeTree, node: MimeNode, data: bytes, eol: bytes) -> bytes:
    """``node`` with ``data`` as its body, encoded as its header says where that is possible."""
    fields, separator = _split_header(node.headers(raw))
    if fields:
        fields[-1] = _terminated(fields[-1], eol)  # cut short by the end of the part
    cte = node.transfer_encoding
    if cte == "base64":
        encoded = base64.b64encode(data)
        body = eol.join(encoded[i : i + _B64_LINE] for i in range(0, len(encoded), _B64_LINE))
        if node.body(raw).endswith(_LF):
            body += eol  # keep the line break the old body ended with
    elif cte == "quoted-printable":
        body = _qp_encode(data, eol)
    elif cte == "binary" or (
        cte in _IDENTITY
        and (cte == "8bit" or data.isascii())
        and _fits_identity(raw, tree, node, data, eol)
    ):
        body = data
    else:
        # 7bit data must be ASCII (RFC 2045 §2.7), see _fits_identity for the rest; unknown
        # encodings cannot be produced either. Switch to quoted-printable and say so.
        body = _qp_encode(data, eol)
        new_field = b"Content-Transfer-Encoding: quoted-printable" + eol
        names = [_field_name(f) for f in fields]
        if b"content-transfer-encoding" in names:
            fields[names.index(b"content-transfer-encoding")] = new_field
        elif fields and fields[-1].startswith(b"From "):
            # The email package reads a last header line "From ..." as the first body line
            # (a mis-placed mbox envelope line); it has to stay last.
            fields.insert(len(fields) - 1, new_field)
        else:
            fields.append(new_field)
    if separator in (b"", b"\r"):  # a bare CR would join a leading LF of the new body
        separator = eol
    return b"".join(fields) + separator + body


def _fits_identity(raw: bytes, tree: MimeTree, node: MimeNode, data: bytes, eol: bytes) -> bool:
    """Whether ``data`` can be the body of ``node`` as is, under "7bit" or "8bit" (if ASCII).

    RFC 2045 §2.7-2.8: lines of at most 998 octets, no NUL, CR and LF only together as the
    line break. Nor may a line look like a boundary of an enclosing multipart (RFC 2046 §5.1.1).
    """
    if b"\0" in data:
        return False
    if eol == _CRLF:
        breaks = data.count(_CRLF)
        if data.count(b"\r") != breaks or data.count(_LF) != breaks:
            return False
    elif b"\r" in data:
        return False
    if any(len(line) > MAX_LINE_OCTETS for line in data.split(eol)):
        return False
    lines = _LF + data
    return not any(_LF + b"--" + b in lines for b in _enclosing_boundaries(raw, tree, node))


def _enclosing_boundaries(raw: bytes, tree: MimeTree, node: MimeNode) -> list[bytes]:
    """The boundaries of the multiparts ``node`` is in, including those without a node."""
    found: list[bytes] = []
    path = node.path
    while path:
        path = path.rpartition(".")[0]
        ancestor = tree.find(path)
        # The parts of a message/rfc822 part are those of the multipart message in its body.
        start = ancestor.body_start if ancestor.content_type in _ENCAPSULATING else ancestor.start
        try:
            header = raw[start : _header_end(raw, start, ancestor.end)]
            boundary = BytesHeaderParser(policy=compat32).parsebytes(header).get_boundary()
            if boundary:
                found.append(boundary.encode("utf-8", "surrogateescape"))
        except Exception:  # unreadable then, unreadable now: build_tree saw no parts there
            continue
    return found


# Octets quoted-printable must encode (RFC 2045 §6.7 rules 1-2): all but printable ASCII other
# than "=", space and tab. Found by the C regex engine, so plain text costs almost nothing.
_QP_UNSAFE = re.compile(rb"[^\x21-\x3c\x3e-\x7e \t]")
_QP_CHUNK = _QP_LINE - 3  # content per encoded line, leaving room for "=2D" and the soft "="


def _qp_escape(match: re.Match[bytes]) -> bytes:
    return b"=%02X" % match[0][0]


def _qp_encode(data: bytes, eol: bytes) -> bytes:
    """Quoted-printable (RFC 2045 §6.7) that decodes back to exactly ``data``.

    Line breaks equal to ``eol`` stay line breaks; any other CR or LF is encoded, so that the
    email package (binascii.a2b_qp) returns the very same octets. No encoded line starts with
    "-", so none can look like a boundary line (RFC 2046 §5.1.1; §6.7 lets any octet be
    encoded), and no line is longer than 76 characters (rule 5).
    """
    out: list[bytes] = []
    for line in data.split(eol):
        encoded = _QP_UNSAFE.sub(_qp_escape, line)
        if encoded[-1:] in (b" ", b"\t"):
            encoded = encoded[:-1] + b"=%02X" % encoded[-1]  # rule 3: no white space at the end
        pos = 0
        while True:
            cut = pos + _QP_CHUNK
            last = cut >= len(encoded)
            if not last:
                # Never split an "=XX" escape between two lines.
                if encoded[cut - 1 : cut] == b"=":
                    cut -= 1
                elif encoded[cut - 2 : cut - 1] == b"=":
                    cut -= 2
            piece = encoded[pos:cut]
            if piece.startswith(b"-"):
                piece = b"=2D" + piece[1:]
            out.append(piece if last else piece + b"=")  # "=" at the end: a soft line break
            if last:
                break
            pos = cut
    return eol.join(out)


def _is_message(tree: MimeTree, node: MimeNode) -> bool:
    """Whether ``node`` is a whole message: the root, or the one inside a message/rfc822."""
    return not node.path or _encapsulator(tree, node) is not None


def _encapsulator(tree: MimeTree, node: MimeNode) -> MimeNode | None:
    """The message/rfc822 part whose body is the message ``node``, if that is what it is."""
    if not node.path:
        return None
    parent = tree.find(node.path.rpartition(".")[0])
    if parent.content_type in _ENCAPSULATING and node.start == parent.body_start:
        return parent
    return None


def _unglued(raw: bytes, tree: MimeTree, node: MimeNode, eol: bytes) -> bytes:
    """The line breaks to put before new bytes for ``node`` so that they start a part.

    A part can start right after a boundary line that lacks its line break (at the end of the
    message), or be an encapsulated message after a part header without its blank line (that
    header ended at the first line that is no header field); new header fields there would
    join the boundary line or the enclosing part's header.
    """
    before = raw[node.start - 1 : node.start]
    prefix = b"" if before in (b"", _LF) else _LF if before == b"\r" else eol
    parent = _encapsulator(tree, node)
    if parent is not None and not _split_header(parent.headers(raw))[1]:
        prefix += eol
    return prefix


def _split_header(block: bytes) -> tuple[list[bytes], bytes]:
    """Header fields (each with its folded lines and line breaks) and the blank line, if any."""
    fields: list[bytes] = []
    for line in _LINE.findall(block):
        if line in _BLANK:
            return fields, line
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] += line  # RFC 5322 §2.2.3: a folded continuation
        else:
            fields.append(line)
    return fields, b""


def _field_name(field_bytes: bytes) -> bytes:
    return field_bytes.partition(b":")[0].strip().lower()


def _terminated(line: bytes, eol: bytes) -> bytes:
    """``line`` ending in a line break that every reader sees as one."""
    if line.endswith(_LF):
        return line
    return line + (_LF if line.endswith(b"\r") else eol)


def _dominant_eol(raw: bytes) -> bytes:
    """CRLF unless most line breaks in ``raw`` are bare LF."""
    crlf = raw.count(_CRLF)
    return _LF if raw.count(_LF) - crlf > crlf else _CRLF
