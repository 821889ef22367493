"""Relaying onward (``--relay``) against a real SMTP target on a loopback port (an aiosmtpd sink,
``tests/support/relay_target.py``): what is delivered (the filtered copy with a Received field,
the record's own envelope), which verdicts are, and what each reply means for each recipient."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from sinkd.server.runtime import Sinkd
from sinkd.server.tls import self_signed, server_context
from sinkd.services import relay
from sinkd.services.recorder import Recorder
from sinkd.services.relay import RelayConfig, Relayer, received_field
from sinkd.services.settings import parse_relay_url
from sinkd.store import Query, RelayEntry
from sinkd.store.memory import MemoryStore
from sinkd.web.hub import Hub
from tests.conftest import StartServer
from tests.support.recorder import Sink, verdicts
from tests.support.relay_target import TIMEOUT, RelayTarget, relay_attempts, relay_settled
from tests.support.smtp import GTUBE_MESSAGE, SPAMMY_MESSAGE, message, send, stored
from tests.support.store import make_record
from tests.support.web import base_url

pytestmark = pytest.mark.usefixtures("no_internal_errors")


@pytest.fixture
async def target() -> AsyncIterator[RelayTarget]:
    relay_target = RelayTarget()
    await relay_target.start()
    yield relay_target
    await relay_target.stop()


async def relaying(start_server: StartServer, target: RelayTarget, **overrides: object) -> Sinkd:
    settings: dict[str, object] = {
        "relay": parse_relay_url(target.url),
        "relay_starttls": "off",
        "relay_backoff": (0.05, 0.2),
    }
    return await start_server(**(settings | overrides))


async def newest_id(app: Sinkd) -> str:
    assert app.store is not None
    (record,) = await app.store.list(Query(limit=1))
    return record.id


RECEIVED = re.compile(rb"\AReceived: [^\r\n]*(?:\r\n[ \t][^\r\n]*)*\r\n")


def split_received(data: bytes) -> tuple[bytes, bytes]:
    """The Received field sinkd prepended, and the rest (the message as sinkd delivers it)."""
    found = RECEIVED.match(data)
    assert found, f"no Received field first: {data[:200]!r}"
    return found.group(0), data[found.end() :]


# --- what is relayed, and how -------------------------------------------------------------------


async def test_an_accepted_message_is_delivered_as_its_filtered_copy_with_a_received_field(
    start_server: StartServer, target: RelayTarget
) -> None:
    app = await relaying(start_server, target, http=True)
    events = app.hub.subscribe()
    await send(app, message(), "alice@sender.example", "bob@corp.example", "carol@corp.example")
    message_id = await newest_id(app)

    state = await relay_settled(events, message_id)
    (delivery,) = await target.wait_for(1)

    async with httpx.AsyncClient(base_url=base_url(app)) as http:
        filtered = (await http.get(f"/api/v1/messages/{message_id}/filtered")).content
        data = (await http.get(f"/api/v1/messages/{message_id}")).json()
    received, rest = split_received(delivery.data)
    assert rest == filtered
    assert b"Authentication-Results:" in filtered  # sinkd's own, as /filtered serves it
    assert received.startswith(b"Received: from ")
    assert b"by sinkd.test (sinkd) with ESMTP id " + message_id.encode() in received
    assert (delivery.mail_from, delivery.rcpt_to) == (
        "alice@sender.example",
        ("bob@corp.example", "carol@corp.example"),
    )
    assert data["relay"] == state
    assert state["status"] == "delivered" and state["attempts"] == 1
    assert state["last_reply"] == {"code": 250, "enhanced": "2.0.0", "text": "Ok: queued"}
    assert [(r["address"], r["status"]) for r in state["recipients"]] == [
        ("bob@corp.example", "delivered"),
        ("carol@corp.example", "delivered"),
    ]
    assert state["done_at"] is not None and state["next_attempt_at"] is None


async def test_the_null_sender_is_relayed_as_the_null_sender(
    start_server: StartServer, target: RelayTarget
) -> None:
    app = await relaying(start_server, target)
    events = app.hub.subscribe()
    await send(app, message(), "", "bob@corp.example")

    assert (await relay_settled(events, await newest_id(app)))["status"] == "delivered"
    (delivery,) = await target.wait_for(1)
    assert delivery.mail_from == "<>"  # aiosmtpd keeps the null reverse-path as sent


async def test_without_relay_nothing_is_queued_or_sent(
    start_server: StartServer, target: RelayTarget
) -> None:
    app = await start_server(relay_verdicts=("accept", "quarantine"))
    await send(app, message(), "alice@sender.example", "bob@corp.example")

    assert app.relayer is None
    assert (await stored(app, await newest_id(app))).data["relay"] is None
    assert app.store is not None and await app.store.relay_depth() == 0
    assert target.transactions == 0


async def test_quarantine_is_relayed_only_when_relay_verdicts_names_it(
    start_server: StartServer, target: RelayTarget
) -> None:
    accept_only = await relaying(start_server, target)
    await send(accept_only, SPAMMY_MESSAGE, "alice@sender.example", "bob@corp.example")
    quarantined = await stored(accept_only, await newest_id(accept_only))
    assert quarantined.data["verdict"] == "quarantine"
    assert quarantined.data["relay"] is None

    both = await relaying(start_server, target, relay_verdicts=("accept", "quarantine"))
    events = both.hub.subscribe()
    await send(both, SPAMMY_MESSAGE, "alice@sender.example", "bob@corp.example")
    message_id = await newest_id(both)
    assert (await relay_settled(events, message_id))["status"] == "delivered"
    (delivery,) = await target.wait_for(1)
    assert b"Win the lottery" in delivery.data


async def test_a_rejected_message_is_never_relayed(
    start_server: StartServer, target: RelayTarget
) -> None:
    app = await relaying(start_server, target, relay_verdicts=("accept", "quarantine"))
    await send(app, GTUBE_MESSAGE, "alice@sender.example", "bob@corp.example")

    rejected = await stored(app, await newest_id(app))
    assert rejected.data["verdict"] == "reject"
    assert rejected.data["relay"] is None
    assert app.store is not None and await app.store.relay_depth() == 0


async def test_releasing_a_quarantined_message_relays_it(
    start_server: StartServer, target: RelayTarget
) -> None:
    app = await relaying(start_server, target, http=True)
    events = app.hub.subscribe()
    await send(app, SPAMMY_MESSAGE, "alice@sender.example", "bob@corp.example")
    message_id = await newest_id(app)
    assert (await stored(app, message_id)).data["relay"] is None

    async with httpx.AsyncClient(base_url=base_url(app)) as http:
        released = await http.post(
            f"/api/v1/messages/{message_id}/release",
            content=b"{}",
            headers={"Content-Type": "application/json"},
        )
    assert released.status_code == 200
    assert released.json()["relay"]["status"] in ("queued", "delivered")

    assert (await relay_settled(events, message_id))["status"] == "delivered"
    (delivery,) = await target.wait_for(1)
    assert delivery.rcpt_to == ("bob@corp.example",)


# --- replies: deferred, failed, mixed -------------------------------------------------------


async def test_a_4xx_is_retried_with_backoff_until_the_target_takes_the_message(
    start_server: StartServer, target: RelayTarget
) -> None:
    target.defer_data = 2
    app = await relaying(start_server, target)
    events = app.hub.subscribe()
    await send(app, message(), "alice@sender.example", "bob@corp.example")
    message_id = await newest_id(app)

    first = await relay_attempts(events, message_id, 1)
    assert first["status"] == "queued"
    assert first["last_reply"] == {
        "code": 451,
        "enhanced": "4.3.0",
        "text": "Temporary failure, try again",
    }
    assert first["next_attempt_at"] > first["last_attempt_at"]
    assert first["recipients"][0]["status"] == "queued"

    done = await relay_settled(events, message_id)
    assert done["status"] == "delivered" and done["attempts"] == 3
    assert len(await target.wait_for(1)) == 1
    assert target.transactions == 3


async def test_a_5xx_fails_the_recipient_for_good_with_the_reply_recorded(
    start_server: StartServer, target: RelayTarget
) -> None:
    target.reject = frozenset({"nobody@corp.example"})
    app = await relaying(start_server, target, http=True)
    events = app.hub.subscribe()
    await send(app, message(), "alice@sender.example", "nobody@corp.example")
    message_id = await newest_id(app)

    state = await relay_settled(events, message_id)
    async with httpx.AsyncClient(base_url=base_url(app)) as http:
        data = (await http.get(f"/api/v1/messages/{message_id}")).json()

    assert data["relay"] == state
    assert state["status"] == "failed" and state["attempts"] == 1
    reply = {
        "code": 550,
        "enhanced": "5.1.1",
        "text": "<nobody@corp.example>: Recipient address rejected: User unknown",
    }
    assert state["last_reply"] == reply
    assert state["recipients"] == [
        {"address": "nobody@corp.example", "status": "failed", "reply": reply}
    ]
    assert app.store is not None and await app.store.relay_queue(10) == []
    assert target.deliveries == []


async def test_mixed_recipients_each_end_as_their_own_replies_say(
    start_server: StartServer, target: RelayTarget
) -> None:
    target.reject = frozenset({"gone@corp.example"})
    target.defer = frozenset({"later@corp.example"})
    app = await relaying(start_server, target, relay_lifetime=0.3)
    events = app.hub.subscribe()
    rcpts = ("bob@corp.example", "gone@corp.example", "later@corp.example")
    await send(app, message(), "alice@sender.example", *rcpts)
    message_id = await newest_id(app)

    first = await relay_attempts(events, message_id, 1)
    assert [r["status"] for r in first["recipients"]] == ["delivered", "failed", "queued"]
    assert first["status"] == "queued"
    assert first["recipients"][2]["reply"]["code"] == 450

    done = await relay_settled(events, message_id)
    assert done["status"] == "failed"
    assert [r["status"] for r in done["recipients"]] == ["delivered", "failed", "failed"]
    assert "--relay-lifetime" in done["recipients"][2]["reply"]["error"]
    assert "450 4.2.1" in done["recipients"][2]["reply"]["error"]
    # Only the pending recipient was tried again: bob got the one copy.
    assert [d.rcpt_to for d in target.deliveries] == [("bob@corp.example",)]
    assert target.transactions == done["attempts"] >= 2


async def test_relays_in_a_row_share_one_connection_to_the_target(
    start_server: StartServer, target: RelayTarget, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Kept for the next relay as Postfix keeps a cached session; here long enough that the
    # sends' pace cannot matter.
    monkeypatch.setattr(relay, "REUSE_SECONDS", 60.0)
    app = await relaying(start_server, target)
    for n in range(3):
        await send(app, message(f"figures {n}"), "alice@sender.example", "bob@corp.example")
        await target.wait_for(n + 1)
    assert target.connections == 1 and target.transactions == 3


async def test_a_kept_connection_the_target_dropped_is_replaced_without_deferring(
    start_server: StartServer, target: RelayTarget, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(relay, "REUSE_SECONDS", 60.0)
    app = await relaying(start_server, target)
    events = app.hub.subscribe()
    await send(app, message("first"), "alice@sender.example", "bob@corp.example")
    await target.wait_for(1)
    await target.stop()  # drops the connection sinkd keeps
    await target.start()
    await send(app, message("second"), "alice@sender.example", "bob@corp.example")
    state = await relay_settled(events, await newest_id(app))
    # RSET on the kept connection failed, so a new one was opened: no deferral, one attempt.
    assert state["status"] == "delivered" and state["attempts"] == 1
    assert target.connections == 2


# --- TLS and AUTH -------------------------------------------------------------------------------


async def test_starttls_and_auth_are_used_when_required_and_the_password_shows_nowhere(
    start_server: StartServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cert, key = await self_signed(tmp_path / "target", "localhost")
    target = RelayTarget(
        tls=server_context(cert, key),
        require_starttls=True,
        credentials=("relayuser", "s3cret-pass"),
    )
    await target.start()
    try:
        app = await relaying(
            start_server,
            target,
            http=True,
            relay_starttls="require",
            relay_ca=cert,
            relay_user="relayuser",
            relay_password="s3cret-pass",
        )
        events = app.hub.subscribe()
        await send(app, message(), "alice@sender.example", "bob@corp.example")
        message_id = await newest_id(app)

        state = await relay_settled(events, message_id)
        (delivery,) = await target.wait_for(1)
        async with httpx.AsyncClient(base_url=base_url(app)) as http:
            data = (await http.get(f"/api/v1/messages/{message_id}")).text
            metrics = (await http.get("/metrics")).text
    finally:
        await target.stop()

    assert state["status"] == "delivered"
    assert delivery.tls and delivery.auth == "relayuser"
    assert target.auth_attempts == [("relayuser", "s3cret-pass")]
    assert "s3cret-pass" not in caplog.text + data + metrics + repr(app.settings)


async def test_require_starttls_against_a_target_without_it_defers_with_the_reason(
    start_server: StartServer, target: RelayTarget
) -> None:
    app = await relaying(start_server, target, relay_starttls="require")
    events = app.hub.subscribe()
    await send(app, message(), "alice@sender.example", "bob@corp.example")

    state = await relay_attempts(events, await newest_id(app), 1)
    assert state["status"] == "queued"
    assert "STARTTLS" in state["last_reply"]["error"]
    assert "--relay-starttls require" in state["last_reply"]["error"]
    assert target.deliveries == []


async def test_opportunistic_starttls_encrypts_to_a_self_signed_target_without_checking_it(
    start_server: StartServer, tmp_path: Path
) -> None:
    # Postfix's smtp_tls_security_level = may: TLS when offered, the certificate not checked.
    cert, key = await self_signed(tmp_path / "target", "localhost")
    target = RelayTarget(tls=server_context(cert, key), require_starttls=True)
    await target.start()
    try:
        app = await relaying(start_server, target, relay_starttls="opportunistic")  # the default
        events = app.hub.subscribe()
        await send(app, message(), "alice@sender.example", "bob@corp.example")
        assert (await relay_settled(events, await newest_id(app)))["status"] == "delivered"
        (delivery,) = await target.wait_for(1)
    finally:
        await target.stop()
    assert delivery.tls


async def test_an_unverifiable_certificate_defers_and_relay_insecure_delivers(
    start_server: StartServer, tmp_path: Path
) -> None:
    cert, key = await self_signed(tmp_path / "target", "localhost")
    target = RelayTarget(tls=server_context(cert, key), require_starttls=True)
    await target.start()
    try:
        strict = await relaying(start_server, target, relay_starttls="require")
        events = strict.hub.subscribe()
        await send(strict, message(), "alice@sender.example", "bob@corp.example")
        state = await relay_attempts(events, await newest_id(strict), 1)
        assert state["status"] == "queued"
        assert "CERTIFICATE_VERIFY_FAILED" in state["last_reply"]["error"]
        await strict.stop()

        insecure = await relaying(
            start_server, target, relay_starttls="require", relay_insecure=True
        )
        events = insecure.hub.subscribe()
        await send(insecure, message(), "alice@sender.example", "bob@corp.example")
        assert (await relay_settled(events, await newest_id(insecure)))["status"] == "delivered"
        (delivery,) = await target.wait_for(1)
        assert delivery.tls
    finally:
        await target.stop()


# --- the Recorder's choice, one log line per attempt, stopping --------------------------------


async def test_the_recorder_queues_only_delivered_records_of_the_chosen_verdicts() -> None:
    accepted = await verdicts(message(), "bob@corp.example")
    spammy = await verdicts(SPAMMY_MESSAGE, "bob@corp.example")
    gtube = await verdicts(GTUBE_MESSAGE, "bob@corp.example")
    choose = ("accept",)

    assert [r.relay for r in Recorder.records(accepted, message(), relay=choose)] == [True]
    assert [r.relay for r in Recorder.records(accepted, message())] == [False]  # no --relay
    assert [r.relay for r in Recorder.records(accepted, None, relay=choose)] == [False]
    assert [r.relay for r in Recorder.records(spammy, SPAMMY_MESSAGE, relay=choose)] == [False]
    both = ("accept", "quarantine", "reject")  # even if asked, a refusal is never relayed
    assert [r.relay for r in Recorder.records(spammy, SPAMMY_MESSAGE, relay=both)] == [True]
    assert [r.relay for r in Recorder.records(gtube, GTUBE_MESSAGE, relay=both)] == [False]

    sink = Sink()
    woken: list[bool] = []
    recorder = Recorder(sink, relay_verdicts=choose, on_relay_queued=lambda: woken.append(True))
    await recorder.commit(accepted, message(), relay=False)  # a re-evaluation
    assert [r.relay for r in sink.saved] == [False] and woken == []
    await recorder.commit(accepted, message())
    assert [r.relay for r in sink.saved] == [False, True] and woken == [True]


async def test_each_attempt_logs_one_line_with_id_target_outcome_and_reply(
    start_server: StartServer, target: RelayTarget, caplog: pytest.LogCaptureFixture
) -> None:
    target.reject = frozenset({"nobody@corp.example"})
    app = await relaying(start_server, target)
    events = app.hub.subscribe()
    caplog.set_level(logging.INFO, logger="sinkd.services.relay")
    await send(app, message(), "alice@sender.example", "bob@corp.example", "nobody@corp.example")
    message_id = await newest_id(app)
    await relay_settled(events, message_id)

    lines = [r.getMessage() for r in caplog.records if r.name == "sinkd.services.relay"]
    attempts = [line for line in lines if line.startswith(f"relay id={message_id} ")]
    assert attempts == [
        f"relay id={message_id} target={target.url} attempt=1"
        " outcome=nobody@corp.example=failed bob@corp.example=delivered"
        " reply='250 2.0.0 Ok: queued'"
    ]


async def test_an_attempt_in_flight_at_stop_is_abandoned_and_stays_queued(
    tmp_path: Path,
) -> None:
    hold = asyncio.Event()
    target = RelayTarget(hold_data=hold)
    await target.start()
    store = MemoryStore()
    await store.save(make_record(1, relay=True))
    config = RelayConfig(target=parse_relay_url(target.url), hostname="sinkd.test", starttls="off")
    relayer = Relayer(config, store)
    try:
        relayer.start()
        async with asyncio.timeout(TIMEOUT):
            await target.data_started.wait()  # the message is on its way: DATA was sent
        await relayer.stop(grace=0)
    finally:
        hold.set()
        await target.stop()

    (entry,) = await store.relay_queue(10)
    assert entry.state["status"] == "queued" and entry.state["attempts"] == 0
    assert target.deliveries == []


def test_the_received_field_names_client_sinkd_protocol_id_and_time() -> None:
    data = {
        "id": "1A2B3C",
        "envelope": {"helo": "mx (evil)\r\nX-Injected: 1", "client_ip": "2001:db8::7",
                     "rcpt_to": ["bob@corp.example"]},
        "identity": {"tls": True, "auth_user": "ann"},
    }  # fmt: skip
    when = datetime(2026, 5, 1, 12, 0, 1, tzinfo=UTC)

    field = received_field(data, "sinkd.test", when)

    assert field == (
        b"Received: from mxevilX-Injected:1 ([IPv6:2001:db8::7])\r\n"
        b"\tby sinkd.test (sinkd) with ESMTPSA id 1A2B3C\r\n"
        b"\tfor <bob@corp.example>;\r\n"
        b"\tFri, 01 May 2026 12:00:01 +0000\r\n"
    )


class GatedQueue(MemoryStore):
    """A store whose queue reads can be held after they read (a slow read), to replay the
    race of a read begun before an attempt recorded its outcome."""

    def __init__(self) -> None:
        super().__init__()
        self.gate: asyncio.Event | None = None
        self.held = asyncio.Event()  # a read is waiting at the gate
        self.reads = 0
        self.read = asyncio.Condition()  # notified after every read

    async def relay_queue(self, limit: int) -> Sequence[RelayEntry]:
        entries = await super().relay_queue(limit)
        async with self.read:
            self.reads += 1
            self.read.notify_all()
        if self.gate is not None:
            gate, self.gate = self.gate, None
            self.held.set()
            await gate.wait()
        return entries


async def test_a_queue_read_older_than_an_attempts_outcome_never_sends_the_message_again() -> None:
    hold = asyncio.Event()
    target = RelayTarget(hold_data=hold)
    await target.start()
    store = GatedQueue()
    await store.save(make_record(1, relay=True))
    config = RelayConfig(target=parse_relay_url(target.url), hostname="sinkd.test", starttls="off")
    hub = Hub()
    events = hub.subscribe()
    relayer = Relayer(config, store, events=hub)
    try:
        relayer.start()
        async with asyncio.timeout(TIMEOUT):
            await target.data_started.wait()  # the first attempt is in DATA
            gate = store.gate = asyncio.Event()
            relayer.wake()
            await store.held.wait()  # a read saw the relay queued and due, and waits
        hold.set()  # the attempt delivers and records it
        assert (await relay_settled(events, "m0001"))["status"] == "delivered"
        reads = store.reads
        gate.set()  # the stale read goes on, then the relayer reads the queue again
        async with asyncio.timeout(TIMEOUT), store.read:
            await store.read.wait_for(lambda: store.reads > reads)
        await relayer.stop(grace=TIMEOUT)  # an attempt started from the stale read finishes
    finally:
        hold.set()
        await target.stop()

    assert len(target.deliveries) == 1
    assert target.transactions == 1
