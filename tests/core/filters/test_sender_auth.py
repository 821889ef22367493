"""The sender_auth filter: a message must pass SPF or DKIM (either will do), read from the SPF and
DKIM findings before it; a check that could not be judged leaves the rule unjudged, never a
refusal.

The first tests run real spf and dkim filters over the demo DNS fixture (profiles/dns/demo.zone);
the rest hand the filter the findings it reads, for the cases a fixture cannot stage."""

from __future__ import annotations

import textwrap
from pathlib import Path

import dkim
import pytest

from sinkd.core.engine import Pipeline, compile_profile
from sinkd.core.filters import MessageContext
from sinkd.core.filters.sender_auth import SenderAuthFilter, SenderAuthSpec
from sinkd.core.message import parse
from sinkd.core.model import (
    Action,
    Category,
    ClientIdentity,
    Disposition,
    Envelope,
    Finding,
    Reply,
    Stage,
    Unjudged,
    Verdict,
)
from sinkd.core.ports import Lookups
from sinkd.core.profiles import ProfileSet, builtin_profiles_dir
from sinkd.core.schema import CompileContext
from sinkd.lookups.dns import FixtureResolver
from tests.support import judging

DEMO = builtin_profiles_dir() / "dns"
FIXTURE = Lookups(resolver=FixtureResolver([DEMO / "demo.zone"]))
KEY = (DEMO / "demo-dkim-private.pem").read_bytes()
SHOP_SERVER = "192.0.2.25"  # in shop.example's SPF (ip4:192.0.2.0/24)
ELSEWHERE = "203.0.113.5"  # in nobody's SPF

PROFILE = """\
schema: sinkd.profile/v1
id: {id}
title: Test profile
models:
  - {{what: "a test", source: "the test suite"}}
filters:
  - kind: spf
    name: spf
    identities: [mail_from]
    on: {{fail: {{action: none}}}}
  - kind: dkim
    name: dkim
  - kind: sender_auth
    name: spf-or-dkim
    on:
      fail: {{action: reject, reply: "550 5.7.26 ${{spf_domain}} is unauthenticated"}}
"""


# Not tests.support.judging.compile_yaml: PROFILE is a whole profile (no shared HEAD) whose {id}
# is filled in here.
def compile_yaml(tmp_path: Path, text: str = PROFILE) -> Pipeline:
    path = tmp_path / "test.yaml"
    path.write_text(textwrap.dedent(text).format(id="test"), encoding="utf-8")
    return compile_profile(ProfileSet([tmp_path]).resolve(str(path)))


def message(from_: str = "news@shop.example") -> bytes:
    return (
        f"From: {from_}\r\nTo: bob@corp.example\r\nSubject: Your order\r\n"
        "Date: Mon, 1 Jan 2024 10:00:00 +0000\r\nMessage-ID: <o1@shop.example>\r\n\r\n"
        "Thank you for your order.\r\n"
    ).encode()


def signed(raw: bytes, domain: str = "shop.example") -> bytes:
    header = dkim.sign(raw, b"mail", domain.encode(), KEY, canonicalize=(b"relaxed", b"relaxed"))
    assert isinstance(header, bytes)
    return header + raw


async def judge(pipeline: Pipeline, raw: bytes, *, client_ip: str, mail_from: str) -> Verdict:
    return await judging.judge(
        pipeline, raw, client_ip=client_ip, mail_from=mail_from, lookups=FIXTURE
    )


def the(verdict: Verdict) -> Finding:
    [finding] = [f for f in verdict.findings if f.code.startswith("SENDER_AUTH_")]
    return finding


# --- with real SPF and DKIM over the demo fixture ---------------------------------------------


async def test_spf_pass_alone_authenticates_the_message(tmp_path: Path) -> None:
    verdict = await judge(
        compile_yaml(tmp_path), message(), client_ip=SHOP_SERVER, mail_from="news@shop.example"
    )
    assert verdict.codes == ["SPF_PASS", "DKIM_NONE", "SENDER_AUTH_PASS"]
    finding = the(verdict)
    assert finding.action is Action.NONE
    assert finding.reason == "The message is authenticated: it passes SPF for shop.example."
    assert verdict.disposition is Disposition.INBOX


async def test_dkim_pass_alone_authenticates_the_message_without_alignment(
    tmp_path: Path,
) -> None:
    # SPF softfails for softfail.example, but shop.example's valid signature is enough: the
    # rule asks for SPF or DKIM, not for alignment with the From domain (DMARC's business).
    raw = signed(message(from_="news@softfail.example"))
    verdict = await judge(
        compile_yaml(tmp_path), raw, client_ip=ELSEWHERE, mail_from="news@softfail.example"
    )
    assert verdict.codes == ["SPF_SOFTFAIL", "DKIM_PASS", "SENDER_AUTH_PASS"]
    assert the(verdict).reason == ("The message is authenticated: it passes DKIM for shop.example.")
    assert verdict.disposition is Disposition.INBOX


async def test_spf_softfail_and_no_signature_is_refused_at_end_of_data(tmp_path: Path) -> None:
    verdict = await judge(
        compile_yaml(tmp_path),
        message(from_="news@softfail.example"),
        client_ip=ELSEWHERE,
        mail_from="news@softfail.example",
    )
    finding = the(verdict)
    assert finding.code == "SENDER_AUTH_FAIL"
    assert finding.decided
    assert finding.stage is Stage.DATA
    assert finding.category is Category.AUTHENTICATION
    assert finding.reason == (
        "The message is not authenticated: SPF for softfail.example gives softfail with the IP "
        "203.0.113.5 and the message carries no DKIM signature. Receivers such as Gmail require "
        "every sender to pass SPF or DKIM."
    )
    assert verdict.disposition is Disposition.REJECTED
    assert verdict.stage is Stage.DATA
    assert verdict.reply == Reply(550, "5.7.26", "softfail.example is unauthenticated")


@pytest.mark.parametrize(
    ("client_ip", "mail_from", "spf_code"),
    [
        (ELSEWHERE, "news@shop.example", "SPF_FAIL"),  # -all, recorded only by this profile
        (ELSEWHERE, "news@nospf.example", "SPF_NONE"),
        (ELSEWHERE, "news@twospf.example", "SPF_PERMERROR"),
        (ELSEWHERE, "news@news.example", "SPF_SOFTFAIL"),
    ],
)
async def test_no_spf_pass_and_no_signature_is_refused(
    tmp_path: Path, client_ip: str, mail_from: str, spf_code: str
) -> None:
    domain = mail_from.partition("@")[2]
    verdict = await judge(
        compile_yaml(tmp_path), message(from_=mail_from), client_ip=client_ip, mail_from=mail_from
    )
    assert verdict.codes == [spf_code, "DKIM_NONE", "SENDER_AUTH_FAIL"]
    assert verdict.reply == Reply(550, "5.7.26", f"{domain} is unauthenticated")
    assert the(verdict).detail["spf"] == [
        {"code": spf_code, "result": spf_code[4:].lower(), "domain": domain, "unjudged": None}
    ]


async def test_a_signature_that_no_longer_verifies_does_not_authenticate(tmp_path: Path) -> None:
    raw = signed(message(from_="news@nospf.example")).replace(b"Thank you", b"Thanks you")
    verdict = await judge(
        compile_yaml(tmp_path), raw, client_ip=ELSEWHERE, mail_from="news@nospf.example"
    )
    assert verdict.codes == ["SPF_NONE", "DKIM_FAIL", "SENDER_AUTH_FAIL"]
    assert "no DKIM signature passes (fail)" in the(verdict).reason
    assert verdict.disposition is Disposition.REJECTED


async def test_by_default_every_result_is_recorded_only(tmp_path: Path) -> None:
    text = PROFILE.replace(
        '    on:\n      fail: {{action: reject, reply: "550 5.7.26 ${{spf_domain}} is '
        'unauthenticated"}}\n',
        "",
    )
    assert text != PROFILE
    verdict = await judge(
        compile_yaml(tmp_path, text),
        message(from_="news@nospf.example"),
        client_ip=ELSEWHERE,
        mail_from="news@nospf.example",
    )
    assert the(verdict).code == "SENDER_AUTH_FAIL"
    assert the(verdict).action is Action.NONE
    assert verdict.disposition is Disposition.INBOX


def test_a_reply_not_in_the_catalogue_is_a_located_error(tmp_path: Path) -> None:
    text = PROFILE.replace('"550 5.7.26 ${{spf_domain}} is unauthenticated"', "gmail.nope")
    with pytest.raises(Exception, match=r"unknown reply 'gmail\.nope'"):
        compile_yaml(tmp_path, text)


# --- with the findings handed over -----------------------------------------------------------

ENVELOPE = Envelope(
    ClientIdentity(ip=ELSEWHERE, helo="mx.shop.example"), "news@shop.example", ("bob@corp.example",)
)
NULL_SENDER = Envelope(ClientIdentity(ip=ELSEWHERE, helo="mx.shop.example"), "", ("b@c.example",))


def spf(
    result: str,
    *,
    identity: str = "mail_from",
    unjudged: Unjudged | None = None,
    names: tuple[str, ...] = (),
) -> Finding:
    prefix = "SPF_HELO_" if identity == "helo" else "SPF_"
    detail: dict[str, object] = {"identity": identity, "domain": "shop.example", "result": result}
    if names:
        detail["dns_names"] = list(names)
    return Finding(
        code=prefix + result.upper(),
        filter="spf",
        category=Category.AUTHENTICATION,
        action=Action.NONE,
        reason="",
        stage=Stage.MAIL,
        detail=detail,
        unjudged=unjudged,
    )


def dkim_finding(
    result: str, *, unjudged: Unjudged | None = None, names: tuple[str, ...] = ()
) -> Finding:
    detail: dict[str, object] = {"result": result, "domain": "shop.example"}
    if names:
        detail["dns_names"] = list(names)
    return Finding(
        code=f"DKIM_{result.upper()}",
        filter="dkim",
        category=Category.AUTHENTICATION,
        action=Action.NONE,
        reason="",
        detail=detail,
        unjudged=unjudged,
    )


def error(kind: str) -> Finding:
    return Finding(
        code=f"{kind}_ERROR",
        filter=kind.lower(),
        category=Category.AUTHENTICATION,
        action=Action.NONE,
        reason="",
        detail={"error": "ValueError: boom"},
        unjudged=Unjudged.ERROR,
    )


async def run(*earlier: Finding, envelope: Envelope = ENVELOPE, **on: object) -> Finding:
    spec = SenderAuthSpec.model_validate(
        {"kind": "sender_auth", "name": "spf-or-dkim", "on": on or {"fail": {"action": "reject"}}}
    )
    flt = SenderAuthFilter(spec, CompileContext(lists={}, replies=ProfileSet().catalogue))
    ctx = MessageContext(envelope, parse(message()), Lookups(), tuple(earlier))
    [finding] = await flt.check_message(ctx)
    return finding


async def test_offline_dns_without_data_leaves_the_rule_unjudged_not_refused() -> None:
    finding = await run(
        spf("none", unjudged=Unjudged.NO_DNS_DATA, names=("shop.example",)),
        dkim_finding("none"),
    )
    assert finding.code == "SENDER_AUTH_UNJUDGED"
    assert finding.action is Action.NONE
    assert finding.reply is None
    assert finding.unjudged is Unjudged.NO_DNS_DATA
    assert finding.detail["dns_names"] == ["shop.example"]
    assert finding.detail["not_judged"] == "SPF"
    assert finding.reason.startswith(
        "The rule that a message must pass SPF or DKIM could not be judged: sinkd's DNS is "
        "offline and no fixture has data for shop.example."
    )
    assert "shop.example" in finding.reason
    assert "--dns-zone FILE" in finding.reason
    assert "--dns live" in finding.reason


async def test_the_dns_names_of_every_unjudged_input_are_listed_once() -> None:
    finding = await run(
        spf("none", unjudged=Unjudged.NO_DNS_DATA, names=("shop.example",)),
        dkim_finding(
            "temperror", unjudged=Unjudged.NO_DNS_DATA, names=("mail._domainkey.x", "shop.example")
        ),
    )
    assert finding.detail["dns_names"] == ["shop.example", "mail._domainkey.x"]
    assert finding.detail["not_judged"] == "DKIM and SPF"


async def test_an_unanswered_lookup_makes_the_rule_unavailable_whatever_else_lacks_data() -> None:
    finding = await run(
        spf("temperror", unjudged=Unjudged.UNAVAILABLE, names=("shop.example",)),
        dkim_finding("none", unjudged=Unjudged.NO_DNS_DATA),
    )
    assert finding.unjudged is Unjudged.UNAVAILABLE
    assert finding.action is Action.NONE
    assert "did not answer" in finding.reason


async def test_a_dkim_filter_that_raised_leaves_the_rule_unjudged_as_an_error() -> None:
    finding = await run(spf("softfail"), error("DKIM"))
    assert finding.code == "SENDER_AUTH_UNJUDGED"
    assert finding.unjudged is Unjudged.ERROR
    assert finding.action is Action.NONE
    assert finding.detail["dkim"] == [
        {"code": "DKIM_ERROR", "result": "error", "domain": None, "unjudged": "error"}
    ]


async def test_a_pass_is_a_pass_even_when_the_other_check_could_not_be_judged() -> None:
    finding = await run(
        spf("none", unjudged=Unjudged.NO_DNS_DATA, names=("shop.example",)), dkim_finding("pass")
    )
    assert finding.code == "SENDER_AUTH_PASS"
    assert finding.unjudged is None


async def test_an_unjudged_pass_does_not_count_as_a_pass() -> None:
    finding = await run(spf("pass", unjudged=Unjudged.UNAVAILABLE), dkim_finding("none"))
    assert finding.code == "SENDER_AUTH_UNJUDGED"


async def test_a_temporary_dns_error_is_its_own_result_not_a_refusal() -> None:
    finding = await run(spf("temperror"), dkim_finding("none"))
    assert finding.code == "SENDER_AUTH_TEMPERROR"
    assert finding.action is Action.NONE
    assert finding.reason.endswith("may pass when it tries again.")


async def test_a_temporary_dns_error_defers_when_the_profile_says_so() -> None:
    finding = await run(
        spf("softfail"), dkim_finding("temperror"), temperror={"action": "tempfail"}
    )
    assert finding.code == "SENDER_AUTH_TEMPERROR"
    assert finding.action is Action.TEMPFAIL
    assert finding.reply == Reply(451, "4.7.1", "Try again later")


@pytest.mark.parametrize(
    ("earlier", "missing"),
    [((), "SPF and DKIM"), ((dkim_finding("none"),), "SPF"), ((spf("fail"),), "DKIM")],
)
async def test_without_an_spf_or_dkim_check_before_it_the_rule_only_records(
    earlier: tuple[Finding, ...], missing: str
) -> None:
    finding = await run(*earlier)
    assert finding.code == "SENDER_AUTH_NONE"
    assert finding.action is Action.NONE
    assert finding.reason.startswith(f"No {missing} check ran before this rule")


async def test_the_helo_result_counts_only_for_the_null_sender() -> None:
    helo_pass = spf("pass", identity="helo")
    refused = await run(spf("fail"), helo_pass, dkim_finding("none"))
    assert refused.code == "SENDER_AUTH_FAIL"
    # RFC 7208 §2.4: a null sender's MAIL FROM identity is postmaster@<HELO>.
    bounce = await run(helo_pass, dkim_finding("none"), envelope=NULL_SENDER)
    assert bounce.code == "SENDER_AUTH_PASS"


async def test_a_refusal_uses_generic_policy_without_a_reply() -> None:
    finding = await run(spf("fail"), dkim_finding("none"))
    assert finding.action is Action.REJECT
    assert finding.reply is not None
    assert finding.reply.code == 550


async def test_the_gmail_reply_from_the_catalogue() -> None:
    finding = await run(
        spf("neutral"),
        dkim_finding("fail"),
        fail={"action": "reject", "reply": "gmail.unauthenticated"},
    )
    assert finding.reply is not None
    assert (finding.reply.code, finding.reply.enhanced) == (550, "5.7.26")
    assert "authenticate with either SPF or DKIM" in finding.reply.text
