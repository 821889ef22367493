"""Differential: the same restrictions in a private Postfix and in sinkd's postfix_smtpd kind.

Each configuration below is one main.cf policy with its tables. The private Postfix of
tests/support/postfix_gateway.py runs it; sinkd runs the profile tests/support/postfix_profile.py
writes from the same text. Every case sends the same transaction (XCLIENT client address and
name, EHLO name, sender, recipients, message) to both over loopback with the same client and
compares, stage by stage, each RCPT reply and the deciding reply: code, enhanced code and text
(the text of a 2xx is the server's own, queue ids, and is not compared).

No difference is allowed, the stage included: with ``smtpd_delay_reject = no`` both refuse a
client in the greeting (here the reply to XCLIENT) and a HELO name at EHLO, and both refuse
``smtpd_data_restrictions`` at the DATA command. DNS-based restrictions are not compared here
(tests/e2e/test_postfix_import_diff.py compares them, with Postfix in a namespace whose
resolv.conf names the tests' DNS server).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path

import pytest

from tests.conftest import StartServer, require_executable
from tests.support.postfix_gateway import GATEWAY_DOMAIN, Outcome, PostfixGateway, send
from tests.support.postfix_profile import write_smtpd_profile
from tests.support.postgrey import Postgrey

pytestmark = pytest.mark.usefixtures("no_internal_errors")

RCPT = f"bob@{GATEWAY_DOMAIN}"
SENDER = "alice@sender.example"
OUTSIDE = "carol@elsewhere.example"
PLAIN_CLIENT = {"ADDR": "10.9.8.7", "NAME": "mail.sender.example"}


def message(subject: str = "Quarterly figures") -> bytes:
    return (
        f"From: {SENDER}\r\nTo: {RCPT}\r\nSubject: {subject}\r\n"
        f"Message-ID: <diff@sender.example>\r\n\r\nSee attached.\r\n"
    ).encode()


@dataclasses.dataclass(frozen=True)
class Case:
    """One transaction, sent identically to both servers."""

    name: str
    expect: int = 250  # Postfix's deciding reply code, so that no case passes by accident
    sender: str = SENDER
    recipients: tuple[str, ...] = (RCPT,)
    helo: str = "client.example"
    client: Mapping[str, str] = dataclasses.field(default_factory=lambda: dict(PLAIN_CLIENT))


@dataclasses.dataclass(frozen=True)
class Config:
    """One main.cf policy, its tables (``postmap`` compiles those in ``postmap``) and the cases
    sent through it."""

    name: str
    policy: Mapping[str, str]
    tables: Mapping[str, str]
    cases: tuple[Case, ...]
    postmap: tuple[str, ...] = ()


ACCESS_TABLES = {
    "client_cidr": "192.0.2.0/24 REJECT\n"
    "198.51.100.0/24 OK\n"
    "203.0.113.0/24 DEFER_IF_PERMIT greylisted here\n"
    "2001:db8::/32 REJECT v6 blocked\n",
    "helo_access": "bad.helo.example 550 5.7.0 no such host here\nfriendly.example OK\n",
    "sender_access": "spam@blocked.example REJECT\n"
    "blocked.example 554 5.7.2 domain blocked\n"
    "friend@partner.example OK\n"
    "warn.example WARN be careful\n"
    "held.example HOLD\n"
    "<> DUNNO\n",
    "sender_re": "/^[0-9]+@/ REJECT numeric senders\n"
    "/^([a-z]+)@regexp\\.example$/ 550 5.7.1 no $1 here\n"
    "if /@cond\\.example$/\n"
    "!/^ok/ REJECT not ok in cond\n"
    "endif\n",
    "sender_pcre": "/^(?!postmaster)[^@]+@pcre\\.example$/ REJECT pcre says no\n",
    "rcpt_access": f"nobody@{GATEWAY_DOMAIN} 550 5.1.1 unknown user\n"
    f"grey@{GATEWAY_DOMAIN} DEFER_IF_PERMIT try later\n"
    f"shaky@{GATEWAY_DOMAIN} DEFER_IF_REJECT dns trouble\n"
    f"gone@{GATEWAY_DOMAIN} DEFER\n",
}


def access_policy(delay: str) -> dict[str, str]:
    return {
        "smtpd_delay_reject": delay,
        # XCLIENT accepts an IPv6 client address only when smtpd speaks IPv6 (postconf(5)).
        "inet_protocols": "all",
        "smtpd_client_restrictions": "check_client_access cidr:$config_directory/client_cidr",
        "smtpd_helo_restrictions": "check_helo_access texthash:$config_directory/helo_access, "
        "reject_invalid_helo_hostname, reject_non_fqdn_helo_hostname",
        "smtpd_sender_restrictions": "check_sender_access hash:$config_directory/sender_access, "
        "check_sender_access regexp:$config_directory/sender_re, "
        "check_sender_access pcre:$config_directory/sender_pcre, reject_non_fqdn_sender",
        "smtpd_recipient_restrictions": "check_recipient_access "
        "texthash:$config_directory/rcpt_access, reject_non_fqdn_recipient, "
        "permit_auth_destination, reject",
    }


ACCESS_CASES = (
    Case("clean"),
    Case("sender address in a hash table", 554, sender="spam@blocked.example"),
    Case("sender's parent domain in a hash table", 554, sender="x@sub.blocked.example"),
    Case(
        "OK ends only the sender list", 554, sender="friend@partner.example", recipients=(OUTSIDE,)
    ),
    Case("OK sender to the gateway", sender="friend@partner.example"),
    Case("regexp first match", 554, sender="12345@x.example"),
    Case("regexp substitution", 550, sender="joe@regexp.example"),
    Case("regexp if/endif and negation", 554, sender="bad@cond.example"),
    Case("regexp if/endif passes", sender="okay@cond.example"),
    Case("pcre lookahead", 554, sender="joe@pcre.example"),
    Case("pcre lookahead excludes", sender="postmaster@pcre.example"),
    Case("non-FQDN sender", 504, sender="alice@localhostonly"),
    Case("null sender", sender=""),
    Case("WARN and HOLD accept", sender="a@warn.example"),
    Case("HOLD accepts", sender="a@held.example"),
    Case("cidr client reject", 554, client={"ADDR": "192.0.2.7", "NAME": "mail.blocked.example"}),
    Case("cidr IPv6 client reject", 554, client={"ADDR": "IPV6:2001:db8::5", "NAME": "v6.example"}),
    Case("cidr IPv6 client outside", client={"ADDR": "IPV6:2001:db9::5", "NAME": "v6.example"}),
    Case("cidr OK client", client={"ADDR": "198.51.100.9", "NAME": "ok.example"}),
    Case(
        "client DEFER_IF_PERMIT then permit",
        450,
        client={"ADDR": "203.0.113.9", "NAME": "grey.example"},
    ),
    Case(
        "client DEFER_IF_PERMIT then reject",
        554,
        client={"ADDR": "203.0.113.9", "NAME": "grey.example"},
        recipients=(OUTSIDE,),
    ),
    Case("HELO access", 550, helo="bad.helo.example"),
    Case("invalid HELO", 501, helo="bad_helo!"),
    Case("non-FQDN HELO", 504, helo="client"),
    Case("invalid HELO address literal", 501, helo="[300.1.2.3]"),
    Case(
        "several recipients, mixed outcomes",
        recipients=(
            RCPT,
            f"nobody@{GATEWAY_DOMAIN}",
            OUTSIDE,
            f"grey@{GATEWAY_DOMAIN}",
            f"gone@{GATEWAY_DOMAIN}",
            f"shaky@{GATEWAY_DOMAIN}",
            "dave@corphost",
        ),
    ),
)

ORDERING_TABLES = {
    "rcpt_re": "/^vip@/ OK\n/^blocked@/ REJECT\n/^later@/ DEFER_IF_REJECT not now\n",
    "data_access": "at-data@sender.example REJECT\n",
    "eod_access": "at-end@sender.example REJECT refused after the message\n",
}
ORDERING_POLICY = {
    "mynetworks": "127.0.0.0/8 10.0.0.0/8",
    "smtpd_relay_restrictions": "permit_mynetworks, reject_unauth_destination",
    "smtpd_recipient_restrictions": "check_recipient_access regexp:$config_directory/rcpt_re, "
    "warn_if_reject, reject_non_fqdn_recipient, permit_auth_destination, defer_if_permit, "
    "reject",
    "smtpd_data_restrictions": "check_sender_access texthash:$config_directory/data_access",
    "smtpd_end_of_data_restrictions": "check_sender_access texthash:$config_directory/eod_access",
}
OUTSIDE_CLIENT = {"ADDR": "198.51.100.1", "NAME": "outside.example"}
ORDERING_CASES = (
    Case("mynetworks pass the relay list, the recipient list rejects", 554, recipients=(OUTSIDE,)),
    Case("outside may not relay", 554, recipients=(OUTSIDE,), client=OUTSIDE_CLIENT),
    Case("a recipient list OK after the relay check", recipients=(f"vip@{GATEWAY_DOMAIN}",)),
    Case("a regexp reject", 554, recipients=(f"blocked@{GATEWAY_DOMAIN}",)),
    Case("warn_if_reject", 554, recipients=("dave@corphost",)),
    Case("DEFER_IF_REJECT then warned and rejected", 450, recipients=("later@corphost",)),
    Case("a DEFER_IF_REJECT then permit", recipients=(f"later@{GATEWAY_DOMAIN}",)),
    Case("data restriction", 554, sender="at-data@sender.example"),
    Case("end-of-data restriction", 554, sender="at-end@sender.example"),
)

KEY_TABLES = {
    "client_keys": "192.0.2 REJECT octet prefix\n"
    ".lan.example REJECT subdomain of lan\n"
    "host.exact.example 450 4.7.0 exact host\n"
    "10.0 OK\n",
    "client_re": "/^203\\.0\\.113\\./ REJECT regexp ip\n/\\.dyn\\.example$/ REJECT dynamic name\n",
    "helo_keys": ".helo.example REJECT helo sub\n",
    "sender_keys": "<nullsender> REJECT no bounces\n"
    ".sub.example REJECT dot-style parent\n"
    "sub.example DEFER exact only\n"
    "postmaster@ OK\n"
    "user@dom.example DEFER_IF_REJECT\n"
    "gone.example REJECT 5.1.1 gone\n"
    "mismatch.example 450 5.7.9 class fixed\n",
}
KEY_POLICY = {
    # No smtpd_access_maps: parent domains are looked up as ".parent" (postconf(5)).
    "parent_domain_matches_subdomains": "relay_domains",
    "smtpd_null_access_lookup_key": "<nullsender>",
    "access_map_reject_code": "550",
    "access_map_defer_code": "451",
    "smtpd_relay_before_recipient_restrictions": "no",
    "smtpd_client_restrictions": "check_client_access texthash:$config_directory/client_keys, "
    "check_client_access regexp:$config_directory/client_re",
    "smtpd_helo_restrictions": "check_helo_access texthash:$config_directory/helo_keys",
    "smtpd_sender_restrictions": "check_sender_access texthash:$config_directory/sender_keys",
    "smtpd_recipient_restrictions": "permit_auth_destination, defer",
}
KEY_CASES = (
    Case("clean"),
    Case("client address prefix", 550, client={"ADDR": "192.0.2.5", "NAME": "x.example"}),
    Case("client name's parent", 550, client={"ADDR": "10.9.9.9", "NAME": "a.lan.example"}),
    Case("client address prefix OK", client={"ADDR": "10.0.5.5", "NAME": "ok.example"}),
    Case("client name exact", 450, client={"ADDR": "10.9.9.9", "NAME": "host.exact.example"}),
    Case("client regexp address", 550, client={"ADDR": "203.0.113.5", "NAME": "h.example"}),
    Case("client regexp name", 550, client={"ADDR": "10.9.9.9", "NAME": "abc.dyn.example"}),
    Case("HELO parent", 550, helo="a.helo.example"),
    Case("HELO itself is no subdomain", helo="helo.example"),
    Case("null sender key", 550, sender=""),
    Case("sender's dot-style parent", 550, sender="x@a.sub.example"),
    Case("sender's exact domain with its defer code", 451, sender="x@sub.example"),
    Case("user@ key", sender="postmaster@any.example"),
    Case("DEFER_IF_REJECT without a reject", sender="user@dom.example"),
    Case("recipient list before relay list", 450, recipients=(OUTSIDE,)),
    Case("a recipient's DSN rejecting a sender", 550, sender="a@gone.example"),
    Case("a DSN class that disagrees with the code", 450, sender="a@mismatch.example"),
)

CONFIGS = (
    Config(
        "access tables, delay_reject",
        access_policy("yes"),
        ACCESS_TABLES,
        ACCESS_CASES,
        postmap=("sender_access",),
    ),
    Config(
        "access tables, no delay_reject",
        access_policy("no"),
        ACCESS_TABLES,
        ACCESS_CASES,
        postmap=("sender_access",),
    ),
    Config(
        "ordering, relay and late lists",
        ORDERING_POLICY,
        ORDERING_TABLES,
        ORDERING_CASES,
    ),
    Config("lookup keys and parameters", KEY_POLICY, KEY_TABLES, KEY_CASES),
    Config(
        "soft_bounce, default relay list, nested and discarding results",
        {
            "soft_bounce": "yes",
            "smtpd_relay_restrictions": "permit_mynetworks, permit_sasl_authenticated, "
            "defer_unauth_destination",
            "smtpd_sender_restrictions": "check_sender_access texthash:$config_directory/sb, "
            "permit",
            "smtpd_recipient_restrictions": "check_recipient_access "
            "texthash:$config_directory/sb_rcpt, reject_non_fqdn_recipient",
        },
        {
            "sb": "drop.example DISCARD\nnope.example REJECT nope\nlater.example defer\n",
            "sb_rcpt": f"held@{GATEWAY_DOMAIN} HOLD\n",
        },
        (
            Case("defer_unauth_destination", 454, recipients=(OUTSIDE,)),
            Case("soft_bounce turns a reject into a deferral", 454, sender="a@nope.example"),
            Case("DISCARD accepts", sender="a@drop.example"),
            Case("HOLD accepts", recipients=(f"held@{GATEWAY_DOMAIN}",)),
            Case("a restriction name as the result", 450, sender="a@later.example"),
            Case(
                "a non-FQDN recipient from mynetworks",
                404,
                recipients=("x@corphost",),
                client={"ADDR": "127.0.0.5", "NAME": "localhost"},
            ),
        ),
    ),
    Config(
        "client name check",
        {"smtpd_client_restrictions": "permit_mynetworks, reject_unknown_client_hostname"},
        {},
        (
            # XCLIENT NAME=[UNAVAILABLE]: smtpd's lookups found no name (XCLIENT_README).
            Case("no client name", 450, client={"ADDR": "10.9.8.7", "NAME": "[UNAVAILABLE]"}),
            Case("a client name"),
        ),
    ),
)


@pytest.fixture(scope="module", params=CONFIGS, ids=[c.name for c in CONFIGS])
def postfix(request: pytest.FixtureRequest) -> Iterator[tuple[Config, PostfixGateway]]:
    require_executable("postfix", "postfix")
    config: Config = request.param
    with PostfixGateway(
        policy=config.policy, tables=config.tables, postmap_tables=config.postmap
    ) as gateway:
        gateway.start_gateway()
        yield config, gateway


@pytest.fixture
async def sinkd_port(
    postfix: tuple[Config, PostfixGateway], start_server: StartServer, tmp_path: Path
) -> AsyncIterator[int]:
    config, _gateway = postfix
    profile = write_smtpd_profile(tmp_path, "postfix-policy", config.policy, config.tables)
    app = await start_server(profile=str(profile))
    assert app.smtp_address is not None
    yield app.smtp_address[1]


def transcript(outcome: Outcome) -> list[tuple[str, int, str, str]]:
    """What is compared: each RCPT reply and the deciding reply, with its stage; a 2xx's text
    is left out."""

    def row(stage: str, code: int, enhanced: str, text: str) -> tuple[str, int, str, str]:
        return (
            stage,
            code,
            enhanced if code >= 400 else "",
            text if code >= 400 else "",
        )

    rows = [row(r.stage, r.code, r.enhanced, r.text) for r in outcome.at("rcpt")]
    final = outcome.final
    rows.append(row(outcome.stage, final.code, final.enhanced, final.text))
    return rows


def run(port: int, case: Case) -> Outcome:
    return send(
        port,
        message(),
        sender=case.sender,
        recipients=case.recipients,
        helo=case.helo,
        xclient=dict(case.client),
    )


async def test_sinkd_answers_every_case_as_postfix_does(
    postfix: tuple[Config, PostfixGateway], sinkd_port: int
) -> None:
    config, gateway = postfix
    differences: list[str] = []
    for case in config.cases:
        real = await asyncio.to_thread(run, gateway.smtp_port, case)
        ours = await asyncio.to_thread(run, sinkd_port, case)
        if real.final.code != case.expect:
            differences.append(f"{case.name}: Postfix answered {real.final}, not {case.expect}")
        expected = transcript(real)
        got = transcript(ours)
        if got != expected:
            differences.append(f"{case.name}:\n  Postfix: {expected}\n  sinkd:   {got}")
    assert not differences, "\n".join(differences)


# --- postgrey ------------------------------------------------------------------------------
# A real postgrey behind check_policy_service in Postfix; sinkd's postfix_smtpd kind asks its
# own greylist memory with postgrey's defaults. Every case is a new triplet, so both answer the
# first attempt: postgrey's DEFER_IF_PERMIT, which a later reject of the list overrides.
GREY_TABLES = {"after_grey": f"blocked@{GATEWAY_DOMAIN} REJECT\n"}
GREY_CASES = (
    Case("a new triplet is greylisted", 450),
    Case(
        "a later reject wins over the greylisting", 554, recipients=(f"blocked@{GATEWAY_DOMAIN}",)
    ),
    Case(
        "several recipients",
        recipients=(f"ann@{GATEWAY_DOMAIN}", OUTSIDE, f"blocked@{GATEWAY_DOMAIN}"),
        expect=554,  # every recipient refused: the last refusal decides
    ),
    Case("the relay list refuses before postgrey is asked", 554, recipients=("x@y",)),
)


async def test_postgrey_greylists_as_sinkd_does(start_server: StartServer, tmp_path: Path) -> None:
    require_executable("postfix", "postfix")
    with Postgrey() as postgrey:
        address = f"inet:127.0.0.1:{postgrey.port}"
        policy = {
            "smtpd_recipient_restrictions": "reject_non_fqdn_recipient, "
            f"check_policy_service {address}, "
            "check_recipient_access texthash:$config_directory/after_grey, "
            "permit_auth_destination, reject",
        }
        profile = write_smtpd_profile(
            tmp_path, "postgrey-policy", policy, GREY_TABLES, services={address: "postgrey"}
        )
        app = await start_server(profile=str(profile))
        assert app.smtp_address is not None
        with PostfixGateway(policy=policy, tables=GREY_TABLES) as gateway:
            gateway.start_gateway()
            differences: list[str] = []
            for case in GREY_CASES:
                real = await asyncio.to_thread(run, gateway.smtp_port, case)
                ours = await asyncio.to_thread(run, app.smtp_address[1], case)
                if real.final.code != case.expect:
                    differences.append(f"{case.name}: Postfix answered {real.final}")
                if transcript(ours) != transcript(real):
                    differences.append(
                        f"{case.name}:\n  Postfix: {transcript(real)}\n"
                        f"  sinkd:   {transcript(ours)}"
                    )
    assert not differences, "\n".join(differences)
