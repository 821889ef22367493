"""Core value types: actions, envelopes, findings, replies and verdicts.

Owns the vocabulary every other module speaks. Plain frozen dataclasses with no I/O, no SMTP
formatting and no knowledge of storage; the JSON shape shared by the CLI, the store and the
HTTP API is produced here (``Verdict.to_json``) so that there is exactly one of it.
"""

from __future__ import annotations

import enum
import re
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


class Action(enum.StrEnum):
    """What one rule does when it matches, as a profile writes it."""

    NONE = "none"  # recorded only (informational)
    ALLOW = "allow"  # allowlist: accept and skip the named categories of later checks
    SCORE = "score"  # add the rule's score to the message score
    TAG = "tag"  # deliver, marked as spam (header / subject prefix)
    JUNK = "junk"  # deliver to the junk folder
    STRIP = "strip"  # remove the offending part, deliver the rest
    QUARANTINE = "quarantine"  # held by the administrator; the sender sees 250
    DISCARD = "discard"  # silently dropped; the sender sees 250
    TEMPFAIL = "tempfail"  # 4xx: try again later
    REJECT = "reject"  # 5xx

    @property
    def refuses(self) -> bool:
        """The sender is refused with an SMTP error: reject (5xx) or tempfail (4xx)."""
        return self is Action.REJECT or self is Action.TEMPFAIL


class Disposition(enum.StrEnum):
    """Where the message ends up; the strictest one of all findings wins."""

    INBOX = "inbox"
    TAGGED = "tagged"
    JUNK = "junk"
    QUARANTINED = "quarantined"
    DISCARDED = "discarded"
    DEFERRED = "deferred"
    REJECTED = "rejected"

    @property
    def rank(self) -> int:
        return _DISPOSITION_ORDER.index(self)

    @property
    def verdict(self) -> VerdictAction:
        return _VERDICT_OF[self]


_DISPOSITION_ORDER = list(Disposition)


class VerdictAction(enum.StrEnum):
    """The three-valued verdict the project promises."""

    ACCEPT = "accept"
    QUARANTINE = "quarantine"
    REJECT = "reject"


_VERDICT_OF = {
    Disposition.INBOX: VerdictAction.ACCEPT,
    Disposition.TAGGED: VerdictAction.ACCEPT,
    Disposition.JUNK: VerdictAction.ACCEPT,
    Disposition.QUARANTINED: VerdictAction.QUARANTINE,
    Disposition.DISCARDED: VerdictAction.QUARANTINE,
    Disposition.DEFERRED: VerdictAction.REJECT,
    Disposition.REJECTED: VerdictAction.REJECT,
}

# The disposition an action forces on its own (score, strip, allow and none force nothing).
DISPOSITION_OF_ACTION: Mapping[Action, Disposition] = {
    Action.TAG: Disposition.TAGGED,
    Action.JUNK: Disposition.JUNK,
    Action.QUARANTINE: Disposition.QUARANTINED,
    Action.DISCARD: Disposition.DISCARDED,
    Action.TEMPFAIL: Disposition.DEFERRED,
    Action.REJECT: Disposition.REJECTED,
}


class Stage(enum.StrEnum):
    """The SMTP stage at which a decision is answered."""

    CONNECT = "connect"
    HELO = "helo"
    MAIL = "mail"
    RCPT = "rcpt"
    DATA = "data"


class Category(enum.StrEnum):
    """How findings are grouped for people (dashboard, reports)."""

    ENVELOPE = "envelope"
    AUTHENTICATION = "authentication"
    CONTENT = "content"
    ATTACHMENTS = "attachments"
    SCORE = "score"
    FORMAT = "format"
    DELIVERY = "delivery"  # greylisting and rate limits: how a gateway paces delivery


class Unjudged(enum.StrEnum):
    """Why a check could not reach an answer of its own; its finding then records only.

    ``NO_DNS_DATA`` is the designed state of offline DNS (no fixture for a name the check
    needed): the check is reported as not judged, with how to give the data. ``UNAVAILABLE``
    (a scanner or a live lookup the profile needs did not answer) and ``ERROR`` (the filter
    raised on this message) mean the verdict is incomplete: ``sinkd check`` exits with its own
    status for them.
    """

    NO_DNS_DATA = "no-dns-data"
    UNAVAILABLE = "unavailable"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class ClientIdentity:
    """Who the filter believes is sending: the effective, possibly simulated, identity.

    ``source`` says where the address came from: ``xclient`` (Postfix XCLIENT), ``proxy``
    (PROXY protocol header), ``option`` (``--client-ip``) or ``connection`` (the socket peer).
    """

    ip: str
    helo: str | None = None
    name: str | None = None  # the client's reverse-DNS name when known (XCLIENT NAME)
    source: str = "connection"
    peer: str | None = None  # the real socket peer, for the record

    def to_json(self) -> dict[str, Any]:
        return {
            "ip": self.ip,
            "helo": self.helo,
            "name": self.name,
            "source": self.source,
            "peer": self.peer,
        }


@dataclass(frozen=True, slots=True)
class Envelope:
    """The SMTP envelope of one transaction (RFC 5321 §2.3.1), with the effective identity."""

    client: ClientIdentity
    mail_from: str | None = None  # "" is the null reverse-path <>
    rcpt_to: tuple[str, ...] = ()
    size_param: int | None = None  # MAIL FROM SIZE= (RFC 1870)
    auth_user: str | None = None
    tls: bool = False


@dataclass(frozen=True, slots=True)
class Reply:
    """An SMTP reply as data: basic code, enhanced code (RFC 3463) and text."""

    code: int
    enhanced: str
    text: str
    # A reply rendered before any recipient was known (a MAIL-stage rule, or the client IP's)
    # whose text names the recipient: its template and the other values, so that a refusal
    # answered at RCPT TO names that recipient as the product's reply does (Exchange Online's
    # "blocked by ${rcpt_domain}"). None once rendered with a recipient.
    unbound: tuple[str, Mapping[str, str]] | None = field(default=None, compare=False, repr=False)

    def for_recipient(self, rcpt: str) -> Reply:
        """This reply as answered to RCPT TO ``rcpt`` (itself when it names no recipient)."""
        if self.unbound is None:
            return self
        template, values = self.unbound
        text = string.Template(template).safe_substitute(
            {**values, "rcpt": rcpt, "rcpt_domain": rcpt.rpartition("@")[2]}
        )
        return Reply(self.code, self.enhanced, text)

    @property
    def is_success(self) -> bool:
        return 200 <= self.code < 300

    @property
    def is_temporary(self) -> bool:
        return 400 <= self.code < 500

    def to_json(self) -> dict[str, Any]:
        return {"code": self.code, "enhanced": self.enhanced, "text": self.text}


@dataclass(frozen=True, slots=True)
class StripPlan:
    """What a strip action removes: whole MIME parts (replaced by a notice) and classes of
    HTML content inside HTML parts. Paths are IMAP-style part numbers (``"2.1"``)."""

    parts: Mapping[str, str] = field(default_factory=dict)  # part path -> notice text
    html: Mapping[str, frozenset[str]] = field(default_factory=dict)  # part path -> classes

    def merge(self, other: StripPlan) -> StripPlan:
        html = dict(self.html)
        for path, classes in other.html.items():
            html[path] = html.get(path, frozenset()) | classes
        return StripPlan({**self.parts, **other.parts}, html)

    def __bool__(self) -> bool:
        return bool(self.parts or self.html)


# ``<NAME>`` in a declared code: a part the profile or the input supplies (a rule's id, a
# SpamAssassin rule name, a filter kind).
_PLACEHOLDER = re.compile(r"<[A-Z_]+>")


@dataclass(frozen=True, slots=True)
class FindingCode:
    """A finding code a check declares it may emit, with its meaning in one line.

    ``code`` is the code itself (``SPF_FAIL``) or a family with placeholders
    (``CONTENT_<ID>``: the content rule's id). docs/filters.md's code catalogue is built
    from these.
    """

    code: str
    meaning: str

    @property
    def pattern(self) -> str:
        """A regular expression matching the codes this declaration covers."""
        parts = _PLACEHOLDER.split(self.code)
        return "[A-Za-z0-9_]+".join(re.escape(part) for part in parts)

    def matches(self, code: str) -> bool:
        return re.fullmatch(self.pattern, code) is not None


@dataclass(frozen=True, slots=True)
class Finding:
    """One evaluated rule and what it found.

    ``code`` is a stable UPPER_SNAKE identifier prefixed by the filter kind; ``reason`` is one
    plain sentence for a marketer; ``detail`` carries the evidence for an engineer.
    """

    code: str
    filter: str
    category: Category
    action: Action
    reason: str
    score: float = 0.0
    stage: Stage = Stage.DATA
    detail: Mapping[str, Any] = field(default_factory=dict)
    reply: Reply | None = None  # the reply this rule gives when it decides
    skip: frozenset[str] = frozenset()  # with Action.ALLOW: categories of later checks to skip
    decided: bool = False  # set by the engine on the finding(s) that decided the verdict
    strip: StripPlan | None = None  # with Action.STRIP: what to remove from the message
    unjudged: Unjudged | None = None  # set when the check could not reach its own answer

    def to_json(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "filter": self.filter,
            "category": self.category.value,
            "action": self.action.value,
            "score": self.score,
            "reason": self.reason,
            "stage": self.stage.value,
            "decided": self.decided,
            "unjudged": None if self.unjudged is None else self.unjudged.value,
            "detail": dict(self.detail),
        }


@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome for one message and one profile."""

    profile: str
    verdict: VerdictAction  # the JSON's "verdict"; a Finding's ``action`` is the rule's Action
    disposition: Disposition
    score: float
    stage: Stage
    reply: Reply
    findings: tuple[Finding, ...]
    envelope: Envelope
    subject: str | None = None
    id: str = ""  # the message id the reply names ("queued as <id>") and the store keys on
    filtered: bytes | None = None  # the message as delivered after strip actions, if any
    stripped: tuple[str, ...] = ()  # what the strip actions removed, one line per item

    @property
    def codes(self) -> list[str]:
        return [f.code for f in self.findings]

    @property
    def incomplete(self) -> tuple[Finding, ...]:
        """Findings of checks that could not answer (scanner down, filter error): the verdict
        was reached without them. Offline DNS without data is not among them (see Unjudged)."""
        return tuple(
            f
            for f in self.findings
            if f.unjudged is not None and f.unjudged is not Unjudged.NO_DNS_DATA
        )

    @property
    def without_dns_data(self) -> tuple[Finding, ...]:
        """Findings of checks that offline DNS left without data (no fixture for the name)."""
        return tuple(f for f in self.findings if f.unjudged is Unjudged.NO_DNS_DATA)

    @property
    def deciding(self) -> Finding | None:
        for finding in self.findings:
            if finding.decided:
                return finding
        return None

    def to_json(self, *, received_at: str | None = None) -> dict[str, Any]:
        env = self.envelope
        return {
            "id": self.id or None,
            "received_at": received_at,
            "profile": self.profile,
            "verdict": self.verdict.value,
            "disposition": self.disposition.value,
            "score": round(self.score, 3),
            "stage": self.stage.value,
            "reply": self.reply.to_json(),
            "envelope": {
                "client_ip": env.client.ip,
                "helo": env.client.helo,
                "mail_from": env.mail_from,
                "rcpt_to": list(env.rcpt_to),
            },
            "identity": env.client.to_json() | {"auth_user": env.auth_user, "tls": env.tls},
            "subject": self.subject,
            "stripped": list(self.stripped),
            "fully_judged": not self.incomplete,
            "findings": [f.to_json() for f in self.findings],
        }
