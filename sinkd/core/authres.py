"""Authentication-Results (RFC 8601): the header field a receiver adds to what it delivers.

Owns building the field's value from the SPF, Sender ID, DKIM and DMARC findings and putting
it on a message: every Authentication-Results field that claims our authserv-id is removed
first (RFC 8601 §5: they can only be forged, since they came from outside), the new one goes
on top, and every other byte of the message stays as it was. Pure.

A check that could not be judged (``Finding.unjudged``: offline DNS without data, live DNS
without an answer) reports the result its filter gave it (``none`` for SPF, Sender ID and
DMARC, ``neutral`` for a DKIM signature whose key could not be had, ``temperror`` for a live
timeout), never ``fail`` or ``permerror``, with a comment saying why (RFC 8601 §2.2 allows
comments in a resinfo).

``AUTHSERV_ID`` names this receiver until profiles carry an authserv-id of their own (a
profile field is planned; the engine reads this constant meanwhile).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sinkd.core.model import Category, Finding, Unjudged

AUTHSERV_ID = "sinkd.local"
HEADER_NAME = "Authentication-Results"
_FOLD_AT = 78  # RFC 5322 §2.1.1: lines SHOULD be no more than 78 characters

# RFC 8601 §2.7: the results each method may report.
_SPF_RESULTS = frozenset(
    {"none", "neutral", "pass", "fail", "softfail", "temperror", "permerror", "policy"}
)
_DKIM_RESULTS = frozenset({"none", "pass", "fail", "policy", "neutral", "temperror", "permerror"})
_DMARC_RESULTS = frozenset({"none", "pass", "fail", "temperror", "permerror"})

# RFC 2045 token characters (value = token / quoted-string, RFC 8601 §2.2) and the
# local-part@domain form a pvalue also allows.
_TOKEN = re.compile(r"^[!#$%&'*+\-.0-9A-Z^_`a-z{|}~]+$")
_ADDRESS = re.compile(r"^[!#$%&'*+\-/=?^_`{|}~.0-9A-Za-z]*@[0-9A-Za-z._-]+$")
_FIELD_NAME = re.compile(rb"([!-9;-~]+)[ \t]*:")  # used with match(): anchored
_UNJUDGED_COMMENT = {
    Unjudged.NO_DNS_DATA: "not judged: no DNS data",
    Unjudged.UNAVAILABLE: "not judged: DNS did not answer",
    Unjudged.ERROR: "not judged: check failed",
}
_CANNOT_STAND = frozenset({"fail", "permerror", "softfail", "pass"})  # not without a judgement


def _quoted(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + re.sub(r"[\r\n]+", " ", escaped) + '"'


def _pvalue(text: str) -> str:
    return text if _TOKEN.match(text) or _ADDRESS.match(text) else _quoted(text)


@dataclass(frozen=True, slots=True)
class _Method:
    name: str  # the method as RFC 8601 §2.7 registers it
    prefixes: tuple[str, ...]  # finding codes it reads
    results: frozenset[str]
    props: Callable[[Mapping[str, Any]], list[str]]  # "ptype.property=value" items
    comment: Callable[[Mapping[str, Any]], str | None] = lambda detail: None


def _spf_props(detail: Mapping[str, Any]) -> list[str]:
    # RFC 8601 §2.7.2: smtp.mailfrom is the checked address (postmaster@<HELO> for a null
    # sender), smtp.helo the HELO domain.
    if detail.get("identity") == "helo":
        prop, value = "smtp.helo", detail.get("domain")
    else:
        prop, value = "smtp.mailfrom", detail.get("sender") or detail.get("domain")
    return [f"{prop}={_pvalue(str(value))}"] if value else []


def _senderid_props(detail: Mapping[str, Any]) -> list[str]:
    # RFC 8601 §2.7.2: header.<field the Purported Responsible Address came from>.
    value = detail.get("pra") or detail.get("domain")
    header = str(detail.get("pra_header") or "from").lower()
    return [f"header.{header}={_pvalue(str(value))}"] if value else []


def _dkim_props(detail: Mapping[str, Any]) -> list[str]:
    props = []
    for key, prop in (("domain", "header.d"), ("selector", "header.s")):
        if detail.get(key):
            props.append(f"{prop}={_pvalue(str(detail[key]))}")
    return props


def _dmarc_props(detail: Mapping[str, Any]) -> list[str]:
    domain = detail.get("domain")
    return [f"header.from={_pvalue(str(domain))}"] if domain else []


def _dmarc_comment(detail: Mapping[str, Any]) -> str | None:
    policy, disposition = detail.get("policy"), detail.get("disposition")
    if not policy:
        return None
    tag = detail.get("policy_tag") or "p"
    return f"{tag}={policy} dis={disposition or 'none'}"


_METHODS = (
    _Method("spf", ("SPF_",), _SPF_RESULTS, _spf_props),
    _Method("sender-id", ("SENDERID_", "SENDER_ID_"), _SPF_RESULTS, _senderid_props),
    _Method("dkim", ("DKIM_",), _DKIM_RESULTS, _dkim_props),
    _Method("dmarc", ("DMARC_",), _DMARC_RESULTS, _dmarc_props, _dmarc_comment),
)


def _result(method: _Method, finding: Finding) -> str | None:
    stated = str(finding.detail.get("result") or "").lower()
    if stated in method.results:
        return stated
    suffix = finding.code.rpartition("_")[2].lower()
    return suffix if suffix in method.results else None


def authentication_results(authserv_id: str, findings: Sequence[Finding]) -> str:
    """The value of an Authentication-Results field (RFC 8601 §2.2), unfolded: the
    authserv-id, then one resinfo per SPF, Sender ID, DKIM and DMARC result in that order,
    or ``none`` when there is no result to report."""
    resinfos: list[str] = []
    for method in _METHODS:
        for finding in findings:
            if finding.category is not Category.AUTHENTICATION:
                continue
            if not finding.code.startswith(method.prefixes):
                continue
            if method.name == "sender-id" and finding.detail.get("scope") == "mfrom":
                continue  # RFC 8601 registers Sender ID's PRA result only (header.*)
            result = _result(method, finding)
            if result is None:
                continue
            if finding.unjudged is not None and result in _CANNOT_STAND:
                result = "none"  # a check that was not judged cannot claim a result
            parts = [f"{method.name}={result}"]
            comment = method.comment(finding.detail)
            if finding.unjudged is not None:
                comment = _UNJUDGED_COMMENT[finding.unjudged]
            if comment:
                parts.append(f"({comment})")
            error = finding.detail.get("error")
            if error and result != "pass":
                parts.append(f"reason={_quoted(str(error))}")
            parts.extend(method.props(finding.detail))
            resinfos.append(" ".join(parts))
    return "; ".join([_pvalue(authserv_id), *(resinfos or ["none"])])


# --- putting it on a message ----------------------------------------------------------------


_TOP_SPECIAL = re.compile(r'[\\"();]')


def _split_top(value: str) -> list[str]:
    """``value`` cut at the semicolons outside quoted strings and comments. Only the special
    characters are looked at (a Python step per character cost ~30 us a message)."""
    parts: list[str] = []
    start = 0
    depth, quoted, skip_at = 0, False, -1
    for match in _TOP_SPECIAL.finditer(value):
        at = match.start()
        if at == skip_at:
            continue  # escaped by the backslash before it
        char = value[at]
        if char == "\\":
            if quoted or depth:
                skip_at = at + 1
        elif quoted:
            quoted = char != '"'
        elif char == '"':
            quoted = not depth
        elif char == "(":
            depth += 1
        elif char == ")":
            depth = max(0, depth - 1)
        elif not depth:  # ";"
            parts.append(value[start:at].strip())
            start = at + 1
    parts.append(value[start:].strip())
    return [p for p in parts if p]


def _folded(value: str, eol: bytes) -> bytes:
    """The whole field, folded between resinfos where a line would pass 78 characters."""
    parts = _split_top(value)
    lines = [f"{HEADER_NAME}: {parts[0]}" + (";" if len(parts) > 1 else "")]
    for index, part in enumerate(parts[1:], start=2):
        piece = part + (";" if index < len(parts) else "")
        if len(lines[-1]) + 1 + len(piece) <= _FOLD_AT:
            lines[-1] += " " + piece
        else:
            lines.append("\t" + piece)
    return eol.join(_octets(line) for line in lines) + eol


def _octets(line: str) -> bytes:
    """UTF-8, except that octets which were not UTF-8 where they came from (an SMTP command
    or a header, held as surrogate escapes) are given back as they were sent."""
    try:
        return line.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a lone surrogate that stands for no octet
        return line.encode("utf-8", "replace")


def _header_fields(raw: bytes) -> list[tuple[int, int]]:
    """(start, stop) of every field of the header section, continuation lines included."""
    fields: list[tuple[int, int]] = []
    pos, size = 0, len(raw)
    while pos < size:
        newline = raw.find(b"\n", pos)
        stop = size if newline < 0 else newline + 1
        line = raw[pos:stop]
        if line in (b"\r\n", b"\n"):
            break  # the empty line that ends the header section
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] = (fields[-1][0], stop)  # RFC 5322 §2.2.3: a folded line
        else:
            fields.append((pos, stop))
        pos = stop
    return fields


def _skip_cfws(text: str, pos: int) -> int:
    """Past whitespace and (nested) comments (RFC 5322 §3.2.2)."""
    depth = 0
    while pos < len(text):
        char = text[pos]
        if depth:
            if char == "\\":
                pos += 1
            elif char == "(":
                depth += 1
            elif char == ")":
                depth -= 1
        elif char == "(":
            depth = 1
        elif not char.isspace():
            return pos
        pos += 1
    return pos


def authserv_id_of(field_value: bytes) -> str | None:
    """The authserv-id an Authentication-Results field body claims (RFC 8601 §2.2), lower
    case, or None when it names none."""
    text = re.sub(r"\r?\n", "", field_value.decode("latin-1"))
    pos = _skip_cfws(text, 0)
    if text[pos : pos + 1] == '"':
        out, pos = [], pos + 1
        while pos < len(text) and text[pos] != '"':
            if text[pos] == "\\":
                pos += 1
            out.append(text[pos : pos + 1])
            pos += 1
        return "".join(out).lower() or None
    match = re.match(r'[^\s;()"]+', text[pos:])
    return match.group(0).lower() if match else None


def add_authentication_results(raw: bytes, value: str, authserv_id: str) -> bytes:
    """``raw`` with every Authentication-Results field claiming ``authserv_id`` removed
    (case-insensitively, folded or not) and a field with ``value`` put on top. Every other
    byte is kept; the new field uses the message's own line ending."""
    first_newline = raw.find(b"\n")
    eol = (
        b"\n" if first_newline > 0 and raw[first_newline - 1 : first_newline] != b"\r" else b"\r\n"
    )
    ours = authserv_id.lower()
    kept: list[bytes] = []
    cursor = 0
    for start, stop in _header_fields(raw):
        match = _FIELD_NAME.match(raw, start, stop)
        if match is None or match.group(1).lower() != HEADER_NAME.lower().encode():
            continue
        if authserv_id_of(raw[match.end() : stop]) == ours:
            kept.append(raw[cursor:start])
            cursor = stop
    kept.append(raw[cursor:])
    return _folded(value, eol) + b"".join(kept)


__all__ = [
    "AUTHSERV_ID",
    "add_authentication_results",
    "authentication_results",
    "authserv_id_of",
]
