"""Greylisting against a real retrying MTA: Postfix, relaying to sinkd, gets a 451 at RCPT TO,
keeps the message in its queue, retries, and delivers it once the greylist delay has passed.

sinkd runs in-process with a profile that greylists every new (client /24, sender, recipient)
triplet; ``--greylist-delay`` (``Settings.greylist_delay``) shortens the profile's 300 s to 2 s.
A private Postfix instance (tests/postfix_relay.py) relays to it with 1-2 s retry times. One
message is submitted to Postfix by SMTP; sinkd must store first the deferral(s) and then the
accepted message, and Postfix's log must show the same story from the other side.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import smtplib
import time
import uuid
from email.message import EmailMessage
from email.parser import BytesHeaderParser
from pathlib import Path
from typing import Any

import pytest

from sinkd.services.settings import Settings
from sinkd.store import Query
from tests.conftest import StartServer
from tests.postfix_relay import PostfixRelay

GREYLIST_DELAY = 2  # seconds; Postfix retries every 1-2 s, so it is deferred once or twice
DELIVERY_TIMEOUT = 30.0  # the whole story takes about 3-5 s here
POLL_INTERVAL = 0.1
SENDER = "alice@sender.example"
RECIPIENT = "bob@corp.example"
RELAY_HELO = "relay.test"

GREYLISTING = """\
schema: sinkd.profile/v1
id: greylisting
title: "no-filter plus greylisting at RCPT TO"
extends: no-filter
filters:
  - {kind: greylist, name: greylist, delay: 300}
"""


def submit(port: int, message_id: str) -> None:
    """Hand one message to the Postfix relay's smtpd (plain SMTP, as any application would)."""
    message = EmailMessage()
    message["From"] = SENDER
    message["To"] = RECIPIENT
    message["Subject"] = "Greylisted, then delivered"
    message["Message-ID"] = message_id
    message.set_content("Postfix keeps this in its queue until sinkd lets it through.\n")
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        refused = client.send_message(message)
    assert refused == {}


def describe(records: list[dict[str, Any]]) -> str:
    return (
        "\n".join(
            f"  {r['received_at']} {r['id']} {r['verdict']}/{r['disposition']} stage={r['stage']}"
            f" reply={r['reply']['code']} {r['reply']['text']!r}"
            f" codes={[f['code'] for f in r['findings']]}"
            for r in records
        )
        or "  (none)"
    )


async def test_postfix_retries_a_greylisted_message_until_sinkd_accepts_it(
    start_server: StartServer, tmp_path: Path
) -> None:
    settings = {f.name for f in dataclasses.fields(Settings)}
    assert "greylist_delay" in settings, (
        "sinkd.server.runtime.Settings has no greylist_delay field (sinkd serve --greylist-delay):"
        " greylisting has not landed, or the override is named differently"
    )
    (tmp_path / "greylisting.yaml").write_text(GREYLISTING, encoding="utf-8")
    app = await start_server(
        profiles_dirs=[tmp_path], profile="greylisting", greylist_delay=GREYLIST_DELAY
    )
    assert app.store is not None and app.smtp_address is not None
    message_id = f"<greylist-{uuid.uuid4().hex}@sender.example>"

    with PostfixRelay(hostname=RELAY_HELO) as relay:
        # Blocking calls go to a thread: sinkd answers Postfix from this event loop.
        await asyncio.to_thread(relay.start, app.smtp_address)
        await asyncio.to_thread(submit, relay.smtp_port, message_id)

        # Waiting for the accepted record polls the store. There is no event to await: the
        # delivery happens when Postfix's queue manager decides to retry, which is exactly the
        # behaviour under test, so the store is read every POLL_INTERVAL up to an overall
        # DELIVERY_TIMEOUT (sinkd commits each record before it replies, so what is read is final).
        # If Postfix's own schedule has not retried after a few seconds (see PostfixRelay.flush),
        # it is asked to; the retry is still Postfix's, through its queue.
        deadline = time.monotonic() + DELIVERY_TIMEOUT
        nudge_at = time.monotonic() + 5.0
        while True:
            stored = [s.data for s in await app.store.list(Query(limit=100))]
            if any(r["verdict"] == "accept" for r in stored):
                break
            if time.monotonic() >= deadline:
                pytest.fail(
                    f"sinkd stored no accepted message within {DELIVERY_TIMEOUT:g} s; records:\n"
                    f"{describe(stored[::-1])}\nPostfix maillog:\n{relay.maillog_tail()}"
                )
            if time.monotonic() >= nudge_at:
                await asyncio.to_thread(relay.flush)
                nudge_at = time.monotonic() + 3.0
            await asyncio.sleep(POLL_INTERVAL)
        # Postfix logs status=sent right after sinkd's 250, which may be a moment after the
        # commit the store showed: watch its log (bounded) for the line.
        sent = await asyncio.to_thread(
            relay.wait_for_log,
            r"postfix/smtp\[\d+\]: (?P<queue_id>[0-9A-F]+): to=<" + re.escape(RECIPIENT) + r">,"
            r" relay=127\.0\.0\.1\[127\.0\.0\.1\]:\d+, .*status=sent \((?P<reply>[^)]*)\)",
            10.0,
        )
        maillog = relay.maillog
    # The relay is stopped here, and was checked to leave no process behind.

    records = sorted(stored, key=lambda r: r["received_at"])
    context = f"records, oldest first:\n{describe(records)}\nPostfix maillog:\n{maillog}"
    deferred = [r for r in records if r["verdict"] == "reject"]
    accepted = [r for r in records if r["verdict"] == "accept"]

    # sinkd's side: one or more deferrals at RCPT TO, then exactly one accepted message, and
    # nothing else; every one from the relay as it connected (127.0.0.1, EHLO relay.test).
    assert deferred, context
    assert len(accepted) == 1, context
    assert records == [*deferred, *accepted], context
    for record in records:
        assert record["identity"]["ip"] == "127.0.0.1", context
        assert record["identity"]["helo"] == RELAY_HELO, context
        assert record["identity"]["source"] == "connection", context
        assert record["envelope"]["mail_from"] == SENDER, context
        assert record["envelope"]["rcpt_to"] == [RECIPIENT], context
    for record in deferred:
        assert record["disposition"] == "deferred", context
        assert record["stage"] == "rcpt", context
        assert record["reply"]["code"] == 451, context
        assert record["reply"]["enhanced"] == "4.7.1", context
        assert record["reply"]["text"].startswith("Greylisted: please try again in "), context
        decided = [f for f in record["findings"] if f["decided"]]
        assert [f["code"] for f in decided] == ["GREYLIST_DEFERRED"], context
        assert decided[0]["detail"]["delay"] == GREYLIST_DELAY, context  # the override
    (delivered,) = accepted
    assert delivered["stage"] == "data", context
    assert delivered["reply"]["code"] == 250, context
    assert "GREYLIST_PASSED" in [f["code"] for f in delivered["findings"]], context
    # The message itself: a deferral at RCPT TO stores no body, so it is tied to the delivered
    # message by its envelope (above) and by Postfix's queue id (below); the delivered one
    # carries the Message-ID that was submitted.
    raw = (await app.store.get(delivered["id"], with_raw=True)).raw
    assert raw is not None
    assert BytesHeaderParser().parsebytes(raw)["Message-ID"] == message_id, context

    # Postfix's side: the same queue id was deferred with sinkd's very reply, as often as sinkd
    # stored a deferral, and then sent with the 250 naming the stored record.
    queue_id = sent["queue_id"]
    assert sent["reply"] == f"250 2.0.0 Ok: queued as {delivered['id']}", context
    assert f"{queue_id}: message-id={message_id}" in maillog, context
    deferrals = re.findall(
        rf"{queue_id}: to=<{re.escape(RECIPIENT)}>, .*status=deferred \(host 127\.0\.0\.1"
        r"\[127\.0\.0\.1\] said: (?P<reply>.*) \(in reply to RCPT TO command\)\)",
        maillog,
    )
    assert deferrals == [
        f"{r['reply']['code']} {r['reply']['enhanced']} {r['reply']['text']}" for r in deferred
    ], context
    assert maillog.index("status=deferred") < maillog.index("status=sent"), context
