"""Refusals before MAIL FROM, over SMTP: a profile whose filters answer the greeting or HELO/EHLO
(Postfix with smtpd_delay_reject = no) refuses there, as Postfix 3.7.11 was observed to: the
refusal in place of the 220 greeting (or as XCLIENT's reply, XCLIENT starting a new session),
then "503 5.7.0 Error: access denied for name[addr]" to every command but QUIT; a refused EHLO
leaves the client ungreeted. Each refusal is stored like a MAIL or RCPT refusal."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import yaml

from sinkd.store import Query
from tests.conftest import StartServer
from tests.support.smtp import TIMEOUT, RawSMTP, count, message, newest, raw_client, write_profile

pytestmark = pytest.mark.usefixtures("no_internal_errors")


def profile(client: str, helo: str) -> str:
    """A Postfix gateway with smtpd_delay_reject = no refusing clients in ``client`` (a CIDR)
    and the HELO name ``helo``."""
    spec: dict[str, Any] = {
        "title": "a Postfix gateway answering client and HELO restrictions early",
        "models": [{"what": "a test profile", "source": "tests/server/test_early_refusals.py"}],
        "filters": [
            {
                "kind": "postfix_smtpd",
                "name": "smtpd",
                "parameters": {
                    "smtpd_delay_reject": {"value": "no", "source": "main.cf:2"},
                    "mynetworks": {"value": "127.0.0.0/8", "source": "main.cf:3"},
                    "relay_domains": {"value": "corp.example", "source": "main.cf:4"},
                },
                "restrictions": {
                    "client": [{"restriction": "check_client_access", "table": "clients"}],
                    "helo": [{"restriction": "check_helo_access", "table": "helos"}],
                    "relay": [
                        {"restriction": "permit_mynetworks", "source": "main.cf:8"},
                        {"restriction": "reject_unauth_destination", "source": "main.cf:8"},
                    ],
                },
                "tables": {
                    "clients": {"type": "cidr", "entries": [{"key": client, "value": "REJECT"}]},
                    "helos": {
                        "type": "hash",
                        "entries": [{"key": helo, "value": "550 5.7.0 no such host here"}],
                    },
                },
            }
        ],
    }
    return yaml.safe_dump(spec)


async def test_a_refused_client_gets_the_refusal_as_greeting_then_503_until_quit(
    start_server: StartServer, tmp_path: Path
) -> None:
    app = await start_server(
        profile=str(write_profile(tmp_path, "early", profile("127.0.0.1/32", "bad.helo.example")))
    )
    assert app.smtp_address is not None
    reader, writer = await asyncio.open_connection(*app.smtp_address)
    client = RawSMTP(reader, writer)
    try:
        greeting = await client.read()
        assert greeting.line == (
            "554 5.7.1 <unknown[127.0.0.1]>: Client host rejected: Access denied"
        )
        denied = "503 5.7.0 Error: access denied for unknown[127.0.0.1]"
        for command in ("EHLO client.example", "MAIL FROM:<a@sender.example>", "RSET", "NOOP"):
            assert (await client.command(command)).line == denied
        await client.quit()
        async with asyncio.timeout(TIMEOUT):
            assert await reader.read() == b""  # closed after QUIT
    finally:
        await client.aclose()
    record = await newest(app)
    assert record.data["stage"] == "connect"
    assert record.data["reply"]["code"] == 554
    assert record.data["verdict"] == "reject"
    assert await count(app) == 1


async def test_xclient_naming_a_refused_client_is_answered_with_the_refusal(
    start_server: StartServer, tmp_path: Path
) -> None:
    app = await start_server(
        profile=str(write_profile(tmp_path, "early", profile("192.0.2.7/32", "bad.helo.example")))
    )
    async with raw_client(app) as client:
        answer = await client.command("XCLIENT ADDR=192.0.2.7 NAME=mail.blocked.example")
        assert answer.line == (
            "554 5.7.1 <mail.blocked.example[192.0.2.7]>: Client host rejected: Access denied"
        )
        assert (await client.command("EHLO client.example")).line == (
            "503 5.7.0 Error: access denied for mail.blocked.example[192.0.2.7]"
        )
        await client.quit()
    assert (await newest(app)).data["stage"] == "connect"


async def test_a_refused_helo_name_is_the_reply_to_ehlo_and_a_good_one_is_greeted(
    start_server: StartServer, tmp_path: Path
) -> None:
    app = await start_server(
        profile=str(write_profile(tmp_path, "early", profile("192.0.2.7/32", "bad.helo.example")))
    )
    async with raw_client(app, ehlo=None) as client:
        assert (await client.command("EHLO bad.helo.example")).line == (
            "550 5.7.0 <bad.helo.example>: Helo command rejected: no such host here"
        )
        assert (await client.command("HELO bad.helo.example")).code == 550
        await client.ok("EHLO good.example")
        answer = await client.mail(message(), "alice@sender.example", "bob@corp.example")
        assert answer.code == 250, answer.lines
        await client.quit()
    assert app.store is not None
    records = await app.store.list(Query(limit=10))
    assert sorted(r.data["stage"] for r in records) == ["data", "helo", "helo"]


async def test_a_profile_answering_nothing_early_greets_everyone(
    start_server: StartServer,
) -> None:
    app = await start_server(profile="no-filter")
    async with raw_client(app) as client:  # asserts the 220 greeting and EHLO's 250
        await client.quit()
    assert await count(app) == 0
