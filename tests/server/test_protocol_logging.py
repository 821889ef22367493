"""aiosmtpd's own command log ("mail.log") through ``SinkdSMTP``: the lines it logs when its
level is on are the ones aiosmtpd logs (credentials masked), and none are made when it is off
(the default ``sinkd.server.logs`` sets)."""

from __future__ import annotations

import base64
import logging

import pytest

from tests.conftest import StartServer
from tests.support.smtp import raw_client

TOKEN = base64.b64encode(b"\0user\0secret").decode()


def command_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage() for r in caplog.records if r.name == "mail.log" and ">>" in r.getMessage()
    ]


async def test_command_lines_are_logged_with_auth_masked_when_mail_log_is_on(
    start_server: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    app = await start_server(auth="any")
    with caplog.at_level(logging.INFO, logger="mail.log"):
        async with raw_client(app) as client:
            assert (await client.command(f"AUTH PLAIN {TOKEN}")).code == 235
            await client.ok("NOOP")
    lines = command_lines(caplog)
    assert any(line.endswith(">> b'NOOP'") for line in lines)
    assert any(line.endswith(">> b'AUTH PLAIN ********'") for line in lines)
    assert not any(TOKEN in line for line in lines)


async def test_no_command_line_is_logged_when_mail_log_is_off(
    start_server: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    app = await start_server()
    with caplog.at_level(logging.WARNING, logger="mail.log"):
        async with raw_client(app) as client:
            await client.ok("NOOP")
    assert command_lines(caplog) == []
