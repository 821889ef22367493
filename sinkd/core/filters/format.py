"""Message format hygiene: bare line ends, NUL bytes, over-long lines, smuggling look-alikes,
MIME defects and the RFC 5322 header fields a message must (or may only once) carry.

Owns the ``format`` filter kind. Real gateways differ here (Postfix 3.9 can refuse bare LF,
Exchange rewraps long lines, most accept broken MIME, Gmail refuses a message without From or
with two Subject fields), so each problem has its own outcome; by default each is recorded and
nothing more. Pure: reads counts the parser already made and the parsed header fields.

```yaml
- kind: format
  name: rfc-hygiene
  bare_lf: {action: none}                  # RFC 5321 §2.3.8: lines end in CRLF
  smuggling: {action: reject, reply: "550 5.5.2 Message contains bare end-of-data sequences"}
  nul_bytes: {action: score, score: 1.0}
  long_lines: {action: none}               # RFC 5322 §2.1.1: at most 998 octets a line
  mime_defects: {action: none}
  missing_from: {action: reject}           # RFC 5322 §3.6: exactly one From
  invalid_from: {action: none}             # From holds no address sinkd can read
  multiple_from_addresses: {action: none}  # more than one address in From
  missing_date: {action: none}             # RFC 5322 §3.6: exactly one Date
  missing_message_id: {action: none}       # RFC 5322 §3.6.4: SHOULD have one
  invalid_message_id: {action: none}       # RFC 5322 §3.6.4: "<" id-left "@" id-right ">"
  duplicate_headers: {action: reject}      # RFC 5322 §3.6: at most one of each listed field
```

Codes: ``FORMAT_MISSING_FROM``, ``FORMAT_INVALID_FROM``, ``FORMAT_FROM_MULTIPLE_ADDRESSES``,
``FORMAT_MISSING_DATE``, ``FORMAT_MISSING_MESSAGE_ID``, ``FORMAT_INVALID_MESSAGE_ID`` and one
``FORMAT_DUPLICATE_HEADER`` per repeated field (``detail.field`` names it; a reply may say
``${field}``). The header checks read the top-level header section only: a forwarded message
inside the body is not this message (RFC 5322 §3.6 applies to each message on its own).
"""

from __future__ import annotations

import email.utils
import re
from collections import Counter
from collections.abc import Callable
from typing import Literal

from sinkd.core.filters.base import Filter, MessageContext, reply_variables
from sinkd.core.message import ParsedMessage
from sinkd.core.model import Action, Category, Finding, FindingCode
from sinkd.core.schema import (
    CompileContext,
    FilterSpecBase,
    ReplyTemplate,
    RuleOutcome,
)

_NOTE = RuleOutcome(action=Action.NONE)

# RFC 5322 §3.6, the table of fields: orig-date and from occur exactly once; sender, reply-to,
# to, cc, bcc, message-id, in-reply-to, references and subject at most once. (Gmail checks the
# same eleven for duplicates: support.google.com/a/answer/13567860.)
SINGLE_FIELDS: tuple[str, ...] = (
    "Date",
    "From",
    "Sender",
    "Reply-To",
    "To",
    "Cc",
    "Bcc",
    "Message-ID",
    "In-Reply-To",
    "References",
    "Subject",
)
_SINGLE = {name.lower(): name for name in SINGLE_FIELDS}

# RFC 5322 §3.6.4 msg-id = [CFWS] "<" id-left "@" id-right ">" [CFWS]; id-left and id-right are
# dot-atom-text or (obsolete, §4.5.4) quoted strings and domain literals. Structure only: one
# "<...@...>" with no spaces or further angle brackets.
_MSG_ID = re.compile(r"^<[^<>@\s]+@[^<>@\s]+>$")
_COMMENT = re.compile(r"\([^()]*\)")
# An address's domain: dot-separated labels without spaces or specials, or a [literal].
_DOMAIN = re.compile(r"^(\[[^\[\]\s]+\]|[^\s.@<>()\[\],;:\\\"]+(\.[^\s.@<>()\[\],;:\\\"]+)*\.?)$")

FIELDS: tuple[str, ...] = (
    "bare_lf",
    "smuggling",
    "nul_bytes",
    "long_lines",
    "mime_defects",
    "missing_from",
    "invalid_from",
    "multiple_from_addresses",
    "missing_date",
    "missing_message_id",
    "invalid_message_id",
    "duplicate_headers",
)


class FormatSpec(FilterSpecBase):
    kind: Literal["format"]
    bare_lf: RuleOutcome = _NOTE
    smuggling: RuleOutcome = _NOTE
    nul_bytes: RuleOutcome = _NOTE
    long_lines: RuleOutcome = _NOTE
    mime_defects: RuleOutcome = _NOTE
    missing_from: RuleOutcome = _NOTE
    invalid_from: RuleOutcome = _NOTE
    multiple_from_addresses: RuleOutcome = _NOTE
    missing_date: RuleOutcome = _NOTE
    missing_message_id: RuleOutcome = _NOTE
    invalid_message_id: RuleOutcome = _NOTE
    duplicate_headers: RuleOutcome = _NOTE


def header_fields(parsed: ParsedMessage) -> list[tuple[str, str]]:
    """The top-level header fields as (name, unfolded value), in order."""
    return list(parsed.fields)


def _getaddresses(value: str) -> list[tuple[str, str]]:
    return email.utils.getaddresses([value])


def from_addresses(
    value: str, parse: Callable[[str], list[tuple[str, str]]] = _getaddresses
) -> list[str]:
    """The mailboxes of a From field that have a local part and a domain (RFC 5322 §3.4).

    ``parse`` is ``email.utils.getaddresses`` of one value (``ParsedMessage.addresses`` shares
    its result with ``header_from``)."""
    try:
        pairs = parse(value)
    except Exception:  # a field no parser can read holds no address
        return []
    out: list[str] = []
    for _, address in pairs:
        local, at, domain = address.rpartition("@")
        if at and local.strip() and _DOMAIN.match(domain.strip()):
            out.append(address)
    return out


def valid_message_id(value: str) -> bool:
    return bool(_MSG_ID.match(_COMMENT.sub("", value).strip()))


class FormatFilter(Filter):
    kind = "format"
    Spec = FormatSpec
    category = Category.FORMAT
    codes = (
        FindingCode(
            "FORMAT_SMUGGLING", "end-of-data look-alikes such as `<LF>.<LF>` (SMTP smuggling)"
        ),
        FindingCode("FORMAT_BARE_LINE_ENDING", "a bare LF or CR line ending"),
        FindingCode("FORMAT_NUL_BYTES", "NUL bytes in the message"),
        FindingCode("FORMAT_LONG_LINES", "a line over 998 octets (RFC 5322 §2.1.1)"),
        FindingCode("FORMAT_MIME_DEFECTS", "broken MIME: boundaries, charsets, base64"),
        FindingCode("FORMAT_MISSING_FROM", "no From header field"),
        FindingCode("FORMAT_INVALID_FROM", "no name@domain in From"),
        FindingCode("FORMAT_FROM_MULTIPLE_ADDRESSES", "more than one address in From"),
        FindingCode("FORMAT_MISSING_DATE", "no Date header field"),
        FindingCode("FORMAT_MISSING_MESSAGE_ID", "no Message-ID header field"),
        FindingCode("FORMAT_INVALID_MESSAGE_ID", "a Message-ID that is not `<left@right>`"),
        FindingCode(
            "FORMAT_DUPLICATE_HEADER",
            "a field RFC 5322 §3.6 allows once appears twice (one per field)",
        ),
    )

    def __init__(self, spec: FormatSpec, ctx: CompileContext) -> None:
        super().__init__(spec, ctx)
        self.spec = spec
        self.replies: dict[str, ReplyTemplate] = {}
        for field in FIELDS:
            outcome: RuleOutcome = getattr(spec, field)
            self.replies[field] = ctx.at(field).outcome_reply(
                outcome.action, outcome.reply, refusal="postfix.content_text"
            )

    def _finding(
        self,
        ctx: MessageContext,
        key: str,
        code: str,
        reason: str,
        detail: dict[str, object],
        **variables: object,
    ) -> Finding:
        outcome: RuleOutcome = getattr(self.spec, key)
        return self.finding(
            code=code,
            action=outcome.action,
            score=outcome.score,
            reason=reason,
            detail=detail,
            reply=self.replies[key].render(reply_variables(ctx.envelope, text=reason) | variables),
        )

    async def check_message(self, ctx: MessageContext) -> list[Finding]:
        issues = ctx.parsed.raw_issues
        findings: list[Finding] = []
        if issues.smuggling:
            findings.append(
                self._finding(
                    ctx,
                    "smuggling",
                    "FORMAT_SMUGGLING",
                    "The message contains end-of-data look-alikes (a dot on a line ended by a "
                    "bare CR or LF), the trick behind SMTP smuggling; some servers would split "
                    "the message there.",
                    {"sequences": issues.smuggling},
                )
            )
        if issues.bare_lf or issues.bare_cr:
            findings.append(
                self._finding(
                    ctx,
                    "bare_lf",
                    "FORMAT_BARE_LINE_ENDING",
                    f"{issues.bare_lf + issues.bare_cr} lines end in a bare LF or CR instead of "
                    "CRLF; strict servers refuse such mail.",
                    {"bare_lf": issues.bare_lf, "bare_cr": issues.bare_cr},
                )
            )
        if issues.nul_bytes:
            findings.append(
                self._finding(
                    ctx,
                    "nul_bytes",
                    "FORMAT_NUL_BYTES",
                    f"The message contains {issues.nul_bytes} NUL bytes, "
                    "which mail must not carry.",
                    {"count": issues.nul_bytes},
                )
            )
        if issues.long_lines:
            findings.append(
                self._finding(
                    ctx,
                    "long_lines",
                    "FORMAT_LONG_LINES",
                    f"{issues.long_lines} lines are longer than the 998 characters mail allows "
                    f"(longest {issues.max_line_length}); some servers break or refuse them.",
                    {"count": issues.long_lines, "longest": issues.max_line_length},
                )
            )
        defects = ctx.parsed.defects
        if defects:
            shown = "; ".join(defects[:3]) + ("; ..." if len(defects) > 3 else "")
            findings.append(
                self._finding(
                    ctx,
                    "mime_defects",
                    "FORMAT_MIME_DEFECTS",
                    f"The message is not well-formed MIME: {shown}.",
                    {"defects": defects[:50], "count": len(defects)},
                )
            )
        findings.extend(self._header_findings(ctx))
        return findings

    def _header_findings(self, ctx: MessageContext) -> list[Finding]:
        """RFC 5322 §3.6: the fields every message carries, and those it may carry only once."""
        fields = header_fields(ctx.parsed)
        counts = Counter(name.lower() for name, _ in fields)
        findings: list[Finding] = []
        froms = [value for name, value in fields if name.lower() == "from"]
        if not froms:
            findings.append(
                self._finding(
                    ctx,
                    "missing_from",
                    "FORMAT_MISSING_FROM",
                    "The message has no From header field, which every message must have "
                    "(RFC 5322 §3.6), so nothing says who sent it.",
                    {"field": "From"},
                    field="From",
                )
            )
        elif len(froms) == 1:
            addresses = from_addresses(froms[0], ctx.parsed.addresses)
            if not addresses:
                findings.append(
                    self._finding(
                        ctx,
                        "invalid_from",
                        "FORMAT_INVALID_FROM",
                        f"The From header field ({froms[0][:200]!r}) holds no address of the "
                        "form name@domain (RFC 5322 §3.4), so nothing says who sent it.",
                        {"field": "From", "value": froms[0][:500]},
                        field="From",
                    )
                )
            elif len(addresses) > 1:
                # RFC 5322 §3.6.2 allows several authors only with a Sender field; DMARC
                # (RFC 7489 §6.6.1) and most receivers cannot judge such a message.
                findings.append(
                    self._finding(
                        ctx,
                        "multiple_from_addresses",
                        "FORMAT_FROM_MULTIPLE_ADDRESSES",
                        f"The From header field names {len(addresses)} addresses "
                        f"({', '.join(addresses[:5])}); many receivers accept only one author.",
                        {"field": "From", "addresses": addresses[:20], "count": len(addresses)},
                        field="From",
                    )
                )
        if not counts["date"]:
            findings.append(
                self._finding(
                    ctx,
                    "missing_date",
                    "FORMAT_MISSING_DATE",
                    "The message has no Date header field, which every message must have "
                    "(RFC 5322 §3.6).",
                    {"field": "Date"},
                    field="Date",
                )
            )
        ids = [value for name, value in fields if name.lower() == "message-id"]
        if not ids:
            findings.append(
                self._finding(
                    ctx,
                    "missing_message_id",
                    "FORMAT_MISSING_MESSAGE_ID",
                    "The message has no Message-ID header field; RFC 5322 §3.6.4 says every "
                    "message should have one, and some receivers (Gmail) refuse mail without it. "
                    "Most submission servers and ESPs add one on the way out; if the message "
                    "reaches the receiver through one that does, it will not be refused for this.",
                    {"field": "Message-ID"},
                    field="Message-ID",
                )
            )
        elif not all(valid_message_id(value) for value in ids):
            bad = next(value for value in ids if not valid_message_id(value))
            findings.append(
                self._finding(
                    ctx,
                    "invalid_message_id",
                    "FORMAT_INVALID_MESSAGE_ID",
                    f"The Message-ID header field ({bad[:200]!r}) is not of the form "
                    "<left@right> that RFC 5322 §3.6.4 requires; some receivers (Gmail) refuse "
                    "such mail as if it had none.",
                    {"field": "Message-ID", "value": bad[:500]},
                    field="Message-ID",
                )
            )
        for lower, name in _SINGLE.items():
            if counts[lower] > 1:
                findings.append(
                    self._finding(
                        ctx,
                        "duplicate_headers",
                        "FORMAT_DUPLICATE_HEADER",
                        f"The message has {counts[lower]} {name} header fields where RFC 5322 "
                        "§3.6 allows only one; strict receivers refuse it.",
                        {"field": name, "count": counts[lower]},
                        field=name,
                    )
                )
        return findings
