"""Stored verdicts read back as typed records: the one place the JSON shape a record was stored
in (docs/judging.md, "JSON shape", ``MessageRecord.to_json``) is turned back into values.

Owns ``StoredVerdict`` (and its findings and reply), built once from a stored record's JSON,
and the rebuilding of the envelope and sender ``Identity`` a stored message is judged again
with. Reading is lenient where older records may lack a field (``identity`` came later); it
never changes, stores or judges anything.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sinkd.core.model import ClientIdentity, VerdictAction
from sinkd.services.judge import Identity, MailEnvelope


def _text(value: object) -> str:
    return "" if value is None else str(value)


def _optional(value: object) -> str | None:
    return None if value is None else str(value)


@dataclass(frozen=True, slots=True)
class StoredReply:
    code: int | None
    enhanced: str
    text: str

    def line(self) -> str:
        """``code enhanced text`` as the dashboard shows it."""
        code = "" if self.code is None else str(self.code)
        return " ".join((code, self.enhanced, self.text)).strip()


@dataclass(frozen=True, slots=True)
class StoredFinding:
    code: str
    filter: str
    category: str
    action: str
    score: Any  # as stored (a number); shown, never computed with
    reason: str
    decided: bool
    unjudged: str | None
    detail: Mapping[str, Any]

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> StoredFinding:
        return cls(
            code=_text(data.get("code")),
            filter=_text(data.get("filter")),
            category=_text(data.get("category")),
            action=_text(data.get("action")),
            score=data.get("score"),
            reason=_text(data.get("reason")),
            decided=bool(data.get("decided")),
            unjudged=_optional(data.get("unjudged")),
            detail=data.get("detail") or {},
        )

    @property
    def html_class(self) -> str | None:
        """``detail.class``: the HTML class a strip finding removed, when it names one."""
        value = self.detail.get("class")
        return None if value is None else str(value)


@dataclass(frozen=True, slots=True)
class StoredVerdict:
    """One stored record (a verdict on one message for one profile), typed."""

    id: str
    received_at: str
    profile: str
    verdict: str
    disposition: str
    score: Any  # as stored
    stage: str
    reply: StoredReply
    envelope: MailEnvelope
    identity: Identity
    subject: str | None
    stripped: tuple[str, ...]
    findings: tuple[StoredFinding, ...]
    released_at: str | None
    data: Mapping[str, Any]  # the JSON it was read from, for answers that pass it on whole

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> StoredVerdict:
        reply = data.get("reply") or {}
        return cls(
            id=_text(data.get("id")),
            received_at=_text(data.get("received_at")),
            profile=_text(data.get("profile")),
            verdict=_text(data.get("verdict")),
            disposition=_text(data.get("disposition")),
            score=data.get("score"),
            stage=_text(data.get("stage")),
            reply=StoredReply(
                reply.get("code"), _text(reply.get("enhanced")), _text(reply.get("text"))
            ),
            envelope=envelope_of(data),
            identity=identity_of(data),
            subject=_optional(data.get("subject")),
            stripped=tuple(str(s) for s in data.get("stripped") or ()),
            findings=tuple(StoredFinding.from_json(f) for f in data.get("findings") or ()),
            released_at=_optional(data.get("released_at")) or None,
            data=data,
        )

    @property
    def deciding(self) -> StoredFinding | None:
        return next((f for f in self.findings if f.decided), None)

    @property
    def refused(self) -> bool:
        """Whether the verdict refused the message (nothing was delivered)."""
        return self.verdict == VerdictAction.REJECT.value


def envelope_of(data: Mapping[str, Any]) -> MailEnvelope:
    """The envelope a stored record was judged with (``mail_from`` "" for <>)."""
    envelope = data.get("envelope") or {}
    return MailEnvelope(
        envelope.get("mail_from") or "", tuple(str(r) for r in envelope.get("rcpt_to") or ())
    )


def identity_of(data: Mapping[str, Any]) -> Identity:
    """The sender identity a stored record was judged with: the effective client (address,
    HELO, name, source, real peer), the AUTH user and TLS, as stored."""
    envelope = data.get("envelope") or {}
    identity = data.get("identity") or {}
    return Identity(
        ClientIdentity(
            ip=_text(envelope.get("client_ip") or identity.get("ip")),
            helo=_optional(envelope.get("helo")),
            name=_optional(identity.get("name")),
            source=_text(identity.get("source") or "connection"),
            peer=_optional(identity.get("peer")),
        ),
        auth_user=_optional(identity.get("auth_user")),
        tls=bool(identity.get("tls", False)),
    )
