"""The dmarc filter: policy discovery, SPF and DKIM alignment from the findings before it, p/sp/np,
pct and t=, broken records and From fields, and the profile's outcomes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from sinkd.core.filters import MessageContext
from sinkd.core.filters.dmarc import (
    DmarcFilter,
    DmarcSpec,
    parse_record,
    psl_org_domain,
    tree_walk_targets,
)
from sinkd.core.message import parse
from sinkd.core.model import Action, Category, ClientIdentity, Envelope, Finding, Stage, Unjudged
from sinkd.core.ports import DnsAnswer, Lookups, RecordType
from sinkd.core.profiles import ProfileSet
from sinkd.core.schema import CompileContext

ENVELOPE = Envelope(
    ClientIdentity(ip="192.0.2.10", helo="mail.shop.example"),
    "bounce@shop.example",
    ("bob@corp.example",),
)
REJECT = "v=DMARC1; p=reject; rua=mailto:dmarc@shop.example"

Zone = Mapping[tuple[str, str], str | list[str] | DnsAnswer]


class FakeResolver:
    def __init__(self, zone: Zone) -> None:
        self.zone = dict(zone)
        self.queries: list[tuple[str, str]] = []

    # Whether answers are also given at once through ``answer_now`` (as the fixture and the
    # cache give them, ``sinkd.core.spf_eval.AnswersNow``); the autouse fixture sets it.
    answers_at_hand = False

    def answer_now(self, name: str, rdtype: RecordType) -> DnsAnswer | None:
        if not self.answers_at_hand:
            return None
        self.queries.append((name, rdtype))
        return self._answer(name, rdtype)

    async def query(self, name: str, rdtype: RecordType) -> DnsAnswer:
        self.queries.append((name, rdtype))
        return self._answer(name, rdtype)

    def _answer(self, name: str, rdtype: RecordType) -> DnsAnswer:
        entry = self.zone.get((name, rdtype))
        if entry is None:
            return DnsAnswer("NXDOMAIN")
        if isinstance(entry, DnsAnswer):
            return entry
        texts = [entry] if isinstance(entry, str) else entry
        if rdtype != "TXT":
            return DnsAnswer("NOERROR", tuple(texts), 300)
        return DnsAnswer("NOERROR", tuple((t.encode(),) for t in texts), 300)


@pytest.fixture(autouse=True, params=[False, True], ids=["awaited", "at-hand"])
def answers_at_hand(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    """Every test twice: answers awaited, and answers the resolver has at hand (``answer_now``,
    as offline fixtures and cached answers are taken): the findings must not differ."""
    monkeypatch.setattr(FakeResolver, "answers_at_hand", request.param)
    return bool(request.param)


def message(from_: str = "Shop <news@shop.example>", *, extra: str = "") -> bytes:
    return (
        f"From: {from_}\r\nTo: bob@corp.example\r\nSubject: Sale\r\n"
        f"Message-ID: <m1@shop.example>\r\n{extra}\r\nHello.\r\n"
    ).encode()


def spf(domain: str, result: str = "pass", identity: str = "mail_from") -> Finding:
    return Finding(
        code=f"SPF_{result.upper()}",
        filter="spf",
        category=Category.AUTHENTICATION,
        action=Action.NONE,
        reason="",
        stage=Stage.MAIL,
        detail={"identity": identity, "domain": domain, "result": result},
    )


def dkim(domain: str, result: str = "pass") -> Finding:
    return Finding(
        code=f"DKIM_{result.upper()}",
        filter="dkim",
        category=Category.AUTHENTICATION,
        action=Action.NONE,
        reason="",
        detail={"domain": domain, "selector": "s1", "result": result},
    )


CATALOGUE = ProfileSet().catalogue


def make_filter(**spec: Any) -> DmarcFilter:
    return DmarcFilter(
        DmarcSpec.model_validate({"kind": "dmarc", "name": "dmarc", **spec}),
        CompileContext(lists={}, replies=CATALOGUE),
    )


async def check(
    zone: Zone,
    earlier: Sequence[Finding] = (),
    raw: bytes | None = None,
    envelope: Envelope = ENVELOPE,
    resolver: FakeResolver | None = None,
    **spec: Any,
) -> Finding:
    resolver = resolver or FakeResolver(zone)
    ctx = MessageContext(
        envelope, parse(raw or message()), Lookups(resolver=resolver), tuple(earlier)
    )
    [finding] = await make_filter(**spec).check_message(ctx)
    return finding


def txt(domain: str, record: str | list[str] | DnsAnswer) -> Zone:
    return {(f"_dmarc.{domain}", "TXT"): record}


# --- pass and fail ----------------------------------------------------------------------------


async def test_an_spf_aligned_message_passes() -> None:
    finding = await check(txt("shop.example", REJECT), [spf("bounce.shop.example")])
    assert finding.code == "DMARC_PASS"
    assert finding.category is Category.AUTHENTICATION
    assert finding.action is Action.NONE
    assert finding.detail["spf_aligned"] and not finding.detail["dkim_aligned"]
    assert finding.detail["policy"] == "reject"
    assert finding.detail["published"] == REJECT
    assert finding.reason == (
        "shop.example publishes DMARC p=reject, and this message is SPF-aligned with it, "
        "so it passes."
    )


async def test_a_dkim_aligned_message_passes_despite_an_spf_failure() -> None:
    earlier = [spf("shop.example", "fail"), dkim("shop.example")]
    finding = await check(txt("shop.example", REJECT), earlier)
    assert finding.code == "DMARC_PASS"
    assert finding.detail["dkim_aligned"] and not finding.detail["spf_aligned"]
    assert finding.detail["dkim_domains"] == ["shop.example"]


async def test_spf_for_helo_or_a_failed_dkim_signature_do_not_align() -> None:
    earlier = [spf("shop.example", identity="helo"), dkim("shop.example", "fail")]
    finding = await check(txt("shop.example", REJECT), earlier)
    assert finding.code == "DMARC_FAIL"


async def test_with_a_null_sender_the_helo_spf_result_aligns() -> None:
    null = Envelope(ENVELOPE.client, "", ENVELOPE.rcpt_to)
    earlier = [spf("mail.shop.example", identity="helo")]
    finding = await check(txt("shop.example", REJECT), earlier, envelope=null)
    assert finding.code == "DMARC_PASS"


@pytest.mark.parametrize(
    ("tag", "earlier", "expected"),
    [
        ("adkim", [dkim("mail.shop.example")], {"r": "DMARC_PASS", "s": "DMARC_FAIL"}),
        ("aspf", [spf("bounce.shop.example")], {"r": "DMARC_PASS", "s": "DMARC_FAIL"}),
        ("adkim", [dkim("shop.example")], {"r": "DMARC_PASS", "s": "DMARC_PASS"}),
        ("aspf", [spf("other.example")], {"r": "DMARC_FAIL", "s": "DMARC_FAIL"}),
    ],
)
async def test_relaxed_alignment_takes_the_organizational_domain_and_strict_the_exact_one(
    tag: str, earlier: list[Finding], expected: dict[str, str]
) -> None:
    for mode, code in expected.items():
        finding = await check(txt("shop.example", f"v=DMARC1; p=reject; {tag}={mode}"), earlier)
        assert finding.code == code, mode


async def test_an_unaligned_message_under_p_reject_is_refused_with_the_rfc_7489_reply() -> None:
    earlier = [spf("esp.example"), dkim("esp.example")]
    finding = await check(txt("shop.example", REJECT), earlier)
    assert finding.code == "DMARC_FAIL"
    assert finding.action is Action.REJECT
    assert finding.reason == (
        "shop.example publishes DMARC p=reject, and this message is neither SPF- nor "
        "DKIM-aligned with it, so the gateway refuses it."
    )
    assert finding.reply is not None
    assert (finding.reply.code, finding.reply.enhanced) == (550, "5.7.1")
    assert finding.reply.text == "Email rejected per DMARC policy for shop.example"
    assert finding.detail["disposition"] == "reject"


@pytest.mark.parametrize(
    ("reply", "enhanced", "text"),
    [
        ("gmail.dmarc", "5.7.26", "Unauthenticated email from shop.example is not accepted"),
        ("m365.dmarc_reject", "5.7.509", "sending domain shop.example does not pass DMARC"),
    ],
)
async def test_a_reject_gives_the_reply_the_profile_names(
    reply: str, enhanced: str, text: str
) -> None:
    policy = {"reject": {"action": "reject", "reply": reply}}
    finding = await check(txt("shop.example", REJECT), on_fail_policy=policy)
    assert finding.reply is not None
    assert (finding.reply.code, finding.reply.enhanced) == (550, enhanced)
    assert text in finding.reply.text


async def test_p_quarantine_quarantines_and_p_none_only_records() -> None:
    quarantined = await check(txt("shop.example", "v=DMARC1; p=quarantine"))
    assert (quarantined.code, quarantined.action) == ("DMARC_FAIL", Action.QUARANTINE)
    assert quarantined.reason.endswith("so the gateway holds it in quarantine.")
    recorded = await check(txt("shop.example", "v=DMARC1; p=none"))
    assert (recorded.code, recorded.action) == ("DMARC_FAIL", Action.NONE)
    assert recorded.reason.endswith("so the gateway only records it.")


async def test_a_gateway_that_does_not_honor_policies_uses_on_fail() -> None:
    finding = await check(
        txt("shop.example", REJECT), honor_policy=False, on={"fail": {"score": 3}}
    )
    assert (finding.code, finding.action, finding.score) == ("DMARC_FAIL", Action.SCORE, 3)
    assert finding.reason.endswith(
        "but this gateway does not act on DMARC policies, so the gateway adds 3 points to its "
        "score."
    )


# --- discovery --------------------------------------------------------------------------------


async def test_a_subdomain_falls_back_to_the_organizational_domain_and_its_sp() -> None:
    resolver = FakeResolver(txt("shop.example", "v=DMARC1; p=none; sp=reject"))
    finding = await check({}, raw=message("news@sub.shop.example"), resolver=resolver)
    assert resolver.queries == [
        ("_dmarc.sub.shop.example", "TXT"),
        ("_dmarc.shop.example", "TXT"),
    ]
    assert finding.code == "DMARC_FAIL" and finding.action is Action.REJECT
    detail = finding.detail
    assert (detail["domain"], detail["org_domain"]) == ("sub.shop.example", "shop.example")
    assert (detail["policy"], detail["policy_tag"]) == ("reject", "sp")
    assert finding.reason.startswith(
        "shop.example publishes DMARC sp=reject for subdomains such as sub.shop.example"
    )


async def test_without_sp_the_organizational_domains_p_covers_subdomains() -> None:
    finding = await check(
        txt("shop.example", "v=DMARC1; p=quarantine"), raw=message("a@x.shop.example")
    )
    assert (finding.detail["policy"], finding.detail["policy_tag"]) == ("quarantine", "p")


def test_the_organizational_domain_comes_from_the_public_suffix_list() -> None:
    assert psl_org_domain("a.b.shop.co.uk") == "shop.co.uk"
    assert psl_org_domain("sub.shop.example") == "shop.example"
    assert psl_org_domain("co.uk") == "co.uk"


async def test_np_applies_to_a_subdomain_that_does_not_exist_under_rfc_9989() -> None:
    record = "v=DMARC1; p=none; sp=quarantine; np=reject"
    ghost = await check(
        txt("shop.example", record), raw=message("x@ghost.shop.example"), spec="rfc9989"
    )
    assert (ghost.detail["policy"], ghost.detail["policy_tag"]) == ("reject", "np")
    assert ghost.action is Action.REJECT
    assert "np=reject for subdomains that do not exist" in ghost.reason
    zone = {**txt("shop.example", record), ("www.shop.example", "A"): ["192.0.2.80"]}
    real = await check(zone, raw=message("x@www.shop.example"), spec="rfc9989")
    assert (real.detail["policy"], real.detail["policy_tag"]) == ("quarantine", "sp")
    legacy = await check(txt("shop.example", record), raw=message("x@ghost.shop.example"))
    assert (legacy.detail["policy"], legacy.detail["policy_tag"]) == ("quarantine", "sp")
    assert "unknown tag np=" in legacy.detail["ignored"]


async def test_rfc_9989_walks_the_tree_instead_of_reading_the_public_suffix_list() -> None:
    assert tree_walk_targets("a.b.c.d.e.f.g.h.i.example") == [
        "a.b.c.d.e.f.g.h.i.example",
        "d.e.f.g.h.i.example",
        "e.f.g.h.i.example",
        "f.g.h.i.example",
        "g.h.i.example",
        "h.i.example",
        "i.example",
        "example",
    ]
    resolver = FakeResolver(txt("b.shop.example", "v=DMARC1; p=reject"))
    finding = await check({}, raw=message("x@a.b.shop.example"), resolver=resolver, spec="rfc9989")
    assert finding.detail["record_domain"] == "b.shop.example"
    assert finding.detail["org_domain"] == "b.shop.example"  # the record with the fewest labels
    assert ("_dmarc.example", "TXT") in resolver.queries


async def test_under_rfc_9989_a_psd_record_makes_the_label_below_it_the_org_domain() -> None:
    zone = {
        **txt("example", "v=DMARC1; p=reject; psd=y"),
        **txt("mail.shop.example", "v=DMARC1; p=reject"),
    }
    aligned = await check(
        zone, [dkim("news.shop.example")], raw=message("x@mail.shop.example"), spec="rfc9989"
    )
    assert aligned.code == "DMARC_PASS"
    assert aligned.detail["org_domain"] == "shop.example"
    other = await check(
        zone, [dkim("other.example")], raw=message("x@mail.shop.example"), spec="rfc9989"
    )
    assert other.code == "DMARC_FAIL"


async def test_no_record_anywhere_gives_dmarc_none() -> None:
    finding = await check({}, [spf("shop.example")], raw=message("x@sub.shop.example"))
    assert finding.code == "DMARC_NONE"
    assert finding.action is Action.NONE
    assert finding.reason == (
        "Neither sub.shop.example nor shop.example publishes a DMARC record, "
        "so DMARC does not apply."
    )


async def test_a_lookup_timeout_is_a_temperror_the_profile_may_defer() -> None:
    zone = txt("shop.example", DnsAnswer("TIMEOUT"))
    finding = await check(zone, on={"temperror": {"action": "tempfail"}})
    assert finding.code == "DMARC_TEMPERROR"
    assert finding.action is Action.TEMPFAIL
    assert finding.reply is not None and finding.reply.code == 451
    assert "TIMEOUT for _dmarc.shop.example" in finding.reason


async def test_without_a_resolver_dmarc_is_a_temperror() -> None:
    ctx = MessageContext(ENVELOPE, parse(message()), Lookups(resolver=None))
    [finding] = await make_filter().check_message(ctx)
    assert finding.code == "DMARC_TEMPERROR"
    assert "no DNS resolver" in finding.detail["error"]


async def test_by_default_dns_knows_no_dmarc_record_so_dmarc_is_none() -> None:
    # Lookups() without a resolver is offline DNS without fixtures: every name is NXDOMAIN.
    ctx = MessageContext(ENVELOPE, parse(message()), Lookups())
    [finding] = await make_filter().check_message(ctx)
    assert finding.code == "DMARC_NONE"


# --- pct and t= -------------------------------------------------------------------------------


async def test_pct_zero_lowers_reject_to_quarantine_unless_pct_is_ignored() -> None:
    zone = txt("shop.example", "v=DMARC1; p=reject; pct=0")
    for mode in ("honor", "deterministic"):
        finding = await check(zone, pct=mode)
        assert (finding.action, finding.detail["disposition"]) == (Action.QUARANTINE, "quarantine")
        assert finding.detail["sampled"] is False
        assert finding.reason == (
            "shop.example publishes DMARC p=reject, and this message is neither SPF- nor "
            "DKIM-aligned with it; it falls outside the 0% of mail the policy applies to, so "
            "quarantine applies instead and the gateway holds it in quarantine."
        )
    ignored = await check(zone, pct="ignore")
    assert ignored.action is Action.REJECT


async def test_deterministic_pct_samples_by_message_id_reproducibly() -> None:
    zone = txt("shop.example", "v=DMARC1; p=quarantine; pct=30")
    sampled = []
    for n in range(200):
        raw = message().replace(b"<m1@shop.example>", f"<m{n}@shop.example>".encode())
        first = await check(zone, raw=raw, pct="deterministic")
        again = await check(zone, raw=raw, pct="deterministic")
        assert first.detail["sampled"] == again.detail["sampled"]
        assert first.action is (Action.QUARANTINE if first.detail["sampled"] else Action.NONE)
        sampled.append(first.detail["sampled"])
    assert 30 <= sampled.count(True) <= 90  # about 30% of 200


async def test_rfc_9989_testing_mode_lowers_the_policy_one_step() -> None:
    finding = await check(txt("shop.example", "v=DMARC1; p=reject; t=y"), spec="rfc9989")
    assert (finding.action, finding.detail["disposition"]) == (Action.QUARANTINE, "quarantine")
    assert finding.detail["testing"] is True
    assert "the domain is only testing its policy (t=y), so quarantine applies" in finding.reason
    assert finding.detail["pct"] is None


# --- broken records and From fields -----------------------------------------------------------


async def test_a_record_without_a_valid_p_is_a_permerror() -> None:
    finding = await check(txt("shop.example", "v=DMARC1; p=bogus"))
    assert finding.code == "DMARC_PERMERROR"
    assert "no valid policy" in finding.reason


async def test_a_record_without_a_valid_p_but_with_rua_acts_as_p_none() -> None:
    finding = await check(txt("shop.example", "v=DMARC1; p=bogus; rua=mailto:d@shop.example"))
    assert (finding.code, finding.detail["policy"], finding.action) == (
        "DMARC_FAIL",
        "none",
        Action.NONE,
    )
    rfc9989 = await check(txt("shop.example", "v=DMARC1; adkim=s"), spec="rfc9989")
    assert rfc9989.detail["policy"] == "none"


async def test_junk_in_a_record_is_ignored_and_listed() -> None:
    zone = txt("shop.example", "v=DMARC1; p=reject; adkim=x; pct=500; foo=bar; junk")
    finding = await check(zone, [dkim("mail.shop.example")])
    assert finding.code == "DMARC_PASS"  # adkim=x falls back to relaxed
    assert finding.detail["pct"] == 100
    assert finding.detail["ignored"] == [
        "'junk' is not a tag=value pair",
        "unknown tag foo=",
        "pct=500 is not 0-100 (100 applies)",
        "adkim=x is not r or s (r applies)",
    ]


@pytest.mark.parametrize(
    "records",
    [["hello world"], ["p=reject; v=DMARC1"], ["v=DMARC2; p=reject"], ["v=dmarc1; p=reject"]],
)
async def test_texts_that_do_not_start_with_v_dmarc1_are_not_records(records: list[str]) -> None:
    finding = await check(txt("shop.example", records))
    assert finding.code == "DMARC_NONE"


async def test_two_records_mean_no_dmarc_processing() -> None:
    finding = await check(txt("shop.example", [REJECT, "v=DMARC1; p=none"]))
    assert finding.code == "DMARC_NONE"
    assert "publishes 2 DMARC records" in finding.reason


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        (b"To: bob@corp.example\r\nSubject: x\r\n\r\nbody\r\n", "no From header field"),
        (message(extra="From: evil@evil.example\r\n"), "2 From header fields"),
        (message("a@shop.example, b@evil.example"), "several domains (evil.example, shop.example)"),
        (message("Undisclosed"), "no address with a domain"),
    ],
)
async def test_no_single_author_domain_is_a_permerror(raw: bytes, error: str) -> None:
    finding = await check(txt("shop.example", REJECT), raw=raw)
    assert finding.code == "DMARC_PERMERROR"
    assert error in finding.detail["error"]


async def test_several_addresses_of_one_domain_are_one_author_domain() -> None:
    finding = await check(
        txt("shop.example", REJECT), raw=message("a@shop.example, b@Shop.Example")
    )
    assert finding.code == "DMARC_FAIL"
    assert finding.detail["domain"] == "shop.example"


def test_parse_record_reads_tags_case_insensitively() -> None:
    record = parse_record("v=DMARC1; P=Reject; SP=none; ADKIM=s", "shop.example")
    assert record is not None
    assert (record.p, record.sp, record.adkim, record.aspf) == ("reject", "none", "s", "r")


def test_the_spec_reads_pass_as_written_in_a_profile() -> None:
    spec = DmarcSpec.model_validate(
        {"kind": "dmarc", "name": "dmarc", "on": {"pass": {"score": -1}}}
    )
    assert spec.on.of("pass").score == -1
    assert spec.on_fail_policy.reject.action is Action.REJECT


# --- checks that could not be judged -----------------------------------------------------------


def not_judged(finding: Finding, *names: str) -> Finding:
    detail = {**finding.detail, "result": "none", "dns_names": list(names)}
    code = finding.code.rpartition("_")[0] + (
        "_NEUTRAL" if finding.code.startswith("DKIM") else "_NONE"
    )
    return Finding(
        code=code,
        filter=finding.filter,
        category=finding.category,
        action=Action.NONE,
        reason="",
        stage=finding.stage,
        detail=detail,
        unjudged=Unjudged.NO_DNS_DATA,
    )


async def test_a_policy_record_offline_dns_has_no_data_for_leaves_dmarc_not_judged() -> None:
    unknown = txt("shop.example", DnsAnswer("UNKNOWN"))
    finding = await check(unknown, on={"none": {"action": "reject"}})
    assert finding.code == "DMARC_NONE"
    assert finding.unjudged is Unjudged.NO_DNS_DATA
    assert finding.detail["dns_names"] == ["_dmarc.shop.example"]
    assert (finding.action, finding.reply) == (Action.NONE, None)
    assert "DMARC for shop.example could not be judged" in finding.reason
    assert "--dns-zone FILE" in finding.reason


async def test_dmarc_does_not_fail_a_message_on_spf_and_dkim_that_were_not_judged() -> None:
    earlier = [
        not_judged(spf("shop.example"), "shop.example"),
        not_judged(dkim("shop.example"), "s1._domainkey.shop.example"),
    ]
    finding = await check(txt("shop.example", REJECT), earlier)
    assert finding.code == "DMARC_NONE"
    assert finding.unjudged is Unjudged.NO_DNS_DATA
    assert finding.detail["dns_names"] == ["shop.example", "s1._domainkey.shop.example"]
    assert finding.detail["policy"] == "reject"
    assert (finding.action, finding.reply) == (Action.NONE, None)


async def test_an_unjudged_check_that_could_never_align_does_not_stop_a_dmarc_fail() -> None:
    earlier = [not_judged(dkim("esp.example"), "s1._domainkey.esp.example")]
    finding = await check(txt("shop.example", REJECT), earlier)
    assert (finding.code, finding.unjudged, finding.action) == ("DMARC_FAIL", None, Action.REJECT)


async def test_an_aligned_pass_passes_even_when_another_check_was_not_judged() -> None:
    earlier = [spf("shop.example"), not_judged(dkim("shop.example"), "s1._domainkey.shop.example")]
    finding = await check(txt("shop.example", REJECT), earlier)
    assert (finding.code, finding.unjudged) == ("DMARC_PASS", None)


async def test_a_policy_lookup_live_dns_did_not_answer_is_unavailable() -> None:
    finding = await check(txt("shop.example", DnsAnswer("TIMEOUT", live=True)))
    assert (finding.code, finding.unjudged, finding.action) == (
        "DMARC_TEMPERROR",
        Unjudged.UNAVAILABLE,
        Action.NONE,
    )


async def test_the_rfc9989_tree_walk_reads_a_public_suffix_without_dns_data_as_no_record() -> None:
    # The fixture speaks for shop.example (NXDOMAIN at _dmarc) but not for the TLD "example".
    zone = txt("example", DnsAnswer("UNKNOWN"))
    finding = await check(zone, spec="rfc9989")
    assert (finding.code, finding.unjudged) == ("DMARC_NONE", None)
    unknown_own = await check(txt("shop.example", DnsAnswer("UNKNOWN")), spec="rfc9989")
    assert unknown_own.unjudged is Unjudged.NO_DNS_DATA
