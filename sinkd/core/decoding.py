"""Bytes to text as a mail reader reads them: charsets, RFC 2047 encoded-words, lenient base64.

Owns the decoding helpers that both views of a message share: ``sinkd.core.message`` (the email
package's parse) and ``sinkd.core.mimetree`` (byte offsets for stripping). Pure and never raises
on any input; it must not import either of those modules, so that both import it at module
level and neither imports the other back.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import re
from collections.abc import Callable

__all__ = [
    "CHARSET_ALIASES",
    "MAX_LINE_OCTETS",
    "decode_encoded_words",
    "decode_text",
    "decodes_cleanly",
    "describe_error",
    "lenient_b64decode",
    "utf8_or_latin1",
]

# RFC 5322 §2.1.1: a line must be no more than 998 characters, excluding the CRLF.
MAX_LINE_OCTETS = 998

# Charset labels that mail uses but Python's codec registry lacks, or that are better read as
# their superset; follows the WHATWG Encoding Standard's label table.
CHARSET_ALIASES: dict[str, str] = {
    "iso-8859-6-i": "iso-8859-6",
    "iso-8859-6-e": "iso-8859-6",
    "iso-8859-8-i": "iso-8859-8",
    "iso-8859-8-e": "iso-8859-8",
    "windows-874": "cp874",
    "x-sjis": "cp932",
    "shift_jis": "cp932",
    "x-euc-jp": "euc_jp",
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "x-gbk": "gb18030",
    "ks_c_5601-1987": "cp949",
    "euc-kr": "cp949",
    "x-mac-roman": "mac-roman",
}
# No charset, or US-ASCII (RFC 2045 §5.2 default), is read as UTF-8 (an ASCII superset) so that
# the common undeclared 8-bit body still yields its words.
_ASCII_LABELS = frozenset({"us-ascii", "ascii", "ansi_x3.4-1968", "iso646-us", "us"})

# RFC 2047 §2 encoded-word; the text part is matched non-greedily up to "?=" like the email
# package does, which tolerates the spaces broken mailers put inside Q-encoded words.
_ENCODED_WORD = re.compile(r"=\?([^?\s]*)\?([qQbB])\?(.*?)\?=")
_NOT_BASE64 = re.compile(rb"[^A-Za-z0-9+/]")


def decode_text(data: bytes, charset: str | None) -> tuple[str, str | None]:
    """Bytes to text in ``charset`` as a mail reader would; never raises.

    Returns the text and, when something went wrong, what (e.g. "unknown charset 'x-foo'").
    """
    label = (charset or "").strip().strip("\"'").lower()
    if not label or label in _ASCII_LABELS:
        return utf8_or_latin1(data), None
    codec = CHARSET_ALIASES.get(label, label)
    try:
        return data.decode(codec), None
    except UnicodeDecodeError:
        pass
    except Exception:
        # LookupError for unknown names and for bytes-to-bytes codecs ("hex", "zlib");
        # UnicodeError for codecs that cannot decode at all ("undefined").
        return utf8_or_latin1(data), f"unknown charset {label!r}"
    problem = f"undecodable bytes for charset {label!r}"
    try:
        return data.decode(codec, "replace"), problem
    except Exception:  # a codec that rejects the "replace" handler (e.g. idna)
        return utf8_or_latin1(data), problem


# Codecs (by codecs.lookup name) that read any ASCII octets as those characters without error.
_ASCII_SUPERSETS = frozenset({"utf-8", "iso8859-1", "iso8859-15", "cp1252", "ascii"})


def decodes_cleanly(data: bytes, charset: str | None) -> bool:
    """Whether ``decode_text(data, charset)`` reports no problem; without building the text
    where that is evident (no charset or US-ASCII, ASCII octets in an ASCII superset)."""
    label = (charset or "").strip().strip("\"'").lower()
    if not label or label in _ASCII_LABELS:
        return True  # utf8_or_latin1 reads anything
    if data.isascii():
        try:
            if codecs.lookup(CHARSET_ALIASES.get(label, label)).name in _ASCII_SUPERSETS:
                return True
        except LookupError:
            return False  # an unknown charset is a problem
    return decode_text(data, charset)[1] is None


def decode_encoded_words(value: str, where: str, note: Callable[[str], None]) -> str:
    """Decode RFC 2047 encoded-words, joining them the way email.header.make_header does.

    Never raises: what went wrong is passed to ``note`` as a sentence ending in ``where`` (a
    noun phrase such as "Subject header"). Hand-written rather than email.header.decode_header:
    that raises on bad base64 and mangles non-ASCII text outside encoded-words
    (raw-unicode-escape).
    """
    if "=?" not in value:
        return value
    out: list[str] = []
    pending = bytearray()  # adjacent words in one charset are decoded together, since a
    pending_charset = ""  # multi-byte character may be split across them (RFC 2047 §5)

    def flush() -> None:
        if pending:
            text, problem = decode_text(bytes(pending), pending_charset)
            if problem:
                note(f"{problem} in {where}")
            out.append(text)
            pending.clear()

    pos = 0
    after_word = False
    for match in _ENCODED_WORD.finditer(value):
        gap = value[pos : match.start()]
        # RFC 2047 §6.2: white space between adjacent encoded-words is not displayed.
        if gap and not (after_word and gap.isspace()):
            flush()
            out.append(gap)
        # RFC 2231 §5: "charset*language"
        charset = match.group(1).partition("*")[0].lower()
        encoded = match.group(3).encode("utf-8", "surrogateescape")
        try:
            if match.group(2) in "qQ":
                data = binascii.a2b_qp(encoded, header=True)  # RFC 2047 §4.2: "_" is space
            else:
                data = base64.b64decode(encoded + b"=" * (-len(encoded) % 4))
        except (binascii.Error, ValueError):
            note(f"bad base64 in an encoded-word of the {where}")
            flush()
            out.append(match.group(0))
            after_word = False
        else:
            if charset != pending_charset:
                flush()
                pending_charset = charset
            pending += data
            after_word = True
        pos = match.end()
    flush()
    out.append(value[pos:])
    return "".join(out)


def utf8_or_latin1(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")  # maps every octet, cannot fail


def lenient_b64decode(data: bytes) -> bytes:
    """Decode what is decodable: drop non-alphabet octets, then a lone trailing sextet."""
    sextets = _NOT_BASE64.sub(b"", data)
    if len(sextets) % 4 == 1:
        sextets = sextets[:-1]  # 6 bits cannot make an octet
    return base64.b64decode(sextets + b"=" * (-len(sextets) % 4))


def describe_error(exc: BaseException) -> str:
    text = str(exc)
    if len(text) > 120:
        text = text[:117] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
