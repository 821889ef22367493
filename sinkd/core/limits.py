"""Scanning limits: how much of a message a profile's rules read, and the header cut.

Owns ``ScanLimits`` (the values a profile's ``scanning:`` setting compiles to, each with the
source a finding quotes) and the pure, byte-level cut of a header block to a header size limit
(``header_extent``, ``cut_header``), done on the raw octets before anything parses them so
that a huge header block costs one pass, not a parse. It parses no MIME, decodes nothing,
judges nothing and imports nothing of sinkd: the parsed message, the schema and the filters
build on it.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "DEFAULT_SCAN_LIMITS",
    "HeaderCut",
    "HeaderScope",
    "ScanLimits",
    "cut_header",
    "header_extent",
]

# What a header size limit measures. "field": one logical header field, its name, colon,
# value and folded continuation lines (Postfix header_size_limit, postconf(5); src/global/
# mime_state.c appends a header's lines to one buffer while it is under the limit and discards
# the rest). "value": the value after the colon (SpamAssassin's MAX_HEADER_VALUE_LENGTH 8192,
# lib/Mail/SpamAssassin/Constants.pm, applied in Message.pm new()). "block": the whole header
# block (Exchange's receive connector MaxHeaderSize; Gmail's 500 KB for all headers).
HeaderScope = Literal["field", "value", "block"]

SPAMASSASSIN_BODY_SOURCE = (
    "SpamAssassin lib/Mail/SpamAssassin/Conf.pm body_part_scan_size (default 50000); "
    "Message.pm get_body_text_array_common"
)
SPAMASSASSIN_RAWBODY_SOURCE = (
    "SpamAssassin lib/Mail/SpamAssassin/Conf.pm rawbody_part_scan_size (default 500000)"
)


@dataclass(frozen=True, slots=True)
class ScanLimits:
    """How much of each part a profile's rules read; 0 means no cut (as SpamAssassin's 0)."""

    body_part_scan_size: int = 50_000
    body_source: str = SPAMASSASSIN_BODY_SOURCE
    rawbody_part_scan_size: int = 500_000
    rawbody_source: str = SPAMASSASSIN_RAWBODY_SOURCE
    # A header size limit the profile's header rules read within (truncate); None: no limit.
    header_size_limit: int | None = None
    header_scope: HeaderScope = "field"
    header_source: str = ""

    @property
    def body_key(self) -> tuple[int, int]:
        """What the body text depends on (the sources only describe it)."""
        return (self.body_part_scan_size, self.rawbody_part_scan_size)

    @property
    def header_key(self) -> tuple[int | None, str]:
        return (self.header_size_limit, self.header_scope)


DEFAULT_SCAN_LIMITS = ScanLimits()


@dataclass(frozen=True, slots=True)
class HeaderCut:
    """One header field (or, for the block scope, the block) that was only partly kept."""

    name: str | None  # the field name; None when the block was cut
    size: int  # octets of the field (folded line breaks included, not its last) or of the block
    kept: int  # octets kept of it


# The end of the header block: a line break followed by an empty line (RFC 5322 §2.1).
_BLANK_LINE = re.compile(rb"\n\r?\n")
# The start of each logical field after the first: a line break followed by a character that
# is not folding white space (RFC 5322 §2.2.3).
_FIELD_START = re.compile(rb"\n(?=[^ \t])")


def header_extent(raw: bytes) -> int:
    """Octets of the header block at the start of ``raw``, its last line break included; the
    empty line that ends it is not counted. A message of header lines only is all header."""
    if raw.startswith((b"\r\n", b"\n")):
        return 0
    match = _BLANK_LINE.search(raw)
    return match.start() + 1 if match is not None else len(raw)


def cut_header(raw: bytes, limit: int, scope: HeaderScope) -> tuple[bytes, tuple[HeaderCut, ...]]:
    """``raw`` with its header block cut to ``limit`` as ``scope`` says, and what was cut.

    The excess is discarded, as Postfix's cleanup does with header_size_limit: a field keeps
    its first ``limit`` octets (sinkd cuts at the limit itself, where Postfix keeps the
    2048-octet record that crosses it), and the block scope keeps the whole lines that fit.
    The body is untouched. Nothing is copied when nothing is cut.
    """
    extent = header_extent(raw)
    if extent <= limit:
        return raw, ()  # no field (and no value) can be longer than the block
    header, rest = raw[:extent], raw[extent:]
    if scope == "block":
        end = header.rfind(b"\n", 0, limit + 1) + 1
        return header[:end] + rest, (HeaderCut(None, extent, end),)
    starts = [0, *(m.end() for m in _FIELD_START.finditer(header))]
    starts.append(extent)
    if max(b - a for a, b in itertools.pairwise(starts)) <= limit:
        return raw, ()
    eol = b"\r\n" if b"\r\n" in header[: starts[1]] else b"\n"
    pieces: list[bytes] = []
    cuts: list[HeaderCut] = []
    for start, end in itertools.pairwise(starts):
        field = header[start:end]
        # A field's size leaves out the line break that ends it (Postfix's buffer holds none),
        # so that a field cut once is within the limit when measured again.
        size = len(field.rstrip(b"\r\n"))
        allowed = limit
        if scope == "value":
            colon = field.find(b":")
            allowed += colon + 1 if colon >= 0 else 0
        if size <= allowed:
            pieces.append(field)
            continue
        kept = field[:allowed].rstrip(b"\r\n")
        pieces.append(kept + eol)
        name = field.partition(b":")[0].strip().decode("ascii", "replace")
        cuts.append(HeaderCut(name, size, len(kept)))
    if not cuts:
        return raw, ()
    return b"".join(pieces) + rest, tuple(cuts)
