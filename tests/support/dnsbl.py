"""The dnsbl filter's test fixtures: a DNS resolver that answers from a map and counts what it
was asked, the filter built from zone settings, messages with links, and one transaction's
envelope and message stages (shared by tests/core/filters/test_dnsbl.py and the subprocess it
starts to see what a message without HTML imports)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from sinkd.core.filters import EnvelopeContext, MessageContext
from sinkd.core.filters.dnsbl import DnsblFilter, DnsblSpec
from sinkd.core.message import parse
from sinkd.core.model import ClientIdentity, Envelope, Finding, Stage
from sinkd.core.ports import DnsAnswer, Lookups, RecordType
from sinkd.core.profiles import ProfileSet
from sinkd.core.schema import CompileContext

NXDOMAIN = DnsAnswer("NXDOMAIN")
SPAMHAUS_CODES = {
    "127.0.0.2": {"id": "SBL", "action": "reject", "reply": "postfix.rbl"},
    "127.0.0.3": {"id": "CSS", "action": "reject"},
    "127.0.0.4-7": {"id": "XBL", "action": "reject"},
    "127.0.0.10-11": {"id": "PBL", "action": "score", "score": 3.0},
}


def a(*addresses: str) -> DnsAnswer:
    return DnsAnswer("NOERROR", tuple(addresses), 300)


def txt(*texts: str) -> DnsAnswer:
    return DnsAnswer("NOERROR", tuple((t.encode(),) for t in texts), 300)


class FakeResolver:
    """A dict of name → answer (A unless the key is ``(name, "TXT")``); the rest is NXDOMAIN.

    Counts the questions in flight so that a test can see they were asked together.
    """

    def __init__(
        self, answers: Mapping[str | tuple[str, str], DnsAnswer] | None = None, delay: float = 0
    ) -> None:
        self.answers = dict(answers or {})
        self.delay = delay
        self.asked: list[tuple[str, RecordType]] = []
        self.in_flight = 0
        self.max_in_flight = 0

    async def query(self, name: str, rdtype: RecordType) -> DnsAnswer:
        self.asked.append((name, rdtype))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.delay)
        finally:
            self.in_flight -= 1
        key: str | tuple[str, str] = name if rdtype == "A" else (name, rdtype)
        return self.answers.get(key, NXDOMAIN)

    # Whether answers are also given at once through ``answer_now`` (as the fixture and the
    # cache give them, ``sinkd.core.spf_eval.AnswersNow``); never for a resolver with a delay.
    answers_at_hand = False

    def answer_now(self, name: str, rdtype: RecordType) -> DnsAnswer | None:
        if not self.answers_at_hand or self.delay:
            return None
        self.asked.append((name, rdtype))
        key: str | tuple[str, str] = name if rdtype == "A" else (name, rdtype)
        return self.answers.get(key, NXDOMAIN)

    def names(self, rdtype: str = "A") -> list[str]:
        return [name for name, kind in self.asked if kind == rdtype]


def make_filter(*zones: dict[str, Any], **options: Any) -> DnsblFilter:
    spec = DnsblSpec.model_validate(
        {"kind": "dnsbl", "name": "blocklists", "zones": list(zones), **options}
    )
    return DnsblFilter(spec, CompileContext(lists={}, replies=ProfileSet().catalogue))


def envelope(
    ip: str = "192.0.2.99",
    helo: str | None = "mail.sender.example",
    mail_from: str | None = "alice@sender.example",
) -> Envelope:
    return Envelope(ClientIdentity(ip=ip, helo=helo), mail_from, ("bob@corp.example",))


async def at_mail(
    flt: DnsblFilter, resolver: FakeResolver | None, env: Envelope | None = None
) -> list[Finding]:
    ctx = EnvelopeContext(env or envelope(), None, Lookups(resolver=resolver))
    return await flt.check_envelope(Stage.MAIL, ctx)


def message(body: str = "See you at noon.", *, html: str | None = None, sender: str = "") -> bytes:
    sender = sender or "alice@sender.example"
    head = f"From: Alice <{sender}>\r\nTo: bob@corp.example\r\nSubject: Hello\r\n"
    if html is None:
        return (head + "\r\n" + body + "\r\n").encode()
    return (
        head
        + 'MIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary="b"\r\n\r\n'
        + "--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        + body
        + "\r\n--b\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
        + html
        + "\r\n--b--\r\n"
    ).encode()


async def at_data(
    flt: DnsblFilter, resolver: FakeResolver | None, raw: bytes, env: Envelope | None = None
) -> list[Finding]:
    ctx = MessageContext(env or envelope(), parse(raw), Lookups(resolver=resolver))
    return await flt.check_message(ctx)


def client_zone(**extra: Any) -> dict[str, Any]:
    return {"zone": "zen.example", "lookup": "client_ip", "codes": SPAMHAUS_CODES, **extra}


def uri_zone(**extra: Any) -> dict[str, Any]:
    return {"zone": "dbl.example", "lookup": "uri_host", **extra}


def reply_line(finding: Finding) -> str:
    assert finding.reply is not None
    return f"{finding.reply.code} {finding.reply.enhanced} {finding.reply.text}"


# --- client IP ---------------------------------------------------------------------------------
