"""The envelope filter: allow and block lists on client IP, HELO, senders, recipients and From."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sinkd.core.engine import Pipeline
from sinkd.core.model import Action, Disposition, Reply, Stage, Verdict, VerdictAction
from tests.support import judging
from tests.support.judging import compile_yaml

GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"


def one_rule(tmp_path: Path, rule: str, *, reply_stage: str = "rcpt") -> Pipeline:
    return compile_yaml(
        tmp_path,
        f"""\
        smtp: {{envelope_reply_stage: {reply_stage}}}
        filters:
          - kind: envelope
            name: access
            rules:
              - {rule}
        """,
    )


def message(
    subject: str = "Lunch on Friday",
    body: str = "See you at noon by the fountain.",
    *,
    sender: str = "alice@sender.example",
) -> bytes:
    head = f"From: Alice <{sender}>\r\nTo: bob@corp.example\r\nSubject: {subject}\r\n"
    return (head + "\r\n" + body + "\r\n").encode()


async def deliver(pipeline: Pipeline, raw: bytes | None = None, **kwargs: Any) -> list[Verdict]:
    """Every verdict of one transaction from HELO ``mail.sender.example``, of ``message()``
    unless ``raw`` is given."""
    kwargs.setdefault("helo", "mail.sender.example")
    return await judging.deliver(pipeline, raw if raw is not None else message(), **kwargs)


async def judge(pipeline: Pipeline, raw: bytes | None = None, **kwargs: Any) -> Verdict:
    kwargs.setdefault("helo", "mail.sender.example")
    return await judging.judge(pipeline, raw if raw is not None else message(), **kwargs)


# --- client IP ------------------------------------------------------------------------------

IP_RULE = (
    '{id: BLOCK_IP, match: client_ip, entries: ["192.0.2.0/24", "198.51.100.7", '
    '"2001:db8::/32", "2001:db8:ffff::1"], action: reject}'
)


@pytest.mark.parametrize(
    "client_ip", ["192.0.2.1", "192.0.2.255", "198.51.100.7", "2001:db8:1::5", "2001:db8::1"]
)
async def test_client_ip_in_a_blocked_cidr_or_host_is_refused_at_rcpt(
    tmp_path: Path, client_ip: str
) -> None:
    verdict = await judge(one_rule(tmp_path, IP_RULE), client_ip=client_ip)
    assert verdict.verdict is VerdictAction.REJECT
    assert verdict.disposition is Disposition.REJECTED
    assert verdict.stage is Stage.RCPT
    assert verdict.codes == ["ENVELOPE_BLOCK_IP"]
    assert verdict.reply == Reply(
        554, "5.7.1", f"<unknown[{client_ip}]>: Client host rejected: Access denied"
    )
    finding = verdict.findings[0]
    assert finding.decided
    assert finding.stage is Stage.CONNECT
    assert finding.detail["value"] == client_ip


@pytest.mark.parametrize(
    "client_ip", ["192.0.3.1", "198.51.100.8", "2001:db9::1", "2001:db7:ffff::1", "203.0.113.5"]
)
async def test_client_ip_outside_every_blocked_range_is_accepted(
    tmp_path: Path, client_ip: str
) -> None:
    verdict = await judge(one_rule(tmp_path, IP_RULE), client_ip=client_ip)
    assert verdict.verdict is VerdictAction.ACCEPT
    assert verdict.stage is Stage.DATA
    assert verdict.findings == ()
    assert verdict.reply == Reply(250, "2.0.0", "Ok: queued as id1")


async def test_client_ip_block_is_answered_at_mail_when_the_profile_says_so(
    tmp_path: Path,
) -> None:
    pipeline = one_rule(tmp_path, IP_RULE, reply_stage="mail")
    verdict = await judge(pipeline, client_ip="192.0.2.9")
    assert verdict.stage is Stage.MAIL
    assert verdict.reply.code == 554
    assert verdict.envelope.rcpt_to == ()


# --- HELO -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("helo", "blocked"),
    [
        ("host-12.dynamic.example", True),
        ("HOST-12.Dynamic.Example", True),
        ("a.b.dynamic.example", True),
        ("dynamic.example", False),  # the glob needs a label before the dot
        ("host-12.dynamic.example.net", False),
        ("localhost", True),  # a single-label exact entry
        ("localhost.corp.example", False),
        ("mail.sender.example", False),
    ],
)
async def test_helo_globs_and_exact_names_match_whole_names(
    tmp_path: Path, helo: str, blocked: bool
) -> None:
    rule = (
        '{id: BAD_HELO, match: helo, entries: ["*.dynamic.example", "localhost"], action: reject}'
    )
    verdict = await judge(one_rule(tmp_path, rule), helo=helo)
    if blocked:
        assert verdict.codes == ["ENVELOPE_BAD_HELO"]
        assert verdict.reply == Reply(
            554, "5.7.1", f"<{helo}>: Helo command rejected: Access denied"
        )
    else:
        assert verdict.verdict is VerdictAction.ACCEPT
        assert verdict.codes == []


# --- addresses ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entry", "mail_from", "blocked"),
    [
        ("bad@spam.example", "bad@spam.example", True),
        ("bad@spam.example", "BAD@Spam.Example", True),
        ("bad@spam.example", "good@spam.example", False),
        ("bad@spam.example", "bad@spam.example.org", False),
        ("*@*.bulk.example", "x@mail.bulk.example", True),
        ("*@*.bulk.example", "x@bulk.example", False),
        ("news-*@shop.example", "news-42@shop.example", True),
        ("news-*@shop.example", "info@shop.example", False),
        ("postmaster@", "postmaster@anywhere.example", True),
        ("postmaster@", "POSTMASTER@other.example", True),
        ("postmaster@", "post@anywhere.example", False),
        ("spam.example", "a@spam.example", True),
        ("spam.example", "a@deep.sub.spam.example", True),
        ("spam.example", "a@notspam.example", False),
        ("spam.example", "spam.example@other.example", False),
        ("<>", "", True),
        ("<>", "a@b.example", False),
    ],
)
async def test_sender_entries_match_exact_glob_local_part_domain_and_null_sender(
    tmp_path: Path, entry: str, mail_from: str, blocked: bool
) -> None:
    rule = f'{{id: BLOCK_SENDER, match: mail_from, entries: ["{entry}"], action: reject}}'
    verdict = await judge(one_rule(tmp_path, rule), mail_from=mail_from)
    if blocked:
        assert verdict.stage is Stage.RCPT
        assert verdict.codes == ["ENVELOPE_BLOCK_SENDER"]
        assert verdict.reply == Reply(
            554, "5.7.1", f"<{mail_from}>: Sender address rejected: Access denied"
        )
        assert verdict.findings[0].stage is Stage.MAIL
    else:
        assert verdict.verdict is VerdictAction.ACCEPT
        assert verdict.codes == []


async def test_null_sender_reason_names_it_as_angle_brackets(tmp_path: Path) -> None:
    verdict = await judge(
        one_rule(tmp_path, '{match: mail_from, entries: ["<>"], action: reject}'), mail_from=""
    )
    assert verdict.codes == ["ENVELOPE_MAIL_FROM_BLOCKED"]
    assert "The envelope sender <> is on the organisation's block list" in (
        verdict.findings[0].reason
    )


async def test_sender_domain_rule_matches_the_domain_and_its_subdomains(tmp_path: Path) -> None:
    pipeline = one_rule(
        tmp_path, '{match: mail_from_domain, entries: ["spam.example"], action: reject}'
    )
    hit = await judge(pipeline, mail_from="x@eu.spam.example")
    miss = await judge(pipeline, mail_from="x@spam.example.org")
    assert hit.codes == ["ENVELOPE_MAIL_FROM_DOMAIN_BLOCKED"]
    assert hit.verdict is VerdictAction.REJECT
    assert miss.codes == []


async def test_blocklisted_sender_is_refused_at_mail_when_the_profile_answers_there(
    tmp_path: Path,
) -> None:
    rule = "{id: BLOCK_SENDER, match: mail_from, entries: [bad@spam.example], action: reject}"
    verdict = await judge(
        one_rule(tmp_path, rule, reply_stage="mail"), mail_from="bad@spam.example"
    )
    assert verdict.stage is Stage.MAIL
    assert verdict.reply.code == 554


# --- recipients -----------------------------------------------------------------------------


async def test_blocked_recipient_is_refused_at_rcpt_and_the_others_still_get_the_message(
    tmp_path: Path,
) -> None:
    rule = "{id: NO_CEO, match: rcpt_to, entries: [ceo@corp.example], action: reject}"
    verdicts = await deliver(
        one_rule(tmp_path, rule), rcpts=["ceo@corp.example", "bob@corp.example"]
    )
    refused, delivered = verdicts
    assert refused.stage is Stage.RCPT
    assert refused.codes == ["ENVELOPE_NO_CEO"]
    assert refused.envelope.rcpt_to == ("ceo@corp.example",)
    assert refused.reply == Reply(
        554, "5.7.1", "<ceo@corp.example>: Recipient address rejected: Access denied"
    )
    assert refused.findings[0].stage is Stage.RCPT
    assert delivered.verdict is VerdictAction.ACCEPT
    assert delivered.envelope.rcpt_to == ("bob@corp.example",)
    assert delivered.codes == []


async def test_watched_recipient_is_quarantined_at_data_not_refused_at_rcpt(
    tmp_path: Path,
) -> None:
    rule = "{match: rcpt_to, entries: [corp.example], action: quarantine}"
    verdict = await judge(one_rule(tmp_path, rule), rcpts=["bob@hr.corp.example"])
    assert verdict.stage is Stage.DATA
    assert verdict.verdict is VerdictAction.QUARANTINE
    assert verdict.disposition is Disposition.QUARANTINED
    assert verdict.codes == ["ENVELOPE_RCPT_TO_BLOCKED"]
    assert verdict.reply.code == 250


# --- header From ----------------------------------------------------------------------------


async def test_header_from_rule_is_judged_at_data_on_the_from_header_not_the_envelope(
    tmp_path: Path,
) -> None:
    rule = "{id: WATCH_FROM, match: header_from, entries: [boss@fraud.example], action: quarantine}"
    pipeline = one_rule(tmp_path, rule)
    hit = await judge(
        pipeline, message(sender="Boss@Fraud.Example"), mail_from="bounce@esp.example"
    )
    miss = await judge(pipeline, message(), mail_from="boss@fraud.example")
    assert hit.verdict is VerdictAction.QUARANTINE
    assert hit.stage is Stage.DATA
    assert hit.codes == ["ENVELOPE_WATCH_FROM"]
    assert hit.findings[0].stage is Stage.DATA
    assert hit.findings[0].detail == {
        "rule": "WATCH_FROM",
        "field": "header_from",
        "value": "Boss@Fraud.Example",
    }
    assert miss.verdict is VerdictAction.ACCEPT
    assert miss.codes == []


async def test_header_from_domain_rule_rejects_with_the_content_reply(tmp_path: Path) -> None:
    rule = "{match: header_from_domain, entries: [fraud.example], action: reject}"
    verdict = await judge(one_rule(tmp_path, rule), message(sender="x@mail.fraud.example"))
    assert verdict.stage is Stage.DATA
    assert verdict.codes == ["ENVELOPE_HEADER_FROM_DOMAIN_BLOCKED"]
    assert verdict.reply.code == 550
    assert verdict.reply.enhanced == "5.7.1"


# --- allow lists ----------------------------------------------------------------------------

ALLOW_PROFILE = """\
scoring:
  thresholds: {tag: 2.0, reject: 5.0}
lists:
  partners: {kind: address_glob, entries: ["*@partner.example"]}
filters:
  - kind: envelope
    name: access
    rules:
      - {id: ALLOW_PARTNER, match: header_from, entries: "@partners", action: allow,
         skip: [score, content]}
  - kind: content
    name: words
    gtube: {action: reject}
    rules:
      - {id: TRIGGER, words: [casino, lottery], score: 3.0, per_match: true}
"""


async def test_allowlisted_from_skips_content_filters_and_score_thresholds(
    tmp_path: Path,
) -> None:
    pipeline = compile_yaml(tmp_path, ALLOW_PROFILE)
    raw = message("Casino lottery", f"casino\r\n{GTUBE}", sender="ann@partner.example")
    verdict = await judge(pipeline, raw)
    assert verdict.verdict is VerdictAction.ACCEPT
    assert verdict.disposition is Disposition.INBOX
    assert verdict.codes == ["ENVELOPE_ALLOW_PARTNER"]
    allow = verdict.findings[0]
    assert allow.action is Action.ALLOW
    assert allow.skip == frozenset({"score", "content"})
    assert "these checks are skipped: score, content" in allow.reason


async def test_sender_not_on_the_allow_list_gets_content_filters_and_thresholds(
    tmp_path: Path,
) -> None:
    pipeline = compile_yaml(tmp_path, ALLOW_PROFILE)
    verdict = await judge(pipeline, message("Casino lottery", "nothing else"))
    assert verdict.codes == ["CONTENT_TRIGGER", "SCORE_REJECT"]
    assert verdict.score == 6.0
    assert verdict.reply == Reply(550, "5.7.1", "Message rejected as spam (score 6.0)")


async def test_allow_only_skipping_content_still_applies_score_thresholds(
    tmp_path: Path,
) -> None:
    pipeline = compile_yaml(
        tmp_path,
        """\
        scoring:
          thresholds: {tag: 1.0}
        filters:
          - kind: envelope
            name: access
            rules:
              - {match: client_ip, entries: [203.0.113.0/24], action: score, score: 1.5}
              - {match: header_from, entries: [partner.example], action: allow, skip: [content]}
          - kind: content
            name: words
            rules:
              - {id: TRIGGER, words: [casino], score: 50}
        """,
    )
    verdict = await judge(pipeline, message("casino", sender="ann@partner.example"))
    assert verdict.codes == [
        "ENVELOPE_CLIENT_IP_LISTED",
        "ENVELOPE_HEADER_FROM_ALLOWED",
        "SCORE_TAG",
    ]
    assert verdict.disposition is Disposition.TAGGED
    assert verdict.score == 1.5


async def test_allow_skipping_envelope_stops_the_remaining_envelope_rules(
    tmp_path: Path,
) -> None:
    pipeline = compile_yaml(
        tmp_path,
        """\
        filters:
          - kind: envelope
            name: access
            rules:
              - {id: OK_IP, match: client_ip, entries: [203.0.113.5], action: allow,
                 skip: [envelope]}
              - {id: BLOCK_ALL, match: mail_from, entries: ["*"], action: reject}
        """,
    )
    allowed = await judge(pipeline, client_ip="203.0.113.5")
    refused = await judge(pipeline, client_ip="203.0.113.6")
    assert allowed.verdict is VerdictAction.ACCEPT
    assert allowed.codes == ["ENVELOPE_OK_IP"]
    assert refused.verdict is VerdictAction.REJECT
    assert refused.codes == ["ENVELOPE_BLOCK_ALL"]


def test_skip_without_allow_is_a_profile_error(tmp_path: Path) -> None:
    from sinkd.errors import ProfileError

    with pytest.raises(ProfileError, match=r"'skip' is only meaningful with action: allow"):
        one_rule(
            tmp_path, "{match: client_ip, entries: [192.0.2.1], action: reject, skip: [score]}"
        )


# --- tempfail and replies -------------------------------------------------------------------


async def test_tempfail_rule_defers_with_a_4xx_reply(tmp_path: Path) -> None:
    rule = "{id: GREYLIST, match: mail_from, entries: [new.example], action: tempfail}"
    verdict = await judge(one_rule(tmp_path, rule), mail_from="a@new.example")
    assert verdict.disposition is Disposition.DEFERRED
    assert verdict.verdict is VerdictAction.REJECT
    assert verdict.stage is Stage.RCPT
    assert verdict.reply == Reply(451, "4.7.1", "Try again later")
    assert verdict.reply.is_temporary


async def test_rule_reply_may_be_a_literal_with_template_variables(tmp_path: Path) -> None:
    rule = (
        "{match: client_ip, entries: [192.0.2.0/24], action: reject, "
        'reply: "550 5.7.606 Access denied, banned sending IP [${client_ip}]."}'
    )
    verdict = await judge(one_rule(tmp_path, rule), client_ip="192.0.2.77")
    assert verdict.reply == Reply(550, "5.7.606", "Access denied, banned sending IP [192.0.2.77].")


async def test_describe_replaces_the_generated_reason_and_source_lands_in_detail(
    tmp_path: Path,
) -> None:
    rule = (
        "{match: client_ip, entries: [192.0.2.0/24], action: reject, "
        'describe: "Known bad network.", source: "RFC 5737"}'
    )
    verdict = await judge(one_rule(tmp_path, rule), client_ip="192.0.2.77")
    finding = verdict.findings[0]
    assert finding.reason == "Known bad network."
    assert finding.detail["source"] == "RFC 5737"


async def test_score_rule_adds_its_score_without_forcing_a_disposition(tmp_path: Path) -> None:
    rule = "{match: helo, entries: [sender.example], action: score, score: 2.5}"
    verdict = await judge(one_rule(tmp_path, rule))
    assert verdict.codes == ["ENVELOPE_HELO_LISTED"]
    assert verdict.score == 2.5
    assert verdict.verdict is VerdictAction.ACCEPT
