"""The spf filter: RFC 7208 results for MAIL FROM and HELO as findings, outcomes and replies,
and the limits and failure modes of the evaluation underneath (sinkd.core.spf_eval)."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pydantic
import pytest
import spf

import sinkd.core.spf_eval
from sinkd.core.filters import EnvelopeContext
from sinkd.core.filters.spf import SpfFilter, SpfSpec
from sinkd.core.model import (
    Action,
    Category,
    ClientIdentity,
    Envelope,
    Finding,
    Reply,
    Stage,
    Unjudged,
)
from sinkd.core.ports import DnsAnswer, Lookups, RecordType, Resolver
from sinkd.core.profiles import ProfileSet
from sinkd.core.schema import CompileContext
from sinkd.core.spf_eval import check_host
from tests.support.spf import FakeResolver, HangingResolver, resolver_for, zonedata_to_records

CATALOGUE = ProfileSet().catalogue
IP = "203.0.113.7"
HELO = "mail.shop.example"

ZONE: dict[str, Any] = {
    "shop.example": [{"TXT": "v=spf1 ip4:192.0.2.0/24 -all"}],
    "soft.example": [{"TXT": "v=spf1 ip4:192.0.2.0/24 ~all"}],
    "neutral.example": [{"TXT": "v=spf1 ?all"}],
    "nospf.example": [{"TXT": "google-site-verification=abc"}],
    "broken.example": [{"TXT": "v=spf1 ip4:192.0.2.0/33 -all"}],
    "slow.example": ["TIMEOUT"],
    "passes.example": [{"TXT": f"v=spf1 ip4:{IP} -all"}],
    "expl.example": [{"TXT": "v=spf1 -all exp=why.expl.example"}],
    "why.expl.example": [{"TXT": "%{i} may not send for %{d}"}],
    "mail.shop.example": [{"TXT": "v=spf1 a -all"}, {"A": IP}],
    "bad-helo.example": [{"TXT": "v=spf1 -all"}],
    "v6.example": [{"TXT": "v=spf1 ip6:2001:db8:1::/48 a -all"}, {"AAAA": "2001:db8:2::25"}],
}


def spf_filter(**spec: Any) -> SpfFilter:
    fields: dict[str, Any] = {"kind": "spf", "name": "spf"} | spec
    return SpfFilter(SpfSpec(**fields), CompileContext(lists={}, replies=CATALOGUE))


def envelope(mail_from: str | None, *, ip: str = IP, helo: str | None = HELO) -> Envelope:
    return Envelope(ClientIdentity(ip=ip, helo=helo), mail_from)


async def at_mail(flt: SpfFilter, env: Envelope, resolver: Resolver | None = None) -> list[Finding]:
    if resolver is None:
        resolver = resolver_for(ZONE)
    ctx = EnvelopeContext(env, None, Lookups(resolver=resolver))
    return await flt.check_envelope(Stage.MAIL, ctx)


async def mail_from_finding(sender: str, **kwargs: Any) -> Finding:
    (finding,) = await at_mail(spf_filter(identities=["mail_from"]), envelope(sender), **kwargs)
    return finding


def chain(length: int) -> dict[str, Any]:
    """a0 includes a1 ... includes a<length>, whose record passes the client."""
    zone: dict[str, Any] = {
        f"a{i}.example": [{"TXT": f"v=spf1 include:a{i + 1}.example -all"}] for i in range(length)
    }
    zone[f"a{length}.example"] = [{"TXT": f"v=spf1 ip4:{IP} -all"}]
    return zone


# --- results, codes, actions and replies -----------------------------------------------------


async def test_a_fail_is_refused_with_550_5_7_23_and_says_why_in_one_sentence() -> None:
    finding = await mail_from_finding("ann@shop.example")
    assert finding.code == "SPF_FAIL"
    assert finding.action is Action.REJECT
    assert finding.reply == Reply(550, "5.7.23", "SPF validation failed")
    assert finding.reason == (
        "The sending server 203.0.113.7 is not allowed to send mail for shop.example: "
        "its SPF record says fail (-all)."
    )
    assert finding.category is Category.AUTHENTICATION
    assert finding.stage is Stage.MAIL
    assert finding.detail == {
        "identity": "mail_from",
        "sender": "ann@shop.example",
        "domain": "shop.example",
        "result": "fail",
        "mechanism": "-all",
        "explanation": "SPF fail - not authorized",
        "record": "v=spf1 ip4:192.0.2.0/24 -all",
        "lookups": 0,
        "client_ip": IP,
    }


async def test_a_pass_is_recorded_with_no_action_and_the_matching_mechanism() -> None:
    finding = await mail_from_finding("ann@passes.example")
    assert finding.code == "SPF_PASS"
    assert finding.action is Action.NONE
    assert finding.score == 0
    assert finding.reply is None
    assert finding.detail["mechanism"] == f"ip4:{IP}"
    assert finding.reason == (
        f"The sending server {IP} is allowed to send mail for passes.example: "
        f"its SPF record says pass (ip4:{IP})."
    )


@pytest.mark.parametrize(
    ("sender", "code"),
    [
        ("ann@soft.example", "SPF_SOFTFAIL"),
        ("ann@neutral.example", "SPF_NEUTRAL"),
        ("ann@nospf.example", "SPF_NONE"),
        ("ann@nowhere.example", "SPF_NONE"),
        ("ann@broken.example", "SPF_PERMERROR"),
    ],
)
async def test_softfail_neutral_none_and_permerror_are_only_recorded_by_default(
    sender: str, code: str
) -> None:
    finding = await mail_from_finding(sender)
    assert finding.code == code
    assert finding.action is Action.NONE
    assert finding.score == 0
    assert finding.reply is None


async def test_a_dns_timeout_is_a_temperror_deferred_with_451_4_4_3() -> None:
    finding = await mail_from_finding("ann@slow.example")
    assert finding.code == "SPF_TEMPERROR"
    assert finding.action is Action.TEMPFAIL
    assert finding.reply is not None
    assert (finding.reply.code, finding.reply.enhanced) == (451, "4.4.3")
    assert finding.reply.text == "SPF temporary error: DNS TIMEOUT for slow.example TXT"
    assert "try again" in finding.reason


async def test_a_resolver_that_never_answers_is_cut_off_at_the_timeout() -> None:
    hanging = HangingResolver()
    flt = spf_filter(identities=["mail_from"], timeout=0.3)
    started = time.monotonic()
    (finding,) = await at_mail(flt, envelope("ann@shop.example"), hanging)
    assert time.monotonic() - started < 3
    # No answer from DNS in time is sinkd's trouble, not the sender's: not judged, no 451.
    assert finding.code == "SPF_TEMPERROR"
    assert finding.unjudged is Unjudged.UNAVAILABLE
    assert (finding.action, finding.reply) == (Action.NONE, None)
    assert "ran out of its 0.3 s" in finding.detail["explanation"]
    for _ in range(100):
        if hanging.cancelled:
            break
        await asyncio.sleep(0.01)
    assert hanging.asked == hanging.cancelled == 1


async def test_a_profile_outcome_replaces_the_default_and_a_score_implies_action_score() -> None:
    flt = spf_filter(
        identities=["mail_from"],
        on={
            "softfail": {"score": 1.0},
            "fail": {"action": "quarantine"},
            "permerror": {"action": "reject"},
        },
    )
    soft, fail, perm = [
        (await at_mail(flt, envelope(s)))[0]
        for s in ("a@soft.example", "a@shop.example", "a@broken.example")
    ]
    assert (soft.action, soft.score, soft.reply) == (Action.SCORE, 1.0, None)
    assert (fail.action, fail.reply) == (Action.QUARANTINE, None)
    assert perm.action is Action.REJECT
    assert perm.reply is not None
    assert (perm.reply.code, perm.reply.enhanced) == (550, "5.5.2")
    assert perm.reply.text == ("SPF permanent error: Invalid IP4 CIDR length: ip4:192.0.2.0/33")


async def test_a_refusal_whose_result_reply_has_the_wrong_class_uses_the_generic_reply() -> None:
    flt = spf_filter(identities=["mail_from"], on={"fail": {"action": "tempfail"}})
    (finding,) = await at_mail(flt, envelope("ann@shop.example"))
    assert finding.action is Action.TEMPFAIL
    assert finding.reply == Reply(451, "4.7.1", "Try again later")


async def test_the_domains_exp_text_fills_spf_expl_in_the_reply() -> None:
    flt = spf_filter(
        identities=["mail_from"], on={"fail": {"action": "reject", "reply": "spf.rfc7208_fail"}}
    )
    (finding,) = await at_mail(flt, envelope("ann@expl.example"))
    assert finding.reply == Reply(
        550, "5.7.1", f"SPF MAIL FROM check failed: {IP} may not send for expl.example"
    )


def test_the_spec_refuses_unknown_results_keys_and_repeated_identities() -> None:
    with pytest.raises(pydantic.ValidationError):
        SpfSpec.model_validate(
            {"kind": "spf", "name": "spf", "on": {"hardfail": {"action": "reject"}}}
        )
    with pytest.raises(pydantic.ValidationError):
        SpfSpec.model_validate(
            {"kind": "spf", "name": "spf", "on": {"fail": {"action": "reject", "code": 550}}}
        )
    with pytest.raises(pydantic.ValidationError):
        SpfSpec.model_validate({"kind": "spf", "name": "spf", "identities": ["helo", "helo"]})
    with pytest.raises(pydantic.ValidationError):
        SpfSpec.model_validate({"kind": "spf", "name": "spf", "identities": []})
    with pytest.raises(pydantic.ValidationError):
        SpfSpec.model_validate({"kind": "spf", "name": "spf", "strict": True})


# --- identities --------------------------------------------------------------------------------


async def test_both_identities_are_checked_by_default_mail_from_first() -> None:
    findings = await at_mail(spf_filter(), envelope("ann@shop.example"))
    assert [f.code for f in findings] == ["SPF_FAIL", "SPF_HELO_PASS"]
    helo = findings[1]
    assert helo.detail["identity"] == "helo"
    assert helo.detail["domain"] == HELO
    assert helo.detail["sender"] == f"postmaster@{HELO}"
    assert helo.reason == (
        f"The sending server {IP} is allowed to use the name {HELO} it introduced itself with: "
        "its SPF record says pass (a)."
    )


async def test_a_failing_helo_is_refused_under_its_own_code() -> None:
    flt = spf_filter(identities=["helo"])
    (finding,) = await at_mail(flt, envelope("ann@passes.example", helo="bad-helo.example"))
    assert finding.code == "SPF_HELO_FAIL"
    assert finding.action is Action.REJECT
    assert finding.reply == Reply(550, "5.7.23", "SPF validation failed")


@pytest.mark.parametrize("helo", ["[192.0.2.1]", "[IPv6:2001:db8::1]", "192.0.2.1", "localhost"])
async def test_a_helo_that_is_no_domain_name_is_none_without_any_dns_question(helo: str) -> None:
    resolver = resolver_for(ZONE)
    (finding,) = await at_mail(
        spf_filter(identities=["helo"]), envelope("a@b.example", helo=helo), resolver
    )
    assert finding.code == "SPF_HELO_NONE"
    assert finding.action is Action.NONE
    assert "not a domain name" in finding.reason
    assert resolver.questions == []


async def test_a_missing_helo_is_none() -> None:
    (finding,) = await at_mail(spf_filter(identities=["helo"]), envelope("a@b.example", helo=None))
    assert finding.code == "SPF_HELO_NONE"
    assert finding.reason == (
        "The sending server gave no HELO name, so there is no SPF record to check."
    )


async def test_the_null_sender_is_checked_as_postmaster_at_the_helo_once_for_both() -> None:
    resolver = resolver_for(ZONE)
    findings = await at_mail(spf_filter(), envelope("", helo=HELO), resolver)
    assert [f.code for f in findings] == ["SPF_PASS", "SPF_HELO_PASS"]
    assert findings[0].detail["sender"] == f"postmaster@{HELO}"
    assert findings[0].detail["domain"] == HELO
    assert resolver.questions == [(HELO, "TXT"), (HELO, "A")]


async def test_the_null_sender_with_a_failing_helo_fails_the_mail_from_identity() -> None:
    findings = await at_mail(
        spf_filter(identities=["mail_from"]), envelope("", helo="bad-helo.example")
    )
    assert [f.code for f in findings] == ["SPF_FAIL"]


@pytest.mark.parametrize(
    ("ip", "code", "mechanism"),
    [
        ("2001:db8:1::25", "SPF_PASS", "ip6:2001:db8:1::/48"),
        ("2001:db8:2::25", "SPF_PASS", "a"),
        ("2001:db8:3::25", "SPF_FAIL", "-all"),
        ("::ffff:192.0.2.9", "SPF_FAIL", "-all"),
    ],
)
async def test_an_ipv6_client_is_matched_by_ip6_and_aaaa_records(
    ip: str, code: str, mechanism: str
) -> None:
    (finding,) = await at_mail(
        spf_filter(identities=["mail_from"]), envelope("ann@v6.example", ip=ip)
    )
    assert (finding.code, finding.detail["mechanism"]) == (code, mechanism)


async def test_an_ipv4_mapped_client_is_matched_as_ipv4() -> None:
    (finding,) = await at_mail(
        spf_filter(identities=["mail_from"]), envelope("ann@passes.example", ip=f"::ffff:{IP}")
    )
    assert finding.code == "SPF_PASS"


async def test_nothing_is_checked_at_rcpt() -> None:
    resolver = resolver_for(ZONE)
    ctx = EnvelopeContext(
        envelope("ann@shop.example"), "bob@corp.example", Lookups(resolver=resolver)
    )
    assert await spf_filter().check_envelope(Stage.RCPT, ctx) == []
    assert resolver.questions == []


async def test_without_a_resolver_both_identities_are_temperrors() -> None:
    ctx = EnvelopeContext(envelope("ann@shop.example"), None, Lookups(resolver=None))
    findings = await spf_filter().check_envelope(Stage.MAIL, ctx)
    assert [f.code for f in findings] == ["SPF_TEMPERROR", "SPF_HELO_TEMPERROR"]
    assert findings[0].detail["explanation"] == "no DNS resolver is available"


async def test_by_default_dns_knows_no_name_so_both_identities_are_none() -> None:
    # Lookups() without a resolver is offline DNS without fixtures: every name is NXDOMAIN.
    ctx = EnvelopeContext(envelope("ann@shop.example"), None, Lookups())
    findings = await spf_filter().check_envelope(Stage.MAIL, ctx)
    assert [f.code for f in findings] == ["SPF_NONE", "SPF_HELO_NONE"]


# --- RFC 7208 limits ---------------------------------------------------------------------------


async def test_ten_dns_querying_terms_are_allowed_and_the_eleventh_is_a_permerror() -> None:
    ten = await mail_from_finding("ann@a0.example", resolver=resolver_for(chain(10)))
    assert (ten.code, ten.detail["lookups"]) == ("SPF_PASS", 10)
    eleven = await mail_from_finding("ann@a0.example", resolver=resolver_for(chain(11)))
    assert eleven.code == "SPF_PERMERROR"
    assert "Too many DNS lookups" in eleven.detail["explanation"]


async def test_a_third_void_lookup_is_a_permerror() -> None:
    zone = {
        "two.example": [{"TXT": f"v=spf1 a:x.example a:y.example ip4:{IP} -all"}],
        "three.example": [{"TXT": f"v=spf1 a:x.example a:y.example a:z.example ip4:{IP} -all"}],
    }
    two = await mail_from_finding("a@two.example", resolver=resolver_for(zone))
    assert two.code == "SPF_PASS"
    three = await mail_from_finding("a@three.example", resolver=resolver_for(zone))
    assert three.code == "SPF_PERMERROR"
    assert "Void lookup limit of 2 exceeded" in three.detail["explanation"]


async def test_an_include_of_itself_is_a_permerror_and_not_a_loop() -> None:
    zone = {
        "loop.example": [{"TXT": "v=spf1 include:loop.example -all"}],
        "ping.example": [{"TXT": "v=spf1 include:pong.example -all"}],
        "pong.example": [{"TXT": "v=spf1 include:ping.example -all"}],
    }
    direct = await mail_from_finding("a@loop.example", resolver=resolver_for(zone))
    assert direct.code == "SPF_PERMERROR"
    assert "trivial recursion" in direct.detail["explanation"]
    mutual = await mail_from_finding("a@ping.example", resolver=resolver_for(zone))
    assert mutual.code == "SPF_PERMERROR"


async def test_a_long_record_in_several_strings_is_joined_without_separators() -> None:
    filler = " ".join(f"ip4:198.51.100.{n}" for n in range(1, 20))
    zone = {"long.example": [{"TXT": [f"v=spf1 {filler}", f" ip4:{IP}", " -all"]}]}
    resolver = resolver_for(zone)
    finding = await mail_from_finding("a@long.example", resolver=resolver)
    assert len(finding.detail["record"]) > 255
    assert finding.code == "SPF_PASS"
    assert finding.detail["mechanism"] == f"ip4:{IP}"


async def test_two_spf_records_are_a_permerror() -> None:
    zone = {"twice.example": [{"TXT": "v=spf1 -all"}, {"TXT": f"v=spf1 ip4:{IP} -all"}]}
    finding = await mail_from_finding("a@twice.example", resolver=resolver_for(zone))
    assert finding.code == "SPF_PERMERROR"


async def test_more_than_ten_mx_names_are_a_permerror() -> None:
    zone: dict[str, Any] = {
        "mx.example": [{"TXT": "v=spf1 mx -all"}]
        + [{"MX": [10, f"mx{n}.mx.example"]} for n in range(11)]
    }
    finding = await mail_from_finding("a@mx.example", resolver=resolver_for(zone))
    assert finding.code == "SPF_PERMERROR"
    assert "More than 10 MX records" in finding.detail["explanation"]


# --- the evaluation underneath: threads, loops and pyspf's hook --------------------------------


class DelayedResolver:
    """Answers from a zone after a pause, so that checks overlap in time."""

    def __init__(self, zone: dict[str, Any], delay: float) -> None:
        self.inner = resolver_for(zone)
        self.delay = delay

    async def query(self, name: str, rdtype: RecordType) -> DnsAnswer:
        await asyncio.sleep(self.delay)
        return await self.inner.query(name, rdtype)


async def test_concurrent_checks_each_use_their_own_resolver() -> None:
    allow = DelayedResolver({"x.example": [{"TXT": f"v=spf1 ip4:{IP} -all"}]}, 0.05)
    deny = DelayedResolver({"x.example": [{"TXT": "v=spf1 -all"}]}, 0.02)
    results = await asyncio.gather(
        *(check_host(r, IP, "a@x.example", HELO) for r in [allow, deny] * 4)
    )
    assert [r.result for r in results] == ["pass", "fail"] * 4


async def test_a_cancelled_check_stops_its_worker_thread_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    finished = threading.Event()
    evaluate = sinkd.core.spf_eval._evaluate

    def watched(*args: Any) -> Any:
        try:
            return evaluate(*args)
        finally:
            finished.set()

    monkeypatch.setattr(sinkd.core.spf_eval, "_evaluate", watched)
    hanging = HangingResolver()
    task = asyncio.create_task(check_host(hanging, IP, "a@x.example", HELO, timeout=60))
    await asyncio.wait_for(hanging.first_question.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # The worker was waiting for an answer that never comes; the 60 s bound must not matter.
    assert await asyncio.to_thread(finished.wait, 5)
    for _ in range(100):  # the question's cancellation reaches the loop a moment later
        if hanging.cancelled:
            break
        await asyncio.sleep(0.01)
    assert hanging.cancelled == 1
    assert hanging.asked == 1  # and it asked nothing more once abandoned


async def test_a_resolver_that_raises_is_a_temperror_not_a_crash() -> None:
    class Broken:
        async def query(self, name: str, rdtype: RecordType) -> DnsAnswer:
            raise OSError("network unreachable")

    result = await check_host(Broken(), IP, "a@x.example", HELO)
    assert result.result == "temperror"
    assert "network unreachable" in result.explanation


async def test_an_unparsable_client_address_is_a_permerror() -> None:
    result = await check_host(FakeResolver({}), "not-an-ip", "a@x.example", HELO)
    assert result.result == "permerror"


def test_pyspf_users_outside_a_check_keep_pyspfs_own_lookup(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[tuple[str, str]] = []

    def own_lookup(name: str, qtype: str, strict: object = True, timeout: object = None) -> Any:
        calls.append((name, qtype))
        return [((name, qtype), (b"v=spf1 -all",))]

    monkeypatch.setattr(sinkd.core.spf_eval, "_pyspf_lookup", own_lookup)
    assert spf.DNSLookup is sinkd.core.spf_eval._dispatch
    result, _code, _expl = spf.query(i=IP, s="a@x.example", h=HELO).check()
    assert result == "fail"
    assert calls == [("x.example", "TXT")]


# --- remembered results (SpfMemo) -------------------------------------------------------------


class StepClock:
    def __init__(self) -> None:
        self.t = 1_000_000.0

    def now(self) -> float:
        return self.t


async def _twice(
    flt: SpfFilter, resolver: Resolver, clock: StepClock, sender: str, advance: float = 0
) -> tuple[list[Finding], list[Finding]]:
    lookups = Lookups(resolver=resolver, clock=clock)
    first = await flt.check_envelope(Stage.MAIL, EnvelopeContext(envelope(sender), None, lookups))
    clock.t += advance
    again = await flt.check_envelope(Stage.MAIL, EnvelopeContext(envelope(sender), None, lookups))
    return first, again


async def test_a_repeated_sender_and_client_reuse_the_result_without_asking_dns_again() -> None:
    resolver, clock = resolver_for(ZONE), StepClock()
    first, again = await _twice(
        spf_filter(identities=["mail_from"]), resolver, clock, "a@passes.example"
    )
    assert [f.code for f in first] == [f.code for f in again] == ["SPF_PASS"]
    assert first == again
    assert resolver.questions == [("passes.example", "TXT")]  # once, for both messages


async def test_a_remembered_result_expires_with_the_smallest_ttl_of_its_answers() -> None:
    resolver, clock = resolver_for(ZONE), StepClock()
    flt = spf_filter(identities=["mail_from"])
    await _twice(flt, resolver, clock, "a@passes.example", advance=299)
    assert len(resolver.questions) == 1  # FakeResolver's TTL is 300 s: still held at 299
    clock.t += 1
    await at_mail_with(flt, resolver, clock, "a@passes.example")
    assert len(resolver.questions) == 2


async def test_temperrors_and_answers_without_ttl_are_never_remembered() -> None:
    resolver, clock = resolver_for(ZONE), StepClock()
    flt = spf_filter(identities=["mail_from"])
    await _twice(flt, resolver, clock, "a@slow.example")  # TIMEOUT: temperror
    await _twice(flt, resolver, clock, "a@nowhere.example")  # NXDOMAIN without a TTL
    asked = [name for name, _ in resolver.questions]
    assert asked.count("slow.example") == 2 and asked.count("nowhere.example") == 2


async def test_a_result_is_not_reused_for_another_client_or_another_resolver() -> None:
    resolver, clock = resolver_for(ZONE), StepClock()
    flt = spf_filter(identities=["mail_from"])
    (passed,) = await flt.check_envelope(
        Stage.MAIL,
        EnvelopeContext(
            envelope("a@passes.example"), None, Lookups(resolver=resolver, clock=clock)
        ),
    )
    (other_ip,) = await flt.check_envelope(
        Stage.MAIL,
        EnvelopeContext(
            envelope("a@passes.example", ip="198.51.100.9"),
            None,
            Lookups(resolver=resolver, clock=clock),
        ),
    )
    denying = resolver_for({"passes.example": [{"TXT": "v=spf1 -all"}]})
    (other_dns,) = await flt.check_envelope(
        Stage.MAIL,
        EnvelopeContext(envelope("a@passes.example"), None, Lookups(resolver=denying, clock=clock)),
    )
    assert (passed.code, other_ip.code, other_dns.code) == ("SPF_PASS", "SPF_FAIL", "SPF_FAIL")


async def at_mail_with(flt: SpfFilter, resolver: Resolver, clock: StepClock, sender: str) -> None:
    lookups = Lookups(resolver=resolver, clock=clock)
    await flt.check_envelope(Stage.MAIL, EnvelopeContext(envelope(sender), None, lookups))


# --- offline DNS without data, live DNS without an answer ------------------------------------


class LiveTimeout:
    """Live DNS that never answers in time (``DnsAnswer.live``), unlike a fixture's TIMEOUT."""

    async def query(self, name: str, rdtype: RecordType) -> DnsAnswer:
        return DnsAnswer("TIMEOUT", live=True)


UNKNOWN_ZONE: dict[str, Any] = ZONE | {
    "inc.example": [{"TXT": "v=spf1 include:elsewhere.example -all"}],
    "mx.example": [{"TXT": "v=spf1 mx -all"}, {"MX": [10, "mx.elsewhere.example"]}],
    "redir.example": [{"TXT": "v=spf1 redirect=elsewhere.example"}],
}


def unknown_resolver(*names: str) -> Resolver:
    records = zonedata_to_records(UNKNOWN_ZONE)
    for name in names:
        records[name] = {"rcode": "UNKNOWN"}  # offline DNS: no fixture has data for it
    return FakeResolver(records)


async def test_offline_dns_without_a_fixture_leaves_spf_not_judged_and_says_how_to_give_it() -> (
    None
):
    flt = spf_filter(identities=["mail_from"])
    ctx = EnvelopeContext(envelope("ann@nofixture.example"), None, Lookups())
    (finding,) = await flt.check_envelope(Stage.MAIL, ctx)
    assert finding.code == "SPF_NONE"
    assert finding.detail["result"] == "none"
    assert finding.unjudged is Unjudged.NO_DNS_DATA
    assert finding.detail["dns_names"] == ["nofixture.example"]
    assert (finding.action, finding.score, finding.reply) == (Action.NONE, 0, None)
    assert finding.reason == (
        "SPF for nofixture.example could not be judged: sinkd's DNS is offline and no fixture "
        "has data for nofixture.example. Give it with --dns-zone FILE or judge with --dns live."
    )
    assert "does not exist" not in finding.reason


@pytest.mark.parametrize(
    ("sender", "unknown"),
    [
        ("ann@inc.example", "elsewhere.example"),  # include:
        ("ann@redir.example", "elsewhere.example"),  # redirect=
        ("ann@mx.example", "mx.elsewhere.example"),  # the A record of an MX host
    ],
)
async def test_an_unknown_name_anywhere_in_the_evaluation_makes_spf_unknown_never_fail(
    sender: str, unknown: str
) -> None:
    finding = await mail_from_finding(sender, resolver=unknown_resolver(unknown))
    assert finding.code == "SPF_NONE"
    assert finding.unjudged is Unjudged.NO_DNS_DATA
    assert finding.detail["dns_names"] == [unknown]
    assert finding.action is Action.NONE


async def test_an_include_that_real_dns_says_does_not_exist_is_still_a_permerror() -> None:
    finding = await mail_from_finding("ann@inc.example", resolver=unknown_resolver())
    assert finding.code == "SPF_PERMERROR"
    assert finding.unjudged is None


async def test_a_live_dns_timeout_is_unavailable_while_a_fixture_timeout_is_a_temperror() -> None:
    live = await mail_from_finding("ann@shop.example", resolver=LiveTimeout())
    assert (live.code, live.unjudged, live.action) == (
        "SPF_TEMPERROR",
        Unjudged.UNAVAILABLE,
        Action.NONE,
    )
    assert live.detail["dns_names"] == ["shop.example"]
    fixture = await mail_from_finding("ann@slow.example")
    assert (fixture.unjudged, fixture.action) == (None, Action.TEMPFAIL)


async def test_an_explanation_without_dns_data_leaves_the_fail_a_fail() -> None:
    # RFC 7208 §6.2: exp= only explains; no data for it is no explanation, not an unknown result.
    records = zonedata_to_records({"expl.example": [{"TXT": "v=spf1 -all exp=why.other.example"}]})
    records["why.other.example"] = {"rcode": "UNKNOWN"}
    finding = await mail_from_finding("ann@expl.example", resolver=FakeResolver(records))
    assert (finding.code, finding.unjudged) == ("SPF_FAIL", None)
