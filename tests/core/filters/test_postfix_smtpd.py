"""The postfix_smtpd kind: restriction lists judged as Postfix's smtpd_check.c judges them.

Replies marked "observed" are those tests/e2e/test_postfix_gateway.py asserts of a real
Postfix 3.7; tests/e2e/test_postfix_smtpd_e2e.py compares the rest with the real Postfix too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from sinkd.core.delivery_state import DeliveryState
from sinkd.core.engine import Pipeline, Router, Transaction
from sinkd.core.filters.postfix_smtpd import SUPPORTED_PARAMETERS, SUPPORTED_RESTRICTIONS
from sinkd.core.model import Action, ClientIdentity, Disposition, Reply, Stage, Verdict
from sinkd.core.ports import DnsAnswer, Lookups
from sinkd.errors import ProfileError
from tests.support.dnsbl import FakeResolver, a, txt
from tests.support.judging import compile_yaml
from tests.support.shared_state import UnreachableMemory

MESSAGE = b"From: a@sender.example\r\nTo: b@corp.example\r\nSubject: hi\r\n\r\nhello\r\n"


def smtpd(
    tmp_path: Path,
    *,
    parameters: dict[str, Any] | None = None,
    restrictions: dict[str, Any] | None = None,
    tables: dict[str, Any] | None = None,
    gateway: bool = True,
    **more: Any,
) -> Pipeline:
    """A profile with one postfix_smtpd filter. ``gateway``: the harness's frame around it
    (mynetworks loopback, relay_domains corp.example, relay restrictions permit_mynetworks,
    reject_unauth_destination)."""
    spec: dict[str, Any] = {"kind": "postfix_smtpd", "name": "smtpd", **more}
    params = dict(GATEWAY_PARAMETERS if gateway else {})
    params.update(parameters or {})
    lists = dict(GATEWAY_RESTRICTIONS if gateway else {})
    lists.update(restrictions or {})
    if params:
        spec["parameters"] = {
            k: v if isinstance(v, dict) else {"value": v} for k, v in params.items()
        }
    if lists:
        spec["restrictions"] = {
            name: [r if isinstance(r, dict) else {"restriction": r} for r in items]
            for name, items in lists.items()
        }
    if tables:
        spec["tables"] = tables
    return compile_yaml(tmp_path, yaml.safe_dump({"filters": [spec]}))


def table(type_: str, *entries: tuple[str, ...]) -> dict[str, Any]:
    """A table spec from (key, value[, source]) tuples."""
    return {
        "type": type_,
        "entries": [
            {"key": e[0], "value": e[1], **({"source": e[2]} if len(e) > 2 else {})}
            for e in entries
        ],
    }


GATEWAY_PARAMETERS: dict[str, Any] = {
    "mynetworks": {"value": "127.0.0.0/8", "source": "main.cf:3"},
    "relay_domains": {"value": "corp.example", "source": "main.cf:4"},
}
GATEWAY_RESTRICTIONS: dict[str, Any] = {
    "relay": [
        {"restriction": "permit_mynetworks", "source": "main.cf:8"},
        {"restriction": "reject_unauth_destination", "source": "main.cf:8"},
    ]
}
SENDERS = {"restriction": "check_sender_access", "table": "senders", "source": "main.cf:12"}


def senders(*entries: tuple[str, ...], delay: str = "yes", type_: str = "hash") -> dict[str, Any]:
    return {
        "parameters": {"smtpd_delay_reject": delay},
        "restrictions": {"sender": [SENDERS]},
        "tables": {"senders": table(type_, *entries)},
    }


def tx(
    pipeline: Pipeline,
    *,
    ip: str = "198.51.100.7",
    name: str | None = "mail.sender.example",
    helo: str | None = "mail.sender.example",
    auth: str | None = None,
    lookups: Lookups | None = None,
) -> Transaction:
    counter = iter(range(1, 1000))
    return Transaction(
        Router(pipeline),
        ClientIdentity(ip=ip, helo=helo, name=name),
        lambda: f"id{next(counter)}",
        lookups or Lookups(),
        auth_user=auth,
    )


async def outcome(
    pipeline: Pipeline,
    mail_from: str,
    rcpts: tuple[str, ...] = ("bob@corp.example",),
    **client: object,
) -> list[Verdict]:
    """Every verdict of one transaction: MAIL's refusal, or each RCPT's refusals and the DATA
    command's refusal or the end of DATA's verdicts."""
    transaction = tx(pipeline, **client)  # type: ignore[arg-type]
    refused = await transaction.mail(mail_from)
    if refused is not None:
        return [refused]
    verdicts = [v for r in rcpts if (v := await transaction.rcpt(r)) is not None]
    if transaction.recipients:
        verdicts += await transaction.data_command() or await transaction.data(MESSAGE)
    return verdicts


async def test_a_sender_access_reject_refuses_at_rcpt_with_postfixs_reply_and_its_line(
    tmp_path: Path,
) -> None:
    pipeline = smtpd(tmp_path, **senders(("spam@blocked.example", "REJECT", "sender_access:3")))
    (verdict,) = await outcome(pipeline, "spam@blocked.example")
    assert verdict.stage is Stage.RCPT
    # observed (tests/e2e/test_postfix_gateway.py)
    assert verdict.reply == Reply(
        554, "5.7.1", "<spam@blocked.example>: Sender address rejected: Access denied"
    )
    (finding,) = verdict.findings
    assert finding.code == "POSTFIX_SMTPD_REJECT"
    assert finding.reason == (
        "The envelope sender spam@blocked.example matches sender_access:3 (REJECT), so Postfix "
        "refuses it at RCPT TO."
    )
    assert finding.detail["source"] == "sender_access:3"
    assert finding.detail["restriction_source"] == "main.cf:12"
    assert finding.detail["list"] == "smtpd_sender_restrictions"


async def test_with_delay_reject_no_the_sender_is_refused_at_mail_and_the_finding_says_so(
    tmp_path: Path,
) -> None:
    pipeline = smtpd(tmp_path, **senders(("blocked.example", "REJECT go away"), delay="no"))
    (verdict,) = await outcome(pipeline, "Joe@Blocked.Example")
    assert verdict.stage is Stage.MAIL
    assert verdict.reply == Reply(
        554, "5.7.1", "<Joe@Blocked.Example>: Sender address rejected: go away"
    )
    assert verdict.findings[0].detail["postfix_stage"] == "mail"


async def test_a_client_refusal_with_delay_reject_no_says_postfix_answers_at_connect(
    tmp_path: Path,
) -> None:
    body: dict[str, Any] = {
        "parameters": {"smtpd_delay_reject": "no"},
        "restrictions": {"client": [{"restriction": "check_client_access", "table": "clients"}]},
        "tables": {"clients": table("cidr", ("198.51.100.0/24", "REJECT", "client_cidr:1"))},
    }
    (verdict,) = await outcome(smtpd(tmp_path, **body), "a@sender.example")
    assert verdict.stage is Stage.MAIL
    assert verdict.reply == Reply(
        554,
        "5.7.1",
        "<mail.sender.example[198.51.100.7]>: Client host rejected: Access denied",
    )
    finding = verdict.findings[0]
    assert finding.detail["postfix_stage"] == "connect"
    assert "when the client connects (sinkd answers at MAIL FROM" in finding.reason


async def test_with_delay_reject_no_a_client_refusal_answers_the_greeting(tmp_path: Path) -> None:
    body: dict[str, Any] = {
        "parameters": {"smtpd_delay_reject": "no"},
        "restrictions": {"client": [{"restriction": "check_client_access", "table": "clients"}]},
        "tables": {"clients": table("cidr", ("198.51.100.0/24", "REJECT", "client_cidr:1"))},
    }
    pipeline = smtpd(tmp_path, **body)
    verdict = await tx(pipeline).session(Stage.CONNECT)
    assert verdict is not None and verdict.stage is Stage.CONNECT
    assert verdict.reply == Reply(
        554, "5.7.1", "<mail.sender.example[198.51.100.7]>: Client host rejected: Access denied"
    )
    assert verdict.findings[0].reason.endswith("so Postfix refuses it when the client connects.")
    assert await tx(pipeline, ip="192.0.2.1").session(Stage.CONNECT) is None


async def test_with_delay_reject_no_a_helo_refusal_answers_ehlo_and_yes_waits_for_rcpt(
    tmp_path: Path,
) -> None:
    helo_list = {
        "restrictions": {"helo": [{"restriction": "check_helo_access", "table": "helos"}]},
        "tables": {"helos": table("hash", ("bad.helo.example", "550 5.7.0 no such host", "h:1"))},
    }
    now = smtpd(tmp_path, parameters={"smtpd_delay_reject": "no"}, **helo_list)
    verdict = await tx(now, helo="bad.helo.example").session(Stage.HELO)
    assert verdict is not None and verdict.stage is Stage.HELO
    assert verdict.reply == Reply(
        550, "5.7.0", "<bad.helo.example>: Helo command rejected: no such host"
    )
    assert await tx(now, helo="good.example").session(Stage.HELO) is None
    later = smtpd(tmp_path, **helo_list)
    assert await tx(later, helo="bad.helo.example").session(Stage.HELO) is None
    (refused,) = await outcome(later, "a@sender.example", helo="bad.helo.example")
    assert refused.stage is Stage.RCPT


@pytest.mark.parametrize(
    ("sender", "value"),
    [
        ("joe@sub.blocked.example", "parent domain"),
        ("joe@other.example", "user part"),
        ("joe@blocked.example", "full address"),
    ],
)
async def test_access_lookups_try_the_address_its_domains_and_then_user_at(
    tmp_path: Path, sender: str, value: str
) -> None:
    pipeline = smtpd(
        tmp_path,
        **senders(
            ("joe@blocked.example", "REJECT full address"),
            ("blocked.example", "REJECT parent domain"),
            ("joe@", "REJECT user part"),
        ),
    )
    (verdict,) = await outcome(pipeline, sender)
    assert verdict.reply.text == f"<{sender}>: Sender address rejected: {value}"


async def test_the_null_sender_is_looked_up_as_the_null_access_key(tmp_path: Path) -> None:
    pipeline = smtpd(tmp_path, **senders(("<>", "550 5.7.9 no bounces")))
    (verdict,) = await outcome(pipeline, "")
    assert verdict.reply == Reply(550, "5.7.9", "<>: Sender address rejected: no bounces")


async def test_an_address_dsn_is_fixed_to_the_senders_variant(tmp_path: Path) -> None:
    # smtpd_dsn_fix.c: X.1.1 (a recipient's mailbox) rejecting a sender becomes X.1.7.
    pipeline = smtpd(tmp_path, **senders(("gone.example", "REJECT 5.1.1 gone")))
    (verdict,) = await outcome(pipeline, "a@gone.example")
    assert verdict.reply == Reply(554, "5.1.7", "<a@gone.example>: Sender address rejected: gone")


async def test_ok_ends_only_its_own_list_so_the_relay_check_still_refuses(tmp_path: Path) -> None:
    pipeline = smtpd(tmp_path, **senders(("friend.example", "OK")))
    (verdict,) = await outcome(pipeline, "a@friend.example", ("carol@elsewhere.example",))
    assert verdict.reply == Reply(554, "5.7.1", "<carol@elsewhere.example>: Relay access denied")
    (accepted,) = await outcome(pipeline, "a@friend.example")
    assert accepted.reply.code == 250


async def test_the_default_relay_restrictions_defer_unauthorized_destinations(
    tmp_path: Path,
) -> None:
    pipeline = smtpd(tmp_path, gateway=False, parameters={"relay_domains": "corp.example"})
    (verdict,) = await outcome(pipeline, "a@sender.example", ("c@elsewhere.example",))
    assert verdict.reply == Reply(454, "4.7.1", "<c@elsewhere.example>: Relay access denied")
    assert verdict.findings[0].code == "POSTFIX_SMTPD_DEFER"


async def test_several_recipients_get_their_own_outcomes(tmp_path: Path) -> None:
    pipeline = smtpd(
        tmp_path,
        restrictions={"recipient": [{"restriction": "check_recipient_access", "table": "rcpts"}]},
        tables={"rcpts": table("regexp", ("/^nobody@/", "550 5.1.1 no such user", "rcpt_re:1"))},
    )
    verdicts = await outcome(
        pipeline,
        "a@sender.example",
        ("bob@corp.example", "nobody@corp.example", "x@elsewhere.example"),
    )
    assert [(v.stage, v.reply) for v in verdicts] == [
        (
            Stage.RCPT,
            Reply(550, "5.1.1", "<nobody@corp.example>: Recipient address rejected: no such user"),
        ),
        (Stage.RCPT, Reply(554, "5.7.1", "<x@elsewhere.example>: Relay access denied")),
        (Stage.DATA, Reply(250, "2.0.0", "Ok: queued as id3")),
    ]


async def test_defer_if_permit_defers_a_later_permit_but_not_a_later_reject(
    tmp_path: Path,
) -> None:
    pipeline = smtpd(tmp_path, **senders(("grey.example", "DEFER_IF_PERMIT")))
    (deferred,) = await outcome(pipeline, "a@grey.example")
    assert deferred.reply == Reply(
        450, "4.7.1", "<a@grey.example>: Sender address rejected: Service unavailable"
    )
    (rejected,) = await outcome(pipeline, "a@grey.example", ("x@elsewhere.example",))
    assert rejected.reply == Reply(554, "5.7.1", "<x@elsewhere.example>: Relay access denied")


async def test_defer_if_reject_turns_a_later_reject_of_the_same_command_into_its_deferral(
    tmp_path: Path,
) -> None:
    spec = senders(("shaky.example", "DEFER_IF_REJECT dns trouble"))
    spec["restrictions"]["sender"] = [SENDERS, "reject"]
    pipeline = smtpd(tmp_path, **spec)
    (verdict,) = await outcome(pipeline, "a@shaky.example")
    assert verdict.reply == Reply(
        450, "4.7.1", "<a@shaky.example>: Sender address rejected: dns trouble"
    )
    (plain,) = await outcome(pipeline, "a@other.example")
    assert plain.reply == Reply(
        554, "5.7.1", "<a@other.example>: Sender address rejected: Access denied"
    )


async def test_defer_if_reject_does_not_outlive_its_list_smtpd_check_reset(tmp_path: Path) -> None:
    pipeline = smtpd(tmp_path, **senders(("shaky.example", "DEFER_IF_REJECT dns trouble")))
    (verdict,) = await outcome(pipeline, "a@shaky.example", ("x@elsewhere.example",))
    assert verdict.reply == Reply(554, "5.7.1", "<x@elsewhere.example>: Relay access denied")


async def test_warn_if_reject_records_the_reject_and_accepts(tmp_path: Path) -> None:
    pipeline = smtpd(
        tmp_path,
        restrictions={"helo": ["warn_if_reject", "reject_non_fqdn_helo_hostname"]},
    )
    verdicts = await outcome(pipeline, "a@sender.example", helo="localhost")
    (verdict,) = verdicts
    assert verdict.reply.code == 250
    warned = [f for f in verdict.findings if f.code == "POSTFIX_SMTPD_WARN"]
    assert warned and "reject_warning: 504 5.5.2 <localhost>" in warned[0].reason


@pytest.mark.parametrize(
    ("restriction", "helo", "mail_from", "reply"),
    [
        # observed (tests/e2e/test_postfix_gateway.py)
        (
            "reject_non_fqdn_helo_hostname",
            "client",
            "a@sender.example",
            Reply(504, "5.5.2", "<client>: Helo command rejected: need fully-qualified hostname"),
        ),
        (
            "reject_invalid_helo_hostname",
            "bad_helo!",
            "a@sender.example",
            Reply(501, "5.5.2", "<bad_helo!>: Helo command rejected: Invalid name"),
        ),
        (
            "reject_non_fqdn_sender",
            "mail.sender.example",
            "alice@localhostonly",
            Reply(
                504,
                "5.5.2",
                "<alice@localhostonly>: Sender address rejected: need fully-qualified address",
            ),
        ),
        (
            "reject_invalid_helo_hostname",
            "[300.1.2.3]",
            "a@sender.example",
            Reply(501, "5.5.2", "<[300.1.2.3]>: Helo command rejected: invalid ip address"),
        ),
    ],
)
async def test_syntax_checks_refuse_with_smtpds_texts(
    tmp_path: Path, restriction: str, helo: str, mail_from: str, reply: Reply
) -> None:
    pipeline = smtpd(tmp_path, restrictions={"recipient": [restriction]})
    (verdict,) = await outcome(pipeline, mail_from, helo=helo)
    assert verdict.reply == reply


async def test_an_unknown_client_hostname_is_refused_with_rfc_7372s_code(tmp_path: Path) -> None:
    pipeline = smtpd(tmp_path, restrictions={"client": ["reject_unknown_client_hostname"]})
    (verdict,) = await outcome(pipeline, "a@sender.example", name=None)
    # observed (tests/e2e/test_postfix_gateway.py)
    assert verdict.reply == Reply(
        450, "4.7.25", "Client host rejected: cannot find your hostname, [198.51.100.7]"
    )


async def test_an_unknown_sender_domain_is_refused_and_a_dns_failure_defers_if_permitted(
    tmp_path: Path,
) -> None:
    pipeline = smtpd(tmp_path, restrictions={"sender": ["reject_unknown_sender_domain"]})
    resolver = FakeResolver({})  # every name NXDOMAIN
    (verdict,) = await outcome(pipeline, "a@nowhere.example", lookups=Lookups(resolver=resolver))
    assert verdict.reply == Reply(
        450, "4.1.8", "<a@nowhere.example>: Sender address rejected: Domain not found"
    )
    # Offline DNS without data: Postfix's temporary failure, unknown_address_tempfail_action
    # = defer_if_permit, so a later reject still wins.
    (deferred,) = await outcome(pipeline, "a@nowhere.example")
    assert deferred.reply == verdict.reply
    assert deferred.findings[0].detail["dns"] == "no data"
    (relay,) = await outcome(pipeline, "a@nowhere.example", ("x@elsewhere.example",))
    assert relay.reply == Reply(554, "5.7.1", "<x@elsewhere.example>: Relay access denied")


async def test_an_rbl_listing_refuses_with_default_rbl_reply_and_the_lists_reason(
    tmp_path: Path,
) -> None:
    rbl = {"restriction": "reject_rbl_client", "argument": "zen.example=127.0.0.[2..11]"}
    pipeline = smtpd(tmp_path, restrictions={"client": [rbl]})
    resolver = FakeResolver(
        {
            "7.100.51.198.zen.example": a("127.0.0.4"),
            ("7.100.51.198.zen.example", "TXT"): txt("https://zen.example/q/198.51.100.7"),
            "8.100.51.198.zen.example": a("127.0.0.255"),
        }
    )
    (verdict,) = await outcome(pipeline, "a@sender.example", lookups=Lookups(resolver=resolver))
    assert verdict.reply == Reply(
        554,
        "5.7.1",
        "Service unavailable; Client host [198.51.100.7] blocked using zen.example; "
        "https://zen.example/q/198.51.100.7",
    )
    (filtered,) = await outcome(
        pipeline, "a@sender.example", ip="198.51.100.8", lookups=Lookups(resolver=resolver)
    )
    assert filtered.reply.code == 250


async def test_rbl_reply_maps_give_a_zone_its_own_template(tmp_path: Path) -> None:
    template = "$rbl_code 5.7.9 <$sender> is on $rbl_domain${rbl_reason:, no reason}"
    pipeline = smtpd(
        tmp_path,
        restrictions={
            "sender": [{"restriction": "reject_rhsbl_sender", "argument": "dbl.example"}]
        },
        rbl_reply_maps={"table": "rbl"},
        tables={"rbl": table("hash", ("dbl.example", template))},
    )
    resolver = FakeResolver({"spam.example.dbl.example": a("127.0.1.2")})
    (verdict,) = await outcome(pipeline, "x@spam.example", lookups=Lookups(resolver=resolver))
    assert verdict.reply == Reply(554, "5.7.9", "<x@spam.example> is on dbl.example, no reason")


async def test_rbl_reply_maps_are_keyed_by_the_argument_with_its_answer_filter(
    tmp_path: Path,
) -> None:
    # Observed with Postfix 3.7 (tests/e2e/test_postfix_import_diff.py, dnsbl-unknown): the
    # entry for the bare zone is not used when the restriction filters the answer.
    def pipeline(key: str) -> Pipeline:
        return smtpd(
            tmp_path,
            restrictions={
                "sender": [
                    {"restriction": "reject_rhsbl_sender", "argument": "dbl.example=127.0.1.2"}
                ]
            },
            rbl_reply_maps={"table": "rbl"},
            tables={"rbl": table("hash", (key, "$rbl_code 5.7.9 listed in $rbl_domain"))},
        )

    resolver = FakeResolver({"spam.example.dbl.example": a("127.0.1.2")})
    lookups = Lookups(resolver=resolver)
    (bare,) = await outcome(pipeline("dbl.example"), "x@spam.example", lookups=lookups)
    assert bare.reply.enhanced == "5.7.1"  # default_rbl_reply
    (whole,) = await outcome(pipeline("dbl.example=127.0.1.2"), "x@spam.example", lookups=lookups)
    assert whole.reply == Reply(554, "5.7.9", "listed in dbl.example")


async def test_hold_and_discard_accept_and_record(tmp_path: Path) -> None:
    pipeline = smtpd(
        tmp_path,
        **senders(
            ("held.example", "HOLD"),
            ("dropped.example", "DISCARD"),
            ("filtered.example", "FILTER smtp:[127.0.0.1]:10025"),
        ),
    )
    (held,) = await outcome(pipeline, "a@held.example")
    assert held.disposition is Disposition.QUARANTINED
    (dropped,) = await outcome(pipeline, "a@dropped.example")
    assert dropped.disposition is Disposition.DISCARDED
    (filtered,) = await outcome(pipeline, "a@filtered.example")
    assert filtered.disposition is Disposition.INBOX
    assert [f.code for f in filtered.findings] == ["POSTFIX_SMTPD_NOT_MODELLED"]


class Clock:
    def __init__(self) -> None:
        self.time = 1_000_000.0

    def now(self) -> float:
        return self.time


async def test_postgrey_defers_if_permitted_and_lets_the_retry_pass(tmp_path: Path) -> None:
    postgrey = {
        "restriction": "check_policy_service",
        "service": "postgrey",
        "argument": "inet:127.0.0.1:10023",
    }
    pipeline = smtpd(tmp_path, restrictions={"recipient": ["reject_non_fqdn_recipient", postgrey]})
    clock = Clock()
    lookups = Lookups(state=DeliveryState(), clock=clock)
    (first,) = await outcome(pipeline, "a@sender.example", lookups=lookups)
    # the reply Postfix gives postgrey's DEFER_IF_PERMIT 4.2.0 (profiles/replies.yaml
    # postgrey.greylisted)
    assert first.reply == Reply(
        450,
        "4.2.0",
        "<bob@corp.example>: Recipient address rejected: Greylisted, see "
        "http://postgrey.schweikert.ch/help/corp.example.html",
    )
    # DEFER_IF_PERMIT: a later reject wins, and an earlier one is answered first.
    (relay,) = await outcome(
        pipeline, "a@sender.example", ("x@elsewhere.example",), lookups=lookups
    )
    assert relay.reply.code == 554
    clock.time += 301
    (retry,) = await outcome(pipeline, "a@sender.example", lookups=lookups)
    assert retry.reply.code == 250
    assert "POSTFIX_SMTPD_NOT_MODELLED" in retry.codes
    (unknown,) = await outcome(pipeline, "a@sender.example")
    assert unknown.reply.code == 250 and "POSTFIX_SMTPD_NOT_JUDGED" in unknown.codes


async def test_postgrey_unreachable_gets_postfixs_policy_service_default_action(
    tmp_path: Path,
) -> None:
    postgrey = {
        "restriction": "check_policy_service",
        "service": "postgrey",
        "argument": "inet:127.0.0.1:10023",
    }
    pipeline = smtpd(tmp_path, restrictions={"recipient": [postgrey]})
    memory = UnreachableMemory()
    (deferred,) = await outcome(
        pipeline, "a@sender.example", lookups=Lookups(state=memory, clock=Clock())
    )
    assert memory.calls == 1
    # smtpd_policy_service_default_action (postconf(5)) applied as an access(5) result.
    assert deferred.reply == Reply(
        451, "4.3.5", "<bob@corp.example>: Recipient address rejected: Server configuration problem"
    )


def test_an_unmodelled_policy_service_is_a_compile_error(tmp_path: Path) -> None:
    other = {"restriction": "check_policy_service", "argument": "inet:127.0.0.1:9998"}
    with pytest.raises(ProfileError, match=r"policy service 'inet:127\.0\.0\.1:9998' is not model"):
        smtpd(tmp_path, restrictions={"recipient": [other]})


# --- policyd-spf (postfix-policyd-spf-python 3.0.4, Debian 12, its default policyd-spf.conf) --

POLICYD_SPF = {
    "restriction": "check_policy_service",
    "service": "policyd-spf",
    "argument": "unix:private/policyd-spf",
    "source": "main.cf:20",
}
SPF_DNS = {
    ("acme-store.example", "TXT"): txt("v=spf1 ip4:192.0.2.10 -all"),
    ("soft.example", "TXT"): txt("v=spf1 ip4:192.0.2.10 ~all"),
    ("bad-helo.example", "TXT"): txt("v=spf1 -all"),
    ("mail.sender.example", "TXT"): txt("v=spf1 a -all"),
    "mail.sender.example": a("198.51.100.7"),
    ("broken.example", "TXT"): txt("v=spf1 ip4:192.0.2.10 bogus:x -all"),
    ("explained.example", "TXT"): txt("v=spf1 ip4:192.0.2.10 exp=why.explained.example -all"),
    ("why.explained.example", "TXT"): txt("Not from %{i}, sorry"),
}


def spf_gateway(tmp_path: Path) -> Pipeline:
    return smtpd(tmp_path, restrictions={"recipient": ["reject_unauth_destination", POLICYD_SPF]})


def spf_lookups(answers: dict[Any, Any] | None = None) -> Lookups:
    return Lookups(resolver=FakeResolver(SPF_DNS if answers is None else answers))


async def test_policyd_spf_refuses_a_mail_from_fail_with_its_own_reply(tmp_path: Path) -> None:
    (verdict,) = await outcome(
        spf_gateway(tmp_path), "Orders@Acme-Store.example", lookups=spf_lookups()
    )
    assert verdict.stage is Stage.RCPT
    # the reply Postfix gave policyd-spf's "550 5.7.23 Message rejected due to: ..." in the
    # differential (tests/e2e/test_postfix_import_diff.py, policy-services spf-fail): the
    # request's values lowercased, r= the recipient's domain (Hide_Receiver = No)
    assert verdict.reply == Reply(
        550,
        "5.7.23",
        "<bob@corp.example>: Recipient address rejected: Message rejected due to: SPF fail - "
        "not authorized. Please see http://www.openspf.net/Why?s=mfrom;"
        "id=orders@acme-store.example;ip=198.51.100.7;r=corp.example",
    )
    (finding,) = verdict.findings
    assert finding.code == "POSTFIX_SMTPD_REJECT"
    assert finding.detail["service"] == "policyd-spf"
    assert finding.detail["identity"] == "mailfrom"
    assert finding.detail["restriction_source"] == "main.cf:20"


async def test_policyd_spf_puts_the_domains_explanation_in_its_reply(tmp_path: Path) -> None:
    (verdict,) = await outcome(spf_gateway(tmp_path), "a@explained.example", lookups=spf_lookups())
    assert verdict.reply.text.endswith(
        "Message rejected due to: Not from 198.51.100.7, sorry. Please see "
        "http://www.openspf.net/Why?s=mfrom;id=a@explained.example;ip=198.51.100.7;"
        "r=corp.example"
    )


async def test_policyd_spf_checks_the_helo_name_first_and_refuses_its_fail(
    tmp_path: Path,
) -> None:
    # HELO_reject = Fail: a HELO fail refuses whatever the sender (here one whose SPF passes)
    (verdict,) = await outcome(
        spf_gateway(tmp_path),
        "x@mail.sender.example",
        helo="Bad-Helo.example",
        lookups=spf_lookups(),
    )
    assert verdict.reply == Reply(
        550,
        "5.7.23",
        "<bob@corp.example>: Recipient address rejected: Message rejected due to: SPF fail - "
        "not authorized. Please see http://www.openspf.net/Why?s=helo;id=bad-helo.example;"
        "ip=198.51.100.7;r=corp.example",
    )
    assert verdict.findings[0].detail["identity"] == "helo"


async def test_policyd_spf_checks_only_the_helo_name_for_the_null_sender(
    tmp_path: Path,
) -> None:
    (refused,) = await outcome(
        spf_gateway(tmp_path), "", helo="bad-helo.example", lookups=spf_lookups()
    )
    assert "s=helo;id=bad-helo.example" in refused.reply.text
    (passed,) = await outcome(spf_gateway(tmp_path), "", lookups=spf_lookups())
    assert passed.reply.code == 250
    (note,) = passed.findings
    assert note.code == "POSTFIX_SMTPD_NOT_MODELLED"
    assert "Received-SPF: Pass (sender SPF authorized) identity=helo" in note.reason
    assert "envelope-from=<>" in note.reason


@pytest.mark.parametrize(
    ("sender", "result"),
    [
        ("a@mail.sender.example", "Pass"),
        ("a@soft.example", "Softfail"),
        ("a@nothing.example", "None"),  # no record: the HELO's Pass is what is prepended
        ("a@broken.example", "Permerror"),  # PermError_reject = False
    ],
)
async def test_policyd_spf_only_prepends_received_spf_for_anything_but_fail(
    tmp_path: Path, sender: str, result: str
) -> None:
    (verdict,) = await outcome(spf_gateway(tmp_path), sender, lookups=spf_lookups())
    assert verdict.reply.code == 250
    (note,) = verdict.findings
    assert note.code == "POSTFIX_SMTPD_NOT_MODELLED" and note.action is Action.NONE
    identity = "helo" if result == "None" else "mailfrom"
    shown = "Pass" if result == "None" else result
    assert f"PREPEND (Received-SPF: {shown} (" in note.reason
    assert f"identity={identity}; client-ip=198.51.100.7" in note.reason


async def test_policyd_spf_takes_a_dns_failure_as_temperror_and_does_not_refuse(
    tmp_path: Path,
) -> None:
    # TempError_Defer = False; offline DNS without data is a temperror too, never "no record"
    servfail = {("acme-store.example", "TXT"): DnsAnswer("SERVFAIL")}
    for lookups in (spf_lookups(servfail), Lookups()):
        (verdict,) = await outcome(
            spf_gateway(tmp_path), "orders@acme-store.example", lookups=lookups
        )
        assert verdict.reply.code == 250
        assert "Received-SPF: Temperror (mailfrom)" in verdict.findings[0].reason


@pytest.mark.parametrize("ip", ["127.0.0.9", "::1", "::ffff:127.0.0.2"])
async def test_policyd_spf_skips_local_clients(tmp_path: Path, ip: str) -> None:
    # skip_addresses = 127.0.0.0/8,::ffff:127.0.0.0/104,::1 (nothing before it permits them)
    pipeline = smtpd(
        tmp_path,
        parameters={"mynetworks": "192.0.2.0/24"},
        restrictions={"recipient": [POLICYD_SPF]},
    )
    (verdict,) = await outcome(pipeline, "orders@acme-store.example", ip=ip, lookups=spf_lookups())
    assert verdict.reply.code == 250
    assert "X-Comment: SPF check N/A for local connections" in verdict.findings[0].reason


async def test_a_declared_size_over_message_size_limit_is_refused_at_mail(tmp_path: Path) -> None:
    pipeline = smtpd(tmp_path, parameters={"message_size_limit": "1000"})
    verdict = await tx(pipeline).mail("a@sender.example", 1001)
    assert verdict is not None and verdict.stage is Stage.MAIL
    # observed (notes/postfix-import-notes.md)
    assert verdict.reply == Reply(552, "5.3.4", "Message size exceeds fixed limit")


async def test_data_restrictions_answer_the_data_command_before_the_message(
    tmp_path: Path,
) -> None:
    pipeline = smtpd(
        tmp_path, restrictions={"data": [{"restriction": "reject", "source": "main.cf:30"}]}
    )
    transaction = tx(pipeline)
    assert await transaction.mail("a@sender.example") is None
    assert await transaction.rcpt("bob@corp.example") is None
    (verdict,) = await transaction.data_command()
    assert verdict.stage is Stage.DATA
    assert verdict.reply == Reply(554, "5.7.1", "<DATA>: Data command rejected: Access denied")
    assert verdict.findings[0].detail["postfix_stage"] == "data"
    assert verdict.findings[0].reason == (
        "Nothing in smtpd_data_restrictions decided before its reject, so Postfix refuses it "
        "at the DATA command."
    )


async def test_a_data_restriction_warning_is_kept_for_the_end_of_data_verdict(
    tmp_path: Path,
) -> None:
    warn = {"restriction": "warn_if_reject", "source": "main.cf:30"}
    reject = {"restriction": "reject", "source": "main.cf:30"}
    pipeline = smtpd(tmp_path, restrictions={"data": [warn, reject]})
    transaction = tx(pipeline)
    assert await transaction.mail("a@sender.example") is None
    assert await transaction.rcpt("bob@corp.example") is None
    assert await transaction.data_command() == []
    (verdict,) = await transaction.data(MESSAGE)
    assert verdict.reply.code == 250
    assert [f.detail["postfix_stage"] for f in verdict.findings] == ["data"]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"parameters": {"smtpd_bogus": "x"}}, "unknown or unsupported Postfix parameter"),
        ({"restrictions": {"client": ["reject_unlisted_recipient"]}}, "not evaluated"),
        (
            {"restrictions": {"sender": [{"restriction": "check_sender_access", "table": "no"}]}},
            "unknown table",
        ),
        ({"parameters": {"reject_code": "five"}}, "must be a number"),
    ],
)
def test_what_the_kind_cannot_evaluate_is_a_located_compile_error(
    tmp_path: Path, spec: dict[str, Any], message: str
) -> None:
    with pytest.raises(ProfileError, match=message):
        smtpd(tmp_path, **spec)


def test_the_importers_contract_lists_what_the_kind_evaluates() -> None:
    assert {"check_sender_access", "reject_unauth_destination", "reject_rbl_client"} <= (
        SUPPORTED_RESTRICTIONS
    )
    assert "reject_unknown_reverse_client_hostname" not in SUPPORTED_RESTRICTIONS
    assert {"smtpd_delay_reject", "mynetworks", "default_rbl_reply"} <= SUPPORTED_PARAMETERS
    assert Action.REJECT.refuses
