"""The Postfix filtering-gateway harness (tests/support/postfix_gateway.py) against the real
Postfix: each test sends one message and asserts the reply Postfix gave, as observed (Postfix
3.7.11, Debian 12), with its stage. These are the ground truth the Postfix importer of issue 20
will be compared with; docs/dev/postfix-import-notes.md explains each construct.

One gateway per value of ``smtpd_delay_reject`` serves the whole module: its policy holds every
construct under test, each triggered by its own sender, client, HELO name or content, so the
tests do not depend on each other.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from tests.support.postfix_gateway import GATEWAY_DOMAIN, Outcome, PostfixGateway, send

LOG_TIMEOUT = 10.0  # cleanup logs its action within milliseconds of the reply
SIZE_LIMIT = 200_000  # message_size_limit; above header_size_limit (102400) as Postfix wants
RECIPIENT = f"bob@{GATEWAY_DOMAIN}"
SENDER = "alice@sender.example"
BLOCKED_SENDER = "spam@blocked.example"
BLOCKED_CLIENT = {"ADDR": "192.0.2.7", "NAME": "mail.blocked.example"}
BLOCKED_HELO = "bad.helo.example"
TRUSTED_SENDER = "friend@partner.example"

POLICY = {
    "smtpd_client_restrictions": "check_client_access cidr:$config_directory/client_access",
    "smtpd_helo_restrictions": "check_helo_access texthash:$config_directory/helo_access",
    "smtpd_sender_restrictions": "check_sender_access texthash:$config_directory/sender_access",
    "header_checks": "regexp:$config_directory/header_checks",
    "body_checks": "regexp:$config_directory/body_checks",
    "message_size_limit": str(SIZE_LIMIT),
}
TABLES = {
    # access(5): a cidr: table is matched against the client address, texthash: by key.
    "client_access": "192.0.2.0/24 REJECT\n",
    "helo_access": f"{BLOCKED_HELO} 550 5.7.0 no such host here\n",
    "sender_access": f"{BLOCKED_SENDER} REJECT\n{TRUSTED_SENDER} OK\n",
    # header_checks(5): REJECT with text, DISCARD, HOLD, WARN.
    "header_checks": "/^Subject:.*lottery/ REJECT Subject rejected by policy\n"
    "/^X-Drop-Me:/ DISCARD dropped by the test policy\n"
    "/^X-Hold-Me:/ HOLD held by the test policy\n"
    "/^X-Warn-Me:/ WARN noticed by the test policy\n",
    "body_checks": "/you are a winner/ REJECT\n",
}


def message(subject: str = "Quarterly figures", body: str = "See attached.\r\n") -> bytes:
    return (
        f"From: {SENDER}\r\nTo: {RECIPIENT}\r\nSubject: {subject}\r\n"
        f"Message-ID: <test@sender.example>\r\n\r\n{body}"
    ).encode()


@pytest.fixture(scope="module", params=["yes", "no"], ids=["delay_reject", "no_delay_reject"])
def gateway(request: pytest.FixtureRequest) -> Iterator[PostfixGateway]:
    policy = {**POLICY, "smtpd_delay_reject": request.param}
    with PostfixGateway(policy=policy, tables=TABLES) as started:
        started.start_gateway()
        yield started


def delayed(gateway: PostfixGateway) -> bool:
    return gateway.policy["smtpd_delay_reject"] == "yes"


def deliver(
    gateway: PostfixGateway,
    data: bytes,
    *,
    sender: str = SENDER,
    recipients: tuple[str, ...] = (RECIPIENT,),
    helo: str = "client.example",
    xclient: dict[str, str] | None = None,
    declare_size: bool = False,
) -> Outcome:
    return send(
        gateway.smtp_port,
        data,
        sender=sender,
        recipients=recipients,
        helo=helo,
        xclient=xclient,
        declare_size=declare_size,
    )


def assert_reply(outcome: Outcome, stage: str, code: int, enhanced: str, text: str) -> None:
    final = outcome.final
    assert (outcome.stage, final.code, final.enhanced, final.text) == (
        stage,
        code,
        enhanced,
        text,
    ), f"Postfix answered:\n{outcome}"


def test_a_clean_message_is_accepted_and_discarded_by_the_gateway(
    gateway: PostfixGateway,
) -> None:
    outcome = deliver(gateway, message())
    assert outcome.accepted, f"Postfix answered:\n{outcome}"
    assert re.fullmatch(r"Ok: queued as [0-9A-F]+", outcome.final.text)
    assert (outcome.final.code, outcome.final.enhanced) == (250, "2.0.0")
    gateway.wait_for_log(
        rf"postfix/discard\[\d+\]: {outcome.queue_id}: to=<{re.escape(RECIPIENT)}>,"
        r".* status=sent \(accepted by the test gateway\)",
        LOG_TIMEOUT,
    )


def test_a_recipient_outside_the_gateway_domain_is_refused_at_rcpt(
    gateway: PostfixGateway,
) -> None:
    outcome = deliver(gateway, message(), recipients=("carol@elsewhere.example",))
    # smtpd_relay_restrictions = permit_auth_destination, reject. postconf(5) "reject" says
    # reject_code (default 554); the enhanced code and "Access denied" are smtpd's.
    assert_reply(
        outcome,
        "rcpt",
        554,
        "5.7.1",
        "<carol@elsewhere.example>: Recipient address rejected: Access denied",
    )


def test_a_check_sender_access_reject_is_554_at_rcpt_or_at_mail_without_delay_reject(
    gateway: PostfixGateway,
) -> None:
    outcome = deliver(gateway, message(), sender=BLOCKED_SENDER)
    # access(5) REJECT: access_map_reject_code (554) and 5.7.1, "Access denied" when no text.
    stage = "rcpt" if delayed(gateway) else "mail"
    assert_reply(
        outcome, stage, 554, "5.7.1", f"<{BLOCKED_SENDER}>: Sender address rejected: Access denied"
    )


def test_a_check_client_access_reject_is_at_rcpt_or_in_the_greeting_without_delay_reject(
    gateway: PostfixGateway,
) -> None:
    outcome = deliver(gateway, message(), xclient=BLOCKED_CLIENT)
    stage = "rcpt" if delayed(gateway) else "connect"
    assert_reply(
        outcome,
        stage,
        554,
        "5.7.1",
        "<mail.blocked.example[192.0.2.7]>: Client host rejected: Access denied",
    )


def test_a_check_helo_access_reply_with_its_own_code_is_at_rcpt_or_at_ehlo(
    gateway: PostfixGateway,
) -> None:
    outcome = deliver(gateway, message(), helo=BLOCKED_HELO)
    # access(5) "NNN text": the table's code and enhanced code, its text after the prefix.
    stage = "rcpt" if delayed(gateway) else "helo"
    assert_reply(
        outcome, stage, 550, "5.7.0", f"<{BLOCKED_HELO}>: Helo command rejected: no such host here"
    )


def test_a_header_checks_reject_with_text_is_550_at_end_of_data(gateway: PostfixGateway) -> None:
    outcome = deliver(gateway, message(subject="Your lottery prize"))
    # header_checks(5) REJECT optional text: the text replaces the generic one; 550 5.7.1.
    assert_reply(outcome, "end-of-data", 550, "5.7.1", "Subject rejected by policy")
    gateway.wait_for_log(
        r"postfix/cleanup\[\d+\]: [0-9A-F]+: reject: header Subject: Your lottery prize from"
        r" .*: 5\.7\.1 Subject rejected by policy",
        LOG_TIMEOUT,
    )


def test_a_body_checks_reject_without_text_is_550_message_content_rejected(
    gateway: PostfixGateway,
) -> None:
    outcome = deliver(gateway, message(body="Congratulations, you are a winner!\r\n"))
    assert_reply(outcome, "end-of-data", 550, "5.7.1", "message content rejected")


def test_a_header_checks_discard_is_accepted_with_250_and_seen_only_in_the_log(
    gateway: PostfixGateway,
) -> None:
    outcome = deliver(gateway, b"X-Drop-Me: yes\r\n" + message())
    # header_checks(5) DISCARD: "claim successful delivery and silently discard".
    assert outcome.accepted, f"Postfix answered:\n{outcome}"
    gateway.wait_for_log(
        rf"postfix/cleanup\[\d+\]: {outcome.queue_id}: discard: header X-Drop-Me: yes from"
        r" .*: dropped by the test policy",
        LOG_TIMEOUT,
    )


@pytest.mark.parametrize(
    ("field", "action", "text"),
    [
        ("X-Hold-Me", "hold", "held by the test policy"),
        ("X-Warn-Me", "warning", "noticed by the test policy"),
    ],
)
def test_a_header_checks_hold_or_warn_is_accepted_with_250_and_logged_by_cleanup(
    gateway: PostfixGateway, field: str, action: str, text: str
) -> None:
    outcome = deliver(gateway, f"{field}: yes\r\n".encode() + message())
    # header_checks(5) HOLD: queued on hold; WARN: logged, delivered. Both answer 250.
    assert outcome.accepted, f"Postfix answered:\n{outcome}"
    gateway.wait_for_log(
        rf"postfix/cleanup\[\d+\]: {outcome.queue_id}: {action}: header {field}: yes from"
        rf" .*: {text}",
        LOG_TIMEOUT,
    )


def test_an_access_ok_ends_only_its_own_list_so_relay_restrictions_still_refuse(
    gateway: PostfixGateway,
) -> None:
    # postconf(5) smtpd_sender_restrictions: OK (permit) ends that restriction list; the
    # relay and recipient restrictions are still evaluated.
    outcome = deliver(
        gateway, message(), sender=TRUSTED_SENDER, recipients=("carol@elsewhere.example",)
    )
    assert_reply(
        outcome,
        "rcpt",
        554,
        "5.7.1",
        "<carol@elsewhere.example>: Recipient address rejected: Access denied",
    )
    assert deliver(gateway, message(), sender=TRUSTED_SENDER).accepted


def test_a_declared_size_above_message_size_limit_is_552_at_mail(gateway: PostfixGateway) -> None:
    big = message(body=("x" * 70 + "\r\n") * (SIZE_LIMIT // 72 + 100))
    outcome = deliver(gateway, big, declare_size=True)
    assert_reply(outcome, "mail", 552, "5.3.4", "Message size exceeds fixed limit")


def test_an_undeclared_size_above_message_size_limit_is_552_at_end_of_data(
    gateway: PostfixGateway,
) -> None:
    big = message(body=("x" * 70 + "\r\n") * (SIZE_LIMIT // 72 + 100))
    outcome = deliver(gateway, big)
    # Not the MAIL FROM text: cleanup's "message file too big" (observed; postconf(5) gives
    # no text for either).
    assert_reply(outcome, "end-of-data", 552, "5.3.4", "Error: message file too big")


# Restrictions that need no DNS lookup: the name checks read the HELO and the addresses, and
# XCLIENT's NAME / REVERSE_NAME "[UNAVAILABLE]" tell smtpd that the client's lookups found no
# name (XCLIENT_README), so reject_unknown_(reverse_)client_hostname decide without a resolver.
NAME_CHECKS = {
    "smtpd_recipient_restrictions": "reject_invalid_helo_hostname,"
    " reject_non_fqdn_helo_hostname, reject_non_fqdn_sender,"
    " reject_unknown_client_hostname, reject_unknown_reverse_client_hostname",
}
KNOWN_NAMES = {"ADDR": "192.0.2.8", "NAME": "mail.sender.example"}


@pytest.fixture(scope="module")
def name_checking_gateway() -> Iterator[PostfixGateway]:
    with PostfixGateway(policy=NAME_CHECKS) as started:
        started.start_gateway()
        yield started


@pytest.mark.parametrize(
    ("helo", "sender", "xclient", "code", "enhanced", "text"),
    [
        pytest.param(
            "bad_helo!",
            SENDER,
            KNOWN_NAMES,
            501,
            "5.5.2",
            "<bad_helo!>: Helo command rejected: Invalid name",
            id="reject_invalid_helo_hostname",
        ),
        pytest.param(
            "client",
            SENDER,
            KNOWN_NAMES,
            504,
            "5.5.2",
            "<client>: Helo command rejected: need fully-qualified hostname",
            id="reject_non_fqdn_helo_hostname",
        ),
        pytest.param(
            "client.example",
            "alice@localhostonly",
            KNOWN_NAMES,
            504,
            "5.5.2",
            "<alice@localhostonly>: Sender address rejected: need fully-qualified address",
            id="reject_non_fqdn_sender",
        ),
        pytest.param(
            "client.example",
            SENDER,
            {"ADDR": "192.0.2.8", "NAME": "[UNAVAILABLE]"},
            450,
            # RFC 7372's X.7.25 (reverse DNS validation failed), not access(5)'s 4.7.1.
            "4.7.25",
            "Client host rejected: cannot find your hostname, [192.0.2.8]",
            id="reject_unknown_client_hostname",
        ),
        pytest.param(
            "client.example",
            SENDER,
            {**KNOWN_NAMES, "REVERSE_NAME": "[UNAVAILABLE]"},
            450,
            "4.7.1",
            "Client host rejected: cannot find your reverse hostname, [192.0.2.8]",
            id="reject_unknown_reverse_client_hostname",
        ),
    ],
)
def test_a_name_check_refuses_at_rcpt_with_its_own_code(
    name_checking_gateway: PostfixGateway,
    helo: str,
    sender: str,
    xclient: dict[str, str],
    code: int,
    enhanced: str,
    text: str,
) -> None:
    outcome = deliver(name_checking_gateway, message(), helo=helo, sender=sender, xclient=xclient)
    assert_reply(outcome, "rcpt", code, enhanced, text)


def test_a_client_with_known_names_passes_the_name_checks(
    name_checking_gateway: PostfixGateway,
) -> None:
    outcome = deliver(name_checking_gateway, message(), xclient=KNOWN_NAMES)
    assert outcome.accepted, f"Postfix answered:\n{outcome}"


# smtpd_data_restrictions answer the DATA command, smtpd_end_of_data_restrictions the final
# dot (postconf(5)); the same sender access table in each, keyed by two senders. And a hash:
# table, compiled by postmap, for the recipient.
LATE_CHECKS = {
    "smtpd_recipient_restrictions": "check_recipient_access hash:$config_directory/rcpt_access",
    "smtpd_data_restrictions": "check_sender_access texthash:$config_directory/data_access",
    "smtpd_end_of_data_restrictions": "check_sender_access texthash:$config_directory/eod_access",
}
LATE_TABLES = {
    "data_access": "at-data@sender.example REJECT\n",
    "eod_access": "at-end@sender.example REJECT refused after the message\n",
    "rcpt_access": f"left@{GATEWAY_DOMAIN} 550 5.1.1 no longer here\n",
}


@pytest.fixture(scope="module")
def late_checking_gateway() -> Iterator[PostfixGateway]:
    with PostfixGateway(
        policy=LATE_CHECKS, tables=LATE_TABLES, postmap_tables=("rcpt_access",)
    ) as started:
        started.start_gateway()
        yield started


def test_a_data_restriction_refuses_the_data_command(
    late_checking_gateway: PostfixGateway,
) -> None:
    outcome = deliver(late_checking_gateway, message(), sender="at-data@sender.example")
    assert_reply(
        outcome,
        "data",
        554,
        "5.7.1",
        "<at-data@sender.example>: Sender address rejected: Access denied",
    )


def test_an_end_of_data_restriction_refuses_after_the_message_with_its_text(
    late_checking_gateway: PostfixGateway,
) -> None:
    outcome = deliver(late_checking_gateway, message(), sender="at-end@sender.example")
    assert_reply(
        outcome,
        "end-of-data",
        554,
        "5.7.1",
        "<at-end@sender.example>: Sender address rejected: refused after the message",
    )


def test_a_hash_table_compiled_by_postmap_is_consulted(
    late_checking_gateway: PostfixGateway,
) -> None:
    outcome = deliver(late_checking_gateway, message(), recipients=(f"left@{GATEWAY_DOMAIN}",))
    assert_reply(
        outcome,
        "rcpt",
        550,
        "5.1.1",
        f"<left@{GATEWAY_DOMAIN}>: Recipient address rejected: no longer here",
    )
