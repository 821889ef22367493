"""Parse one raw message once, lazily, into the views the filters read.

Owns MIME parsing, header and body decoding and the raw-octet checks. It must never raise on
any input (every failure becomes a ``defects`` entry) and does no I/O. Its HTML bodies are
``HtmlBody`` objects it holds, one per distinct text (``html_body``), so that the filters, the
strip and the rendering for body rules share each parse; the HTML parser loads only when a
message actually has an HTML part.

Each view is computed when first read, so a profile parses only as deep as its filters read.
Well-formed mail is parsed by ``quick_message`` (the email package's own objects, built with C
searches; anything it cannot prove the same goes to the email package's parser), whose header
blocks the MIME tree reuses, so each part's header is parsed once per message; bodies decode
from their octets in ``raw``, and ``defects`` decodes only the bodies whose decode can record
something.
"""

from __future__ import annotations

import binascii
import email.errors
import email.message
import email.policy
import email.utils
import itertools
import re
from dataclasses import dataclass
from email.parser import BytesParser
from functools import cached_property
from typing import Any

from sinkd.core.decoding import (
    MAX_LINE_OCTETS,
    decode_encoded_words,
    decode_text,
    decodes_cleanly,
    describe_error,
    lenient_b64decode,
)
from sinkd.core.html import HtmlBody, render
from sinkd.core.html.render import BODY_PART_SCAN_SIZE, cut
from sinkd.core.limits import DEFAULT_SCAN_LIMITS, HeaderCut, ScanLimits, cut_header
from sinkd.core.mimetree import MimeTree, build_tree

__all__ = [
    "BODY_PART_SCAN_SIZE",
    "BodyPart",
    "ParsedMessage",
    "RawIssues",
    "decode_encoded_words",
    "decode_text",
    "parse",
    "quick_message",
]


# Short sentences for the email package's defect classes (email.errors); unknown classes fall
# back to their de-camel-cased name so a new Python version never breaks ``defects``.
_DEFECT_TEXT: dict[str, str] = {
    "NoBoundaryInMultipartDefect": "multipart without a boundary parameter",
    "StartBoundaryNotFoundDefect": "MIME boundary never found in the body",
    "CloseBoundaryNotFoundDefect": "missing MIME boundary end",
    "FirstHeaderLineIsContinuationDefect": "first header line is a continuation line",
    "MisplacedEnvelopeHeaderDefect": "misplaced envelope 'From ' line",
    "MissingHeaderBodySeparatorDefect": "missing blank line between header and body",
    "MultipartInvariantViolationDefect": "multipart content type on a non-multipart body",
    "InvalidMultipartContentTransferEncodingDefect": "invalid transfer encoding on a multipart",
    "UndecodableBytesDefect": "undecodable bytes",
    "InvalidBase64PaddingDefect": "invalid base64 padding",
    "InvalidBase64CharactersDefect": "invalid characters in base64 data",
    "InvalidBase64LengthDefect": "invalid base64 length",
    "InvalidHeaderDefect": "invalid header",
    "HeaderMissingRequiredValue": "header missing a required value",
    "NonPrintableDefect": "non-printable characters in a header",
    "ObsoleteHeaderDefect": "obsolete header syntax",
    "NonASCIILocalPartDefect": "non-ASCII local part in an address",
    "InvalidDateDefect": "invalid date",
}
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


_LINE_BREAK = re.compile(r"\r\n|[\r\n]")
_WHITESPACE = re.compile(r"\s+")
# End-of-data look-alikes that some MTAs accept as <CRLF>.<CRLF> (SMTP smuggling,
# CVE-2023-51764/51765/51766): <LF>.<LF> and <CRLF>.<LF>, <LF>.<CRLF> with a bare LF first,
# and <CR>.<CR>. The line break after the dot is only looked at, so overlapping look-alikes
# ("\n.\n.\n") all count; every branch starts with a literal so the scan stays fast.
_SMUGGLING = re.compile(rb"\n\.(?=\n)|\r\.(?=\r)|\n(?<!\r\n)\.(?=\r\n)")
# Message.pm get_body_text_array_common: line breaks with only white space between them end a
# paragraph; every other run of white space becomes one space; one paragraph per line.
_LF_DOT = re.compile(rb"\n\.")
_BARE_CR = re.compile(rb"\r(?!\n)")
_BLANK_LINES = re.compile(r"\n+\s*\n+")
_HTML_NAME = re.compile(r"\.s?html?$", re.IGNORECASE)

# The quick parse (``quick_message``) reads only what the email package's feedparser reads
# without a defect. A header field as the feedparser's headerRE accepts it with a non-empty
# name (an empty one is its InvalidHeaderDefect, a "From " line its unix-from or
# MisplacedEnvelopeHeaderDefect), with its folded continuation lines, each ended by LF or CRLF.
_QUICK_FIELD = re.compile(rb"[\x21-\x39\x3b-\x7e]+:[^\r\n]*\r?\n(?:[ \t][^\r\n]*\r?\n)*")
# What may follow "--" boundary on a boundary line (the feedparser's boundaryre, bare CR aside):
# "--" for the close delimiter, transport padding, the line break or the end of the input.
_QUICK_BOUNDARY_TAIL = re.compile(rb"(--)?[ \t]*(?:\r?\n|\Z)")
_QUICK_DEPTH = 20  # nesting the quick parse reads; deeper structures take the full parse
_IDENTITY_CTE = ("7bit", "8bit", "binary")
# Transfer encodings whose decode by the email package may record defects on the part.
_EMAIL_DECODES = frozenset({"base64", "x-uuencode", "uuencode", "uue", "x-uue"})


@dataclass(frozen=True, slots=True)
class BodyPart:
    """One text part as body rules read it: decoded, HTML rendered, one paragraph per line."""

    index: int  # position in the depth-first walk of the MIME tree (0: the message itself)
    html: bool  # rendered from text/html (or a part named *.html)
    inline: bool  # False for an attachment, or a file that only its name makes HTML
    filename: str | None
    text: str  # paragraphs separated by "\n", white space runs single spaces
    # Characters before the scan size cut them (None: read whole): of the decoded or rendered
    # text (body_part_scan_size), and of an HTML source (rawbody_part_scan_size).
    text_size: int | None = None
    source_size: int | None = None

    @property
    def label(self) -> str:
        """Where the part is, in words a reader of a finding understands."""
        if self.inline:
            return "HTML body" if self.html else "text body"
        if self.filename:
            return f"attachment '{self.filename}'"
        return "attached HTML part" if self.html else "attached text part"


@dataclass(frozen=True, slots=True)
class RawIssues:
    """Counts of octet-level problems in the raw message (all zero for a clean message)."""

    bare_lf: int  # LF not preceded by CR (RFC 5322 §2.3: CR and LF only as CRLF)
    bare_cr: int  # CR not followed by LF
    nul_bytes: int
    long_lines: int  # lines over 998 octets, excluding the line ending (RFC 5322 §2.1.1)
    max_line_length: int  # longest line in octets, excluding the line ending
    smuggling: int  # end-of-data look-alikes left in the body (see _SMUGGLING)


class ParsedMessage:
    """One message, parsed on first use; every property is computed once and never raises.

    Defects are reported per part as ``... in part N`` where N is the part's position in a
    depth-first walk of the MIME tree and part 0 is the message itself.
    """

    def __init__(
        self,
        raw: bytes,
        limits: ScanLimits = DEFAULT_SCAN_LIMITS,
        header_cuts: tuple[HeaderCut, ...] = (),
    ) -> None:
        self.raw = raw
        self.limits = limits  # how much of each part ``body_parts`` reads
        self.header_cuts = header_cuts  # what ``within`` cut of the header block it came from
        self._views: dict[tuple[object, ...], ParsedMessage] = {}
        self._header_cuts: dict[tuple[int | None, str], tuple[bytes, tuple[HeaderCut, ...]]] = {}
        self._rendered: dict[str, render.Rendered] = {}
        self._notes: list[str] = []  # defects found by sinkd itself while decoding
        self._decoded: dict[int, str] = {}  # walk index -> decoded text of that part
        # One HtmlBody per distinct HTML text, so that every filter and the strip read one parse
        # of it; keyed with CRLF as LF, which the HTML parser reads alike (WHATWG HTML
        # §13.2.3.5), since the email package's decode turns CRLF to LF and the MIME tree's
        # does not.
        self._html: dict[str, HtmlBody] = {}
        # id() of each leaf the quick parse read -> where its payload is in ``raw``, so that a
        # body is decoded from those octets (what get_payload(decode=True) would re-encode).
        self._spans: dict[int, tuple[int, int]] = {}
        # Offset of each part the quick parse read -> (end of its header block, that block
        # parsed), so that the MIME tree does not parse those headers again.
        self._heads: dict[int, tuple[int, email.message.Message]] = {}
        self._addresses: dict[str, list[tuple[str, str]] | Exception] = {}

    def __repr__(self) -> str:
        return f"<ParsedMessage {self.size} octets>"

    def within(self, limits: ScanLimits) -> ParsedMessage:
        """This message as a profile with ``limits`` reads it: itself when they change nothing
        (the usual case, which costs one search for the end of the header block), else a
        message of its own, made once, whose header block was cut before any parse. A view's
        ``raw`` and ``size`` are the cut message's: checks of the message as it arrived (its
        size, its raw octets, its signatures) read the message itself."""
        raw, cuts = self.raw, self.header_cuts[:0]
        if limits.header_size_limit is not None:
            header = self._header_cuts.get(limits.header_key)
            if header is None:
                header = cut_header(self.raw, limits.header_size_limit, limits.header_scope)
                self._header_cuts[limits.header_key] = header
            raw, cuts = header
        if not cuts and limits.body_key == self.limits.body_key:
            return self
        key = (limits.body_key, limits.header_key if cuts else None)
        view = self._views.get(key)
        if view is None:
            view = self._views[key] = ParsedMessage(raw, limits, cuts)
        return view

    @property
    def size(self) -> int:
        return len(self.raw)

    # --- the MIME tree ------------------------------------------------------------------------

    @cached_property
    def message(self) -> email.message.Message:
        # Well-formed mail (most of it) is read by the quick parse, which gives the very objects
        # the email package would at a fraction of its line-by-line cost; anything else, by the
        # email package itself.
        try:
            quick = quick_message(
                self.raw, spans=self._spans, heads=self._heads, bare_cr=self._bare_cr
            )
        except Exception:  # whatever the quick parse cannot read, the full parse reads
            quick = None
            self._spans.clear()
            self._heads.clear()
        if quick is not None:
            return quick
        # compat32: its plain-string headers are fast and never raise on access, unlike the
        # header objects of policy.default.
        parser = BytesParser(policy=email.policy.compat32)
        try:
            return parser.parsebytes(self.raw)
        except Exception as exc:  # e.g. RecursionError on absurdly deep nesting
            self._note(f"message could not be parsed ({describe_error(exc)})")
        try:
            # Keep at least the header; the body stays one undecoded string.
            return parser.parsebytes(self.raw, headersonly=True)
        except Exception as exc:
            self._note(f"message header could not be parsed ({describe_error(exc)})")
        return email.message.Message()

    @cached_property
    def _line_breaks(self) -> tuple[int, int, int]:
        """(CR, LF, CRLF) counts of ``raw``, shared by the octet counts and the quick parse.
        Counting one octet is a fast pass, and so is the regex engine's scan for a literal
        first octet; bytes.count of the two octets CRLF is three times slower."""
        raw = self.raw
        cr = raw.count(b"\r")
        bare = len(_BARE_CR.findall(raw)) if cr else 0
        return cr, raw.count(b"\n"), cr - bare

    @property
    def _bare_cr(self) -> bool:
        cr, _, crlf = self._line_breaks
        return cr != crlf

    @cached_property
    def _parts(self) -> list[email.message.Message]:
        """Every part, depth first, the message itself first (iterative: no recursion limit)."""
        parts: list[email.message.Message] = []
        stack = [self.message]
        try:
            while stack:
                part = stack.pop()
                parts.append(part)
                if not part.is_multipart():
                    continue  # get_payload() of a leaf would decode (and may raise): not needed
                payload = part.get_payload()
                if isinstance(payload, list):
                    stack.extend(
                        p for p in reversed(payload) if isinstance(p, email.message.Message)
                    )
        except Exception as exc:
            self._note(f"MIME tree could not be walked ({describe_error(exc)})")
        return parts

    @cached_property
    def tree(self) -> MimeTree:
        """The MIME parts located by byte offset in ``raw``, for stripping (sinkd.core.mimetree).

        Built on the header blocks the parse already read, where it read them."""
        _ = self.message
        return build_tree(self.raw, headers=self._heads)

    def html_body(self, html: str) -> HtmlBody:
        """The one ``HtmlBody`` of this message for the HTML text ``html``: parsed at most once,
        whoever reads it (the mime and dnsbl filters, the strip)."""
        key = html.replace("\r\n", "\n")
        body = self._html.get(key)
        if body is None:
            body = self._html[key] = HtmlBody(html)
        return body

    # --- headers ------------------------------------------------------------------------------

    @cached_property
    def fields(self) -> tuple[tuple[str, str], ...]:
        """The top-level header fields as (name, value unfolded), in order, values as stored
        (raw 8-bit octets as surrogate escapes); read once for every header view."""
        found: list[tuple[str, str]] = []
        # raw_items() gives the stored string; compat32's get() would wrap a value with 8-bit
        # octets in a Header object.
        for name, value in self.message.raw_items():
            text = str(value)
            if "\n" in text or "\r" in text:
                text = _LINE_BREAK.sub("", text)  # RFC 5322 §2.2.3: unfolding removes CRLF
            found.append((name, text))
        return tuple(found)

    @cached_property
    def _lower_fields(self) -> tuple[tuple[str, str], ...]:
        return tuple((name.lower(), value) for name, value in self.fields)

    def addresses(self, value: str) -> list[tuple[str, str]]:
        """``email.utils.getaddresses([value])``, computed once per value for this message
        (``header_from`` and the format filter both read the From field); raises what it
        raises."""
        cached = self._addresses.get(value)
        if cached is None:
            try:
                cached = email.utils.getaddresses([value])
            except Exception as exc:
                cached = exc
            self._addresses[value] = cached
        if isinstance(cached, Exception):
            raise cached
        return list(cached)

    def _header(self, name: str) -> str | None:
        """The first ``name`` header, unfolded, with raw 8-bit octets decoded; None if absent."""
        try:
            wanted = name.lower()
            value = next((v for k, v in self._lower_fields if k == wanted), None)
            if value is None:
                return None
            if value.isascii():
                return value
            # BytesParser stores non-ASCII octets as surrogate escapes.
            octets = value.encode("ascii", "surrogateescape")
        except UnicodeEncodeError:
            return value  # real characters already (not from BytesParser)
        except Exception as exc:
            self._note(f"{name} header could not be read ({describe_error(exc)})")
            return None
        try:
            return octets.decode("utf-8")  # RFC 6532 §3.2 allows UTF-8 in header fields
        except UnicodeDecodeError:
            self._note(f"raw 8-bit bytes in {name} header that are not UTF-8 (read as latin-1)")
            return octets.decode("latin-1")

    @cached_property
    def subject(self) -> str | None:
        value = self._header("Subject")
        if value is None:
            return None
        return self._decode_encoded_words(value, "Subject").strip()

    @cached_property
    def header_from(self) -> str | None:
        value = self._header("From")
        if value is None:
            return None
        try:
            # Parsed before any RFC 2047 decoding so that an encoded display name cannot inject
            # address syntax.
            addresses = self.addresses(value)
        except Exception as exc:
            self._note(f"From header could not be parsed ({describe_error(exc)})")
            return None
        return next((addr for _, addr in addresses if addr), None)

    @cached_property
    def header_from_domain(self) -> str | None:
        address = self.header_from
        if address is None or "@" not in address:
            return None
        return address.rpartition("@")[2].lower() or None

    def _decode_encoded_words(self, value: str, where: str) -> str:
        return decode_encoded_words(value, f"{where} header", self._note)

    # --- bodies -------------------------------------------------------------------------------

    def _body_parts(self, subtype: str) -> list[tuple[int, email.message.Message]]:
        """Inline text/<subtype> parts with their walk index (attachments are skipped); found
        once per subtype, whichever view asks."""
        return self._inline_parts[subtype]

    @cached_property
    def _inline_parts(self) -> dict[str, list[tuple[int, email.message.Message]]]:
        """Both subtypes in one walk (each part's content type read once)."""
        found: dict[str, list[tuple[int, email.message.Message]]] = {"plain": [], "html": []}
        for index, part in enumerate(self._parts):
            try:
                ctype = part.get_content_type()
                if ctype in ("text/plain", "text/html"):
                    if part.get_content_disposition() != "attachment":
                        found[ctype[5:]].append((index, part))
                elif ctype.startswith("multipart/") and not part.is_multipart():
                    # A multipart whose boundary is missing or never found keeps its body as
                    # one string: read it as text so hidden content is still matched.
                    found["plain"].append((index, part))
            except Exception as exc:
                self._note(
                    f"content type could not be read in part {index} ({describe_error(exc)})"
                )
        return found

    def _part_text(self, index: int, part: email.message.Message) -> str:
        """The decoded text of one part, computed once whoever asks (the bodies, the view)."""
        cached = self._decoded.get(index)
        if cached is None:
            cached = self._decoded[index] = self._decode_part(index, part, quiet=False)
        return cached

    def _decode_part(self, index: int, part: email.message.Message, *, quiet: bool) -> str:
        """Undo the transfer encoding, then the charset; ``quiet`` records no defect."""
        try:
            data: object = self._span_octets(part)
            if data is None:
                # decode=True undoes base64 / quoted-printable (RFC 2045 §6.7: the decode itself
                # removes soft line breaks) and tolerates most broken base64 (recording
                # InvalidBase64* defects on the part).
                data = part.get_payload(decode=True)
            if isinstance(data, bytes) and any(
                isinstance(d, email.errors.InvalidBase64LengthDefect) for d in part.defects
            ):
                # The email package gives up and returns the encoded text; mail clients decode
                # what they can, so do the same rather than let a stray character hide a body.
                data = lenient_b64decode(data)
            charset = part.get_content_charset()
        except Exception as exc:
            if not quiet:
                self._note(f"body could not be decoded in part {index} ({describe_error(exc)})")
            return ""
        if not isinstance(data, bytes):
            return ""
        if quiet:
            text, _ = decode_text(data, charset)
        else:
            text = self._decode(data, charset, f"part {index}")
        if "\r" in text:  # memchr-fast; split and join beat replace on many line breaks
            text = "\n".join(text.split("\r\n"))
        return text

    def _span_octets(self, part: email.message.Message) -> bytes | None:
        """What ``part.get_payload(decode=True)`` returns, for a leaf the quick parse read and
        whose transfer encoding records no defect when decoded; None for any other part.

        Without get_payload's re-encoding of the payload string to the very octets it was read
        from: those octets, or for quoted-printable their decode (quopri.decodestring is
        binascii.a2b_qp). Raises what reading the header raises."""
        span = self._spans.get(id(part))
        if span is None:
            return None
        # As get_payload reads it (a Header object stringified).
        cte = str(part.get("content-transfer-encoding", "")).lower()
        if cte in _EMAIL_DECODES:
            return None
        data = self.raw[span[0] : span[1]]
        return binascii.a2b_qp(data) if cte == "quoted-printable" else data

    def _decodes_quietly(self, part: email.message.Message) -> bool:
        """Whether decoding this part would record nothing (no defect, no note), known without
        building its text (``decodes_cleanly``); False when that is not evident."""
        try:
            data = self._span_octets(part)
            if data is None:
                return False
            return decodes_cleanly(data, part.get_content_charset())
        except Exception:  # decoding it will say what went wrong
            return False

    @cached_property
    def text_body(self) -> str:
        return "\n".join(self._part_text(i, p) for i, p in self._body_parts("plain"))

    @cached_property
    def html_bodies(self) -> list[str]:
        return [self._part_text(i, p) for i, p in self._body_parts("html")]

    @cached_property
    def has_html(self) -> bool:
        return bool(self._body_parts("html"))

    @cached_property
    def html_text(self) -> str:
        """The inline HTML parts rendered to text, on one line (paragraph breaks as spaces)."""
        if not self.has_html:
            return ""
        texts = (p.text.replace("\n", " ") for p in self.body_parts if p.html and p.inline)
        return " ".join(filter(None, texts))

    @cached_property
    def body_text(self) -> str:
        return self.text_body + "\n" + self.html_text

    @cached_property
    def body_parts(self) -> tuple[BodyPart, ...]:
        """Every text part as SpamAssassin's body rules read it, one decode and render each.

        Follows Mail::SpamAssassin::Message::get_body_text_array_common (lib/Mail/SpamAssassin/
        Message.pm) and Message::Node::rendered(): every leaf whose effective type is
        text/plain or text/html (a part named *.htm, *.html or *.shtml counts as HTML, Node.pm
        effective_type), attachments included; transfer encoding and charset undone; HTML
        rendered to text; each part cut at body_part_scan_size (the HTML source first at
        rawbody_part_scan_size), the sizes of ``limits``; then paragraphs (blank-line separated)
        become one line each with every run of white space a single space.
        """
        found: list[BodyPart] = []
        inline_plain = {i for i, _ in self._body_parts("plain")}
        inline_html = {i for i, _ in self._body_parts("html")}
        for index, part in enumerate(self._parts):
            if index in inline_plain or index in inline_html:
                name = _filename(part)
                html = index in inline_html or bool(_HTML_NAME.search(name or ""))
                inline = True
                text = self._part_text(index, part)
            else:
                kind = _attached_text_kind(part)
                if kind is None:
                    continue
                html, inline, name = kind == "html", False, _filename(part)
                # Read quietly: decoding an attachment must not add defects that depend on
                # whether a content rule happened to look at it.
                before = len(part.defects)
                text = self._decode_part(index, part, quiet=True)
                del part.defects[before:]
            if html:
                rendered = self._render(text)
                found.append(
                    BodyPart(
                        index,
                        html,
                        inline,
                        name,
                        rendered.text,
                        rendered.text_size,
                        rendered.source_size,
                    )
                )
            else:
                text, size = _paragraphs(text, self.limits.body_part_scan_size)
                found.append(BodyPart(index, html, inline, name, text, size))
        return tuple(found)

    def _render(self, html: str) -> render.Rendered:
        """One HTML text rendered at this message's sizes, once (keyed with CRLF as LF, as the
        HTML parser reads them alike)."""
        key = html.replace("\r\n", "\n")
        rendered = self._rendered.get(key)
        if rendered is None:
            limits = self.limits
            rendered = self._rendered[key] = render.render_html(
                key, limits.body_part_scan_size, limits.rawbody_part_scan_size
            )
        return rendered

    # --- defects and raw octets ---------------------------------------------------------------

    @cached_property
    def defects(self) -> list[str]:
        # Decode everything that can record a defect first, so the list does not depend on which
        # properties happened to be read before: the inline bodies in the order text_body and
        # html_bodies decode them, except those whose decode evidently records nothing (a
        # profile that reads no body, no-filter, then builds no body text at all).
        _ = self.subject, self.header_from
        for index, part in [*self._body_parts("plain"), *self._body_parts("html")]:
            if index not in self._decoded and not self._decodes_quietly(part):
                self._part_text(index, part)
        found: list[str] = []
        for index, part in enumerate(self._parts):
            for defect in getattr(part, "defects", ()):
                found.append(f"{_defect_text(defect)} in part {index}")
        # dict.fromkeys: de-duplicate, keep order (a part decoded twice records twice).
        return list(dict.fromkeys(self._notes + found))

    @cached_property
    def raw_issues(self) -> RawIssues:
        raw = self.raw
        cr, lf, crlf = self._line_breaks
        # Lines are split on LF; a CR right before it is the line ending, not content.
        if crlf == 0 or crlf == lf:
            lines = raw.split(b"\n")
            if crlf:  # every line but the last ends in CR LF: one octet less each
                body = lines[:-1]
                max_length = max(max(map(len, body)) - 1, len(lines[-1]))
                over = MAX_LINE_OCTETS + 1
            else:
                max_length = max(map(len, lines))
                body, over = lines, MAX_LINE_OCTETS
        else:  # mixed line breaks: take the CRs of CRLF out first (split and join: faster)
            lines = b"\n".join(raw.split(b"\r\n")).split(b"\n")
            max_length = max(map(len, lines))
            body, over = lines, MAX_LINE_OCTETS
        long_lines = 0
        if max_length > MAX_LINE_OCTETS:
            long_lines = sum(1 for line in body if len(line) > over)
            if body is not lines and len(lines[-1]) > MAX_LINE_OCTETS:
                long_lines += 1
        smuggling = 0
        # Cheap pre-check, most messages have no dot lines: a literal search (fast in the regex
        # engine), and "\r." only where some CR is not part of a CRLF.
        if _LF_DOT.search(raw) or (cr != crlf and b"\r." in raw):
            smuggling = len(_SMUGGLING.findall(raw))
        return RawIssues(
            bare_lf=lf - crlf,
            bare_cr=cr - crlf,
            # ``in`` (memchr) first: a clean message needs no counting pass.
            nul_bytes=raw.count(b"\0") if b"\0" in raw else 0,
            long_lines=long_lines,
            max_line_length=max_length,
            smuggling=smuggling,
        )

    # --- helpers ------------------------------------------------------------------------------

    def _note(self, defect: str) -> None:
        self._notes.append(defect)

    def _decode(self, data: bytes, charset: str | None, where: str) -> str:
        """Bytes to text in ``charset``; never raises, records what went wrong."""
        text, problem = decode_text(data, charset)
        if problem:
            self._note(f"{problem} in {where}")
        return text


def parse(raw: bytes) -> ParsedMessage:
    """Wrap ``raw`` (the DATA payload after dot-unstuffing); nothing is parsed until read."""
    return ParsedMessage(raw)


def quick_message(
    raw: bytes,
    *,
    spans: dict[int, tuple[int, int]] | None = None,
    heads: dict[int, tuple[int, email.message.Message]] | None = None,
    bare_cr: bool | None = None,
) -> email.message.Message | None:
    """``raw`` parsed as ``BytesParser(policy=compat32).parsebytes`` parses it, or None.

    The email package's feedparser reads a message line by line in Python; this reads the
    same structure with C searches over the octets, for the messages the feedparser reads
    without a single defect: no bare CR, every header block made of well-formed fields and
    ended by a blank line (or by the end of its part), every multipart with a boundary, an
    identity transfer encoding, a first boundary line, no two boundary lines in a row and a
    close delimiter, no message/* or multipart/digest part, no boundary that is a prefix of an
    enclosing one and at most ``_QUICK_DEPTH`` levels. For anything else it returns None, and
    the caller parses in full. Same headers (``set_raw`` of the policy's
    ``header_source_parse``), unix-from (none), payloads, preambles, epilogues and defects
    (none) as the full parse: the tests compare the two over every corpus message.
    ``spans`` receives where each leaf's payload is in ``raw`` (by the leaf's id()), ``heads``
    the offset of each part with the end of its header block and that part (for
    ``build_tree``); ``bare_cr`` says whether ``raw`` has a CR not followed by LF, when the
    caller already knows.
    """
    if bare_cr is None:
        bare_cr = raw.count(b"\r") != raw.count(b"\r\n")
    if bare_cr:
        return None  # a bare CR ends a line for the feedparser and not for the searches below
    root = _QuickMessage(policy=email.policy.compat32)
    found: dict[int, tuple[int, int]] = {}
    blocks: dict[int, tuple[int, email.message.Message]] = {}
    if not _quick_part(raw, 0, len(raw), root, (), 0, found, blocks, in_multipart=False):
        return None
    if spans is not None:
        spans.update(found)
    if heads is not None:
        heads.update(blocks)
    return root


class _QuickMessage(email.message.Message):
    """A ``Message`` of the quick parse: a leaf's payload string is made from its octets the
    first time anything reads it, since the views decode bodies from ``raw`` and that string
    (the octets as surrogate escapes, a slow decode once one octet is not ASCII) is rarely
    read. Every ``Message`` method reads and writes ``_payload``, which this makes a property;
    what it returns is what the feedparser would have stored."""

    def set_lazy_payload(self, raw: bytes, start: int, end: int) -> None:
        self.__dict__["_lazy"] = (raw, start, end)

    def is_multipart(self) -> bool:
        # A payload still to be made is a leaf's: no need to make it to say so.
        return "_lazy" not in self.__dict__ and super().is_multipart()

    @property
    def _payload(self) -> Any:
        lazy = self.__dict__.pop("_lazy", None)
        if lazy is not None:
            raw, start, end = lazy
            self.__dict__["_value"] = _text(raw[start:end])
        return self.__dict__.get("_value")

    @_payload.setter
    def _payload(self, value: Any) -> None:
        self.__dict__.pop("_lazy", None)
        self.__dict__["_value"] = value


def _text(octets: bytes) -> str:
    """Octets as BytesParser reads them: ASCII, every other octet a surrogate escape."""
    return octets.decode("ascii", "surrogateescape")


def _quick_part(
    raw: bytes,
    start: int,
    end: int,
    msg: _QuickMessage,
    outer: tuple[bytes, ...],
    depth: int,
    spans: dict[int, tuple[int, int]],
    heads: dict[int, tuple[int, email.message.Message]],
    *,
    in_multipart: bool,
) -> bool:
    """Read the part in ``raw[start:end]`` into ``msg``; False where the feedparser would find
    a defect or read it in a way this does not follow. A part of a multipart ends before the
    next boundary line, whose leading line break belongs to the boundary (RFC 2046 §5.1.1): the
    feedparser drops it from a leaf's payload or a multipart's epilogue, and so does this."""
    pos = start
    policy = msg.policy
    while True:
        field = _QUICK_FIELD.match(raw, pos, end)
        if field is None:
            break
        # compat32's header_source_parse of the field's lines: the value is the first line's
        # rest with leading blanks stripped, the continuation lines joined, the end CR/LF
        # dropped; given the lines joined it returns the same (the first line ends in LF).
        msg.set_raw(*policy.header_source_parse([_text(field.group())]))
        pos = field.end()
    if raw.startswith(b"\n", pos, end):
        pos += 1  # the blank line ending the header block belongs to it
    elif raw.startswith(b"\r\n", pos, end):
        pos += 2
    elif pos != end:
        return False  # a line that is neither a field nor blank (MissingHeaderBodySeparator)
    heads[start] = (pos, msg)
    maintype = msg.get_content_maintype()
    if maintype == "message":
        return False
    if maintype != "multipart":
        stop = _strip_eol(raw, pos, end) if in_multipart else end
        msg.set_lazy_payload(raw, pos, stop)
        spans[id(msg)] = (pos, stop)
        return True
    if depth >= _QUICK_DEPTH or msg.get_content_type() == "multipart/digest":
        return False
    boundary = msg.get_boundary()
    if not boundary or "\r" in boundary or "\n" in boundary:
        return False
    if str(msg.get("content-transfer-encoding", "8bit")).lower() not in _IDENTITY_CTE:
        return False  # InvalidMultipartContentTransferEncodingDefect
    try:
        # The octets the feedparser's str boundary matches (a str made of surrogate escapes
        # and ASCII); a boundary of other characters matches no octets here.
        separator = ("--" + boundary).encode("ascii", "surrogateescape")
    except UnicodeEncodeError:
        return False
    if any(separator.startswith(o) or o.startswith(separator) for o in outer):
        return False  # the feedparser tries the inner boundary first, this the outer one
    lines = _boundary_lines(raw, pos, end, separator)
    if not lines or lines[0][2]:
        return False  # StartBoundaryNotFoundDefect
    if lines[0][0] > pos:
        # RFC 2046 §5.1.1: the line break before a boundary line belongs to the boundary.
        msg.preamble = _text(raw[pos : _strip_eol(raw, pos, lines[0][0])])
    inside = (*outer, separator)
    # Only the last line can be the close delimiter (_boundary_lines stops there).
    for (_, after, _), (following, _, _) in itertools.pairwise(lines):
        if following == after:
            return False  # boundary lines in a row: the feedparser skips a close one there
        child = _QuickMessage(policy=policy)
        msg.attach(child)
        if not _quick_part(
            raw, after, following, child, inside, depth + 1, spans, heads, in_multipart=True
        ):
            return False
    _, last_end, last_close = lines[-1]
    if not last_close:
        return False  # CloseBoundaryNotFoundDefect
    if not in_multipart:
        msg.epilogue = _text(raw[last_end:end])
    elif last_end == end:
        msg.epilogue = None  # the feedparser's empty epilogue becomes None there
    else:
        # Any other loses its line break (possibly becoming empty).
        msg.epilogue = _text(raw[last_end : _strip_eol(raw, last_end, end)])
    return True


def _boundary_lines(
    raw: bytes, start: int, end: int, separator: bytes
) -> list[tuple[int, int, bool]]:
    """(start, end with the line break, is the close delimiter) of each boundary line in
    ``raw[start:end]`` up to the first close delimiter (RFC 2046 §5.1.1; ``start`` begins a
    line)."""
    found: list[tuple[int, int, bool]] = []
    needle = b"\n" + separator
    at = start if raw.startswith(separator, start, end) else -1
    if at < 0:
        at = raw.find(needle, start, end)
        at = at + 1 if at >= 0 else -1
    while at >= 0:
        tail = _QUICK_BOUNDARY_TAIL.match(raw, at + len(separator), end)
        if tail is not None:
            close = tail.group(1) is not None
            found.append((at, tail.end(), close))
            if close:
                break
        at = raw.find(needle, at + 1, end)
        at = at + 1 if at >= 0 else -1
    return found


def _strip_eol(raw: bytes, start: int, end: int) -> int:
    """Where ``raw[start:end]`` ends without one line break at its end (the feedparser's
    NLCRE_eol)."""
    if end - start >= 2 and raw.startswith(b"\r\n", end - 2, end):
        return end - 2
    if end > start and raw[end - 1] in b"\r\n":
        return end - 1
    return end


def _defect_text(defect: object) -> str:
    name = type(defect).__name__
    text = _DEFECT_TEXT.get(name)
    if text is None:
        text = _CAMEL.sub(" ", name.removesuffix("Defect")).lower() or "defect"
    return text


def _paragraphs(text: str, size: int) -> tuple[str, int | None]:
    """Plain text as body rules see it: cut at the scan size ``size``, one paragraph per line;
    and the text's size when the cut shortened it.

    Message.pm get_body_text_array_common: a hard line break inside a paragraph becomes a
    space, so a word or GTUBE split by one is not found, as in SpamAssassin.
    """
    kept = cut(text, size)
    full = len(text) if len(kept) < len(text) else None
    if "\n" in kept:
        kept = _BLANK_LINES.sub("\0", kept)
        return _WHITESPACE.sub(" ", kept).replace("\0", "\n").strip(), full
    return _WHITESPACE.sub(" ", kept).strip(), full


def _attached_text_kind(part: email.message.Message) -> str | None:
    """'plain' or 'html' for a leaf body rules read that the inline bodies leave out."""
    try:
        if part.is_multipart():
            return None
        if _HTML_NAME.search(_filename(part) or ""):
            return "html"  # Node.pm effective_type (bugs 6260, 6439)
        ctype = part.get_content_type()
    except Exception:
        return None
    if ctype in ("text/plain", "text/html"):
        return ctype[5:]
    return None


def _filename(part: email.message.Message) -> str | None:
    try:
        name = part.get_filename()
    except Exception:
        return None
    return str(name) if name else None
