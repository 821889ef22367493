"""Sender authentication and reputation end to end: a real sinkd, a real DNS server on a
loopback port, and XCLIENT presenting the client IP each check depends on.

The DNS server serves a small world: shop.example publishes SPF (192.0.2.0/24 only) and DMARC
p=reject; 192.0.2.99 is listed on zen.spamhaus.org. sinkd is started with
``--dns-server`` pointing at it, so every answer travels over real DNS.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from sinkd.server.runtime import Sinkd
from sinkd.store import Query
from tests.conftest import StartDnsServer, StartServer
from tests.dns_server import DnsTestServer
from tests.support.smtp import Answer, message, raw_client, stored

WORLD = {
    "shop.example": {"TXT": ["v=spf1 ip4:192.0.2.0/24 -all"], "MX": [[10, "mx.shop.example"]]},
    "mx.shop.example": {"A": ["192.0.2.25"]},
    "_dmarc.shop.example": {"TXT": ["v=DMARC1; p=reject; rua=mailto:dmarc@shop.example"]},
    "nospf.example": {"A": ["192.0.2.50"]},
    "99.2.0.192.zen.spamhaus.org": {"A": ["127.0.0.2"]},
    "2.0.0.127.zen.spamhaus.org": {"A": ["127.0.0.2"]},
}


async def start(
    start_server: StartServer, dns: DnsTestServer, profile: str = "typical-corporate"
) -> Sinkd:
    return await start_server(profile=profile, dns="live", dns_server=dns.address, dns_timeout=2.0)


async def send_as(app: Sinkd, client_ip: str, mail_from: str, header_from: str) -> Answer:
    """One transaction from ``client_ip`` (via XCLIENT): the answer to RCPT or to DATA."""
    async with raw_client(app) as client:
        greeting = await client.command(f"XCLIENT ADDR={client_ip} HELO=mx.sender.example")
        assert greeting.code == 220, greeting.lines
        await client.ok("EHLO mx.sender.example")
        await client.ok(f"MAIL FROM:<{mail_from}>")
        answer = await client.command("RCPT TO:<bob@corp.example>")
        if answer.code == 250:
            answer = await client.data(message(sender=header_from))
        await client.quit()
    return answer


def codes(data: dict[str, object]) -> list[str]:
    findings = data["findings"]
    assert isinstance(findings, list)
    return [f["code"] for f in findings]


async def test_spf_fail_for_the_presented_client_is_refused_at_rcpt_with_550_5_7_23(
    start_server: StartServer, dns_server: StartDnsServer
) -> None:
    dns = dns_server(WORLD)
    app = await start(start_server, dns)
    answer = await send_as(app, "203.0.113.5", "news@shop.example", "news@shop.example")
    assert answer.line == "550 5.7.23 SPF validation failed"
    assert app.store is not None
    (record,) = await app.store.list(Query(limit=1))
    assert record.data["stage"] == "rcpt"
    assert record.data["identity"]["source"] == "xclient"
    assert record.data["envelope"]["client_ip"] == "203.0.113.5"
    assert "SPF_FAIL" in codes(record.data)
    # The check really went over DNS, to the loopback server.
    assert any(q.name == "shop.example" and q.rdtype == "TXT" for q in dns.queries)


async def test_a_client_listed_on_zen_is_refused_at_rcpt_like_postfix(
    start_server: StartServer, dns_server: StartDnsServer
) -> None:
    dns = dns_server(WORLD)
    app = await start(start_server, dns)
    answer = await send_as(app, "192.0.2.99", "news@shop.example", "news@shop.example")
    assert answer.line == (
        "554 5.7.1 Service unavailable; Client host [192.0.2.99] blocked using zen.spamhaus.org"
    )


async def test_an_authenticated_sender_is_accepted_and_the_delivered_copy_says_why(
    start_server: StartServer, dns_server: StartDnsServer
) -> None:
    dns = dns_server(WORLD)
    app = await start(start_server, dns)
    answer = await send_as(app, "192.0.2.25", "news@shop.example", "news@shop.example")
    (message_id,) = answer.ids
    record = await stored(app, message_id)
    assert record.data["verdict"] == "accept"
    assert {"SPF_PASS", "DMARC_PASS"} <= set(codes(record.data))
    assert record.filtered is not None and record.raw is not None
    head = record.filtered.split(b"\r\n\r\n", 1)[0].decode()
    assert head.startswith("Authentication-Results: sinkd.local;")
    assert "spf=pass smtp.mailfrom=news@shop.example" in head
    assert "dmarc=pass" in head
    assert record.filtered.endswith(record.raw)  # the original follows, untouched


async def test_a_dmarc_reject_failure_is_quarantined_by_typical_and_refused_by_strict(
    start_server: StartServer, dns_server: StartDnsServer, tmp_path: Path
) -> None:
    dns = dns_server(WORLD)
    typical = await start(start_server, dns)
    # nospf.example publishes no SPF and the message is unsigned: nothing aligns with the
    # From domain shop.example, so DMARC fails under its p=reject.
    answer = await send_as(typical, "198.51.100.7", "bounce@nospf.example", "ceo@shop.example")
    (message_id,) = answer.ids  # 250: the sender cannot tell a quarantine
    record = await stored(typical, message_id)
    assert record.data["verdict"] == "quarantine"
    dmarc = next(f for f in record.data["findings"] if f["code"] == "DMARC_FAIL")
    assert dmarc["detail"]["policy"] == "reject"

    strict = await start(start_server, dns, profile="strict-finance")
    answer = await send_as(strict, "198.51.100.7", "bounce@nospf.example", "ceo@shop.example")
    assert answer.line.startswith(
        "550 5.7.509 Access denied, sending domain shop.example does not pass DMARC"
    )


async def test_offline_dns_never_asks_the_network_and_knows_only_its_fixtures(
    start_server: StartServer, tmp_path: Path
) -> None:
    zone = tmp_path / "world.zone"
    zone.write_text(
        '$ORIGIN shop.example.\n@ 300 IN TXT "v=spf1 ip4:192.0.2.0/24 -all"\n',
        encoding="utf-8",
    )
    app = await start_server(profile="typical-corporate", dns_zones=[zone])
    answer = await send_as(app, "203.0.113.5", "news@shop.example", "news@shop.example")
    assert answer.line == "550 5.7.23 SPF validation failed"
    # A domain no fixture knows is unknown (no data): SPF not judged, the message goes through.
    answer = await send_as(app, "203.0.113.5", "a@elsewhere.example", "a@elsewhere.example")
    assert answer.code == 250
    assert app.settings.db.exists()
    conn = sqlite3.connect(app.settings.db)
    try:
        rows = conn.execute("SELECT count(*) FROM messages").fetchone()
    finally:
        conn.close()
    assert rows == (2,)
