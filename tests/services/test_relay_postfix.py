"""``--relay`` to a real MTA: a private Postfix (tests/postfix_relay.py) is sinkd's relay target
and relays on to an aiosmtpd sink (tests/support/relay_target.py). Its smtpd rejects one
recipient and defers another with ``check_recipient_access``, so the replies sinkd records are
Postfix's own; the accepted recipient's copy travels through Postfix's queue to the sink."""

from __future__ import annotations

import asyncio

import pytest

from sinkd.services.settings import parse_relay_url
from sinkd.store import Query
from tests.conftest import StartServer
from tests.postfix_relay import PostfixRelay
from tests.support.relay_target import RelayTarget, relay_attempts
from tests.support.smtp import message, send

pytestmark = pytest.mark.usefixtures("no_internal_errors")

SENDER = "alice@sender.example"
DELIVERED, REJECTED, DEFERRED = "bob@corp.example", "gone@corp.example", "later@corp.example"


async def test_postfix_as_relay_target_gives_its_own_replies_per_recipient(
    start_server: StartServer,
) -> None:
    sink = RelayTarget()
    await sink.start()
    try:
        with PostfixRelay(hostname="postfix.test") as postfix:
            # Blocking calls go to a thread: the sink answers Postfix from this event loop.
            await asyncio.to_thread(
                postfix.start, ("127.0.0.1", sink.port), reject=(REJECTED,), defer=(DEFERRED,)
            )
            app = await start_server(
                relay=parse_relay_url(f"smtp://127.0.0.1:{postfix.smtp_port}"),
                relay_backoff=(600.0, 600.0),  # the deferred recipient waits; one attempt here
            )
            events = app.hub.subscribe()
            await send(app, message(), SENDER, DELIVERED, REJECTED, DEFERRED)
            assert app.store is not None
            (newest,) = await app.store.list(Query(limit=1))

            state = await relay_attempts(events, newest.id, 1)
            (delivery,) = await sink.wait_for(1)  # through Postfix's queue
    finally:
        await sink.stop()

    by_address = {r["address"]: r for r in state["recipients"]}
    assert state["status"] == "queued"  # later@ waits for its retry
    assert by_address[DELIVERED]["status"] == "delivered"
    assert by_address[DELIVERED]["reply"]["code"] == 250
    assert by_address[DELIVERED]["reply"]["enhanced"] == "2.0.0"
    assert by_address[DELIVERED]["reply"]["text"].startswith("Ok: queued as ")
    assert by_address[REJECTED]["status"] == "failed"
    assert by_address[REJECTED]["reply"] == {
        "code": 554,
        "enhanced": "5.7.1",
        "text": f"<{REJECTED}>: Recipient address rejected: Access denied",
    }
    assert by_address[DEFERRED]["status"] == "queued"
    assert by_address[DEFERRED]["reply"] == {
        "code": 450,
        "enhanced": "4.7.1",
        "text": f"<{DEFERRED}>: Recipient address rejected: Access denied",
    }
    assert delivery.rcpt_to == (DELIVERED,)
    assert delivery.mail_from == SENDER
    # Postfix's trace field on top of sinkd's, which names sinkd and the message.
    assert b"by sinkd.test (sinkd) with ESMTP id " + newest.id.encode() in delivery.headers
    assert delivery.headers.index(b"by postfix.test") < delivery.headers.index(b"(sinkd)")
