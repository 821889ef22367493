"""Stored records read back: the typed view and the one place a stored sender is rebuilt."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sinkd.core.model import ClientIdentity
from sinkd.core.profiles import ProfileSet
from sinkd.services.judge import Identity, Judge, MailEnvelope
from sinkd.services.records import StoredVerdict, envelope_of, identity_of
from sinkd.store import MessageRecord
from tests.support.smtp import message

SENDER = Identity(
    ClientIdentity(
        ip="198.51.100.7",
        helo="mx.sender.example",
        name="mx.sender.example",
        source="xclient",
        peer="127.0.0.1",
    ),
    auth_user="alice",
    tls=True,
)
ENVELOPE = MailEnvelope("alice@sender.example", ("bob@corp.example",))


async def stored_json() -> dict[str, Any]:
    (verdict,) = await Judge(ProfileSet(), profile="typical-corporate").evaluate(
        message(), ENVELOPE, SENDER
    )
    return MessageRecord(verdict.id, datetime.now(UTC), "T1", verdict, message()).to_json()


async def test_the_stored_sender_is_rebuilt_whole_with_peer_auth_user_and_tls() -> None:
    data = await stored_json()
    assert identity_of(data) == SENDER
    assert envelope_of(data) == ENVELOPE


def test_a_record_stored_before_identity_was_recorded_reads_as_a_connection() -> None:
    data = {"envelope": {"client_ip": "192.0.2.1", "helo": "h", "mail_from": "", "rcpt_to": []}}
    assert identity_of(data) == Identity(ClientIdentity(ip="192.0.2.1", helo="h"))
    assert envelope_of(data) == MailEnvelope("", ())


async def test_the_typed_view_holds_what_the_json_says() -> None:
    data = await stored_json()
    stored = StoredVerdict.from_json(data)
    assert (stored.id, stored.profile, stored.verdict, stored.stage) == (
        data["id"],
        "typical-corporate",
        "accept",
        "data",
    )
    assert stored.reply.line().startswith("250 2.0.0")
    assert stored.identity == SENDER and stored.envelope == ENVELOPE
    assert [f.code for f in stored.findings] == [f["code"] for f in data["findings"]]
    assert stored.released_at is None
