"""The reasons ``sinkd profiles import postfix`` gives for what it leaves out, checked against
the real Postfix (tests/support/postfix_gateway.py, Postfix 3.7.11 here): a restriction name
Postfix does not know, restriction lists that cannot refuse relaying, ``smtpd_helo_required``
and ``strict_rfc821_envelopes``, ``relay_recipient_maps``. The importer says what Postfix does
instead; these tests run Postfix with the same setting and observe it. Restriction classes,
which the importer writes in place, are judged by both Postfix and ``sinkd check`` with the
imported profile, reply for reply. They skip on a laptop without Postfix (or root)
and fail under CI=true.
"""

from __future__ import annotations

import io
import json
import smtplib
import socket
from pathlib import Path

import pytest

from sinkd.cli import main
from sinkd.importers import render
from sinkd.importers.postfix import Config, translate
from tests.support.postfix_gateway import FRAME, GATEWAY_DOMAIN, PostfixGateway, send

LOG_TIMEOUT = 10.0  # smtpd logs its fatal error as soon as it reads the configuration
SMTP_TIMEOUT = 15.0
# The gateway frame's relay settings, imported with the policy so both sides agree.
FRAME_RELAY = {k: FRAME[k] for k in ("compatibility_level", "mynetworks", "relay_domains")}
FRAME_RELAY["smtpd_relay_restrictions"] = FRAME["smtpd_relay_restrictions"]
MESSAGE = b"From: a@sender.example\r\nTo: b@corp.example\r\nSubject: x\r\n\r\nhi\r\n"


def reasons(tmp_path: Path, main_cf: str) -> dict[str, str]:
    (tmp_path / "main.cf").write_text(main_cf, encoding="utf-8")
    result = translate(Config(tmp_path / "main.cf", tmp_path, None), "observed")
    return {item.item: item.reason for item in result.untranslated}


def test_an_unknown_restriction_is_451_4_3_5_at_rcpt_as_the_importer_says(
    tmp_path: Path,
) -> None:
    reason = reasons(
        tmp_path,
        "smtpd_relay_restrictions = permit_auth_destination, reject\n"
        "smtpd_recipient_restrictions = reject_no_such_thing\n",
    )["smtpd_recipient_restrictions: reject_no_such_thing"]
    with PostfixGateway(policy={"smtpd_recipient_restrictions": "reject_no_such_thing"}) as gw:
        gw.start_gateway()
        outcome = send(
            gw.smtp_port,
            MESSAGE,
            sender="a@sender.example",
            recipients=[f"b@{GATEWAY_DOMAIN}"],
            xclient={"ADDR": "198.18.0.1"},
        )
    final = outcome.final
    assert (outcome.stage, final.code, final.enhanced) == ("rcpt", 451, "4.3.5")
    assert f"{final.code} {final.enhanced} {final.text}" in reason


@pytest.mark.parametrize(
    "recipient",
    ["permit_mynetworks", "permit, reject_unauth_destination"],
    ids=["no guard", "guard after permit"],
)
def test_lists_that_cannot_refuse_relaying_stop_smtpd_as_the_importer_says(
    tmp_path: Path, recipient: str
) -> None:
    policy = {"smtpd_relay_restrictions": "", "smtpd_recipient_restrictions": recipient}
    reason = reasons(tmp_path, "".join(f"{k} = {v}\n" for k, v in policy.items()))[
        "smtpd_relay_restrictions and smtpd_recipient_restrictions"
    ]
    with PostfixGateway(policy=policy) as gw:
        gw.start_gateway()
        # smtpd starts for this connection, reads main.cf and stops before any greeting.
        with socket.create_connection(("127.0.0.1", gw.smtp_port), timeout=SMTP_TIMEOUT):
            fatal = gw.wait_for_log(r"smtpd\[\d+\]: fatal: (in parameter .*)", LOG_TIMEOUT)
    assert fatal.group(1).startswith(
        "in parameter smtpd_relay_restrictions or smtpd_recipient_restrictions, specify at least "
        "one working instance of: reject_unauth_destination, defer_unauth_destination, reject, "
        "defer, defer_if_permit or check_relay_domains"
    )
    assert "stops with a fatal error" in reason


def test_helo_required_and_strict_envelopes_refuse_as_the_importer_says(tmp_path: Path) -> None:
    policy = {"smtpd_helo_required": "yes", "strict_rfc821_envelopes": "yes"}
    said = reasons(
        tmp_path,
        "smtpd_relay_restrictions = reject_unauth_destination\n"
        + "".join(f"{k} = {v}\n" for k, v in policy.items()),
    )
    with PostfixGateway(policy=policy) as gw:
        gw.start_gateway()
        with smtplib.SMTP("127.0.0.1", gw.smtp_port, timeout=SMTP_TIMEOUT) as client:
            no_helo = client.docmd("MAIL FROM:<a@sender.example>")
            client.ehlo("client.example")
            # RFC 821 wants the address in angle brackets; RFC 5321 clients send them too.
            unbracketed = client.docmd("MAIL FROM: a@sender.example")
    assert no_helo[0] == 503 and no_helo[1].startswith(b"5.5.1 ")
    assert "(503 5.5.1)" in said["smtpd_helo_required = yes"]
    assert unbracketed[0] == 501 and unbracketed[1].startswith(b"5.1.7 ")
    assert "(501 5.1.7)" in said["strict_rfc821_envelopes = yes"]


def test_relay_recipient_maps_refuse_unknown_recipients_as_the_importer_says(
    tmp_path: Path,
) -> None:
    policy = {"relay_recipient_maps": "texthash:$config_directory/relay_recipients"}
    said = reasons(
        tmp_path,
        "smtpd_relay_restrictions = reject_unauth_destination\n"
        "relay_recipient_maps = texthash:/etc/postfix/relay_recipients\n",
    )["relay_recipient_maps = texthash:/etc/postfix/relay_recipients"]
    tables = {"relay_recipients": f"known@{GATEWAY_DOMAIN} x\n"}
    with PostfixGateway(policy=policy, tables=tables) as gw:
        gw.start_gateway()
        outcome = send(
            gw.smtp_port, MESSAGE, sender="a@sender.example", recipients=[f"b@{GATEWAY_DOMAIN}"]
        )
    final = outcome.final
    assert (outcome.stage, final.code, final.enhanced) == ("rcpt", 550, "5.1.1")
    assert final.text.endswith("User unknown in relay recipient table")
    assert "(550 5.1.1 … User unknown in relay recipient table)" in said


@pytest.mark.parametrize(
    ("class_list", "recipient_list"),
    [("reject", "c"), ("permit", "c, reject"), ("reject_unauth_destination, reject", "c")],
    ids=["class rejects", "class permit ends the list", "class goes on to its own reject"],
)
def test_a_restriction_class_decides_as_postfix_decides(
    tmp_path: Path, class_list: str, recipient_list: str
) -> None:
    policy = {
        "smtpd_restriction_classes": "c",
        "c": class_list,
        "smtpd_recipient_restrictions": recipient_list,
    }
    main_cf = "".join(f"{k} = {v}\n" for k, v in {**FRAME_RELAY, **policy}.items())
    (tmp_path / "main.cf").write_text(main_cf, encoding="utf-8")
    result = translate(Config(tmp_path / "main.cf", tmp_path, None), "classes")
    profile = tmp_path / "classes.yaml"
    profile.write_text(render(result), encoding="utf-8")
    recipient = f"b@{GATEWAY_DOMAIN}"
    with PostfixGateway(policy=policy) as gw:
        gw.start_gateway()
        outcome = send(
            gw.smtp_port,
            MESSAGE,
            sender="a@sender.example",
            recipients=[recipient],
            xclient={"ADDR": "198.18.0.1", "NAME": "[UNAVAILABLE]"},
        )
    message = tmp_path / "message.eml"
    message.write_bytes(MESSAGE)
    out = io.StringIO()
    envelope = ["--client-ip", "198.18.0.1", "--helo", "client.example"]
    envelope += ["--mail-from", "a@sender.example", "--rcpt", recipient]
    main(["check", "--json", "--profile", str(profile), *envelope, str(message)], out=out)
    [judged] = json.loads(out.getvalue())
    final = outcome.final
    assert result.untranslated == []
    if outcome.accepted:
        assert judged["reply"]["code"] == 250, judged
    else:
        assert (judged["stage"], judged["reply"]["code"], judged["reply"]["enhanced"]) == (
            outcome.stage,
            final.code,
            final.enhanced,
        )
        assert judged["reply"]["text"] == final.text


def test_no_header_body_checks_accepts_what_header_checks_refuse_as_the_import_writes(
    tmp_path: Path,
) -> None:
    policy = {
        "header_checks": "regexp:$config_directory/header_checks",
        "receive_override_options": "no_header_body_checks",
    }
    tables = {"header_checks": "/^Subject: x/ REJECT no x\n"}
    (tmp_path / "header_checks").write_text(tables["header_checks"], encoding="utf-8")
    (tmp_path / "main.cf").write_text(
        "".join(f"{k} = {v}\n" for k, v in {**FRAME_RELAY, **policy}.items()), encoding="utf-8"
    )
    result = translate(Config(tmp_path / "main.cf", tmp_path, None), "no-checks")
    checks = result.profile["filters"][1]
    assert checks["header_checks"]["table"] is None and checks["tables"] == {}
    with PostfixGateway(policy=policy, tables=tables) as gw:
        gw.start_gateway()
        outcome = send(
            gw.smtp_port, MESSAGE, sender="a@sender.example", recipients=[f"b@{GATEWAY_DOMAIN}"]
        )
        refused = PostfixGateway(policy={**policy, "receive_override_options": ""}, tables=tables)
    assert outcome.accepted, outcome
    with refused as gw:  # the same checks without the option refuse the message
        gw.start_gateway()
        outcome = send(
            gw.smtp_port, MESSAGE, sender="a@sender.example", recipients=[f"b@{GATEWAY_DOMAIN}"]
        )
    assert (outcome.stage, outcome.final.code, outcome.final.text) == ("end-of-data", 550, "no x")


def test_a_restriction_class_as_a_table_result_decides_as_postfix_decides(
    tmp_path: Path,
) -> None:
    policy = {
        "smtpd_restriction_classes": "from_partner",
        "from_partner": "reject_unauth_destination, reject",
        "smtpd_recipient_restrictions": "check_sender_access texthash:$config_directory/senders",
    }
    tables = {"senders": "sender.example from_partner\n"}
    (tmp_path / "senders").write_text(tables["senders"], encoding="utf-8")
    main_cf = "".join(f"{k} = {v}\n" for k, v in {**FRAME_RELAY, **policy}.items())
    (tmp_path / "main.cf").write_text(main_cf, encoding="utf-8")
    result = translate(Config(tmp_path / "main.cf", tmp_path, None), "classes")
    assert result.untranslated == []
    profile = tmp_path / "classes.yaml"
    profile.write_text(render(result), encoding="utf-8")
    recipient = f"b@{GATEWAY_DOMAIN}"
    with PostfixGateway(policy=policy, tables=tables) as gw:
        gw.start_gateway()
        outcome = send(
            gw.smtp_port,
            MESSAGE,
            sender="a@sender.example",
            recipients=[recipient],
            xclient={"ADDR": "198.18.0.1", "NAME": "[UNAVAILABLE]"},
        )
    message = tmp_path / "message.eml"
    message.write_bytes(MESSAGE)
    out = io.StringIO()
    envelope = ["--client-ip", "198.18.0.1", "--helo", "client.example"]
    envelope += ["--mail-from", "a@sender.example", "--rcpt", recipient]
    main(["check", "--json", "--profile", str(profile), *envelope, str(message)], out=out)
    [judged] = json.loads(out.getvalue())
    final = outcome.final
    assert (outcome.stage, final.code) == ("rcpt", 554)
    assert (judged["stage"], judged["reply"]["code"], judged["reply"]["enhanced"]) == (
        outcome.stage,
        final.code,
        final.enhanced,
    )
    assert judged["reply"]["text"] == final.text
