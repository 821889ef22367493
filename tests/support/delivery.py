"""The greylisting gateway the delivery tests talk to: ``deferring-gateway`` without its tarpit,
and one greylisted attempt with its immediate retry."""

from __future__ import annotations

from pathlib import Path

from sinkd.server.runtime import Sinkd
from tests.support.smtp import message, raw_client, write_profile

SENDER = "alice@sender.example"
RCPT = "bob@corp.example"
BODY = message("Your order has shipped")


def gateway(tmp_path: Path, profile_id: str = "test-gateway", extra: str = "") -> str:
    """deferring-gateway without its tarpit (tests that want one set it), plus ``extra``."""
    body = (
        'title: "deferring-gateway for tests"\n'
        "extends: deferring-gateway\n"
        "smtp: {tarpit: {banner: 0, rcpt: 0, data: 0}" + extra + "}\n"
    )
    return str(write_profile(tmp_path, profile_id, body))


async def greylisted_then_accepted(app: Sinkd, sender: str = SENDER, rcpt: str = RCPT) -> None:
    """One greylisted attempt and its immediate retry (for servers with --greylist-delay 0)."""
    async with raw_client(app) as client:
        await client.ok(f"MAIL FROM:<{sender}>")
        await client.ok(f"RCPT TO:<{rcpt}>", 451)
        await client.ok("RSET")
        await client.mail(BODY, sender, rcpt)
        await client.quit()
