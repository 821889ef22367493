"""Strip actions end to end: a real server, a real SMTP client, the store and the CLI.

The server keeps both the message as sent and the message as delivered; hostile MIME never
costs a final reply, a stored record or the next message.
"""

from __future__ import annotations

import asyncio
import base64
import email
import email.policy
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from sinkd.cli import main
from sinkd.core.html import HTML_CLASSES
from sinkd.core.message import parse
from sinkd.core.model import StripPlan
from sinkd.core.strip import apply_strip
from sinkd.server.runtime import Sinkd
from sinkd.store import Query, StoredMessage
from tests.conftest import MESSAGES, StartServer
from tests.delivered import authentication_results_added
from tests.support.attachments import make_zip, pe_bytes
from tests.support.profiles import STRIPPING_PROFILE_ID, write_stripping_profile
from tests.support.smtp import Answer, aio_client, raw_client

MiB = 1024 * 1024
QUEUED = re.compile(r"^250 2\.0\.0 Ok: queued as ([0-9A-F]{12,40})$")
NOTICE = "was removed by the corporate mail policy]"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(200)
# What typical-corporate reports on every delivered copy when DNS knows no name (offline).
AUTHENTICATION_RESULTS = (
    "sinkd.local; spf=none (not judged: no DNS data) smtp.mailfrom=news@sender.example; "
    "dkim=none; dmarc=none (not judged: no DNS data) "
    'reason="no DNS data for _dmarc.sender.example" header.from=sender.example'
)


@pytest.fixture
def stripping(tmp_path: Path) -> dict[str, object]:
    """start_server settings for the profile that strips images and hidden text."""
    write_stripping_profile(tmp_path)
    return {"profiles_dirs": [tmp_path], "profile": STRIPPING_PROFILE_ID}


# sinkd must not fail internally whatever it is sent (that is what answers 451 4.3.0).
pytestmark = pytest.mark.usefixtures("no_internal_errors")


# --- messages -----------------------------------------------------------------------------------


def crlf(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\n", "\r\n")


def head(subject: str, content_type: str) -> str:
    return (
        "From: News <news@sender.example>\r\n"
        "To: Bob <bob@corp.example>\r\n"
        f"Subject: {subject}\r\n"
        "Date: Mon, 03 Jun 2024 10:00:00 +0000\r\n"
        f"Message-ID: <{abs(hash(subject))}@sender.example>\r\n"
        "MIME-Version: 1.0\r\n"
        f"Content-Type: {content_type}\r\n"
    )


def b64(data: bytes) -> str:
    return base64.encodebytes(data).decode().replace("\n", "\r\n")


def mixed(subject: str, *parts: str) -> bytes:
    body = "".join(f"--mx\r\n{p}" for p in parts) + "--mx--\r\n"
    return (head(subject, 'multipart/mixed; boundary="mx"') + "\r\n" + body).encode()


def html_part(html: str) -> str:
    return f"Content-Type: text/html; charset=utf-8\r\n\r\n{crlf(html)}\r\n"


def file_part(filename: str, content_type: str, encoded: str, cte: str = "base64") -> str:
    return (
        f'Content-Type: {content_type}; name="{filename}"\r\n'
        f'Content-Disposition: attachment; filename="{filename}"\r\n'
        f"Content-Transfer-Encoding: {cte}\r\n\r\n{encoded}"
    )


def plain(subject: str = "Lunch", body: str = "See you at noon.\r\n") -> bytes:
    return (head(subject, "text/plain; charset=utf-8") + "\r\n" + body).encode()


def newsletter() -> bytes:
    """The newsletter with a hidden preheader, a tracking pixel and a script; a photo attached."""
    html = (MESSAGES / "content" / "newsletter.html").read_text(encoding="utf-8")
    extra = (
        '<div style="display:none">PREHEADER-SECRET 50% off this week only</div>'
        '<img src="https://track.example/open.gif?u=7" width="1" height="1" alt="">'
        '<script>document.write("SCRIPT-MARKER")</script>'
    )
    html = re.sub(r"(<body[^>]*>)", lambda m: m.group(1) + extra, html, count=1)
    return mixed(
        "October news",
        "Content-Type: text/plain; charset=utf-8\r\n\r\nOctober news, text version.\r\n",
        html_part(html),
        file_part("photo.png", "image/png", b64(PNG)),
    )


# --- helpers ------------------------------------------------------------------------------------


async def send(app: Sinkd, raw: bytes) -> Answer:
    async with raw_client(app) as client:
        answer = await client.mail(raw, "news@sender.example", "bob@corp.example")
        await client.quit()
    return answer


async def stored(app: Sinkd, message_id: str) -> StoredMessage:
    assert app.store is not None
    return await app.store.get(message_id, with_raw=True)


def queued_id(answer: Answer) -> str:
    match = QUEUED.match(answer.line)
    assert match, answer.lines
    return match.group(1)


async def cli(*argv: str | Path) -> int:
    # The CLI runs its own event loop (asyncio.run), so it gets a thread of its own.
    return await asyncio.to_thread(main, [str(a) for a in argv])


# --- the filtered message in the store and the CLI ----------------------------------------------


async def test_a_stripped_newsletter_is_stored_as_sent_and_as_delivered(
    start_server: StartServer,
    capsysbinary: pytest.CaptureFixture[bytes],
    stripping: dict[str, object],
) -> None:
    app = await start_server(**stripping)
    raw = newsletter()
    answer = await send(app, raw)
    message_id = queued_id(answer)
    record = await stored(app, message_id)

    assert record.raw == raw
    assert record.data["verdict"] == "accept"
    codes = [f["code"] for f in record.data["findings"]]
    for code in ("MIME_IMAGES", "MIME_TRACKING_PIXELS", "MIME_ACTIVE_SCRIPT", "MIME_HIDDEN_TEXT"):
        assert code in codes
    stripped = record.data["stripped"]
    assert "part 3 'photo.png' (image/png)" in stripped
    assert any("track.example/open.gif" in line for line in stripped)
    assert any("<script>" in line for line in stripped)
    assert any(line.startswith("part 2: <div") for line in stripped)

    filtered = record.filtered
    assert filtered is not None
    for gone in (b"PREHEADER-SECRET", b"SCRIPT-MARKER", b"track.example", b"<img"):
        assert gone not in filtered
    assert b"[photo.png (image/png) " + NOTICE.encode() in filtered
    assert b"October news, text version." in filtered
    parsed = email.message_from_bytes(filtered, policy=email.policy.default)
    assert [p.get_content_type() for p in parsed.walk()] == [
        "multipart/mixed",
        "text/plain",
        "text/html",
        "text/plain",
    ]
    assert all(not p.defects for p in parsed.walk())

    assert app.settings.db is not None
    capsysbinary.readouterr()
    assert await cli("messages", "show", message_id, "--db", app.settings.db, "--filtered") == 0
    assert capsysbinary.readouterr().out == filtered
    assert await cli("messages", "show", message_id, "--db", app.settings.db, "--raw") == 0
    assert capsysbinary.readouterr().out == raw


async def test_typical_corporate_delivers_an_esp_newsletter_with_its_preheader_intact(
    start_server: StartServer,
) -> None:
    # No script in this one: what is left is what every ESP template carries.
    raw = newsletter().replace(b'<script>document.write("SCRIPT-MARKER")</script>', b"")
    app = await start_server(profile="typical-corporate")
    record = await stored(app, queued_id(await send(app, raw)))
    assert record.data["verdict"] == "accept"
    assert record.data["stripped"] == []
    findings = {f["code"]: f for f in record.data["findings"]}
    assert findings["MIME_HIDDEN_TEXT"]["action"] == "none"
    assert findings["MIME_REMOTE_IMAGES"]["reason"].startswith("Outlook does not show the 13 ")
    assert "MIME_IMAGES" not in findings
    assert record.filtered is not None
    for kept in (b"PREHEADER-SECRET", b"track.example/open.gif", b'name="photo.png"'):
        assert kept in record.filtered


async def test_a_message_with_nothing_stripped_shows_the_original_with_authentication_results(
    start_server: StartServer, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    app = await start_server(profile="typical-corporate")
    raw = plain()
    message_id = queued_id(await send(app, raw))
    record = await stored(app, message_id)
    assert record.data["stripped"] == []
    assert authentication_results_added(record.filtered, raw) == AUTHENTICATION_RESULTS
    capsysbinary.readouterr()
    assert await cli("messages", "show", message_id, "--db", app.settings.db, "--filtered") == 0
    assert capsysbinary.readouterr().out == record.filtered


async def test_a_refused_message_has_no_filtered_copy(
    start_server: StartServer, capsys: pytest.CaptureFixture[str]
) -> None:
    app = await start_server(profile="typical-corporate")
    raw = mixed(
        "Invoice",
        html_part('<p>See attached.</p><img src="https://cdn.example/logo.png">'),
        file_part("invoice.pdf", "application/pdf", b64(pe_bytes())),
    )
    answer = await send(app, raw)
    assert answer.line == "550 5.7.1 Delivery not authorized, message refused"
    assert app.store is not None
    [row] = [r for r in await app.store.list(Query()) if r.data["verdict"] == "reject"]
    record = await stored(app, row.id)
    assert record.raw == raw
    assert record.filtered is None
    assert record.data["stripped"] == []
    capsys.readouterr()
    assert await cli("messages", "show", row.id, "--db", app.settings.db, "--filtered") == 1
    assert capsys.readouterr().err == (
        f"sinkd: message {row.id} was refused; nothing was delivered\n"
    )


# --- hostile content ----------------------------------------------------------------------------


def zip_bomb() -> bytes:
    return mixed(
        "Backup",
        "Content-Type: text/plain; charset=utf-8\r\n\r\nThe backup.\r\n",
        file_part("backup.zip", "application/zip", b64(make_zip({"zeros.bin": bytes(100 * MiB)}))),
    )


def broken_base64() -> bytes:
    return mixed(
        "Broken attachment",
        "Content-Type: text/plain; charset=utf-8\r\n\r\nSee attached.\r\n",
        file_part(
            "report.pdf", "application/pdf", "JVBERi0xLjQK!!!*** not base64 at all ===\r\nQQ\r\n"
        ),
    )


def wrong_transfer_encoding() -> bytes:
    return (
        head("Wrong encoding", "text/plain; charset=utf-8")
        + "Content-Transfer-Encoding: base64\r\n\r\n"
        + "This is plain text, not base64, whatever the header says.\r\n"
    ).encode()


def nested_multiparts(levels: int = 100) -> bytes:
    body = "Content-Type: text/plain; charset=utf-8\r\n\r\nthe innermost text\r\n"
    for level in range(levels):
        body = (
            f'Content-Type: multipart/mixed; boundary="n{level}"\r\n\r\n'
            f"--n{level}\r\n{body}--n{level}--\r\n"
        )
    top = head("Nested", 'multipart/mixed; boundary="top"')
    return (top + "\r\n--top\r\n" + body + "--top--\r\n").encode()


def malformed_html() -> bytes:
    html = (MESSAGES / "content" / "malformed.html").read_text(encoding="utf-8")
    return mixed("Malformed", html_part(html))


def hostile(name: str) -> bytes:
    return (MESSAGES / "hostile" / name).read_bytes()


def inline_data_image() -> bytes:
    data = base64.b64encode(PNG + bytes(2 * MiB)).decode()
    html = f'<p>Look:</p><img src="data:image/png;base64,{data}">'
    # One 2.7 MB line: only an encoded part can carry it (SMTP lines end at 1000 octets).
    part = "Content-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    return mixed("Inline", part + b64(html.encode()))


def big_image() -> bytes:
    return mixed(
        "Photo",
        "Content-Type: text/plain; charset=utf-8\r\n\r\nThe photo.\r\n",
        file_part("photo.png", "image/png", b64(PNG + bytes(5 * MiB))),
    )


# Each hostile message: how the stripping profile judges it, and whether something was stripped.
HOSTILE: dict[str, tuple[Callable[[], bytes], str, bool]] = {
    "zip-bomb": (zip_bomb, "quarantine", False),
    "broken-base64": (broken_base64, "accept", False),
    "wrong-transfer-encoding": (wrong_transfer_encoding, "accept", False),
    "100-nested-multiparts": (nested_multiparts, "quarantine", False),
    "malformed-html": (malformed_html, "accept", True),
    "2mb-inline-data-image": (inline_data_image, "accept", True),
    "5mb-image-attachment": (big_image, "accept", True),
    # tests/messages/hostile/README.md says where each came from.
    "style-comment-tail": (lambda: hostile("style-comment-tail.eml"), "accept", True),
    "html-charset-not-text": (lambda: hostile("html-charset-not-text.eml"), "accept", True),
    "html-hidden-root": (lambda: hostile("html-hidden-root.eml"), "accept", True),
    "css-huge-number": (lambda: hostile("css-huge-number.eml"), "accept", True),
}


@pytest.mark.parametrize(("build", "verdict", "stripped"), HOSTILE.values(), ids=HOSTILE.keys())
async def test_hostile_content_gets_a_final_reply_a_record_and_the_next_message_passes(
    start_server: StartServer,
    build: Callable[[], bytes],
    verdict: str,
    stripped: bool,
    stripping: dict[str, object],
) -> None:
    app = await start_server(**stripping)
    raw = build()
    answer = await send(app, raw)
    assert app.store is not None
    [row] = await app.store.list(Query())
    assert queued_id(answer) == row.id  # accepted or quarantined alike: 250, never a 451
    record = await stored(app, row.id)
    assert record.raw == raw
    assert record.data["verdict"] == verdict
    assert bool(record.data["stripped"]) is stripped
    assert record.filtered is not None  # every delivered copy carries Authentication-Results
    if not stripped:
        assert authentication_results_added(record.filtered, raw) == AUTHENTICATION_RESULTS
    else:
        assert record.filtered.startswith(b"Authentication-Results: sinkd.local;")
        parsed = email.message_from_bytes(record.filtered, policy=email.policy.default)
        assert parsed["Subject"] == email.message_from_bytes(raw)["Subject"]

    follow_up = await send(app, plain("Still there?"))
    follow_id = queued_id(follow_up)
    assert (await stored(app, follow_id)).data["verdict"] == "accept"


async def test_a_zip_bomb_is_quarantined_as_unscannable(start_server: StartServer) -> None:
    app = await start_server(profile="typical-corporate")
    record = await stored(app, queued_id(await send(app, zip_bomb())))
    assert record.data["verdict"] == "quarantine"
    [unscannable] = [f for f in record.data["findings"] if f["code"] == "MIME_UNSCANNABLE"]
    assert unscannable["decided"] is True
    [item] = unscannable["detail"]["items"]
    assert item.startswith("part 2: zip bomb: member 'zeros.bin' expands ")


async def test_a_big_image_attachment_is_stripped_and_the_notice_stored(
    start_server: StartServer, stripping: dict[str, object]
) -> None:
    app = await start_server(**stripping)
    raw = big_image()
    record = await stored(app, queued_id(await send(app, raw)))
    assert record.data["stripped"] == ["part 2 'photo.png' (image/png)"]
    assert record.filtered is not None
    assert len(record.filtered) < 2000 < len(raw)
    assert b"[photo.png (image/png) " + NOTICE.encode() in record.filtered


async def test_an_inline_data_image_is_stripped_from_the_html(
    start_server: StartServer, stripping: dict[str, object]
) -> None:
    app = await start_server(**stripping)
    record = await stored(app, queued_id(await send(app, inline_data_image())))
    [line] = record.data["stripped"]
    assert line.startswith("part 1: <img ") and "data: URI, 2.7 MB" in line
    assert record.filtered is not None
    parsed = email.message_from_bytes(record.filtered, policy=email.policy.default)
    [html] = [p for p in parsed.walk() if p.get_content_type() == "text/html"]
    assert "data:image" not in html.get_content()
    assert "Look:" in html.get_content()


# --- hostile HTML over SMTP and through the strip path --------------------------------------------


async def test_the_corpus_css_crash_gets_a_verdict_from_typical_corporate_never_a_451(
    start_server: StartServer,
) -> None:
    # SpamAssassin corpus spam-2/01042 made the HTML policy raise while typical-corporate
    # stripped its <style> block: 451 4.3.0 on every retry, so it could never be delivered.
    app = await start_server(profile="typical-corporate")
    raw = hostile("style-comment-tail.eml")
    async with aio_client(app) as smtp:
        _, text = await smtp.sendmail("news@sender.example", ["bob@corp.example"], raw)
    assert text.startswith("2.0.0 Ok: queued as "), text
    record = await stored(app, text.rsplit(" ", 1)[1])
    assert not [f for f in record.data["findings"] if f.get("unjudged") == "error"]
    active = [f for f in record.data["findings"] if f["code"] == "MIME_ACTIVE_SCRIPT"]
    assert [f["reason"] for f in active] == [
        "The message contains active content (scripts, event handlers, frames, forms or "
        "plug-ins): script in <style> rule '.badge'; the policy removes it before delivery."
    ]
    assert record.filtered is not None and b"badge.htc" not in record.filtered
    assert b"Special offer inside." in record.filtered


@pytest.mark.parametrize(
    "name",
    [
        "style-comment-tail.eml",
        "html-charset-not-text.eml",
        "html-hidden-root.eml",
        "css-huge-number.eml",
    ],
)
def test_every_html_class_stripped_from_a_hostile_message_leaves_a_message_that_parses(
    name: str,
) -> None:
    raw = hostile(name)
    message = parse(raw)
    leaves = message.tree.leaves()
    plan = StripPlan(
        html={n.path: frozenset(HTML_CLASSES) for n in leaves if n.content_type == "text/html"}
    )
    filtered, removed = apply_strip(message, plan)
    assert removed
    again = parse(filtered)
    assert [n.content_type for n in again.tree.leaves()] == [n.content_type for n in leaves]
    for node in again.tree.leaves():
        text = node.text(filtered)
        assert "<script" not in text and "badge.htc" not in text and "Secret" not in text


def test_html_in_a_charset_that_names_no_text_encoding_is_written_back_as_utf8() -> None:
    # charset=base64 (a bytes-to-bytes codec) and a NUL inside the label: the reader decodes
    # both as UTF-8 (message.decode_text), so the stripped HTML is written back as UTF-8.
    raw = hostile("html-charset-not-text.eml")
    message = parse(raw)
    plan = StripPlan(html={"1": frozenset({"active_script"}), "2": frozenset({"active_script"})})
    filtered, removed = apply_strip(message, plan)
    assert removed == ["part 1: <script> (inline)", "part 2: <script> (inline)"]
    again = parse(filtered)
    assert [n.text(filtered).strip() for n in again.tree.leaves()] == ["<p>Hello</p>"] * 2
