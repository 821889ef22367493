"""Postfix's cleanup(8) content inspection: header_checks, mime_header_checks,
nested_header_checks and body_checks, and ``message_size_limit`` at the end of DATA.

Owns the ``postfix_cleanup`` filter kind (issue 20's Postfix import writes it from main.cf and
the check tables): each logical header and body record of the raw message, as Postfix 3.7's
cleanup sees it (``sinkd.core.postfix_lines``), is looked up in its class's table
(``sinkd.core.postfix_tables``, first match in file order) and the action is carried out as
cleanup_message.c's cleanup_act does (header_checks(5)). Pure: it reads the message it is
given, never rewrites it, and does no I/O.

```yaml
- kind: postfix_cleanup
  name: cleanup
  source: "imported from main.cf"
  parameters:
    message_size_limit: {value: "10240000", source: "main.cf:30"}
    myhostname: {value: "gateway.example", source: "main.cf:2"}
  header_checks: {table: hdr, source: "main.cf:31"}
  body_checks: {table: body, source: "main.cf:32"}
  tables:
    hdr:
      type: regexp
      source: "/etc/postfix/header_checks"
      entries:
        - key: "/^Subject:.*lottery/"
          value: "REJECT Subject rejected by policy"
          source: "header_checks:1"
        - {key: "/^X-Spam-Flag: YES/", value: "HOLD", source: "header_checks:2"}
    body:
      type: regexp
      source: "/etc/postfix/body_checks"
      entries:
        - {key: "/you are a winner/", value: "REJECT", source: "body_checks:1"}
```

``mime_header_checks`` and ``nested_header_checks`` default to ``$header_checks``, as in
postconf(5); ``{table: null}`` says main.cf sets one empty. Parameters missing from
``parameters`` take Postfix 3.7's defaults (``postconf -d``).

What each action does here (cleanup_message.c cleanup_act; replies from smtpd.c and
cleanup_strerror.c, observed in tests/e2e/test_postfix_gateway.py):

- ``REJECT [text]``: ``550 5.7.1 text`` (``message content rejected`` without text); a text
  starting with an RFC 3463 code ``4.x.y``/``5.x.y`` keeps it, and ``4.x.y`` is a
  ``451`` tempfail. Inspection ends.
- ``DISCARD``: accepted and dropped (sinkd ``discard``); inspection ends.
- ``HOLD``: accepted into the hold queue (sinkd ``quarantine``); inspection goes on.
- ``PASS`` and ``REDIRECT user@domain``: inspection ends; recorded only (sinkd does not route).
- ``WARN``, ``INFO``, ``IGNORE``, ``STRIP``, ``PREPEND``, ``REPLACE``, ``FILTER``, ``BCC``:
  recorded only, inspection goes on (sinkd neither rewrites the stored message nor routes it;
  a replaced or removed line changes nothing later rules read, since each line is looked up
  once and MIME structure is read before the lookup).
- ``DUNNO`` and ``OK``: as if nothing matched.
- A message whose size as smtpd counts it is over ``message_size_limit``: ``552 5.3.4 Error:
  message file too big`` at the end of DATA (smtpd.c; observed), whatever the checks said.
  Not modelled: cleanup also holds the queue file to that limit (cleanup_init.c
  set_file_limit), envelope records and its Received: header included, so Postfix refuses a
  message whose content is a little under the limit (946 bytes under it with the
  differential test's envelope) that sinkd accepts.
- ``hopcount_limit`` (50) Received: headers or more in the primary header, smtpd's own
  included: ``554 5.4.0 Error: too many hops`` (cleanup_message.c, cleanup_strerror.c), unless
  a header REJECT with a 4.x.y code came first. (A Received: header removed by IGNORE still
  counts, and Postfix checks only at the ones it keeps: sinkd counts them all.)
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Literal

from pydantic import Field

from sinkd.core.filters.base import Filter, MessageContext
from sinkd.core.model import Action, Category, Finding, FindingCode, Reply
from sinkd.core.postfix_lines import (
    CheckClass,
    ContentLine,
    content_lines,
    received_header,
    smtpd_size,
)
from sinkd.core.postfix_tables import Table, TableSpec, compile_table
from sinkd.core.schema import CompileContext, CompileError, FilterSpecBase, Spec

__all__ = [
    "SUPPORTED_ACTIONS",
    "SUPPORTED_PARAMETERS",
    "PostfixCleanupFilter",
    "PostfixCleanupSpec",
]


@dataclass(frozen=True, slots=True)
class _Default:
    value: str
    syntax: Literal["int", "bool", "text"]
    source: str


_POSTCONF = "postconf(5) and `postconf -d`, Postfix 3.7"

# The main.cf parameters this kind reads, with Postfix 3.7's defaults.
_DEFAULTS: Mapping[str, _Default] = {
    "message_size_limit": _Default("10240000", "int", _POSTCONF),
    "header_size_limit": _Default("102400", "int", _POSTCONF),
    "body_checks_size_limit": _Default("51200", "int", _POSTCONF),
    "line_length_limit": _Default("2048", "int", _POSTCONF),
    "mime_boundary_length_limit": _Default("2048", "int", _POSTCONF),
    "hopcount_limit": _Default("50", "int", _POSTCONF),
    "disable_mime_input_processing": _Default("no", "bool", _POSTCONF),
    # postconf(5): the default is the system's fully-qualified host name, which a profile
    # cannot know; it only shows in smtpd's own Received: header that header_checks read.
    "myhostname": _Default(
        "localhost", "text", "assumption: postconf(5) myhostname defaults to the host's name"
    ),
}

SUPPORTED_PARAMETERS: frozenset[str] = frozenset(_DEFAULTS)

# header_checks(5) actions this kind evaluates (cleanup_message.c cleanup_act); DELAY is
# compiled out of Postfix, anything else is an "unknown command" Postfix logs and skips.
SUPPORTED_ACTIONS: frozenset[str] = frozenset(
    {
        "REJECT",
        "DISCARD",
        "HOLD",
        "WARN",
        "INFO",
        "IGNORE",
        "DUNNO",
        "OK",
        "PASS",
        "FILTER",
        "REDIRECT",
        "BCC",
        "PREPEND",
        "REPLACE",
        "STRIP",
    }
)

# Actions recorded only, with why sinkd does no more, and whether they end the inspection.
_RECORDED: Mapping[str, tuple[str, bool]] = {
    "WARN": ("Postfix logs a warning and delivers the message", False),
    "INFO": ("Postfix logs it and delivers the message", False),
    "IGNORE": (
        "Postfix deletes this header from the delivered message; sinkd stores it as received",
        False,
    ),
    "STRIP": (
        "Postfix deletes this line from the delivered message; sinkd stores it as received",
        False,
    ),
    "PREPEND": (
        "Postfix adds the text before this line; sinkd stores the message as received",
        False,
    ),
    "REPLACE": (
        "Postfix replaces this line in the delivered message; sinkd stores it as received",
        False,
    ),
    "FILTER": (
        "Postfix hands the message to this content filter transport; sinkd does not route",
        False,
    ),
    "BCC": ("Postfix adds a blind copy recipient; sinkd does not route", False),
    "PASS": ("Postfix skips the rest of the header and body checks", True),
    "REDIRECT": (
        "Postfix delivers the message to this address instead; sinkd does not route",
        True,
    ),
}

_CODES = {
    "REJECT": "a check's REJECT refused the message (550 5.7.1, or its own code)",
    "DEFER": "a check's REJECT with a 4.x.y code deferred the message (451)",
    "DISCARD": "a check's DISCARD: accepted and silently dropped",
    "HOLD": "a check's HOLD: accepted into the hold queue",
    "UNKNOWN": "a check's action is none Postfix knows: it logs a warning and goes on",
    **{action: f"a check's {action} (recorded only)" for action in _RECORDED},
}

# dsn_util.c dsn_valid: an RFC 3463 status code at the start of the text, then space or end.
_DSN = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})(?=\s|$)")
_DIGITS = re.compile(r"[0-9]+")  # main.cf integers: ASCII digits only
_LOG_TEXT = 200
_BODY = CheckClass.BODY  # cleanup_act_log prints the line with %.200s


class Parameter(Spec):
    """A main.cf parameter, as a string after ``$name`` expansion, with where it is set."""

    value: str


class ChecksTable(Spec):
    """Which table a check class reads; ``table: null`` when main.cf sets the class empty."""

    table: str | None


class PostfixCleanupSpec(FilterSpecBase):
    kind: Literal["postfix_cleanup"]
    parameters: dict[str, Parameter] = Field(default_factory=dict)
    header_checks: ChecksTable | None = None
    # Absent: ``$header_checks`` (postconf(5) defaults of both).
    mime_header_checks: ChecksTable | None = None
    nested_header_checks: ChecksTable | None = None
    body_checks: ChecksTable | None = None
    tables: dict[str, TableSpec] = Field(default_factory=dict)


def _printable(text: str) -> str:
    # smtpd.c printable(): what is not printable in the reply becomes a space.
    return "".join(
        c if (" " <= c <= "~" or (c > "\x7f" and not "\ud800" <= c <= "\udfff")) else " "
        for c in text
    )


def reject_reply(text: str) -> Reply:
    """The end-of-DATA reply to ``REJECT text`` (cleanup_act with dsn_prepend("5.7.1"); smtpd
    answers ``550`` or, for a 4.x.y code, ``451`` with the reason, cleanup_strerror.c)."""
    text = text.strip()
    if not text:
        return Reply(550, "5.7.1", "message content rejected")
    match = _DSN.match(text)
    if match is None:
        dsn, rest = "5.7.1", text
    else:
        dsn, rest = match.group(0), text[match.end() :].lstrip()
        if dsn[0] == "2":  # cleanup_act: "bad DSN action ... need 4.x.x or 5.x.x"
            dsn = "4" + dsn[1:]
    code = 451 if dsn[0] == "4" else 550
    return Reply(code, dsn, _printable(rest))


class PostfixCleanupFilter(Filter):
    kind = "postfix_cleanup"
    Spec = PostfixCleanupSpec
    category = Category.CONTENT
    categories = (Category.CONTENT, Category.ENVELOPE, Category.FORMAT)
    codes = (
        FindingCode("POSTFIX_CLEANUP_SIZE", "the message is over message_size_limit (552 5.3.4)"),
        FindingCode("POSTFIX_CLEANUP_HOPS", "hopcount_limit Received: headers or more (554 5.4.0)"),
        *(FindingCode(f"POSTFIX_CLEANUP_{action}", meaning) for action, meaning in _CODES.items()),
    )

    def __init__(self, spec: PostfixCleanupSpec, ctx: CompileContext) -> None:
        super().__init__(spec, ctx)
        self.spec = spec
        values: dict[str, str] = {}
        for name, default in _DEFAULTS.items():
            given = spec.parameters.get(name)
            values[name] = default.value if given is None else given.value.strip()
        unknown = sorted(set(spec.parameters) - SUPPORTED_PARAMETERS)
        if unknown:
            raise CompileError(
                (*ctx.loc, "parameters", unknown[0]),
                f"unknown parameter {unknown[0]!r}; this kind reads "
                + ", ".join(sorted(SUPPORTED_PARAMETERS)),
            )
        self.ints: dict[str, int] = {}
        for name, default in _DEFAULTS.items():
            where = (*ctx.loc, "parameters", name)
            if default.syntax == "int":
                if _DIGITS.fullmatch(values[name]) is None:
                    raise CompileError(
                        where, f"{name} must be a whole number, not {values[name]!r}"
                    )
                self.ints[name] = int(values[name])
            elif default.syntax == "bool" and values[name].lower() not in ("yes", "no"):
                raise CompileError(where, f"{name} must be yes or no, not {values[name]!r}")
        self.disable_mime = values["disable_mime_input_processing"].lower() == "yes"
        self.myhostname = values["myhostname"]
        self.tables: dict[str, Table] = {
            name: compile_table(table, (*ctx.loc, "tables", name))
            for name, table in spec.tables.items()
        }
        header = self._table(spec.header_checks, "header_checks", ctx)
        self.checks: dict[CheckClass, tuple[str, Table] | None] = {
            CheckClass.HEADER: header,
            CheckClass.MIME_HEADER: (
                header
                if spec.mime_header_checks is None
                else self._table(spec.mime_header_checks, "mime_header_checks", ctx)
            ),
            CheckClass.NESTED_HEADER: (
                header
                if spec.nested_header_checks is None
                else self._table(spec.nested_header_checks, "nested_header_checks", ctx)
            ),
            CheckClass.BODY: self._table(spec.body_checks, "body_checks", ctx),
        }

    def _table(
        self, ref: ChecksTable | None, field: str, ctx: CompileContext
    ) -> tuple[str, Table] | None:
        if ref is None or ref.table is None:
            return None
        if ref.table not in self.tables:
            known = ", ".join(sorted(self.tables)) or "none"
            raise CompileError(
                (*ctx.loc, field, "table"), f"unknown table {ref.table!r} (tables: {known})"
            )
        return ref.table, self.tables[ref.table]

    def _lines(self, ctx: MessageContext) -> Iterator[ContentLine]:
        envelope = ctx.envelope
        prepend = received_header(
            helo=envelope.client.helo,
            client_name=envelope.client.name,
            client_ip=envelope.client.ip,
            myhostname=self.myhostname,
            recipients=envelope.rcpt_to,
            tls=envelope.tls,
            authenticated=envelope.auth_user is not None,
        )
        return content_lines(
            ctx.parsed.raw,
            line_length_limit=self.ints["line_length_limit"],
            header_size_limit=self.ints["header_size_limit"],
            body_checks_size_limit=self.ints["body_checks_size_limit"],
            mime_boundary_length_limit=self.ints["mime_boundary_length_limit"],
            disable_mime_input_processing=self.disable_mime,
            prepend=prepend,
        )

    async def check_message(self, ctx: MessageContext) -> list[Finding]:
        limit = self.ints["message_size_limit"]
        if limit:
            size = smtpd_size(ctx.parsed.raw, self.ints["line_length_limit"])
            if size > limit:
                # smtpd.c: over the limit smtpd stops writing to cleanup and answers with the
                # size error, whatever the checks found in what it had written.
                return [
                    self.finding(
                        "POSTFIX_CLEANUP_SIZE",
                        Action.REJECT,
                        f"The message is {size:,} bytes as Postfix counts them, over "
                        f"message_size_limit ({limit:,}).",
                        category=Category.ENVELOPE,
                        detail={
                            "size": size,
                            "limit": limit,
                            **self._parameter("message_size_limit"),
                        },
                        reply=Reply(552, "5.3.4", "Error: message file too big"),
                    )
                ]
        hops = self._hops(ctx)
        if hops < self.ints["hopcount_limit"]:
            return list(self._inspect(self._lines(ctx))) if any(self.checks.values()) else []
        # cleanup_message.c: at a primary Received: header with hopcount_limit or more before
        # it, cleanup marks the message (CLEANUP_STAT_HOPS) and reads no more body; smtpd.c
        # answers that before a content REJECT, but after a REJECT with a 4.x.y code.
        found = list(self._inspect(line for line in self._lines(ctx) if line.check is not _BODY))
        if any(f.action is Action.TEMPFAIL for f in found):
            return found
        return [
            *(f for f in found if not f.action.refuses),
            self.finding(
                "POSTFIX_CLEANUP_HOPS",
                Action.REJECT,
                f"The message has {hops} Received: headers, Postfix's own included: "
                f"hopcount_limit is {self.ints['hopcount_limit']}.",
                category=Category.FORMAT,
                detail={"received": hops, **self._parameter("hopcount_limit")},
                reply=Reply(554, "5.4.0", "Error: too many hops"),
            ),
        ]

    def _hops(self, ctx: MessageContext) -> int:
        """The primary header's Received: headers, smtpd's own first (cleanup's hop count
        when its primary header ends)."""
        count = 0
        for line in self._lines(ctx):
            if line.check is _BODY or line.check is CheckClass.NESTED_HEADER:
                break
            if line.check is CheckClass.HEADER and line.text[:9].lower() == "received:":
                count += 1
        return count

    def _parameter(self, name: str) -> dict[str, str]:
        given = self.spec.parameters.get(name)
        source = given.source if given is not None and given.source else _DEFAULTS[name].source
        return {"parameter": name, "parameter_source": source}

    def _inspect(self, lines: Iterable[ContentLine]) -> Iterator[Finding]:
        held = False
        for line in lines:
            check = self.checks[line.check]
            if check is None:
                continue
            name, table = check
            match = table.lookup(line.text)
            if match is None:
                continue
            # cleanup_act: the command is up to the first blank, its text after the blanks.
            # The line keeps its octets as surrogate escapes (postfix_lines._text), and a
            # regexp result may quote it ($1): what people and the SMTP reply see is UTF-8, with
            # U+FFFD for an octet that is none (Postfix would send the octet itself).
            value = _displayable(match.value)
            command = re.split(r"[ \t]", value, maxsplit=1)[0]
            text = value[len(command) :].lstrip(" \t")
            action = command.upper()
            seen = _displayable(line.text[:_LOG_TEXT])
            detail = {
                "check": line.check.value,
                "table": name,
                "entry": match.source,
                "action": value,
                "line": line.line,
                "text": seen,
            }
            where = f"{line.check.value} ({match.source or name})"
            shown = seen.replace("\n", " ")
            if action == "REJECT":
                reply = reject_reply(text)
                tempfail = reply.code < 500
                yield self.finding(
                    "POSTFIX_CLEANUP_DEFER" if tempfail else "POSTFIX_CLEANUP_REJECT",
                    Action.TEMPFAIL if tempfail else Action.REJECT,
                    f"{where} refused the message at {shown!r}.",
                    detail=detail,
                    reply=reply,
                )
                return
            if action == "DISCARD":
                yield self.finding(
                    "POSTFIX_CLEANUP_DISCARD",
                    Action.DISCARD,
                    f"{where} discarded the message at {shown!r}.",
                    detail=detail,
                )
                return
            if action == "HOLD":
                if not held:  # cleanup_act: a second HOLD does nothing
                    held = True
                    yield self.finding(
                        "POSTFIX_CLEANUP_HOLD",
                        Action.QUARANTINE,
                        f"{where} put the message on hold at {shown!r}.",
                        detail=detail,
                    )
                continue
            if action in ("DUNNO", "OK"):
                continue
            recorded = _RECORDED.get(action)
            if recorded is None:
                yield self.finding(
                    "POSTFIX_CLEANUP_UNKNOWN",
                    Action.NONE,
                    f"{where} gives {command!r}, which Postfix does not know: it logs a "
                    "warning and goes on.",
                    detail=detail,
                )
                continue
            why, ends = recorded
            if not self._valid(action, text, line.check):
                continue  # cleanup_act logs a warning and ignores the action
            yield self.finding(
                f"POSTFIX_CLEANUP_{action}",
                Action.NONE,
                f"{where} matched {shown!r} with {action}: {why}.",
                detail=detail,
            )
            if ends:
                return

    @staticmethod
    def _valid(action: str, text: str, check: CheckClass) -> bool:
        """cleanup_act's argument checks: an action whose argument is wrong is ignored."""
        header = check is not CheckClass.BODY
        if action == "FILTER":
            return ":" in text
        if action in ("REDIRECT", "BCC"):
            return "@" in text
        if action in ("PREPEND", "REPLACE"):
            if not text:
                return False
            return not header or re.match(r"^[\x21-\x39\x3b-\x7e]+[ \t]*:", text) is not None
        return True


def _displayable(text: str) -> str:
    """``text`` with its surrogate-escaped octets (not UTF-8 on the wire) as U+FFFD."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
