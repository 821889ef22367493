"""Content rules end to end: Python's own mail client, a running sinkd, the stored verdict.

A CI test that builds its mail with ``email.message.EmailMessage`` gets quoted-printable (and
its soft line breaks) for any long line; the verdict must not depend on that encoding.
"""

from __future__ import annotations

import asyncio
import smtplib
from email.message import EmailMessage

import pytest

from sinkd.core.matching import GTUBE, GTUBE_TEXT
from sinkd.server.runtime import Sinkd
from sinkd.store import Query
from tests.conftest import StartServer

TIMEOUT = 30.0


def gtube_from_python() -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "ci@shop.example"
    msg["To"] = "bob@corp.example"
    msg["Subject"] = "Spam filter check"
    # One long line: set_content encodes it as quoted-printable with a soft line break.
    msg.set_content("Our CI checks that the spam filter answers this test string: " + GTUBE_TEXT)
    return msg


def send_with_smtplib(address: tuple[str, int], msg: EmailMessage) -> None:
    with smtplib.SMTP(*address, timeout=TIMEOUT) as client:
        client.send_message(msg)


async def test_gtube_sent_by_smtplib_in_a_long_line_gets_the_profiles_gtube_refusal(
    start_server: StartServer,
) -> None:
    app: Sinkd = await start_server(profile="typical-corporate")
    assert app.smtp_address is not None
    msg = gtube_from_python()
    assert GTUBE not in msg.as_bytes()  # the soft line break really splits the string

    with pytest.raises(smtplib.SMTPDataError) as refused:
        await asyncio.to_thread(send_with_smtplib, app.smtp_address, msg)

    # profiles/replies.yaml gtube.reject, the reply typical-corporate gives GTUBE.
    assert (refused.value.smtp_code, refused.value.smtp_error) == (554, b"5.7.1 Gtube pattern")
    assert app.store is not None
    [record] = await app.store.list(Query(code="CONTENT_GTUBE"))
    assert record.data["verdict"] == "reject"
    [gtube] = [f for f in record.data["findings"] if f["code"] == "CONTENT_GTUBE"]
    assert gtube["decided"]
    assert gtube["detail"]["part"] == "text body"
