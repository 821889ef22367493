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


def octets(text: str) -> str:
    """The byte view of ``text``: its UTF-8 octets, one character each (surrogate escapes,
    which stand for raw octets the parser kept, become those octets again)."""
    if text.isascii():
        return text
    return text.encode("utf-8", "surrogateescape").decode("latin-1")


def _decode_word(charset: str, encoding: str, payload: str) -> str:
    """One RFC 2047 encoded-word as its text's UTF-8 octets; undecodable words stay as
    written (Node.pm _decode_header leaves what it cannot decode)."""
    try:
        if encoding in "bB":
            data = base64.b64decode(payload + "=" * (-len(payload) % 4))
        else:
            data = binascii.a2b_qp(payload.replace("_", " ").encode("ascii"))
    except (binascii.Error, ValueError):
        return f"=?{charset}?{encoding}?{payload}?="
    name = charset.split("*", 1)[0]  # RFC 2231 §5: charset*language
    try:
        return data.decode(name, "replace").encode("utf-8").decode("latin-1")
    except LookupError:
        return data.decode("latin-1")


def decode_header(value: str) -> str:
    """A header value as Node.pm header() stores it: folds joined with one space, white space
    trimmed, encoded-words decoded (white space between adjacent words dropped, RFC 2047
    §6.2), raw octets kept."""
    value = _FOLD.sub(" ", value).strip()
    if "=?" not in value:
        return value
    value = _BETWEEN_WORDS.sub("", value)
    return _ENCODED_WORD.sub(lambda m: _decode_word(m[1], m[2], m[3]), value)


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
        paragraphs = "\n".join(octets(part.text) for part in self.parsed.body_parts if part.text)
        return tuple(_short_lines(first + paragraphs))

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
        """What ``uri`` rules read, approximating PerMsgStatus.pm get_uri_list: the URL-bearing
        attributes of the HTML parts (href, src, action, background) and the URIs written in
        the rendered text (http, https, ftp, mailto, and "www."/"ftp." names given an http:// or
        ftp:// scheme as SpamAssassin does). Not modelled: bare domain names recognised by
        SpamAssassin's TLD list, redirector targets, and the extra normalised forms
        SpamAssassin adds (decoded percent-escapes, unwrapped redirectors)."""
        found: list[str] = []
        seen: set[str] = set()

        def add(uri: str) -> None:
            uri = uri.strip()
            if uri and uri not in seen:
                seen.add(uri)
                found.append(octets(uri))

        for html in self.parsed.html_bodies:
            body = self.parsed.html_body(html)
            # Too deep to parse (HtmlBody.attribute_values): only its text URIs count.
            if body.too_deep() is not None:
                continue
            for value in body.attribute_values(_URI_ATTRIBUTES):
                add(value)
        for line in self.body_lines:
            for match in _TEXT_URI.finditer(line):
                uri = match.group(0).rstrip(_URI_TAIL)
                lower = uri.lower()
                if lower.startswith("www."):
                    uri = "http://" + uri
                elif lower.startswith("ftp."):
                    uri = "ftp://" + uri
                add(uri)
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
