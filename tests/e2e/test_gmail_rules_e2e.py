"""google-workspace-like over SMTP with a real client: Gmail's rule that every sender passes SPF or
DKIM, and its RFC 5322 header refusals, answered at the end of DATA as Gmail answers them.

sinkd runs with the demo DNS fixture (profiles/dns/demo.zone): shop.example's SPF passes
192.0.2.0/24 and fails the rest (-all), softfail.example's SPF softfails everyone (~all). The
client address each test needs is given to the server (``client_ip``), as ``sinkd serve
--client-ip`` does; aiosmtplib speaks SMTP to it over loopback.
"""

from __future__ import annotations

import email.utils
from email.message import EmailMessage

import aiosmtplib
import pytest

from sinkd.core.profiles import builtin_profiles_dir
from sinkd.server.runtime import Sinkd
from sinkd.store import Query
from tests.conftest import StartServer

DEMO_ZONE = builtin_profiles_dir() / "dns" / "demo.zone"
SHOP_SERVER = "192.0.2.25"  # allowed by shop.example's SPF
ELSEWHERE = "203.0.113.5"  # allowed by nobody's SPF
TIMEOUT = 30.0
UNAUTHENTICATED = (
    "5.7.26 This email has been blocked because the sender is unauthenticated. Gmail requires "
    "all senders to authenticate with either SPF or DKIM."
)


async def gmail(start_server: StartServer, client_ip: str) -> Sinkd:
    return await start_server(
        profile="google-workspace-like", dns_zones=[DEMO_ZONE], client_ip=client_ip
    )


def letter(sender: str, *, with_from: bool = True) -> EmailMessage:
    msg = EmailMessage()
    if with_from:
        msg["From"] = f"Shop <{sender}>"
    msg["To"] = "ann@gmail.example"
    msg["Subject"] = "Your order has shipped"
    msg["Date"] = email.utils.formatdate(localtime=False)
    msg["Message-ID"] = email.utils.make_msgid(domain="shop.example")
    msg.set_content("Your parcel is on its way.\n")
    return msg


async def send(app: Sinkd, msg: EmailMessage | bytes, mail_from: str) -> tuple[int, str]:
    """The answer to the end of DATA (every RCPT must be accepted first, as Gmail does)."""
    assert app.smtp_address is not None
    host, port = app.smtp_address
    async with aiosmtplib.SMTP(hostname=host, port=port, start_tls=False, timeout=TIMEOUT) as smtp:
        try:
            if isinstance(msg, bytes):
                refused, answer = await smtp.sendmail(mail_from, ["ann@gmail.example"], msg)
            else:
                refused, answer = await smtp.send_message(
                    msg, sender=mail_from, recipients=["ann@gmail.example"]
                )
        except aiosmtplib.SMTPDataError as exc:
            return exc.code, exc.message
    assert refused == {}
    return 250, answer


async def stored(app: Sinkd) -> dict[str, object]:
    assert app.store is not None
    (record,) = await app.store.list(Query(limit=1))
    return record.data


def deciding(data: dict[str, object]) -> str:
    findings = data["findings"]
    assert isinstance(findings, list)
    [code] = [f["code"] for f in findings if f["decided"]]
    return str(code)


async def test_a_message_without_from_gets_gmails_rfc_5322_refusal_at_end_of_data(
    start_server: StartServer,
) -> None:
    app = await gmail(start_server, SHOP_SERVER)  # SPF passes: only the format is wrong
    code, text = await send(app, letter("news@shop.example", with_from=False), "news@shop.example")
    assert code == 550
    assert text.startswith(
        "5.7.1 Our system has detected that this message is not RFC 5322 compliant: "
        "'From' header is missing."
    )
    data = await stored(app)
    assert (data["verdict"], data["stage"]) == ("reject", "data")
    assert deciding(data) == "FORMAT_MISSING_FROM"


async def test_spf_softfail_without_dkim_is_refused_as_unauthenticated_at_end_of_data(
    start_server: StartServer,
) -> None:
    app = await gmail(start_server, ELSEWHERE)
    code, text = await send(app, letter("news@softfail.example"), "news@softfail.example")
    assert (code, text) == (550, UNAUTHENTICATED)
    data = await stored(app)
    assert (data["verdict"], data["stage"]) == ("reject", "data")
    assert deciding(data) == "SENDER_AUTH_FAIL"
    findings = data["findings"]
    assert isinstance(findings, list)
    assert [f["code"] for f in findings][:2] == ["SPF_SOFTFAIL", "DKIM_NONE"]


async def test_a_message_whose_spf_passes_is_accepted(start_server: StartServer) -> None:
    app = await gmail(start_server, SHOP_SERVER)
    code, _ = await send(app, letter("news@shop.example"), "news@shop.example")
    assert code == 250
    data = await stored(app)
    assert data["verdict"] == "accept"
    findings = data["findings"]
    assert isinstance(findings, list)
    auth = [f for f in findings if f["code"].startswith("SENDER_AUTH_")]
    assert [(f["code"], f["action"]) for f in auth] == [("SENDER_AUTH_PASS", "none")]


@pytest.mark.parametrize("field", ["Subject", "Message-ID"])
async def test_a_repeated_single_instance_field_gets_gmails_duplicate_header_refusal(
    start_server: StartServer, field: str
) -> None:
    app = await gmail(start_server, SHOP_SERVER)
    raw = (
        letter("news@shop.example")
        .as_bytes()
        .replace(
            b"\n\n",
            f"\n{field}: {'again' if field == 'Subject' else '<2@shop.example>'}\n\n".encode(),
            1,
        )
    )
    code, text = await send(app, raw, "news@shop.example")
    assert code == 550
    assert f"not RFC 5322 compliant: Multiple '{field}' headers found." in text
    assert deciding(await stored(app)) == "FORMAT_DUPLICATE_HEADER"


async def test_a_message_without_message_id_gets_gmails_message_id_refusal(
    start_server: StartServer,
) -> None:
    app = await gmail(start_server, SHOP_SERVER)
    msg = letter("news@shop.example")
    del msg["Message-ID"]
    code, text = await send(app, msg, "news@shop.example")
    assert (code, text) == (
        550,
        "5.7.1 Messages missing a valid messageId header are not accepted.",
    )
