"""The dnsbl filter: client IP, HELO, sender domains and link hosts looked up in DNS blocklists."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
from typing import Any

import pytest
from pydantic import ValidationError

from sinkd.core.filters import EnvelopeContext, MessageContext, dnsbl
from sinkd.core.message import ParsedMessage, parse
from sinkd.core.model import Action, Category, Stage, Unjudged
from sinkd.core.ports import DnsAnswer, Lookups
from tests.support.dnsbl import (
    FakeResolver,
    a,
    at_data,
    at_mail,
    client_zone,
    envelope,
    make_filter,
    message,
    reply_line,
    txt,
    uri_zone,
)
from tests.support.paths import ROOT


@pytest.fixture(autouse=True, params=[False, True], ids=["awaited", "at-hand"])
def answers_at_hand(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    """Every test twice: answers awaited, and answers the resolver has at hand (``answer_now``,
    as offline fixtures and cached answers are taken): the findings must not differ."""
    monkeypatch.setattr(FakeResolver, "answers_at_hand", request.param)
    return bool(request.param)


async def test_a_listed_ipv4_client_is_looked_up_reversed_and_refused_with_postfix_s_reply() -> (
    None
):
    resolver = FakeResolver({"99.2.0.192.zen.example": a("127.0.0.2")})
    [finding] = await at_mail(make_filter(client_zone()), resolver)
    assert resolver.names() == ["99.2.0.192.zen.example"]
    assert finding.code == "DNSBL_LISTED"
    assert finding.action is Action.REJECT
    assert finding.category is Category.ENVELOPE
    assert reply_line(finding) == (
        "554 5.7.1 Service unavailable; Client host [192.0.2.99] blocked using zen.example"
    )
    assert finding.reason == (
        "The sending server 192.0.2.99 is listed on zen.example (SBL), "
        "a blocklist this gateway refuses."
    )
    assert finding.detail == {
        "zone": "zen.example",
        "lookup": "client_ip",
        "value": "192.0.2.99",
        "query": "99.2.0.192.zen.example",
        "answer": ["127.0.0.2"],
        "id": "SBL",
        "txt": None,
    }


async def test_an_ipv6_client_is_looked_up_as_32_reversed_nibbles() -> None:
    name = "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.zen.example"
    resolver = FakeResolver({name: a("127.0.0.3")})
    [finding] = await at_mail(make_filter(client_zone()), resolver, envelope(ip="2001:db8::1"))
    assert resolver.names() == [name]
    assert finding.detail["id"] == "CSS"
    assert finding.detail["value"] == "2001:db8::1"


async def test_an_ipv4_mapped_ipv6_client_is_looked_up_as_its_ipv4_address() -> None:
    resolver = FakeResolver()
    await at_mail(make_filter(client_zone()), resolver, envelope(ip="::ffff:192.0.2.7"))
    assert resolver.names() == ["7.2.0.192.zen.example"]


async def test_answers_inside_a_code_range_take_that_code_s_outcome() -> None:
    resolver = FakeResolver(
        {"99.2.0.192.zen.example": a("127.0.0.5"), "98.2.0.192.zen.example": a("127.0.0.11")}
    )
    flt = make_filter(client_zone())
    [xbl] = await at_mail(flt, resolver)
    [pbl] = await at_mail(flt, resolver, envelope(ip="192.0.2.98"))
    assert (xbl.detail["id"], xbl.action) == ("XBL", Action.REJECT)
    assert (pbl.detail["id"], pbl.action, pbl.score) == ("PBL", Action.SCORE, 3.0)
    assert pbl.reason == (
        "The sending server 192.0.2.98 is listed on zen.example (PBL), "
        "which counts against the message (+3 points)."
    )


async def test_an_answer_no_code_covers_takes_the_zone_s_default_outcome() -> None:
    resolver = FakeResolver({"99.2.0.192.zen.example": a("127.0.0.9")})
    zone = client_zone(default={"action": "quarantine", "score": 1.5})
    [finding] = await at_mail(make_filter(zone), resolver)
    assert (finding.action, finding.score, finding.detail["id"]) == (Action.QUARANTINE, 1.5, None)


async def test_a_zone_without_codes_rejects_any_listing_with_postfix_s_reply() -> None:
    resolver = FakeResolver({"99.2.0.192.bl.example": a("127.0.0.4")})
    [finding] = await at_mail(make_filter({"zone": "bl.example"}), resolver)
    assert finding.action is Action.REJECT
    assert reply_line(finding).endswith("Client host [192.0.2.99] blocked using bl.example")


async def test_several_answers_of_one_listing_give_one_finding_per_code() -> None:
    resolver = FakeResolver({"99.2.0.192.zen.example": a("127.0.0.2", "127.0.0.4", "127.0.0.6")})
    findings = await at_mail(make_filter(client_zone()), resolver)
    assert [(f.detail["id"], f.detail["answer"]) for f in findings] == [
        ("SBL", ["127.0.0.2"]),
        ("XBL", ["127.0.0.4", "127.0.0.6"]),
    ]


async def test_the_rfc_5782_test_entries_are_listed_for_127_0_0_2_and_not_for_127_0_0_1() -> None:
    # RFC 5782 §5: a DNSxL MUST list 127.0.0.2 and MUST NOT list 127.0.0.1.
    resolver = FakeResolver({"2.0.0.127.zen.example": a("127.0.0.2")})
    flt = make_filter(client_zone())
    [listed] = await at_mail(flt, resolver, envelope(ip="127.0.0.2"))
    assert listed.code == "DNSBL_LISTED"
    assert listed.detail["query"] == "2.0.0.127.zen.example"
    assert await at_mail(flt, resolver, envelope(ip="127.0.0.1")) == []
    assert resolver.names() == ["2.0.0.127.zen.example", "1.0.0.127.zen.example"]


async def test_nxdomain_and_nodata_mean_not_listed_and_record_nothing() -> None:
    resolver = FakeResolver({"98.2.0.192.zen.example": DnsAnswer("NOERROR")})
    flt = make_filter(client_zone())
    assert await at_mail(flt, resolver) == []
    assert await at_mail(flt, resolver, envelope(ip="192.0.2.98")) == []
    assert resolver.names("TXT") == []


async def test_the_reason_txt_is_asked_only_for_a_listed_name_and_kept_in_the_detail() -> None:
    resolver = FakeResolver(
        {
            "99.2.0.192.zen.example": a("127.0.0.2"),
            ("99.2.0.192.zen.example", "TXT"): txt("https://check.example/query/ip/192.0.2.99"),
        }
    )
    flt = make_filter(client_zone())
    [finding] = await at_mail(flt, resolver)
    assert finding.detail["txt"] == "https://check.example/query/ip/192.0.2.99"
    assert resolver.names("TXT") == ["99.2.0.192.zen.example"]
    await at_mail(flt, resolver, envelope(ip="192.0.2.98"))
    assert resolver.names("TXT") == ["99.2.0.192.zen.example"]


async def test_lookups_run_once_at_mail_and_not_again_for_each_recipient() -> None:
    resolver = FakeResolver({"99.2.0.192.zen.example": a("127.0.0.2")})
    flt = make_filter(client_zone())
    ctx = EnvelopeContext(envelope(), "bob@corp.example", Lookups(resolver=resolver))
    assert await flt.check_envelope(Stage.RCPT, ctx) == []
    assert await at_data(flt, resolver, message()) == []
    assert resolver.asked == []


# --- errors ------------------------------------------------------------------------------------


async def test_resolver_blocked_answers_are_an_error_finding_not_a_listing() -> None:
    resolver = FakeResolver({"99.2.0.192.zen.example": a("127.255.255.254")})
    [finding] = await at_mail(make_filter(client_zone(ignore=["127.255.255.252-255"])), resolver)
    assert finding.code == "DNSBL_ERROR"
    assert finding.action is Action.NONE
    assert finding.detail["answer"] == ["127.255.255.254"]
    assert "refused to answer this gateway's resolver" in finding.reason
    assert resolver.names("TXT") == []


async def test_the_spamhaus_blocked_answers_are_ignored_by_default() -> None:
    resolver = FakeResolver({"99.2.0.192.bl.example": a("127.255.255.252")})
    [finding] = await at_mail(make_filter({"zone": "bl.example"}), resolver)
    assert (finding.code, finding.action) == ("DNSBL_ERROR", Action.NONE)


async def test_an_answer_outside_127_8_is_an_error_not_a_listing() -> None:
    resolver = FakeResolver({"99.2.0.192.zen.example": a("198.51.100.7")})
    [finding] = await at_mail(make_filter(client_zone()), resolver)
    assert finding.code == "DNSBL_ERROR"
    assert "outside 127.0.0.0/8" in finding.reason


async def test_a_timeout_answer_is_a_dnsbl_error_with_no_action_by_default() -> None:
    resolver = FakeResolver({"99.2.0.192.zen.example": DnsAnswer("TIMEOUT")})
    [finding] = await at_mail(make_filter(client_zone()), resolver)
    assert (finding.code, finding.action, finding.category) == (
        "DNSBL_ERROR",
        Action.NONE,
        Category.ENVELOPE,
    )
    assert finding.detail["rcode"] == "TIMEOUT"
    assert finding.reason == (
        "The blocklist zen.example could not be checked for the sending server 192.0.2.99 "
        "(the lookup timed out), so the message was judged without it."
    )


async def test_a_resolver_slower_than_the_zone_timeout_gives_a_timeout_error() -> None:
    resolver = FakeResolver({"99.2.0.192.zen.example": a("127.0.0.2")}, delay=30)
    loop = asyncio.get_running_loop()
    started = loop.time()
    flt = make_filter(client_zone(timeout=0.05), on_error={"action": "tempfail"})
    [finding] = await at_mail(flt, resolver)
    assert loop.time() - started < 5
    assert (finding.code, finding.detail["rcode"]) == ("DNSBL_ERROR", "TIMEOUT")
    # DNS that did not answer sinkd in time is no answer: not judged, and no 4xx for it.
    assert finding.unjudged is Unjudged.UNAVAILABLE
    assert (finding.action, finding.reply) == (Action.NONE, None)
    assert finding.detail["dns_names"] == ["99.2.0.192.zen.example"]


async def test_a_list_offline_dns_has_no_data_for_does_not_list_and_says_it_was_not_judged() -> (
    None
):
    unknown = DnsAnswer("UNKNOWN")
    resolver = FakeResolver(
        {"99.2.0.192.zen.example": unknown, "mail.sender.example.zen.example": unknown}
    )
    flt = make_filter(client_zone(default={"action": "reject"}), client_zone(lookup="helo"))
    [finding] = await at_mail(flt, resolver)
    assert finding.code == "DNSBL_NOT_JUDGED"
    assert finding.unjudged is Unjudged.NO_DNS_DATA
    assert (finding.action, finding.reply) == (Action.NONE, None)
    assert finding.detail["dns_names"] == [
        "99.2.0.192.zen.example",
        "mail.sender.example.zen.example",
    ]
    assert finding.reason == (
        "The blocklist zen.example could not be judged: sinkd's DNS is offline and no fixture "
        "has data for zen.example. Give it with --dns-zone FILE or judge with --dns live."
    )


async def test_a_postfix_rbl_refusal_appends_the_list_s_txt_answer_as_postfix_does() -> None:
    resolver = FakeResolver(
        {
            "99.2.0.192.zen.example": a("127.0.0.2"),
            ("99.2.0.192.zen.example", "TXT"): txt("https://check.example/ip/192.0.2.99"),
        }
    )
    [finding] = await at_mail(make_filter(client_zone()), resolver)
    # postconf(5) default_rbl_reply: ...blocked using $rbl_domain${rbl_reason?; $rbl_reason}
    assert reply_line(finding) == (
        "554 5.7.1 Service unavailable; Client host [192.0.2.99] blocked using zen.example; "
        "https://check.example/ip/192.0.2.99"
    )


async def test_a_helo_rbl_refusal_appends_the_txt_answer_too() -> None:
    resolver = FakeResolver(
        {
            "mail.sender.example.dbl.example": a("127.0.0.2"),
            ("mail.sender.example.dbl.example", "TXT"): txt("listed helo"),
        }
    )
    [finding] = await at_mail(make_filter({"zone": "dbl.example", "lookup": "helo"}), resolver)
    assert reply_line(finding) == (
        "554 5.7.1 Service unavailable; Helo command [mail.sender.example] blocked using "
        "dbl.example; listed helo"
    )


async def test_servfail_takes_the_configured_on_error_outcome() -> None:
    resolver = FakeResolver({"99.2.0.192.zen.example": DnsAnswer("SERVFAIL")})
    flt = make_filter(client_zone(), on_error={"action": "tempfail"})
    [finding] = await at_mail(flt, resolver)
    assert (finding.code, finding.action) == ("DNSBL_ERROR", Action.TEMPFAIL)
    assert reply_line(finding) == "451 4.7.1 Try again later"


async def test_a_zone_s_own_on_error_overrides_the_filter_s() -> None:
    resolver = FakeResolver({"99.2.0.192.zen.example": DnsAnswer("REFUSED")})
    zone = client_zone(on_error={"action": "score", "score": 0.5})
    [finding] = await at_mail(make_filter(zone, on_error={"action": "tempfail"}), resolver)
    assert (finding.action, finding.score) == (Action.SCORE, 0.5)


async def test_without_a_resolver_every_lookup_is_a_dnsbl_error() -> None:
    [finding] = await at_mail(make_filter(client_zone()), None)
    assert finding.code == "DNSBL_ERROR"
    assert "no DNS resolver is configured" in finding.reason


# --- several zones, HELO and sender domains ----------------------------------------------------


async def test_each_zone_is_looked_up_and_reported_on_its_own() -> None:
    resolver = FakeResolver(
        {"99.2.0.192.zen.example": a("127.0.0.10"), "99.2.0.192.bl.example": a("127.0.0.2")}
    )
    flt = make_filter(client_zone(), {"zone": "bl.example"}, {"zone": "clean.example"})
    findings = await at_mail(flt, resolver)
    assert sorted(resolver.names()) == [
        "99.2.0.192.bl.example",
        "99.2.0.192.clean.example",
        "99.2.0.192.zen.example",
    ]
    assert [(f.detail["zone"], f.action) for f in findings] == [
        ("zen.example", Action.SCORE),
        ("bl.example", Action.REJECT),
    ]


async def test_the_helo_name_is_looked_up_as_a_name_and_refused_like_postfix_rhsbl_helo() -> None:
    resolver = FakeResolver({"bad.example.dbl.example": a("127.0.1.2")})
    flt = make_filter({"zone": "dbl.example", "lookup": "helo"})
    [finding] = await at_mail(flt, resolver, envelope(helo="BAD.Example."))
    assert resolver.names() == ["bad.example.dbl.example"]
    assert finding.code == "DNSBL_LISTED"
    assert reply_line(finding) == (
        "554 5.7.1 Service unavailable; Helo command [BAD.Example.] blocked using dbl.example"
    )


async def test_an_address_literal_helo_is_looked_up_as_its_reversed_address() -> None:
    resolver = FakeResolver()
    flt = make_filter({"zone": "zen.example", "lookup": "helo"})
    await at_mail(flt, resolver, envelope(helo="[192.0.2.5]"))
    assert resolver.names() == ["5.2.0.192.zen.example"]


async def test_the_mail_from_domain_is_looked_up_after_idna_and_lower_casing() -> None:
    resolver = FakeResolver({"xn--bcher-kva.example.dbl.example": a("127.0.1.2")})
    flt = make_filter({"zone": "dbl.example", "lookup": "mail_from_domain"})
    [finding] = await at_mail(flt, resolver, envelope(mail_from="info@BÜCHER.example"))
    assert finding.code == "RHSBL_LISTED"
    assert finding.stage is Stage.MAIL
    assert finding.reason.startswith("The envelope sender's domain xn--bcher-kva.example is listed")
    assert reply_line(finding) == (
        "554 5.7.1 Service unavailable; Sender address [BÜCHER.example] blocked using dbl.example"
    )


async def test_the_null_sender_has_no_domain_to_look_up() -> None:
    resolver = FakeResolver()
    flt = make_filter({"zone": "dbl.example", "lookup": "mail_from_domain"})
    assert await at_mail(flt, resolver, envelope(mail_from="")) == []
    assert resolver.asked == []


async def test_the_header_from_domain_is_looked_up_at_end_of_data_not_at_mail() -> None:
    resolver = FakeResolver({"phish.example.dbl.example": a("127.0.1.2")})
    flt = make_filter({"zone": "dbl.example", "lookup": "header_from_domain"})
    assert await at_mail(flt, resolver) == []
    assert resolver.asked == []
    [finding] = await at_data(flt, resolver, message(sender="ceo@Phish.example"))
    assert (finding.code, finding.category, finding.stage) == (
        "RHSBL_LISTED",
        Category.ENVELOPE,
        Stage.DATA,
    )
    assert reply_line(finding) == "550 5.7.1 Delivery not authorized, message refused"


# --- link hosts --------------------------------------------------------------------------------


async def uri_queries(raw: bytes, **options: Any) -> list[str]:
    resolver = FakeResolver()
    await at_data(make_filter(uri_zone(), **options), resolver, raw)
    return resolver.names()


async def test_hosts_of_http_and_https_urls_in_the_text_body_are_looked_up() -> None:
    body = textwrap.dedent(
        """\
        Plain http://plain.example/path and secure https://secure.example?q=1.
        Shouting HTTPS://LOUD.Example/X, a port http://port.example:8080/, and
        userinfo https://user:pw@trusted.example@userinfo.example/login (see http://paren.example)
        International https://bücher.example/ and punycode http://xn--mnchen-3ya.example/
        Addresses http://192.0.2.10/a and http://[2001:db8::5]:8080/ and http://3221225995/
        Not links: mailto:someone@mail.example ftp://ftp.example/ http://intranet/
        """
    )
    assert await uri_queries(message(body)) == [
        "plain.example.dbl.example",
        "secure.example.dbl.example",
        "loud.example.dbl.example",
        "port.example.dbl.example",
        "userinfo.example.dbl.example",
        "paren.example.dbl.example",
        "xn--bcher-kva.example.dbl.example",
        "xn--mnchen-3ya.example.dbl.example",
        "10.2.0.192.dbl.example",
        "5.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.dbl.example",
        "11.2.0.192.dbl.example",
    ]


async def test_hosts_of_html_hrefs_and_srcs_are_looked_up_but_not_mailto_or_relative_links() -> (
    None
):
    html = (
        '<html><body><a href="https://Click.example/track">Click</a>'
        '<img src="http://images.example/pixel.gif">'
        '<a href="mailto:sales@mailto.example">Mail us</a>'
        '<a href="/relative/path">More</a>'
        '<a href="&#104;ttps://entity.example/">Hidden</a>'
        '<a href=" https:\\\\backslash.example/">Odd</a>'
        "<p>Or paste http://visible.example/ into your browser</p></body></html>"
    )
    assert await uri_queries(message("Hello", html=html)) == [
        "click.example.dbl.example",
        "images.example.dbl.example",
        "entity.example.dbl.example",
        "backslash.example.dbl.example",
        "visible.example.dbl.example",
    ]


async def test_links_in_html_too_deep_to_parse_are_still_found() -> None:
    html = "<div>" * 7000 + '<a HREF = "https://deep.example/">x</a><img src=http://img.example/>'
    assert await uri_queries(message("Hello", html=html)) == [
        "deep.example.dbl.example",
        "img.example.dbl.example",
    ]


async def test_link_hosts_are_deduplicated_and_bounded_by_max_uri_hosts() -> None:
    body = " ".join(f"http://host{n}.example/ https://HOST{n}.example/x" for n in range(10))
    html = '<a href="http://host0.example/">again</a><a href="http://late.example/">late</a>'
    queries = await uri_queries(message(body, html=html), max_uri_hosts=4)
    assert queries == [f"host{n}.example.dbl.example" for n in range(4)]
    everything = await uri_queries(message(body, html=html))
    assert len(everything) == len(set(everything)) == 11


async def test_a_listed_link_host_is_a_content_finding_with_the_zone_s_outcome() -> None:
    resolver = FakeResolver({"spam.example.dbl.example": a("127.0.1.2")})
    flt = make_filter(uri_zone(default={"action": "score", "score": 3.0}))
    raw = message("Buy now at https://spam.example/offer and http://fine.example/")
    [finding] = await at_data(flt, resolver, raw)
    assert (finding.code, finding.category, finding.action, finding.score) == (
        "URIBL_LISTED",
        Category.CONTENT,
        Action.SCORE,
        3.0,
    )
    assert finding.detail["value"] == "spam.example"
    assert finding.reason == (
        "A link in the message (to spam.example) is listed on dbl.example, "
        "which counts against the message (+3 points)."
    )


async def test_a_uri_lookup_error_is_a_content_finding() -> None:
    resolver = FakeResolver({"spam.example.dbl.example": DnsAnswer("SERVFAIL")})
    [finding] = await at_data(make_filter(uri_zone()), resolver, message("http://spam.example/"))
    assert (finding.code, finding.category) == ("DNSBL_ERROR", Category.CONTENT)


async def test_a_message_without_links_asks_nothing() -> None:
    assert await uri_queries(message("No links here, just www.example.com in words.")) == []


# --- concurrency and laziness ------------------------------------------------------------------


async def test_all_queries_of_one_check_are_in_flight_together() -> None:
    resolver = FakeResolver(delay=0.05)
    flt = make_filter(
        client_zone(),
        {"zone": "bl.example"},
        {"zone": "dbl.example", "lookup": "helo"},
        {"zone": "dbl.example", "lookup": "mail_from_domain"},
    )
    await at_mail(flt, resolver)
    assert len(resolver.asked) == 4
    assert resolver.max_in_flight == 4

    resolver = FakeResolver(delay=0.05)
    flt = make_filter(uri_zone(), {"zone": "uri.example", "lookup": "uri_host"})
    body = " ".join(f"http://host{n}.example/" for n in range(6))
    await at_data(flt, resolver, message(body))
    assert len(resolver.asked) == 12
    assert resolver.max_in_flight == 12


def test_a_message_without_html_never_imports_selectolax() -> None:
    script = textwrap.dedent(
        """\
        import asyncio, json, sys
        from tests.support.dnsbl import (
            FakeResolver, at_data, make_filter, message, uri_zone,
        )

        flt = make_filter(uri_zone())
        text = message("Visit http://a.example/ today")
        html = message("Hi", html='<a href="http://b.example/">b</a>')
        asyncio.run(at_data(flt, resolver := FakeResolver(), text))
        text_only = "selectolax" in sys.modules
        asyncio.run(at_data(flt, resolver, html))
        print(json.dumps([resolver.names(), text_only, "selectolax" in sys.modules]))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    names = ["a.example.dbl.example", "b.example.dbl.example"]
    assert json.loads(done.stdout) == [names, False, True]


# --- the profile model -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "zone",
    [
        {"zone": "zen.example", "codes": {"127.0.0.x": {"action": "reject"}}},
        {"zone": "zen.example", "codes": {"127.0.0.7-4": {"action": "reject"}}},
        {"zone": "zen.example", "ignore": ["not-an-address"]},
        {"zone": "zen..example"},
        {"zone": "zen.example", "lookup": "rcpt_to"},
    ],
)
def test_malformed_zones_are_refused_when_the_profile_is_loaded(zone: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        make_filter(zone)


async def test_answer_keys_may_be_ranges_of_full_addresses_or_cidr_blocks() -> None:
    zone = {
        "zone": "zen.example",
        "codes": {
            "127.0.0.2-127.0.0.3": {"id": "LOW", "action": "reject"},
            "127.0.1.0/24": {"id": "DBL", "action": "quarantine"},
        },
    }
    resolver = FakeResolver(
        {"99.2.0.192.zen.example": a("127.0.0.3"), "98.2.0.192.zen.example": a("127.0.1.9")}
    )
    flt = make_filter(zone)
    [low] = await at_mail(flt, resolver)
    [dbl] = await at_mail(flt, resolver, envelope(ip="192.0.2.98"))
    assert (low.detail["id"], dbl.detail["id"]) == ("LOW", "DBL")


def test_url_hosts_in_text_are_exactly_what_the_url_pattern_finds() -> None:
    # text_url_hosts looks for "://" first (fast) instead of running the case-insensitive
    # pattern over the whole text; both must find the same hosts in the same order.
    import random

    from sinkd.core.filters import dnsbl

    def reference(text: str) -> list[object]:
        found = (dnsbl._url_host(m.group(1)) for m in dnsbl._TEXT_URL.finditer(text))
        return [t for t in found if t is not None]

    pieces = [
        "http", "https", "HTTP", "hTtPs", "://", ":/", "/", "x", "é", "_", "1", " ", "\n",
        "a.b", "exa.mple.com", "<", ">", "'", '"', "?", "#", "\\", ":", "ü.de", "s", "h", "t",
    ]  # fmt: skip
    rng = random.Random(7)
    for _ in range(20_000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 25)))
        assert list(dnsbl.text_url_hosts(text)) == reference(text), text


async def test_the_link_hosts_of_one_message_are_extracted_once_whichever_filter_asks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    extracted: list[object] = []
    extract = dnsbl._message_url_hosts

    def counting(parsed: ParsedMessage, limit: int) -> list[dnsbl.Target]:
        extracted.append(parsed)
        return extract(parsed, limit)

    monkeypatch.setattr(dnsbl, "_message_url_hosts", counting)
    parsed = parse(message("Go to https://a.example/x and http://b.example/y", html=None))
    first, second = make_filter(uri_zone()), make_filter(uri_zone(zone="other.example"))
    resolver = FakeResolver({"a.example.dbl.example": a("127.0.0.2")})
    for flt in (first, second):
        await flt.check_message(MessageContext(envelope(), parsed, Lookups(resolver=resolver)))
    assert extracted == [parsed]
    assert dnsbl.message_url_hosts(parsed, 20) == ["a.example", "b.example"]
    assert sorted(resolver.names()) == [
        "a.example.dbl.example",
        "a.example.other.example",
        "b.example.dbl.example",
        "b.example.other.example",
    ]
