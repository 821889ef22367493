"""A realistic marketing newsletter for the dashboard's tests and screenshots: the table
newsletter of ``tests/messages/content/newsletter.html`` with what corporate filters object to
added (a hidden preheader, a script, an ``onclick`` handler, a tracking pixel), as a
multipart/alternative message with a plain-text part."""

from __future__ import annotations

import email.policy
from email.message import EmailMessage

from tests.support.paths import MESSAGES

CONTENT = MESSAGES / "content"
PREHEADER = (
    '<div style="display:none;font-size:1px;color:#f1f1f1;line-height:1px;max-height:0;'
    'overflow:hidden">PREHEADER-MARKER Autumn prices end Sunday &ndash; 20% off gift boxes'
    "&zwnj;&nbsp;&zwnj;&nbsp;&zwnj;&nbsp;</div>"
)
SCRIPT = "<script>document.title='PWNED'</script>"


def campaign_html(image_host: str = "https://cdn.northwind.example") -> str:
    html = (CONTENT / "newsletter.html").read_text(encoding="utf-8")
    html = html.replace("https://cdn.northwind.example", image_host)
    html = html.replace("<center style", PREHEADER + SCRIPT + "<center style", 1)
    pixel = f'<img src="{image_host}/open.gif?u=4711" width="1" height="1" alt="">'
    return html.replace("</body>", pixel + "</body>", 1)


def campaign_message(
    image_host: str = "https://cdn.northwind.example",
    *,
    subject: str = "Northwind Monthly: autumn in the kitchens",
    sender: str = "news@northwind.example",
) -> bytes:
    message = EmailMessage()
    message["From"] = f"Northwind <{sender}>"
    message["To"] = "Bob <bob@corp.example>"
    message["Subject"] = subject
    message["Date"] = "Mon, 07 Oct 2024 08:00:00 +0000"
    message["Message-ID"] = "<monthly-2024-10@northwind.example>"
    message.set_content(
        "Northwind Monthly, October\n\nAutumn in the Northwind kitchens: three farms, one valley,"
        " the new order page and recipes for cold evenings.\n\nhttps://www.northwind.example/\n"
    )
    message.add_alternative(campaign_html(image_host), subtype="html")
    return message.as_bytes(policy=email.policy.SMTP)  # CRLF, as on the wire
