"""The DATA command as a stage of its own, over SMTP: a profile whose filters answer the DATA
command (Postfix's smtpd_data_restrictions, smtpd.c data_cmd()) refuses it in place of the 354,
stores that refusal like any other, and keeps the transaction open, as Postfix does; a profile
without such filters answers 354 as always."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.conftest import StartServer
from tests.support.smtp import count, message, newest, raw_client, write_profile

pytestmark = pytest.mark.usefixtures("no_internal_errors")

REFUSES_DATA = yaml.safe_dump(
    {
        "title": "a Postfix gateway whose smtpd_data_restrictions reject",
        "models": [{"what": "a test profile", "source": "tests/server/test_data_command.py"}],
        "filters": [
            {
                "kind": "postfix_smtpd",
                "name": "smtpd",
                "parameters": {
                    "mynetworks": {"value": "127.0.0.0/8", "source": "main.cf:3"},
                    "relay_domains": {"value": "corp.example", "source": "main.cf:4"},
                },
                "restrictions": {
                    "relay": [
                        {"restriction": "permit_mynetworks", "source": "main.cf:8"},
                        {"restriction": "reject_unauth_destination", "source": "main.cf:8"},
                    ],
                    "data": [{"restriction": "reject", "source": "main.cf:9"}],
                },
            }
        ],
    }
)
REFUSAL = "554 5.7.1 <DATA>: Data command rejected: Access denied"


async def test_a_data_restriction_refuses_the_data_command_instead_of_354_and_is_stored(
    start_server: StartServer, tmp_path: Path
) -> None:
    app = await start_server(profile=str(write_profile(tmp_path, "gate", REFUSES_DATA)))
    async with raw_client(app) as client:
        await client.ok("MAIL FROM:<alice@sender.example>")
        await client.ok("RCPT TO:<bob@corp.example>")
        assert (await client.command("DATA")).line == REFUSAL
        # The transaction stays open (Postfix does not reset it): DATA is refused again.
        assert (await client.command("DATA")).line == REFUSAL
        await client.ok("RSET")
        await client.quit()
    assert await count(app) == 2
    record = await newest(app)
    assert record.data["stage"] == "data"
    assert record.data["verdict"] == "reject"
    assert record.data["reply"]["code"] == 554
    assert record.data["envelope"]["rcpt_to"] == ["bob@corp.example"]
    assert record.raw is None  # the message was never sent


async def test_without_data_command_filters_data_gets_its_354(
    start_server: StartServer, tmp_path: Path
) -> None:
    app = await start_server(profile="no-filter")
    async with raw_client(app) as client:
        answer = await client.mail(message(), "alice@sender.example", "bob@corp.example")
        assert answer.code == 250, answer.lines
        await client.quit()
    assert await count(app) == 1
