"""SpamAssassin's views of one message, as its rule types read them.

Owns ``SaMessage``: the header values a ``header`` rule reads (decoded, ``:raw``, ``:addr``,
``:name``, ``:first``, ``:last``; the pseudo-headers ``ALL``, ``ToCc`` and ``MESSAGEID``), the
lines a ``body`` rule reads (the Subject first, then every text part decoded and rendered, one
paragraph per line), the chunks a ``rawbody`` rule reads, the text a ``full`` rule reads, the
URIs a ``uri`` rule reads and the addresses ``welcomelist_from``/``blocklist_from`` compare.
Each follows the Mail::SpamAssassin 4.0 code named beside it. Pure: no I/O, no logging; it must
not evaluate rules (``sinkd.core.filters.spamassassin_rules`` does).

Every view is a *byte view*: a ``str`` whose characters are the message's octets (Latin-1
decoding of the bytes), because SpamAssassin matches rules against byte strings
(perldoc Mail::SpamAssassin::Conf, "body"); text sinkd decoded to Unicode is given as its UTF-8
octets, as SpamAssassin 4.0 does for rendered text (Message.pm get_body_text_array_common:
``utf8::encode``). Where this differs from SpamAssassin, on purpose or for want of its exact
algorithm, the docstring of the view says so; docs/import-spamassassin.md lists the same.
"""

from __future__ import annotations

import base64
import binascii
import email.message
import email.utils
import re
from functools import cached_property

from sinkd.core.decoding import decode_text
from sinkd.core.html import render
from sinkd.core.message import ParsedMessage

__all__ = ["MAX_BODY_LINE_LENGTH", "SaMessage", "octets"]

# Constants.pm MAX_BODY_LINE_LENGTH (2048): body lines and rawbody chunks are split near it.
MAX_BODY_LINE_LENGTH = 2048
# Constants.pm MAX_HEADER_VALUE_LENGTH (8192): Message.pm new() cuts a longer header value.
MAX_HEADER_VALUE_LENGTH = 8192
_HEADER_END = re.compile(rb"\r?\n\r?\n")
_FIELD_START = re.compile(r"[^ \t]")
_FOLD = re.compile(r"\n[ \t]+")
_RAW_FOLD = re.compile(r"\r?\n\s+")
_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([bBqQ])\?([^?\s]*)\?=")
_BETWEEN_WORDS = re.compile(r"(?<=\?=)[ \t\n]+(?==\?)")
# URIs in text, as written for people to click or copy (an approximation of PerMsgStatus.pm
# get_uri_list's text parser: schemes, "www." and "ftp." prefixes; not bare domain names).
_TEXT_URI = re.compile(
    r"(?:(?:https?|ftp)://|mailto:|(?<![\w.@])(?:www|ftp)\.)[^\s<>\"'`{}|\\^\[\]]+",
    re.IGNORECASE | re.ASCII,
)
_URI_TAIL = ".,;:!?)>'\""  # punctuation ending a sentence, not the URI
_URI_ATTRIBUTES = ("href", "src", "action", "background")
# Util.pm parse_content_type: text/* types it does not read as text/plain (bug 5399).
_NOT_PLAIN = frozenset({"text/plain", "text/html", "text/x-vcard", "text/calendar"})
# Message.pm get_body_text_array_common: blank-line runs end a paragraph, other white space
# runs become one space.
_PARAGRAPH_BREAK = re.compile(r"\n+\s*\n+")
_WHITE = re.compile(r"\s+")


def octets(text: str) -> str:
    """The byte view of ``text``: its UTF-8 octets, one character each (surrogate escapes,
    which stand for raw octets the parser kept, become those octets again)."""
    if text.isascii():
        return text
    return text.encode("utf-8", "surrogateescape").decode("latin-1")


def _decode_word(charset: str, encoding: str, payload: str) -> str:
    """One RFC 2047 encoded-word as text (``octets`` gives its UTF-8 octets, as Node.pm
    _decode_header converts to UTF-8); an unknown charset keeps the decoded octets as they
    are (surrogate escapes), undecodable words stay as written."""
    try:
        if encoding in "bB":
            data = base64.b64decode(payload + "=" * (-len(payload) % 4))
        else:
            data = binascii.a2b_qp(payload.replace("_", " ").encode("ascii"))
    except (binascii.Error, ValueError):
        return f"=?{charset}?{encoding}?{payload}?="
    name = charset.split("*", 1)[0]  # RFC 2231 §5: charset*language
    try:
        return data.decode(name, "replace")
    except LookupError:
        return data.decode("ascii", "surrogateescape")


def decode_header(value: str) -> str:
    """A header value as Node.pm header() stores it: folds joined with one space, white space
    trimmed, encoded-words decoded (white space between adjacent words dropped, RFC 2047
    §6.2), raw octets kept."""
    value = _FOLD.sub(" ", value).strip()
    if "=?" not in value:
        return value
    value = _BETWEEN_WORDS.sub("", value)
    return _ENCODED_WORD.sub(lambda m: _decode_word(m[1], m[2], m[3]), value)


# PerMsgStatus.pm _process_text_uri_list, after _tbirdurire: a ")" with no "(" before it ends
# a URI; trailing punctuation is not part of it.
_UNOPENED_PAREN = re.compile(r"^([^(]*)\).*$", re.S)
_TRAILING_PUNCTUATION = re.compile(r"[-~!@#^&*()_+=:;'?,.]*$")
_TEXT_EMAIL = re.compile(
    r"(?<![\w.+-])[\w.+-]+@[a-z0-9-]+(?:\.[a-z0-9-]+)*\.[a-z]{2,}", re.I | re.A
)
_RESERVED_TLDS = frozenset({"example", "test", "invalid", "localhost", "local"})
_PERCENT = re.compile(r"(%[0-9a-fA-F]{2})")
_KEEP_ENCODED = re.compile(r"(20|7f|[0189a-fA-F][0-9a-fA-F])", re.I)
_TO_ENCODE = re.compile(r'[\x00-\x20\x7f-\xff"%<>]')
_HTTP_HOST = re.compile(r"^(https?://)([^@/?#]*@)?([^/?#:]+)((?::(\d*))?.*)$", re.I | re.S)
_DOTTED = re.compile(
    r"^((?:0x[0-9a-f]+|\d+)\.)((?:0x[0-9a-f]+|\d+)\.)((?:0x[0-9a-f]+|\d+)\.)"
    r"(0x[0-9a-f]+|\d+)$",
    re.I,
)
_ENTITY_DEC = re.compile(r"&#0*(3[3-9]|[4-9]\d|1[01]\d|12[0-6]);")
_ENTITY_HEX = re.compile(r"&#x0*(2[1-9]|[3-6][a-fA-F0-9]|7[0-9a-eA-E]);")
_ENTITY_DOT = re.compile(r"&#(?:x2e|12290|x3002|65294|xff0e|65377|xff61);", re.I)


def _plausible_domain(host: str) -> bool:
    """Whether ``host`` ends in a top-level domain SpamAssassin could know, approximating its
    TLD list (20_aux_tlds.cf, RegistryBoundaries is_fqdn_valid / is_domain_valid): at least
    two labels, the last alphabetic (or an xn-- label) and not one of the names reserved by
    RFC 2606 and RFC 6761 (example, test, invalid, localhost, local)."""
    labels = host.lower().rstrip(".").split(".")
    tld = labels[-1]
    if len(labels) < 2 or tld in _RESERVED_TLDS:
        return False
    return bool(re.fullmatch(r"[a-z]{2,63}|xn--[a-z0-9-]{1,59}", tld))


def _text_uris(line: str) -> list[str]:
    """The URIs written in one body line, with their schemes as _process_text_uri_list gives
    them: a schemeless name or an e-mail address only when its domain could be valid
    (``_plausible_domain``); bare domain names left out (they need SpamAssassin's TLD list)."""
    found: list[str] = []
    for match in _TEXT_URI.finditer(line):
        uri = _UNOPENED_PAREN.sub(r"\1", match.group(0))
        uri = _TRAILING_PUNCTUATION.sub("", uri)
        lower = uri.lower()
        if re.match(r"(?:www\d{0,2}|ftp)\.", lower):
            host = re.split(r"[/?#:]", uri, maxsplit=1)[0]
            if not _plausible_domain(host):
                continue
            uri = ("ftp://" if lower.startswith("ftp.") else "http://") + uri
        if re.fullmatch(r"\w+:/{0,2}", uri):
            continue
        found.append(uri)
    for match in _TEXT_EMAIL.finditer(line):
        if _plausible_domain(match.group(0).rpartition("@")[2]):
            found.append("mailto:" + match.group(0))
    return found


def _url_encode(uri: str) -> str:
    """Util.pm url_encode: %xx escapes of printable characters decoded, except those that
    stay encoded; raw control, 8-bit, '"', '%', '<' and '>' characters encoded."""
    pieces = _PERCENT.split(uri)
    for i, piece in enumerate(pieces):
        if i % 2:
            if not _KEEP_ENCODED.search(piece[1:]) and piece[1] in "234567":
                pieces[i] = chr(int(piece[1:], 16))
        else:
            pieces[i] = _TO_ENCODE.sub(lambda m: f"%{ord(m.group(0)):02x}", piece)
    return "".join(pieces)


def _ulong_ip(number: int) -> str:
    """Util.pm decode_ulong_to_ip."""
    number &= 0xFFFFFFFF
    return ".".join(str((number >> shift) & 0xFF) for shift in (24, 16, 8, 0))


def canonical_uris(uri: str) -> list[str]:
    """Util.pm uri_list_canonicalize for one URI (and the "http…" URI found inside it, as its
    built-in redirector rule does): the URI and the forms SpamAssassin adds, which uri rules
    also read: percent-escapes decoded, a scheme added, user info dropped, a dword, hex or
    octal IP address as a dotted quad, default ports dropped."""
    queue, found = [uri], []
    while queue:
        raw = queue.pop(0).replace("\n", "").replace("\r", "").strip()
        if len(raw) <= 1 or re.match(r"[#?&]|/(?!/)", raw):
            continue
        found.append(raw)
        nuri = raw
        if re.match(r"mailto:", nuri, re.I) or re.match(r"[^:]*@", nuri):
            for pattern in (r"^([^@]+@[^?]+)\?", r"^([^@]+@[^?&]+)&"):
                if m := re.match(pattern, nuri):
                    found.append(m.group(1))
            if "%20" in nuri and (m := re.match(r"^(?:mailto:)?(?:%20)*([^@]+@[^?&%]+)", nuri)):
                found.append("mailto:" + m.group(1))
            if m := re.match(r"^[^?&]*<([^@>]+@[^>]+)>", nuri):
                found.append("mailto:" + m.group(1))
            continue
        nuri = nuri.replace("\\", "/")
        nuri = re.sub(r"^(https?:)/{0,2}", r"\1//", nuri, flags=re.I)
        if _PERCENT.search(nuri):
            nuri = _url_encode(nuri)
        if not re.match(r"[-_a-z0-9]+:", nuri, re.I):
            nuri = ("ftp://" if nuri.startswith("ftp.") else "http://") + nuri
        nuri = re.sub(r"^(https?://[^/?#]+)([?#])", r"\1/\2", nuri, flags=re.I)
        nuri = _ENTITY_DEC.sub(lambda m: chr(int(m.group(1))), nuri)
        nuri = _ENTITY_HEX.sub(lambda m: chr(int(m.group(1), 16)), nuri)
        nuri = _ENTITY_DOT.sub(".", nuri)
        if nuri != raw:
            found.append(nuri)
        parts = _HTTP_HOST.match(nuri)
        if parts is None:
            continue
        proto, auth, host, rest, port = (
            parts.group(1),
            parts.group(2) or "",
            parts.group(3),
            parts.group(4),
            parts.group(5) or "",
        )
        if port:
            default = ":80" if proto.lower() == "http://" else ":443"
            if re.match(re.escape(default) + r"\b", rest):
                found.append(proto + host + rest[len(default) :])
        if re.search(r"[\x00-\x20]", host):
            host = re.sub(r"[\x00-\x20]", "", host)
            found.append(proto + host + rest)
        inner = re.search(r"(https?:/{0,2}[^&#]+)", rest, re.I)
        if inner and "." in inner.group(1):
            queue.append(inner.group(1))
        if re.search(r"[^0-9A-Za-z]+$", host):
            host = re.sub(r"[^0-9A-Za-z]+$", "", host)
            found.append(proto + host + rest)
        if dotted := _DOTTED.match(host):
            octets_ = []
            for chunk in dotted.groups():
                chunk = chunk.rstrip(".")
                if chunk.lower().startswith("0x"):
                    chunk = str(int(chunk[2:], 16))
                elif re.match(r"0+([1-3][0-7]{0,2}|[4-7][0-7]?)\b", chunk):
                    chunk = str(int(chunk.lstrip("0"), 8))
                chunk = chunk.lstrip("0")
                octets_.append(chunk)
            found.append(proto + ".".join(octets_) + rest)
        elif re.fullmatch(r"0x[0-9a-f]+", host, re.I):
            found.append(proto + _ulong_ip(int(host[2:][-8:], 16)) + rest)
        elif host.isdigit():
            found.append(proto + _ulong_ip(int(host)) + rest)
        elif (
            proto.lower() == "http://"
            and not auth
            and host != "localhost"
            and not port
            and (single := re.fullmatch(r"(?:www\.)?([^.]+)", host))
        ):
            found.append(proto + "www." + single.group(1) + ".com" + rest)
    return list(dict.fromkeys(found))


_COMMENT_OPEN = "<!--"


def unterminated_comments(html: str) -> str:
    """``html`` with each "<!--" that no "-->" follows removed up to the next ">", as
    HTML::Parser (non-strict comments) reads it: a comment ending there. A terminated comment
    is left alone (both parsers end it at its "-->")."""
    out: list[str] = []
    at = 0
    while (start := html.find(_COMMENT_OPEN, at)) >= 0:
        if html.find("-->", start + len(_COMMENT_OPEN)) >= 0:
            end = html.find("-->", start + len(_COMMENT_OPEN)) + 3
            out.append(html[at:end])
            at = end
            continue
        close = html.find(">", start + len(_COMMENT_OPEN))
        if close < 0:
            break
        out.append(html[at:start])
        at = close + 1
    out.append(html[at:])
    return "".join(out)


def _short_lines(text: str) -> list[str]:
    """Message.pm split_into_array_of_short_lines: lines (each keeps its "\\n") longer than
    2048 characters cut at the last space before that, else at 2048."""
    found: list[str] = []
    for line in text.splitlines(keepends=True):
        while len(line) > MAX_BODY_LINE_LENGTH:
            cut = line.rfind(" ", 0, MAX_BODY_LINE_LENGTH + 1) + 1 or MAX_BODY_LINE_LENGTH
            found.append(line[:cut])
            line = line[cut:]
        found.append(line)
    return found


def _short_paragraphs(text: str) -> list[str]:
    """Message.pm split_into_array_of_short_paragraphs: chunks of 2048 to 4096 characters,
    cut after a newline, else after a '>', else after a space, else at 2048."""
    if len(text) <= MAX_BODY_LINE_LENGTH:
        return [text]
    found: list[str] = []
    offset = 0
    while len(text) - offset > 2 * MAX_BODY_LINE_LENGTH:
        end = -1
        for mark in ("\n", ">", " "):
            end = text.find(mark, offset + MAX_BODY_LINE_LENGTH)
            if end >= 0 and end - offset + 1 <= 2 * MAX_BODY_LINE_LENGTH:
                break
            end = -1
        if end < 0:
            end = offset + MAX_BODY_LINE_LENGTH
        found.append(text[offset : end + 1])
        offset = end + 1
    if offset < len(text):
        found.append(text[offset:])
    return found


def _cut(text: str, size: int, marks: str) -> str:
    """Message.pm's part truncation at a scan size: after the first of ``marks`` found within
    1024 characters past ``size``, else at ``size`` (0: no cut)."""
    if not size or len(text) <= size:
        return text
    for mark in marks:
        at = text.find(mark, size)
        if at >= 0 and at - size <= 1024:
            return text[: at + 1]
    return text[:size]


class SaMessage:
    """SpamAssassin's views of one parsed message (each computed once, when first read)."""

    def __init__(self, parsed: ParsedMessage) -> None:
        self.parsed = parsed
        self._cache: dict[str, list[str] | None] = {}
        # HTML parts as HTML::Parser reads their comments, where that differs (by part index).
        self._fixed_html: dict[int, str] = {}

    # --- headers ------------------------------------------------------------------------------

    @cached_property
    def _header_block(self) -> str:
        """The header section's octets as a surrogate-escaped str, line endings kept."""
        raw = self.parsed.raw
        end = _HEADER_END.search(raw)
        block = raw[: end.start() + 1] if end else raw
        if raw.startswith((b"\r\n", b"\n")):
            block = b""
        if block.startswith(b"From "):  # an mbox separator is no header (Message.pm new())
            block = block.split(b"\n", 1)[1] if b"\n" in block else b""
        return block.decode("ascii", "surrogateescape")

    @cached_property
    def fields(self) -> tuple[tuple[str, str, str], ...]:
        """(name, raw value, pristine field) for every header field in order. The raw value is
        what follows the colon, the line break included, CRLF as LF (Message.pm new()); the
        pristine field is the field's own text, line endings as sent."""
        found: list[tuple[str, str, str]] = []
        current: list[str] = []
        lines = self._header_block.splitlines(keepends=True)
        for line in [*lines, "X"]:  # a sentinel flushes the last field
            if current and _FIELD_START.match(line):
                text = "".join(current)
                name, colon, value = text.partition(":")
                if colon:
                    value = value.replace("\r\n", "\n")
                    if len(value) > MAX_HEADER_VALUE_LENGTH:
                        value = value[:MAX_HEADER_VALUE_LENGTH]
                    found.append((name.rstrip(" \t"), value, text))
                current = []
            current.append(line)
        return tuple(found)

    def _values(self, name: str, raw: bool) -> list[str]:
        """Node.pm get_header: every ``name`` field, raw (folds as one space) or decoded, each
        ending in "\\n"."""
        wanted = name.lower()
        values: list[str] = []
        for field, value, _ in self.fields:
            if field.lower() != wanted:
                continue
            if raw:
                values.append(octets(_RAW_FOLD.sub(" ", value)))
            else:
                values.append(octets(decode_header(value)) + "\n")
        return values

    def header(self, request: str) -> list[str] | None:
        """PerMsgStatus.pm _get for one header request (``Subject``, ``From:addr``, ``ALL``,
        ``ALL:raw``, ``ToCc``, ``MESSAGEID``…): its values, or None when the message has none
        (the rule then reads ``[if-unset: …]`` or nothing). Modifiers :host, :domain, :ip,
        :revip and the relay pseudo-headers are refused when the rule compiles
        (``SUPPORTED_MODIFIERS``)."""
        if request in self._cache:
            return self._cache[request]
        name, *modifiers = request.split(":")
        raw = "raw" in modifiers
        addr, display = "addr" in modifiers, "name" in modifiers
        values: list[str]
        if name == "ALL":
            if raw:
                values = [octets(text) for _, _, text in self.fields]
            else:
                values = [
                    f"{field}: " + octets(decode_header(value)) + "\n"
                    for field, value, _ in self.fields
                ]
            result: list[str] | None = values or None
            self._cache[request] = result
            return result
        if name.lower() == "tocc":
            values = self._values("To", raw or addr or display) + self._values(
                "Cc", raw or addr or display
            )
        elif name == "MESSAGEID":
            values = [
                v
                for header in (
                    "X-Message-Id",
                    "Resent-Message-Id",
                    "X-Original-Message-ID",
                    "Message-Id",
                )
                for v in self._values(header, raw or addr or display)
                if v != ""
            ]
        else:
            values = self._values(name, raw or addr or display)
        if values and "first" in modifiers:
            values = values[:1]
        elif values and "last" in modifiers:
            values = values[-1:]
        if addr or display:
            values = [v for line in values for v in self._address_parts(line, addr)]
        result = values or None
        self._cache[request] = result
        return result

    def _address_parts(self, value: str, addr: bool) -> list[str]:
        """Every address (``:addr``) or display name (``:name``) in a raw header value, as
        PerMsgStatus.pm _get returns them from Util.pm parse_header_addresses (approximated by
        the email package's address parser; names decoded, white space collapsed)."""
        try:
            pairs = email.utils.getaddresses([value.strip()])
        except Exception:  # an unparsable value gives no address, as in SpamAssassin
            return []
        if addr:
            return [address for _, address in pairs if address]
        names = []
        for phrase, _ in pairs:
            if not phrase:
                continue
            decoded = " ".join(decode_header(phrase).split())
            if len(decoded) > 1 and decoded[0] == decoded[-1] == "'":
                decoded = decoded[1:-1]
            names.append(decoded)
        return names

    # --- body ---------------------------------------------------------------------------------

    @cached_property
    def body_lines(self) -> tuple[str, ...]:
        """What ``body`` rules read (Message.pm get_body_text_array_common): the last Subject,
        decoded, as the first line ("\\n" when there is none), then each text part decoded and
        HTML rendered (sinkd's ``ParsedMessage.body_parts``, cut at body_part_scan_size), one
        paragraph per line with white space runs as one space, lines cut near 2048 characters.

        Differs from SpamAssassin in two known ways: sinkd's HTML renderer is not
        HTML::Parser (block elements and hidden text may break lines differently), and a part in
        a charset other than UTF-8 is read as its UTF-8 re-encoding where SpamAssassin, without
        normalize_charset, reads the part's own octets."""
        subject = self._values("Subject", raw=False)
        first = subject[-1] if subject else "\n"
        texts = {part.index: part.text for part in self.parsed.body_parts}
        texts.update(
            self._html_parser_comments({p.index for p in self.parsed.body_parts if p.html})
        )
        texts.update(self._other_text_parts(set(texts)))
        paragraphs = "\n".join(octets(texts[i]) for i in sorted(texts) if texts[i])
        return tuple(_short_lines(first + paragraphs))

    @cached_property
    def _leaf_list(self) -> list[email.message.Message]:
        """Every part, depth first, the message first: the indices of ``BodyPart.index``."""
        try:
            return list(self.parsed.message.walk())
        except Exception:  # a broken structure: the body parts sinkd found are all there is
            return []

    def _html_parser_comments(self, indices: set[int]) -> dict[int, str]:
        """HTML parts re-rendered where HTML::Parser, which SpamAssassin renders with, reads a
        comment differently from sinkd's HTML5 parser: a "<!--" with no "-->" after it ends at
        the next ">" for HTML::Parser (text after it is shown) but runs to the end of the part
        for an HTML5 parser (everything after it hidden). Spam of the public corpus uses it
        (``<!--#rotate>``). Only such parts are re-rendered."""
        found: dict[int, str] = {}
        parts = self._leaf_list
        limits = self.parsed.limits
        for index in sorted(indices):
            if index >= len(parts):
                continue
            html = self._decoded(parts[index])
            if html is None or "<!--" not in html:
                continue
            fixed = unterminated_comments(html)
            if fixed != html:
                rendered = render.render_html(
                    fixed.replace("\r\n", "\n"),
                    limits.body_part_scan_size,
                    limits.rawbody_part_scan_size,
                )
                found[index] = rendered.text
                self._fixed_html[index] = fixed
        return found

    def _decoded(self, part: email.message.Message) -> str | None:
        try:
            data = part.get_payload(decode=True)
            charset = part.get_content_charset()
        except Exception:  # undecodable: the shared decode's text stands
            return None
        if not isinstance(data, bytes):
            return None
        return decode_text(data, charset)[0]

    def _other_text_parts(self, known: set[int]) -> dict[int, str]:
        """The leaves SpamAssassin renders as text/plain that sinkd's body parts leave out:
        Util.pm parse_content_type reads every text/* type but text/html, text/x-vcard and
        text/calendar as text/plain (bug 5399), e.g. text/rfc822-headers of a delivery report
        or text/enriched. Decoded, cut at body_part_scan_size, one paragraph per line."""
        found: dict[int, str] = {}
        size = self.parsed.limits.body_part_scan_size
        for index, part in enumerate(self._leaf_list):
            if index in known or part.is_multipart():
                continue
            try:
                ctype = part.get_content_type()
                if not ctype.startswith("text/") or ctype in _NOT_PLAIN:
                    continue
                data = part.get_payload(decode=True)
                charset = part.get_content_charset()
            except Exception:  # undecodable: nothing SpamAssassin could read either
                continue
            if isinstance(data, bytes):
                text, _ = decode_text(data, charset)
                text = _cut(text.replace("\r\n", "\n"), size, "\n ")
                text = _WHITE.sub(" ", _PARAGRAPH_BREAK.sub("\0", text)).replace("\0", "\n")
                found[index] = text.strip()
        return found

    @cached_property
    def rawbody_chunks(self) -> tuple[str, ...]:
        """What ``rawbody`` rules read (Message.pm get_decoded_body_text_array): every leaf part
        of type text/* or message/* except text/calendar, transfer encoding undone, charset and
        HTML left as they are, line endings as LF, cut at rawbody_part_scan_size and split into
        chunks of 2 to 4 KB."""
        size = self.parsed.limits.rawbody_part_scan_size
        chunks: list[str] = []
        for part in self._leaves:
            ctype = part.get_content_type()
            if not ctype.startswith(("text/", "message/")) or ctype == "text/calendar":
                continue
            try:
                data = part.get_payload(decode=True)
            except Exception:  # a part that cannot be decoded is read as nothing
                continue
            if not isinstance(data, bytes):
                continue
            text = data.replace(b"\r\n", b"\n").decode("latin-1")
            chunks.extend(_short_paragraphs(_cut(text, size, "\n> ")))
        return tuple(chunks)

    @cached_property
    def _leaves(self) -> list[email.message.Message]:
        try:
            return [p for p in self.parsed.message.walk() if not p.is_multipart()]
        except Exception:  # a broken structure: the message itself as one leaf
            return [self.parsed.message]

    @cached_property
    def full(self) -> str:
        """What ``full`` rules read: the pristine message, headers and body, line endings as
        sent (Conf.pm "full")."""
        return self.parsed.raw.decode("latin-1")

    @cached_property
    def uris(self) -> tuple[str, ...]:
        """What ``uri`` rules read (PerMsgStatus.pm get_uri_list): the URIs of the HTML parts'
        URL-bearing attributes (href, src, action, background) and those written in the body
        text (schemes, "www."/"ftp." names, e-mail addresses as mailto:), each with the forms
        Util.pm uri_list_canonicalize adds (``canonical_uris``). Not modelled: bare domain
        names SpamAssassin recognises through its TLD list, and its redirector_pattern list
        (the built-in "http…" inside a URI is)."""
        found: dict[str, None] = {}
        self.body_lines  # noqa: B018 (re-renders the parts whose comments differ, first)
        sources = [*self.parsed.html_bodies, *self._fixed_html.values()]
        for html in sources:
            body = self.parsed.html_body(html)
            # Too deep to parse (HtmlBody.attribute_values): only its text URIs count.
            if body.too_deep() is not None:
                continue
            for value in body.attribute_values(_URI_ATTRIBUTES):
                found.update(dict.fromkeys(canonical_uris(octets(value))))
        for line in self.body_lines:
            for uri in _text_uris(line):
                found.update(dict.fromkeys(canonical_uris(uri)))
        return tuple(found)

    # --- welcomelist --------------------------------------------------------------------------

    @cached_property
    def from_addresses(self) -> tuple[str, ...]:
        """PerMsgStatus.pm all_from_addrs: the first Resent-From address if there is one, else
        every address of From, Envelope-Sender, Resent-Sender and X-Envelope-From, runs of dots
        squeezed, lower-cased for the comparison, plus the envelope sender
        (``envelope_from``)."""
        resent = self.header("Resent-From:first:addr")
        if resent:
            addresses = resent
        else:
            addresses = [
                a
                for request in (
                    "From:addr",
                    "Envelope-Sender:addr",
                    "Resent-Sender:addr",
                    "X-Envelope-From:addr",
                )
                for a in (self.header(request) or [])
            ]
            if self.envelope_from:
                addresses += self._address_parts(self.envelope_from, addr=True)
        unique: dict[str, None] = {}
        for address in addresses:
            if address:
                unique[re.sub(r"\.+", ".", address).lower()] = None
        return tuple(unique)

    @cached_property
    def envelope_from(self) -> str | None:
        """PerMsgStatus.pm get_envelope_from without envelope_sender_header: X-Envelope-From,
        then Envelope-Sender, then Return-Path, each only when no Received field comes before
        it (else a list may have replaced it); none when X-Sender and a fetchmail Received say
        the headers are fetchmail's guesses. SpamAssassin first looks for the "envelope-from"
        its relay parser finds in the Received fields; sinkd does not parse Received chains, so
        a message with such a field and no usable header is read without an envelope sender."""
        sender = self.header("X-Sender:first:addr")
        received = self.header("Received") or []
        if sender and "@" in sender[0] and any("(fetchmail" in v for v in received):
            return None
        everything = "".join(self.header("ALL") or [])
        for name in ("X-Envelope-From", "Envelope-Sender", "Return-Path"):
            found = self.header(f"{name}:first:addr")
            if not found:
                continue
            after = re.search(f"^Received:.*?^{name}:", everything, re.S | re.M | re.I)
            if after is None:
                return found[0]
            if name == "X-Envelope-From":
                return None  # SpamAssassin gives up here rather than read further headers
        return None


# Header request modifiers the views above implement (PerMsgStatus.pm _get has more).
SUPPORTED_MODIFIERS = frozenset({"raw", "addr", "name", "first", "last"})
# Pseudo-headers that need SpamAssassin's relay analysis or the envelope, not modelled here.
UNSUPPORTED_PSEUDO_HEADERS = frozenset(
    {
        "ALL-TRUSTED",
        "ALL-INTERNAL",
        "ALL-UNTRUSTED",
        "ALL-EXTERNAL",
        "envelopefrom",
        "x-spam-relays-untrusted",
        "x-spam-relays-trusted",
        "x-spam-relays-internal",
        "x-spam-relays-external",
    }
)
