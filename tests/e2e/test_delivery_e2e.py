"""Realistic delivery behaviour end to end: greylisting, rate limits, connection limits and
tarpits of ``deferring-gateway``, over SMTP against a real ``Sinkd``.

The only sleeps are a client's own back-off between retries, as a real sender's queue would
wait; timings are asserted only as lower bounds (a tarpit can make a reply late, never early).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiosmtplib
import pytest

from sinkd.cli import build_parser, main
from sinkd.core.profiles import ProfileSet
from sinkd.errors import ProfileError
from sinkd.server.runtime import Sinkd
from sinkd.services.settings import from_namespace
from sinkd.store import Query
from tests.conftest import StartServer
from tests.support.delivery import BODY, RCPT, SENDER, gateway, greylisted_then_accepted
from tests.support.smtp import (
    aio_client,
    codes,
    newest,
    raw_client,
    stored,
    stuff,
    write_profile,
)

pytestmark = pytest.mark.usefixtures("no_internal_errors")  # every test here: see conftest


# --- greylisting -------------------------------------------------------------------------------


async def test_the_first_attempt_is_deferred_with_451_4_7_1_a_retry_hint_and_a_stored_record(
    start_server: StartServer, tmp_path: Path
) -> None:
    app = await start_server(profile=gateway(tmp_path), greylist_delay=300)
    async with raw_client(app) as client:
        await client.ok(f"MAIL FROM:<{SENDER}>")
        answer = await client.command(f"RCPT TO:<{RCPT}>")
        assert answer.line == "451 4.7.1 Greylisted: please try again in 300 seconds"
        # Nothing was accepted, so there is nothing to send.
        assert (await client.command("DATA")).line.startswith("503 5.5.1 ")
        await client.quit()
    record = await newest(app)
    assert record.raw is None
    assert record.data["verdict"] == "reject"
    assert record.data["disposition"] == "deferred"
    assert record.data["stage"] == "rcpt"
    assert record.data["reply"] == {
        "code": 451,
        "enhanced": "4.7.1",
        "text": "Greylisted: please try again in 300 seconds",
    }
    assert codes(record) == ["GREYLIST_DEFERRED"]
    finding = record.data["findings"][0]
    assert finding["category"] == "delivery"
    assert finding["decided"] is True
    assert finding["detail"]["triplet"] == {
        "client": "127.0.0.0/24",
        "sender": SENDER,
        "recipient": RCPT,
    }
    assert finding["detail"]["retry_after"] == 300
    assert finding["detail"]["delay"] == 300
    assert finding["detail"]["first_seen"] > 0


async def test_a_client_that_backs_off_and_retries_gets_through_greylisting(
    start_server: StartServer, tmp_path: Path
) -> None:
    app = await start_server(profile=gateway(tmp_path), greylist_delay=0.3)
    attempts, backoff, refusals = 0, 0.05, []
    while True:
        attempts += 1
        assert attempts <= 30, f"still greylisted after {attempts - 1} attempts: {refusals}"
        try:
            async with aio_client(app) as smtp:
                _, text = await smtp.sendmail(SENDER, [RCPT], BODY)
            break
        except aiosmtplib.SMTPRecipientsRefused as exc:
            (refused,) = exc.recipients
            refusals.append((refused.code, refused.message))
            assert refused.code == 451
            assert refused.message.startswith("4.7.1 Greylisted: please try again in ")
            await asyncio.sleep(backoff)  # the client's own back-off, as a sender's queue waits
            backoff = min(backoff * 2, 1.0)
    assert attempts > 1
    assert text.startswith("2.0.0 Ok: queued as ")
    record = await stored(app, text.rsplit(" ", 1)[1])
    assert record.data["verdict"] == "accept"
    assert record.raw == BODY
    (passed,) = [f for f in record.data["findings"] if f["code"] == "GREYLIST_PASSED"]
    assert passed["detail"]["remembered"] is False
    assert passed["detail"]["waited"] >= 0.3  # it passes only once the delay is over
    assert passed["detail"]["attempts"] == attempts


async def test_a_remembered_triplet_passes_at_once_the_next_time(
    start_server: StartServer, tmp_path: Path
) -> None:
    app = await start_server(profile=gateway(tmp_path), greylist_delay=0)
    await greylisted_then_accepted(app)
    async with raw_client(app) as client:
        answer = await client.mail(BODY, SENDER, RCPT)
        await client.quit()
    record = await stored(app, answer.ids[0])
    (passed,) = [f for f in record.data["findings"] if f["code"] == "GREYLIST_PASSED"]
    assert passed["detail"]["remembered"] is True
    assert "passes at once" in passed["reason"]


async def test_an_allowlisted_sender_skips_greylisting(
    start_server: StartServer, tmp_path: Path
) -> None:
    profile = write_profile(
        tmp_path,
        "partner-gateway",
        'title: "with a partner"\nextends: deferring-gateway\n'
        "smtp: {tarpit: {banner: 0, data: 0}}\n"
        'lists: {delivery_allowed_senders: {entries: ["*@partner.example"]}}\n',
    )
    app = await start_server(profile=str(profile), greylist_delay=300)
    async with raw_client(app) as client:
        answer = await client.mail(BODY, "ann@partner.example", RCPT)
        # Anyone else is still greylisted.
        await client.ok(f"MAIL FROM:<{SENDER}>")
        await client.ok(f"RCPT TO:<{RCPT}>", 451)
        await client.quit()
    record = await stored(app, answer.ids[0])
    assert record.data["verdict"] == "accept"
    assert "ENVELOPE_ALLOW_SENDER" in codes(record)
    assert not [c for c in codes(record) if c.startswith(("GREYLIST_", "RATE_LIMIT_"))]


async def test_mail_to_postmaster_is_never_greylisted(
    start_server: StartServer, tmp_path: Path
) -> None:
    app = await start_server(profile=gateway(tmp_path), greylist_delay=300)
    async with raw_client(app) as client:
        answer = await client.mail(BODY, SENDER, "postmaster@corp.example")
        await client.quit()
    assert "ENVELOPE_ALLOW_ROLE_RECIPIENT" in codes(await stored(app, answer.ids[0]))


# --- rate limits -------------------------------------------------------------------------------


async def test_a_client_over_messages_per_minute_gets_450_4_7_1_at_mail_from(
    start_server: StartServer, tmp_path: Path
) -> None:
    profile = write_profile(
        tmp_path,
        "slow-gateway",
        'title: "two a minute"\nextends: deferring-gateway\n'
        "smtp: {tarpit: {banner: 0, data: 0}}\n"
        "filters:\n  - {kind: rate_limit, name: anvil, messages_per_minute: 2}\n",
    )
    app = await start_server(profile=str(profile), greylist_delay=0)
    async with raw_client(app) as client:
        for _ in range(2):
            await client.ok(f"MAIL FROM:<{SENDER}>")
            await client.ok("RSET")
        answer = await client.command(f"MAIL FROM:<{SENDER}>")
        assert answer.line == "450 4.7.1 Error: too much mail from 127.0.0.1"
        # The session goes on: the client may still quit cleanly.
        await client.quit()
    record = await newest(app)
    assert record.data["stage"] == "mail"
    assert record.data["disposition"] == "deferred"
    assert codes(record) == ["RATE_LIMIT_MESSAGES"]
    assert record.data["findings"][0]["detail"]["count"] == 3


async def test_recipients_over_max_recipients_get_452_4_5_3_and_the_rest_are_delivered(
    start_server: StartServer, tmp_path: Path
) -> None:
    profile = write_profile(
        tmp_path,
        "two-rcpt-gateway",
        'title: "two recipients"\nextends: deferring-gateway\n'
        "smtp: {tarpit: {banner: 0, data: 0}}\n"
        "filters:\n  - {kind: rate_limit, name: anvil, max_recipients: 2}\n",
    )
    app = await start_server(profile=str(profile), greylist_delay=0)
    rcpts = ["a@corp.example", "b@corp.example", "c@corp.example"]
    async with raw_client(app) as client:
        await client.ok(f"MAIL FROM:<{SENDER}>")
        for rcpt in rcpts:  # greylisted once each: the retry below passes
            await client.ok(f"RCPT TO:<{rcpt}>", 451)
        await client.ok("RSET")
        await client.ok(f"MAIL FROM:<{SENDER}>")
        await client.ok(f"RCPT TO:<{rcpts[0]}>")
        await client.ok(f"RCPT TO:<{rcpts[1]}>")
        answer = await client.command(f"RCPT TO:<{rcpts[2]}>")
        assert answer.line == "452 4.5.3 Error: too many recipients"
        delivered = await client.data(BODY)
        await client.quit()
    record = await stored(app, delivered.ids[0])
    assert record.data["envelope"]["rcpt_to"] == rcpts[:2]
    assert app.store is not None
    refused = [
        r.data
        for r in await app.store.list(Query(limit=50))
        if r.data["transaction_id"] == record.data["transaction_id"] and r.data["stage"] == "rcpt"
    ]
    assert [r["envelope"]["rcpt_to"] for r in refused] == [[rcpts[2]]]
    assert [f["code"] for f in refused[0]["findings"]] == ["RATE_LIMIT_RECIPIENTS"]
    assert refused[0]["reply"]["code"] == 452


# --- connections -------------------------------------------------------------------------------


async def test_a_connection_over_max_connections_per_ip_gets_421_4_7_0_and_the_others_go_on(
    start_server: StartServer, tmp_path: Path
) -> None:
    app = await start_server(
        profile=gateway(tmp_path, extra=", max_connections_per_ip: 2"), greylist_delay=300
    )
    assert app.smtp_address is not None
    async with raw_client(app) as first, raw_client(app) as second:
        reader, writer = await asyncio.open_connection(*app.smtp_address)
        try:
            async with asyncio.timeout(10):
                line = await reader.readline()
                rest = await reader.read()
        finally:
            writer.close()
        assert line == b"421 4.7.0 sinkd.test Error: too many connections from 127.0.0.1\r\n"
        assert rest == b""  # and the server closed the connection
        for client in (first, second):
            answer = await client.mail(BODY, SENDER, "postmaster@corp.example")
            assert answer.line.startswith("250 2.0.0 Ok: queued as ")
        await first.quit()
        assert await first.reader.read() == b""  # closed: it no longer counts
        async with raw_client(app) as third:  # a place is free again
            await third.quit()
        await second.quit()


async def test_behind_a_proxy_header_connections_count_under_the_clients_address(
    start_server: StartServer, tmp_path: Path
) -> None:
    app = await start_server(
        profile=gateway(tmp_path, extra=", max_connections_per_ip: 2"),
        greylist_delay=300,
        proxy_protocol=True,
    )
    assert app.smtp_address is not None

    def header(client: str) -> bytes:
        return f"PROXY TCP4 {client} 127.0.0.1 5555 25\r\n".encode()

    # Four connections from the balancer (127.0.0.1), two clients behind it: none too many.
    async with (
        raw_client(app, preamble=header("203.0.113.9")) as first,
        raw_client(app, preamble=header("203.0.113.9")),
        raw_client(app, preamble=header("198.51.100.4")),
        raw_client(app, preamble=header("198.51.100.4")),
    ):
        reader, writer = await asyncio.open_connection(*app.smtp_address)
        try:
            writer.write(header("203.0.113.9"))  # the first client's third connection
            async with asyncio.timeout(10):
                line = await reader.readline()
                rest = await reader.read()
        finally:
            writer.close()
        assert line == b"421 4.7.0 sinkd.test Error: too many connections from 203.0.113.9\r\n"
        assert rest == b""
        answer = await first.mail(BODY, SENDER, "postmaster@corp.example")
        assert answer.line.startswith("250 2.0.0 Ok: queued as ")


# --- tarpits -----------------------------------------------------------------------------------


async def test_the_greeting_arrives_only_after_the_banner_tarpit_and_impatient_clients_time_out(
    start_server: StartServer, tmp_path: Path
) -> None:
    profile = write_profile(
        tmp_path,
        "sticky-gateway",
        'title: "slow greeting"\nextends: deferring-gateway\n'
        "smtp: {tarpit: {banner: 0.6, data: 0}}\n",
    )
    app = await start_server(profile=str(profile), greylist_delay=300)
    started = time.monotonic()
    async with raw_client(app) as client:
        waited = time.monotonic() - started
        assert client.greeting is not None
        assert client.greeting.line == "220 sinkd.test ESMTP sinkd"
        await client.quit()
    assert waited >= 0.5  # a lower bound: the tarpit is 0.6 s
    assert app.smtp_address is not None
    host, port = app.smtp_address
    impatient = aiosmtplib.SMTP(hostname=host, port=port, start_tls=False, timeout=0.1)
    with pytest.raises(aiosmtplib.SMTPTimeoutError):
        await impatient.connect()
    assert not impatient.is_connected


async def test_rcpt_waits_by_the_recipients_profile_and_data_by_the_slowest_profile(
    start_server: StartServer, tmp_path: Path
) -> None:
    fast = gateway(tmp_path, "fast-gateway")
    slow = write_profile(
        tmp_path,
        "slow-gateway",
        'title: "slow replies"\nextends: deferring-gateway\n'
        "smtp: {tarpit: {banner: 0, rcpt: 0.3, data: 0.5}}\n",
    )
    app = await start_server(profile=fast, routes={"slow.example": str(slow)}, greylist_delay=300)
    async with raw_client(app) as client:
        await client.ok(f"MAIL FROM:<{SENDER}>")
        await client.ok("RCPT TO:<postmaster@corp.example>")
        started = time.monotonic()
        await client.ok("RCPT TO:<postmaster@slow.example>")
        rcpt_waited = time.monotonic() - started
        await client.ok("DATA", 354)
        await client.send(stuff(BODY))
        started = time.monotonic()
        answer = await client.read()
        data_waited = time.monotonic() - started
        await client.quit()
    assert answer.line.startswith("250 2.0.0 Ok: queued as ")
    assert len(answer.ids) == 2  # one record per profile
    assert rcpt_waited >= 0.25  # lower bounds of the slow profile's 0.3 s and 0.5 s
    assert data_waited >= 0.45


# --- the command line --------------------------------------------------------------------------


def test_greylist_delay_reaches_the_servers_delivery_state_and_zero_is_allowed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("SINKD_GREYLIST_DELAY", raising=False)
    assert build_parser().parse_args(["serve"]).greylist_delay is None
    for given, expected in (("5", 5.0), ("0", 0.0), ("0.25", 0.25)):
        settings = from_namespace(build_parser().parse_args(["serve", "--greylist-delay", given]))
        assert settings.greylist_delay == expected
        assert Sinkd(settings).delivery.delay_override == expected
    monkeypatch.setenv("SINKD_GREYLIST_DELAY", "7")
    assert build_parser().parse_args(["serve"]).greylist_delay == 7.0


@pytest.mark.parametrize("bad", ["-1", "soon", "86401"])
def test_a_bad_greylist_delay_is_a_usage_error_naming_the_option(
    bad: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert main(["serve", "--greylist-delay", bad]) == 2
    assert "--greylist-delay" in capsys.readouterr().err
    monkeypatch.setenv("SINKD_GREYLIST_DELAY", bad)
    assert main(["serve"]) == 2
    assert f"SINKD_GREYLIST_DELAY={bad!r}" in capsys.readouterr().err


def test_a_bad_connection_limit_reply_is_a_located_profile_error(tmp_path: Path) -> None:
    path = write_profile(
        tmp_path,
        "bad-gateway",
        'title: "bad"\nmodels: [{what: a test, source: the suite}]\n'
        "smtp:\n  max_connections_per_ip: 2\n  connection_limit_reply: no.such\n",
    )
    with pytest.raises(ProfileError) as info:
        ProfileSet().resolve(str(path))
    assert f"{path}:7: smtp.connection_limit_reply: unknown reply 'no.such'" in str(info.value)
