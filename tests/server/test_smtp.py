"""The SMTP adapter end to end: a real ``Sinkd`` on a free port, driven by real clients.

Every test talks SMTP over a socket (aiosmtplib, or a small raw asyncio client when the exact
bytes matter) and checks both what the client was told and what the store holds.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import re
import sqlite3
import ssl
from pathlib import Path

import aiosmtplib
import pytest

from sinkd.core.matching import GTUBE
from sinkd.server.runtime import Sinkd
from sinkd.store import Query
from tests.conftest import MESSAGES, StartServer, require_executable
from tests.support.smtp import (
    GTUBE_MESSAGE,
    SPAMMY_MESSAGE,
    Answer,
    aio_client,
    codes,
    count,
    message,
    newest,
    raw_client,
    stored,
    stuff,
    write_profile,
)

pytestmark = pytest.mark.usefixtures("no_internal_errors")  # every test here: see conftest

ENHANCED = re.compile(r"^[245]\d\d [245]\.\d{1,3}\.\d{1,3} ")


BLOCKS = """\
title: "typical-corporate with a filled block list"
extends: typical-corporate
lists:
  blocked_senders: {entries: ["spammer@bad.example"]}
  blocked_ips: {entries: ["203.0.113.0/24"]}
"""
FINANCE_BLOCKS = """\
title: "strict-finance with a filled block list"
extends: strict-finance
lists:
  blocked_senders: {entries: ["spammer@bad.example"]}
"""
TINY_LIMIT = """\
title: "no-filter with a 1000-byte limit"
extends: no-filter
filters:
  - {kind: size, name: message-size, max_bytes: 1000}
"""
DEFERS = """\
title: "asks the sender to retry whenever it reads 'deferme'"
models: [{what: "a test profile", source: "tests/server/test_smtp.py"}]
filters:
  - kind: content
    name: deferrals
    rules:
      - {id: DEFER_WORD, words: [deferme], parts: [subject, body], action: tempfail}
"""


async def assert_serves_a_normal_message(app: Sinkd) -> None:
    """Proof of health after hostile input: a fresh client gets a clean message accepted."""
    before = await count(app)
    body = message("still alive")
    async with raw_client(app) as client:
        answer = await client.mail(body, "alice@sender.example", "bob@corp.example")
        await client.quit()
    (message_id,) = answer.ids
    record = await stored(app, message_id)
    assert record.data["verdict"] == "accept"
    assert record.raw == body
    assert await count(app) == before + 1


# --- the conversation --------------------------------------------------------------------------


async def test_ehlo_advertises_every_extension_sinkd_speaks(start_server: StartServer) -> None:
    app = await start_server()
    async with raw_client(app, ehlo=None) as client:
        assert client.greeting is not None
        assert client.greeting.line == "220 sinkd.test ESMTP sinkd"
        answer = await client.ok("EHLO client.example")
        await client.quit()
    assert answer.lines[0] == "250-sinkd.test"
    assert all(line.startswith("250-") for line in answer.lines[:-1])
    assert answer.line.startswith("250 ")
    keywords = {line[4:].split()[0]: line[4:].split()[1:] for line in answer.lines[1:]}
    assert keywords["SIZE"] == ["52428800"]
    for keyword in ("8BITMIME", "SMTPUTF8", "PIPELINING", "STARTTLS", "ENHANCEDSTATUSCODES"):
        assert keyword in keywords, answer.lines
    assert set(keywords["AUTH"]) == {"PLAIN", "LOGIN"}
    assert {"NAME", "ADDR", "HELO"} <= set(keywords["XCLIENT"])


async def test_helo_noop_rset_vrfy_and_quit_answer_with_enhanced_codes(
    start_server: StartServer,
) -> None:
    app = await start_server()
    async with raw_client(app, ehlo=None) as client:
        assert (await client.command("HELO client.example")).line == "250 sinkd.test"
        assert (await client.command("NOOP")).line == "250 2.0.0 Ok"
        assert (await client.command("MAIL FROM:<alice@sender.example>")).line == "250 2.1.0 Ok"
        assert (await client.command("RSET")).line == "250 2.0.0 Ok"
        # RSET ended the transaction: RCPT now needs a new MAIL.
        assert (await client.command("RCPT TO:<bob@corp.example>")).line.startswith("503 5.5.1 ")
        vrfy = await client.command("VRFY bob@corp.example")
        assert vrfy.code == 252 and vrfy.line.startswith("252 2.5.0 ")
        assert (await client.command("QUIT")).line == "221 2.0.0 Bye"
        assert await client.reader.read() == b""  # the server closed the connection


async def test_help_lists_every_command_with_an_enhanced_code(start_server: StartServer) -> None:
    app = await start_server()
    async with raw_client(app) as client:
        answer = await client.command("HELP")
        assert answer.line.startswith("250 2.0.0 Supported commands: ")
        commands = answer.line.split(": ", 1)[1].split()
        assert {"MAIL", "RCPT", "DATA", "EHLO", "HELO", "RSET", "NOOP", "QUIT"} <= set(commands)
        answer = await client.command("HELP MAIL")
        assert answer.line == "250 2.0.0 Syntax: MAIL FROM: <address> [SP <mail-parameters>]"
        await client.quit()


async def test_accepted_message_is_queued_under_an_id_the_store_holds_with_its_raw_bytes(
    start_server: StartServer,
) -> None:
    app = await start_server()
    body = message(body="Hello.\r\n.A line that starts with a dot.\r\n..and two dots.\r\n")
    async with aio_client(app) as smtp:
        _, text = await smtp.sendmail("alice@sender.example", ["bob@corp.example"], body)
    (message_id,) = Answer(250, [f"250 {text}"]).ids
    record = await stored(app, message_id)
    assert record.data["verdict"] == "accept"
    assert record.data["stage"] == "data"
    assert record.data["profile"] == "typical-corporate"
    assert record.data["reply"] == {"code": 250, "enhanced": "2.0.0", "text": text[6:]}
    assert record.data["envelope"]["mail_from"] == "alice@sender.example"
    assert record.data["envelope"]["rcpt_to"] == ["bob@corp.example"]
    assert record.data["identity"]["source"] == "connection"
    assert record.data["identity"]["ip"] == "127.0.0.1"
    assert record.data["subject"] == "Quarterly figures"
    assert record.raw == body  # dot-stuffing undone, nothing else touched


async def test_a_pipelined_transaction_gets_every_answer_in_order(
    start_server: StartServer,
) -> None:
    app = await start_server()
    async with raw_client(app) as client:
        # RFC 2920: the envelope and DATA in one write, then the answers.
        await client.send(
            b"MAIL FROM:<alice@sender.example>\r\nRCPT TO:<bob@corp.example>\r\n"
            b"RCPT TO:<carol@corp.example>\r\nDATA\r\n"
        )
        answers = [(await client.read()).line for _ in range(4)]
        assert answers == [
            "250 2.1.0 Ok",
            "250 2.1.5 Ok",
            "250 2.1.5 Ok",
            "354 End data with <CR><LF>.<CR><LF>",
        ]
        # The end of data, a whole second transaction and QUIT in one more write.
        await client.send(
            stuff(message("first"))
            + b"MAIL FROM:<alice@sender.example>\r\nRCPT TO:<dave@corp.example>\r\nDATA\r\n"
        )
        first = await client.read()
        assert [(await client.read()).code for _ in range(3)] == [250, 250, 354]
        await client.send(stuff(message("second")) + b"QUIT\r\n")
        second = await client.read()
        assert (await client.read()).line == "221 2.0.0 Bye"
    one, two = await stored(app, first.ids[0]), await stored(app, second.ids[0])
    assert one.data["envelope"]["rcpt_to"] == ["bob@corp.example", "carol@corp.example"]
    assert (one.data["subject"], two.data["subject"]) == ("first", "second")
    assert two.data["envelope"]["rcpt_to"] == ["dave@corp.example"]


async def test_trigger_words_are_answered_250_but_stored_as_quarantine(
    start_server: StartServer,
) -> None:
    app = await start_server()
    async with raw_client(app) as client:
        answer = await client.mail(SPAMMY_MESSAGE, "alice@sender.example", "bob@corp.example")
        await client.quit()
    (message_id,) = answer.ids
    record = await stored(app, message_id)
    assert record.data["verdict"] == "quarantine"
    # Trigger words 9. Offline DNS has no data for the sender domain: SPF is not judged and
    # scores nothing (SPF_NONE with unjudged no-dns-data).
    assert record.data["score"] == 9.0
    assert codes(record) == [
        "SPF_NONE",
        "DNSBL_NOT_JUDGED",  # no fixture for zen.spamhaus.org: not judged, not "not listed"
        "CONTENT_TRIGGER_WORD",
        "DKIM_NONE",
        "DMARC_NONE",
        "SCORE_QUARANTINE",
    ]
    assert record.raw == SPAMMY_MESSAGE


async def test_gtube_is_rejected_after_data_with_554_and_stored_with_its_raw_bytes(
    start_server: StartServer,
) -> None:
    app = await start_server()
    async with raw_client(app) as client:
        answer = await client.mail(GTUBE_MESSAGE, "alice@sender.example", "bob@corp.example")
        await client.quit()
    assert answer.line == "554 5.7.1 Gtube pattern"
    record = await newest(app)
    assert record.data["verdict"] == "reject"
    assert record.data["stage"] == "data"
    assert "CONTENT_GTUBE" in codes(record)
    assert record.raw == GTUBE_MESSAGE


@pytest.mark.parametrize(
    ("sender", "client_ip", "refusal"),
    [
        ("spammer@bad.example", None, "<spammer@bad.example>: Sender address rejected"),
        ("alice@sender.example", "203.0.113.7", "[203.0.113.7]>: Client host rejected"),
    ],
    ids=["blocked-sender", "blocked-ip"],
)
async def test_blocklisted_sender_or_ip_is_rejected_at_rcpt_with_554_and_stored_without_raw(
    start_server: StartServer, tmp_path: Path, sender: str, client_ip: str | None, refusal: str
) -> None:
    profile = write_profile(tmp_path, "corp-blocks", BLOCKS)
    app = await start_server(profile=str(profile), client_ip=client_ip)
    async with raw_client(app) as client:
        # typical-corporate answers envelope blocks at RCPT TO, like smtpd_delay_reject=yes.
        assert (await client.command(f"MAIL FROM:<{sender}>")).line == "250 2.1.0 Ok"
        answer = await client.command("RCPT TO:<bob@corp.example>")
        assert answer.code == 554, answer.lines
        assert answer.line.startswith("554 5.7.1 ") and refusal in answer.line
        # No recipient was accepted, so DATA has nothing to deliver to.
        assert (await client.command("DATA")).line.startswith("503 5.5.1 ")
        await client.quit()
    record = await newest(app)
    assert record.data["verdict"] == "reject"
    assert record.data["stage"] == "rcpt"
    assert record.data["profile"] == "corp-blocks"
    assert record.data["envelope"]["rcpt_to"] == ["bob@corp.example"]
    assert record.data["reply"]["code"] == 554
    assert record.raw is None
    assert record.data["size"] is None
    assert await count(app) == 1


async def test_the_null_sender_reaches_the_filters_as_the_null_reverse_path(
    start_server: StartServer, tmp_path: Path
) -> None:
    """``MAIL FROM:<>`` (bounces, RFC 5321 §4.5.5) matches a block-list entry ``<>``."""
    profile = write_profile(
        tmp_path,
        "no-bounces",
        'title: "refuses bounces"\nextends: typical-corporate\n'
        'lists:\n  blocked_senders: {entries: ["<>"]}\n',
    )
    app = await start_server(profile=str(profile))
    async with raw_client(app) as client:
        assert (await client.command("MAIL FROM:<>")).line == "250 2.1.0 Ok"
        answer = await client.command("RCPT TO:<bob@corp.example>")
        assert answer.line == "554 5.7.1 <>: Sender address rejected: Access denied"
        await client.ok("RSET")
        # A real sender still passes.
        answer = await client.mail(message(), "alice@sender.example", "bob@corp.example")
        assert answer.code == 250
        await client.quit()
    assert app.store is not None
    refused = [r for r in await app.store.list(Query()) if r.data["verdict"] == "reject"]
    assert len(refused) == 1
    assert refused[0].data["envelope"]["mail_from"] == ""


async def test_a_bounce_from_the_null_sender_is_accepted_and_stored_with_an_empty_sender(
    start_server: StartServer,
) -> None:
    app = await start_server()
    async with raw_client(app) as client:
        answer = await client.mail(message("Undelivered Mail"), "", "bob@corp.example")
        await client.quit()
    record = await stored(app, answer.ids[0])
    assert record.data["envelope"]["mail_from"] == ""
    assert record.data["verdict"] == "accept"


async def test_a_profile_answering_at_mail_rejects_a_blocked_sender_at_mail_from(
    start_server: StartServer, tmp_path: Path
) -> None:
    profile = write_profile(tmp_path, "finance-blocks", FINANCE_BLOCKS)
    app = await start_server(profile=str(profile))
    async with raw_client(app) as client:
        answer = await client.command("MAIL FROM:<spammer@bad.example>")
        assert answer.line == (
            "554 5.7.1 <spammer@bad.example>: Sender address rejected: Access denied"
        )
        # The transaction never started.
        assert (await client.command("RCPT TO:<bob@corp.example>")).line.startswith("503 5.5.1")
        # Another sender on the same connection is fine.
        answer = await client.mail(message(), "alice@sender.example", "bob@corp.example")
        assert answer.code == 250
        await client.quit()
    assert app.store is not None
    refused = [r for r in await app.store.list(Query()) if r.data["verdict"] == "reject"]
    assert len(refused) == 1
    assert refused[0].data["stage"] == "mail"
    assert refused[0].data["envelope"]["rcpt_to"] == []


async def test_declared_size_over_the_profile_limit_is_refused_at_mail_from_with_552(
    start_server: StartServer,
) -> None:
    app = await start_server(profile="no-filter")  # 10240000 bytes, under the server's 50 MiB
    async with raw_client(app) as client:
        answer = await client.command("MAIL FROM:<alice@sender.example> SIZE=20000000")
        assert answer.line == "552 5.3.4 Message size exceeds fixed limit"
        assert (await client.command("MAIL FROM:<alice@sender.example> SIZE=2000")).code == 250
        await client.quit()
    record = await newest(app)
    assert record.data["stage"] == "mail"
    assert record.data["verdict"] == "reject"
    assert codes(record) == ["SIZE_DECLARED_TOO_BIG"]


async def test_declared_size_over_the_server_limit_is_refused_with_552_5_3_4(
    start_server: StartServer,
) -> None:
    app = await start_server(max_message_size=1000)
    async with raw_client(app) as client:
        answer = await client.command("MAIL FROM:<alice@sender.example> SIZE=1001")
        assert answer.code == 552 and answer.line.startswith("552 5.3.4 ")
        await client.quit()


@pytest.mark.parametrize(
    "params",
    ["SIZE=abc SIZE=10", "SIZE=²", "SIZE=１２", "SIZE=10 SIZE=20", "SIZE=" + "9" * 21],
    ids=["repeated-bad-first", "superscript", "fullwidth", "repeated", "21-digits"],
)
async def test_a_malformed_or_repeated_size_parameter_is_a_501_syntax_error(
    start_server: StartServer, params: str
) -> None:
    app = await start_server()
    async with raw_client(app) as client:
        answer = await client.command(f"MAIL FROM:<alice@sender.example> {params}")
        assert answer.line == "501 5.5.4 Syntax error in parameters: SIZE=<1 to 20 digits>, once"
        await client.ok("MAIL FROM:<alice@sender.example> SIZE=300")
        await client.ok("RCPT TO:<bob@corp.example>")
        assert (await client.data(message())).code == 250
        await client.quit()
    assert await count(app) == 1


@pytest.mark.parametrize("path", ["<", "x@", "<a@", "=@"])
async def test_a_truncated_address_is_a_syntax_error_not_an_internal_error(
    start_server: StartServer, path: str
) -> None:
    app = await start_server()
    async with raw_client(app) as client:
        mail = await client.command(f"MAIL FROM:{path}")
        assert mail.code in (501, 553), mail.line
        await client.ok("MAIL FROM:<alice@sender.example>")
        rcpt = await client.command(f"RCPT TO:{path}")
        assert rcpt.code in (501, 553), rcpt.line
        await client.quit()


async def test_message_over_the_profile_size_is_refused_after_data_with_552_and_stored(
    start_server: StartServer, tmp_path: Path
) -> None:
    app = await start_server(profile=str(write_profile(tmp_path, "tiny-limit", TINY_LIMIT)))
    body = message(body="x" * 70 + "\r\n" + ("y" * 70 + "\r\n") * 20)
    assert len(body) > 1000
    async with raw_client(app) as client:
        answer = await client.mail(body, "alice@sender.example", "bob@corp.example")
        await client.quit()
    assert answer.line == "552 5.3.4 Message size exceeds fixed limit"
    record = await newest(app)
    assert record.data["stage"] == "data"
    assert record.data["verdict"] == "reject"
    assert "SIZE_TOO_BIG" in codes(record)
    assert record.raw == body


async def test_data_over_the_server_limit_gets_552_and_the_server_keeps_serving(
    start_server: StartServer,
) -> None:
    app = await start_server(max_message_size=2000)
    async with raw_client(app) as client:
        answer = await client.mail(
            message(body="z" * 60 + "\r\n" * 100 + "z" * 3000 + "\r\n"),
            "alice@sender.example",
            "bob@corp.example",
        )
        assert answer.line == "552 5.3.4 Message size exceeds fixed limit"
        # The same connection carries the next transaction.
        answer = await client.mail(message(), "alice@sender.example", "bob@corp.example")
        assert answer.code == 250
        await client.quit()
    assert await count(app) == 1
    await assert_serves_a_normal_message(app)


# --- routing -----------------------------------------------------------------------------------


async def test_recipients_routed_to_two_profiles_get_one_record_each_in_one_transaction(
    start_server: StartServer,
) -> None:
    app = await start_server(routes={"finance.example": "strict-finance"})
    async with raw_client(app) as client:
        answer = await client.mail(
            message(), "alice@sender.example", "bob@corp.example", "carol@finance.example"
        )
        await client.quit()
    ids = answer.ids
    assert len(ids) == 2
    first, second = [await stored(app, i) for i in ids]
    assert {first.data["profile"], second.data["profile"]} == {
        "typical-corporate",
        "strict-finance",
    }
    assert first.data["transaction_id"] == second.data["transaction_id"]
    by_profile = {r.data["profile"]: r for r in (first, second)}
    assert by_profile["typical-corporate"].data["envelope"]["rcpt_to"] == ["bob@corp.example"]
    assert by_profile["strict-finance"].data["envelope"]["rcpt_to"] == ["carol@finance.example"]
    assert all(r.data["verdict"] == "accept" and r.raw is not None for r in (first, second))


async def test_data_is_answered_250_when_one_of_the_routed_profiles_accepted(
    start_server: StartServer,
) -> None:
    app = await start_server(routes={"finance.example": "strict-finance"})
    # Bare <LF> line endings: strict-finance refuses them as Postfix 3.9 does, typical-corporate
    # only records them.
    body = BARE_LF + b"\r\n"
    async with raw_client(app) as client:
        answer = await client.mail(
            body, "alice@sender.example", "carol@finance.example", "bob@corp.example"
        )
        await client.quit()
    (accepted_id,) = answer.ids
    accepted = await stored(app, accepted_id)
    assert accepted.data["profile"] == "typical-corporate"
    assert accepted.data["verdict"] == "accept"
    assert app.store is not None
    refused = [r for r in await app.store.list(Query()) if r.id != accepted_id]
    assert len(refused) == 1
    assert refused[0].data["profile"] == "strict-finance"
    assert refused[0].data["verdict"] == "reject"
    assert refused[0].data["reply"]["code"] == 550
    assert refused[0].data["transaction_id"] == accepted.data["transaction_id"]


async def test_data_is_answered_with_the_tempfail_when_no_routed_profile_accepted(
    start_server: StartServer, tmp_path: Path
) -> None:
    write_profile(tmp_path, "defers", DEFERS)
    app = await start_server(profiles_dirs=[tmp_path], routes={"later.example": "defers"})
    # typical-corporate rejects GTUBE (554); "defers" asks for a retry (451). The first
    # recipient is the rejecting one, so only the rule "4xx beats 5xx" makes this a 451.
    body = message("deferme please", "deferme\r\n" + GTUBE.decode() + "\r\n")
    async with raw_client(app) as client:
        answer = await client.mail(
            body, "alice@sender.example", "bob@corp.example", "dave@later.example"
        )
        await client.quit()
    assert answer.line == "451 4.7.1 Try again later"
    assert app.store is not None
    records = {r.data["profile"]: r for r in await app.store.list(Query())}
    assert set(records) == {"typical-corporate", "defers"}
    assert records["typical-corporate"].data["reply"]["code"] == 554
    assert records["defers"].data["reply"]["code"] == 451
    assert records["defers"].data["disposition"] == "deferred"


# --- client identity ---------------------------------------------------------------------------


async def test_xclient_sets_the_identity_the_filters_see_and_the_store_records(
    start_server: StartServer,
) -> None:
    app = await start_server()
    async with raw_client(app) as client:
        answer = await client.command(
            "XCLIENT ADDR=192.0.2.7 NAME=mx.sender.example HELO=mx+2Esender.example"
        )
        assert answer.line == "220 sinkd.test ESMTP sinkd"
        # Like Postfix, XCLIENT resets the session: the client greets again.
        assert (await client.command("MAIL FROM:<alice@sender.example>")).code == 503
        await client.ok("EHLO proxy.internal")
        answer = await client.mail(message(), "alice@sender.example", "bob@corp.example")
        await client.quit()
    record = await stored(app, answer.ids[0])
    identity = record.data["identity"]
    assert identity == {
        "ip": "192.0.2.7",
        "helo": "mx.sender.example",
        "name": "mx.sender.example",
        "source": "xclient",
        "peer": "127.0.0.1",
        "auth_user": None,
        "tls": False,
    }
    assert record.data["envelope"]["client_ip"] == "192.0.2.7"


async def test_a_blocked_ip_given_by_xclient_is_refused(
    start_server: StartServer, tmp_path: Path
) -> None:
    app = await start_server(profile=str(write_profile(tmp_path, "corp-blocks", BLOCKS)))
    async with raw_client(app) as client:
        assert (await client.command("XCLIENT ADDR=203.0.113.50")).code == 220
        await client.ok("EHLO proxy.internal")
        await client.ok("MAIL FROM:<alice@sender.example>")
        answer = await client.command("RCPT TO:<bob@corp.example>")
        assert answer.line == (
            "554 5.7.1 <unknown[203.0.113.50]>: Client host rejected: Access denied"
        )
        await client.quit()
    record = await newest(app)
    assert record.data["identity"]["source"] == "xclient"
    assert record.data["identity"]["ip"] == "203.0.113.50"
    assert record.data["verdict"] == "reject"


async def test_xclient_inside_a_mail_transaction_is_refused_with_503(
    start_server: StartServer,
) -> None:
    app = await start_server()
    async with raw_client(app) as client:
        await client.ok("MAIL FROM:<alice@sender.example>")
        answer = await client.command("XCLIENT ADDR=192.0.2.7")
        assert answer.code == 503 and answer.line.startswith("503 5.5.1 ")
        # The transaction survives and keeps the real identity.
        await client.ok("RCPT TO:<bob@corp.example>")
        answer = await client.data(message())
        await client.quit()
    record = await stored(app, answer.ids[0])
    assert record.data["identity"]["source"] == "connection"


@pytest.mark.parametrize(
    "arguments",
    ["FOO=bar", "ADDR", "ADDR=not-an-ip", ""],
    ids=["unknown-attribute", "no-value", "bad-address", "no-attributes"],
)
async def test_xclient_with_a_bad_attribute_is_refused_with_501(
    start_server: StartServer, arguments: str
) -> None:
    app = await start_server()
    async with raw_client(app) as client:
        answer = await client.command(f"XCLIENT {arguments}".strip())
        assert answer.code == 501 and answer.line.startswith("501 5.5.4 "), answer.lines
        # Nothing changed: the session goes on without a new EHLO.
        answer = await client.mail(message(), "alice@sender.example", "bob@corp.example")
        await client.quit()
    record = await stored(app, answer.ids[0])
    assert record.data["identity"]["source"] == "connection"


async def test_proxy_protocol_header_gives_the_client_address(start_server: StartServer) -> None:
    app = await start_server(proxy_protocol=True)
    header = b"PROXY TCP4 203.0.113.9 127.0.0.1 5555 25\r\n"
    async with raw_client(app, preamble=header) as client:
        answer = await client.mail(message(), "alice@sender.example", "bob@corp.example")
        await client.quit()
    record = await stored(app, answer.ids[0])
    assert record.data["identity"]["source"] == "proxy"
    assert record.data["identity"]["ip"] == "203.0.113.9"
    assert record.data["identity"]["peer"] == "127.0.0.1"


async def test_client_ip_option_is_the_identity_when_the_client_sets_none(
    start_server: StartServer,
) -> None:
    app = await start_server(client_ip="198.51.100.4", helo="mx.simulated.example")
    async with raw_client(app) as client:
        answer = await client.mail(message(), "alice@sender.example", "bob@corp.example")
        await client.quit()
    identity = (await stored(app, answer.ids[0])).data["identity"]
    assert identity["source"] == "option"
    assert identity["ip"] == "198.51.100.4"
    assert identity["helo"] == "mx.simulated.example"


# --- TLS and AUTH ------------------------------------------------------------------------------


async def test_starttls_then_auth_is_accepted_and_the_message_queued(
    start_server: StartServer,
) -> None:
    app = await start_server()
    async with aio_client(app, start_tls=True, validate_certs=False) as smtp:
        assert smtp.get_transport_info("sslcontext") is not None  # the session is encrypted
        assert isinstance(smtp.get_transport_info("ssl_object"), ssl.SSLObject)
        login = await smtp.login("app@corp.example", "anything")
        assert (login.code, login.message) == (235, "2.7.0 Authentication successful")
        _, text = await smtp.sendmail("app@corp.example", ["bob@corp.example"], message())
    record = await stored(app, Answer(250, [f"250 {text}"]).ids[0])
    assert record.data["verdict"] == "accept"
    assert record.data["identity"]["tls"] is True
    assert record.data["identity"]["auth_user"] == "app@corp.example"


async def test_a_plain_unauthenticated_session_is_recorded_as_such(
    start_server: StartServer,
) -> None:
    app = await start_server()
    async with raw_client(app) as client:
        answer = await client.mail(message(), "alice@sender.example", "bob@corp.example")
        await client.quit()
    identity = (await stored(app, answer.ids[0])).data["identity"]
    assert identity["tls"] is False
    assert identity["auth_user"] is None


async def test_the_null_path_as_a_recipient_is_refused_with_501_5_1_3(
    start_server: StartServer,
) -> None:
    app = await start_server()
    async with raw_client(app) as client:
        await client.ok("MAIL FROM:<alice@sender.example>")
        answer = await client.command("RCPT TO:<>")
        assert answer.line == "501 5.1.3 Bad recipient address syntax"
        await client.quit()
    assert await count(app) == 0


async def test_xclient_values_with_control_characters_are_refused_with_501(
    start_server: StartServer,
) -> None:
    app = await start_server()
    async with raw_client(app) as client:
        answer = await client.command("XCLIENT NAME=evil+0D+0Ahost.example")
        assert answer.line == "501 5.5.4 Bad XCLIENT NAME syntax", answer.lines
        await client.quit()


async def test_auth_required_refuses_mail_before_auth_with_530(start_server: StartServer) -> None:
    app = await start_server(auth="required")
    token = base64.b64encode(b"\0app\0secret").decode()
    async with raw_client(app) as client:
        answer = await client.command("MAIL FROM:<alice@sender.example>")
        assert answer.line == "530 5.7.0 Authentication required"
        assert (await client.command(f"AUTH PLAIN {token}")).code == 235
        answer = await client.mail(message(), "alice@sender.example", "bob@corp.example")
        await client.quit()
    assert answer.code == 250
    assert await count(app) == 1


async def test_configured_credentials_refuse_a_wrong_password_with_535_and_take_the_right_one(
    start_server: StartServer,
) -> None:
    app = await start_server(auth_user="app", auth_password="s3cret")
    wrong = base64.b64encode(b"\0app\0guess").decode()
    right = base64.b64encode(b"\0app\0s3cret").decode()
    async with raw_client(app) as client:
        answer = await client.command(f"AUTH PLAIN {wrong}")
        assert answer.code == 535 and answer.line.startswith("535 5.7.8 "), answer.lines
        answer = await client.command(f"AUTH PLAIN {right}")
        assert answer.line == "235 2.7.0 Authentication successful"
        await client.quit()
    async with aio_client(app) as smtp:
        with pytest.raises(aiosmtplib.SMTPAuthenticationError) as refused:
            await smtp.login("app", "nope")
        assert refused.value.code == 535
    async with aio_client(app) as smtp:
        assert (await smtp.login("app", "s3cret")).code == 235


@pytest.mark.parametrize("mechanism", ["LOGIN", "PLAIN"])
async def test_auth_by_challenge_and_response_works_for_login_and_plain(
    start_server: StartServer, mechanism: str
) -> None:
    app = await start_server(auth_user="app", auth_password="s3cret")
    b64 = base64.b64encode
    async with raw_client(app) as client:
        challenge = await client.command(f"AUTH {mechanism}")
        if mechanism == "LOGIN":
            # RFC 4954 continuations carry no enhanced code: "334 " and base64 only.
            assert challenge.line == "334 " + b64(b"User Name\0").decode()
            assert (await client.command(b64(b"app"))).line == "334 " + b64(b"Password\0").decode()
            answer = await client.command(b64(b"s3cret"))
        else:
            assert challenge.line == "334 "
            answer = await client.command(b64(b"\0app\0s3cret"))
        assert answer.line == "235 2.7.0 Authentication successful"
        answer = await client.mail(message(), "app@corp.example", "bob@corp.example")
        assert answer.code == 250
        await client.quit()
    async with aio_client(app) as smtp:
        await smtp.ehlo()
        with pytest.raises(aiosmtplib.SMTPAuthenticationError) as refused:
            await smtp.auth_login("app", "wrong")
        assert refused.value.code == 535


async def test_auth_off_leaves_auth_out_of_ehlo(start_server: StartServer) -> None:
    app = await start_server(auth="off")
    async with raw_client(app, ehlo=None) as client:
        answer = await client.ok("EHLO client.example")
        assert not [line for line in answer.lines if "AUTH" in line]
        token = base64.b64encode(b"\0app\0secret").decode()
        refused = await client.command(f"AUTH PLAIN {token}")
        assert refused.line == "504 5.5.4 Unrecognized authentication type"
        answer = await client.mail(message(), "alice@sender.example", "bob@corp.example")
        assert answer.code == 250
        await client.quit()


# --- hostile input -----------------------------------------------------------------------------

SMUGGLING = (
    b"From: alice@sender.example\r\nTo: bob@corp.example\r\nSubject: smuggle\r\n\r\n"
    b"first part\r\n.\n"
    b"MAIL FROM:<evil@sender.example>\r\nRCPT TO:<victim@corp.example>\r\nDATA\r\n"
    b"smuggled\n.\n"
    b"MAIL FROM:<evil2@sender.example>\r\n"
    b"last line\r\n"
)
BARE_LF = b"From: alice@sender.example\nTo: bob@corp.example\nSubject: bare\n\nline one\nline two\n"


async def test_smuggling_sequences_stay_inside_one_message_and_are_recorded(
    start_server: StartServer,
) -> None:
    app = await start_server()
    async with raw_client(app) as client:
        answer = await client.mail(SMUGGLING, "alice@sender.example", "bob@corp.example")
        # Had the server split the message, the smuggled commands would have answers queued
        # before this QUIT's.
        await client.quit()
    (message_id,) = answer.ids
    assert await count(app) == 1
    record = await stored(app, message_id)
    assert record.raw == SMUGGLING
    assert record.data["envelope"]["mail_from"] == "alice@sender.example"
    assert "FORMAT_SMUGGLING" in codes(record)
    assert "FORMAT_BARE_LINE_ENDING" in codes(record)
    await assert_serves_a_normal_message(app)


async def test_bare_lf_message_is_stored_byte_exact_with_a_bare_line_ending_finding(
    start_server: StartServer,
) -> None:
    app = await start_server()
    async with raw_client(app) as client:
        answer = await client.mail(BARE_LF + b"\r\n", "alice@sender.example", "bob@corp.example")
        await client.quit()
    record = await stored(app, answer.ids[0])
    assert record.raw == BARE_LF + b"\r\n"
    assert "FORMAT_BARE_LINE_ENDING" in codes(record)
    await assert_serves_a_normal_message(app)


@pytest.mark.parametrize(
    ("body", "reply"),
    [
        (SMUGGLING, "550 5.5.2 Error: bare <LF> received"),
        (BARE_LF + b"\r\n", "550 5.5.2 Error: bare <LF> received"),
    ],
    ids=["smuggling", "bare-lf"],
)
async def test_strict_finance_refuses_smuggling_and_bare_lf_with_550_5_5_2(
    start_server: StartServer, body: bytes, reply: str
) -> None:
    app = await start_server(profile="strict-finance")
    async with raw_client(app) as client:
        answer = await client.mail(body, "alice@sender.example", "bob@corp.example")
        await client.quit()
    assert answer.line == reply
    assert await count(app) == 1
    record = await newest(app)
    assert record.data["verdict"] == "reject"
    assert record.raw == body
    await assert_serves_a_normal_message(app)


async def test_nul_bytes_are_stored_byte_exact_and_recorded(start_server: StartServer) -> None:
    app = await start_server()
    body = message("nul", "before\0after\r\n\0\0\r\n").replace(b"Subject: nul", b"Subject: n\0l")
    async with raw_client(app) as client:
        answer = await client.mail(body, "alice@sender.example", "bob@corp.example")
        await client.quit()
    record = await stored(app, answer.ids[0])
    assert record.raw == body
    assert "FORMAT_NUL_BYTES" in codes(record)
    await assert_serves_a_normal_message(app)


async def test_a_5000_character_line_is_accepted_with_a_long_lines_finding(
    start_server: StartServer,
) -> None:
    app = await start_server()
    body = message(body="a" * 5000 + "\r\n")
    async with raw_client(app) as client:
        answer = await client.mail(body, "alice@sender.example", "bob@corp.example")
        await client.quit()
    record = await stored(app, answer.ids[0])
    assert record.data["verdict"] == "accept"
    assert "FORMAT_LONG_LINES" in codes(record)
    assert record.raw == body


async def test_a_line_over_65536_bytes_is_refused_with_500_and_the_server_keeps_serving(
    start_server: StartServer,
) -> None:
    app = await start_server()
    async with raw_client(app) as client:
        answer = await client.mail(
            message(body="b" * 70_000 + "\r\nafter\r\n"), "alice@sender.example", "bob@corp.example"
        )
        assert answer.code == 500 and answer.line.startswith("500 5.5.2 Line too long")
        answer = await client.mail(message(), "alice@sender.example", "bob@corp.example")
        assert answer.code == 250
        await client.quit()
    assert await count(app) == 1
    await assert_serves_a_normal_message(app)


async def test_a_command_line_over_the_limit_is_refused_with_500_5_5_2(
    start_server: StartServer,
) -> None:
    app = await start_server()
    async with raw_client(app) as client:
        answer = await client.command("NOOP " + "n" * 100_000)
        assert answer.line == "500 5.5.2 Command line too long"
        answer = await client.command("MAIL FROM:<" + "m" * 2000 + "@sender.example>")
        assert answer.line == "500 5.5.2 Command line too long"
        await client.quit()
    await assert_serves_a_normal_message(app)


async def test_the_1001st_recipient_is_refused_with_452_4_5_3(start_server: StartServer) -> None:
    app = await start_server()
    rcpts = [f"user{i}@corp.example" for i in range(1001)]
    async with raw_client(app) as client:
        await client.ok("MAIL FROM:<alice@sender.example>")
        # PIPELINING: every RCPT in one write, then every answer.
        await client.send(b"".join(f"RCPT TO:<{r}>\r\n".encode() for r in rcpts))
        answers = [await client.read() for _ in rcpts]
        assert {a.line for a in answers[:1000]} == {"250 2.1.5 Ok"}
        assert answers[1000].line == "452 4.5.3 Error: too many recipients"
        answer = await client.data(message())
        await client.quit()
    record = await stored(app, answer.ids[0])
    assert len(record.data["envelope"]["rcpt_to"]) == 1000
    assert "user1000@corp.example" not in record.data["envelope"]["rcpt_to"]


async def test_a_header_with_5000_parameters_is_judged_and_stored(
    start_server: StartServer,
) -> None:
    app = await start_server()
    params = "".join(f";\r\n p{i}=v{i}" for i in range(5000))
    body = (
        "From: alice@sender.example\r\nTo: bob@corp.example\r\nSubject: params\r\n"
        f"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8{params}\r\n\r\nhello\r\n"
    ).encode()
    async with raw_client(app) as client:
        answer = await client.mail(body, "alice@sender.example", "bob@corp.example")
        await client.quit()
    record = await stored(app, answer.ids[0])
    assert record.raw == body
    assert record.data["verdict"] == "accept"
    await assert_serves_a_normal_message(app)


async def test_a_client_that_disconnects_mid_data_leaves_nothing_stored(
    start_server: StartServer,
) -> None:
    app = await start_server()
    before = await count(app)
    async with raw_client(app) as client:
        await client.ok("MAIL FROM:<alice@sender.example>")
        await client.ok("RCPT TO:<bob@corp.example>")
        await client.ok("DATA", 354)
        await client.send(message(body="half a message\r\n" * 50))
        client.writer.transport.abort()  # no end of data, no QUIT
    await assert_serves_a_normal_message(app)  # exactly one new record, its own
    assert await count(app) == before + 1


async def test_non_ascii_in_commands_without_smtputf8_is_answered_and_harmless(
    start_server: StartServer,
) -> None:
    app = await start_server()
    async with raw_client(app) as client:
        # A command verb that is not ASCII is a syntax error.
        answer = await client.command("MÄIL FROM:<alice@sender.example>".encode())
        assert answer.line == "500 5.5.2 Error: bad syntax"
        # Octets that are not even UTF-8 in an address, without SMTPUTF8.
        await client.ok(b"MAIL FROM:<j\xf6rg@sender.example>")
        await client.ok("RCPT TO:<bob@corp.example>")
        answer = await client.data(message())
        assert answer.code == 250
        await client.quit()
    record = await stored(app, answer.ids[0])
    assert record.data["envelope"]["mail_from"] == "j\udcf6rg@sender.example"
    assert await count(app) == 1
    await assert_serves_a_normal_message(app)


async def test_smtputf8_addresses_are_taken_and_stored(start_server: StartServer) -> None:
    app = await start_server()
    async with raw_client(app) as client:
        await client.ok("MAIL FROM:<jörg@bücher.example> SMTPUTF8 BODY=8BITMIME")
        await client.ok("RCPT TO:<zoë@corp.example>")
        answer = await client.data(message("Grüße", "Schöne Grüße\r\n"))
        await client.quit()
    record = await stored(app, answer.ids[0])
    assert record.data["envelope"]["mail_from"] == "jörg@bücher.example"
    assert record.data["envelope"]["rcpt_to"] == ["zoë@corp.example"]
    assert record.data["subject"] == "Grüße"


async def test_an_unknown_command_is_refused_with_500_5_5_1(start_server: StartServer) -> None:
    app = await start_server()
    async with raw_client(app) as client:
        answer = await client.command("FROB now")
        assert answer.line == '500 5.5.1 Error: command "FROB" not recognized'
        assert (await client.command("")).line == "500 5.5.2 Error: bad syntax"
        await client.quit()
    await assert_serves_a_normal_message(app)


def _corpus() -> list[Path]:
    files = sorted((MESSAGES / "cpython").glob("*.txt")) + sorted(
        p for p in (MESSAGES / "hostile").iterdir() if p.suffix == ".eml"
    )
    assert len(files) > 50
    return files


async def test_every_corpus_message_gets_a_final_answer_with_an_enhanced_code_and_a_record(
    start_server: StartServer,
) -> None:
    app = await start_server()
    answers: dict[str, Answer] = {}
    async with raw_client(app) as client:
        for path in _corpus():
            raw = path.read_bytes()
            if path.parent.name == "cpython":
                # What any real client does: CRLF line endings (the hostile files stay exact).
                raw = re.sub(rb"\r?\n", b"\r\n", raw)
            before = await count(app)
            answer = await client.mail(raw, "alice@sender.example", "bob@corp.example")
            answers[path.name] = answer
            assert answer.code != 451, (path.name, answer.lines)
            assert answer.code // 100 in (2, 5), (path.name, answer.lines)
            assert ENHANCED.match(answer.line), (path.name, answer.lines)
            assert await count(app) == before + 1, path.name
            record = await (stored(app, answer.ids[0]) if answer.code == 250 else newest(app))
            expected = raw if raw.endswith(b"\r\n") else raw + b"\r\n"
            assert record.raw == expected, path.name
        await client.quit()
    assert len(answers) == len(_corpus())


# --- the store and the log ---------------------------------------------------------------------


async def test_the_record_is_committed_before_the_client_gets_250(
    start_server: StartServer,
) -> None:
    app = await start_server()
    async with raw_client(app) as client:
        for _ in range(3):
            answer = await client.mail(message(), "alice@sender.example", "bob@corp.example")
            (message_id,) = answer.ids
            # A separate connection, opened only after the 250 arrived, already sees the row.
            with contextlib.closing(sqlite3.connect(app.settings.db)) as db:
                row = db.execute(
                    "SELECT verdict, length(r.bytes) FROM messages m JOIN raw r USING (id)"
                    " WHERE id = ?",
                    (message_id,),
                ).fetchone()
            assert row == ("accept", len(message()))
        await client.quit()


async def test_every_stored_verdict_gets_exactly_one_log_line(
    start_server: StartServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="sinkd.smtp")
    profile = write_profile(tmp_path, "corp-blocks", BLOCKS)
    app = await start_server(profile=str(profile), routes={"finance.example": "strict-finance"})
    async with raw_client(app) as client:
        await client.mail(message(), "alice@sender.example", "bob@corp.example")
        await client.mail(SPAMMY_MESSAGE, "alice@sender.example", "bob@corp.example")
        await client.mail(GTUBE_MESSAGE, "alice@sender.example", "bob@corp.example")
        await client.mail(
            message(), "alice@sender.example", "bob@corp.example", "carol@finance.example"
        )
        await client.ok("MAIL FROM:<spammer@bad.example>")
        assert (await client.command("RCPT TO:<bob@corp.example>")).code == 554
        await client.quit()
    assert app.store is not None
    records = await app.store.list(Query())
    assert len(records) == 6
    lines = [r.getMessage() for r in caplog.records if r.name == "sinkd.smtp"]
    verdict_lines = [line for line in lines if line.startswith("verdict id=")]
    assert len(verdict_lines) == len(records)
    for record in records:
        mine = [line for line in verdict_lines if line.startswith(f"verdict id={record.id} ")]
        assert len(mine) == 1, (record.id, verdict_lines)
        assert f"verdict={record.data['verdict']} " in mine[0]


# --- a client from outside Python --------------------------------------------------------------


@pytest.mark.swaks
async def test_swaks_with_xclient_delivers_and_the_record_has_the_simulated_ip(
    start_server: StartServer,
) -> None:
    swaks = require_executable("swaks", "swaks")
    app = await start_server()
    assert app.smtp_address is not None
    host, port = app.smtp_address
    process = await asyncio.create_subprocess_exec(
        swaks,
        "--server",
        f"{host}:{port}",
        "--to",
        "x@corp.example",
        "--from",
        "a@b.example",
        "--xclient-addr",
        "192.0.2.55",
        "--body",
        "hello",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(30):
        out, err = await process.communicate()
    transcript = out.decode(errors="replace") + err.decode(errors="replace")
    assert process.returncode == 0, transcript
    queued = re.findall(r"<-  250 2\.0\.0 Ok: queued as ([0-9A-F]{12,40})", transcript)
    assert len(queued) == 1, transcript
    record = await stored(app, queued[0])
    assert record.data["identity"]["source"] == "xclient"
    assert record.data["envelope"]["client_ip"] == "192.0.2.55"
    assert record.data["envelope"]["mail_from"] == "a@b.example"
    assert record.raw is not None and b"hello" in record.raw
