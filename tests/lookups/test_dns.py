"""DNS: fixtures from master files and record maps, caching, live DNS against a loopback
server, the overlay, offline by default, profile zones and the command-line options.

Every query here stays on this machine: fixtures answer from files, and live lookups go to
``tests/dns_server.py`` on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import base64
import io
import os
import textwrap
import time
from collections.abc import Iterator
from contextlib import redirect_stderr
from pathlib import Path
from typing import Any

import dns.asyncquery
import dns.asyncresolver
import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from dns.rdtypes.ANY.TXT import TXT

from sinkd.cli import build_parser, main
from sinkd.core.ports import NO_DNS, DnsAnswer, RecordType
from sinkd.core.profiles import ProfileSet
from sinkd.errors import ConfigError, ProfileError
from sinkd.lookups.dns import (
    CachingResolver,
    FixtureResolver,
    LiveResolver,
    OverlayResolver,
    build_resolver,
)
from sinkd.server.runtime import Sinkd
from sinkd.services.judge import Judge
from sinkd.services.settings import Settings, from_namespace
from tests.conftest import StartDnsServer
from tests.dns_server import DnsTestServer
from tests.support.paths import PROFILES

DEMO = PROFILES / "dns"

ZONE = """\
$TTL 300
$ORIGIN corp.example.
@        SOA   ns.corp.example. hostmaster.corp.example. ( 1 3600 600 86400 120 )
@        MX    10 mx
@        TXT   "v=spf1 mx -all"
mx       A     192.0.2.25
mx       AAAA  2001:DB8::25
www      CNAME web
web      60    A 192.0.2.80
loop1    CNAME loop2
loop2    CNAME loop1
away     CNAME elsewhere.example.
*        TXT   "wildcard"
*.sub    A     192.0.2.99
a.b      A     192.0.2.1
long     TXT   "first string, " "second string, " "" "fourth after an empty one"
UPPER    A     192.0.2.7
$ORIGIN other.example.
@        SOA   ns.other.example. hostmaster.other.example. ( 1 3600 600 86400 30 )
@        TXT   "v=spf1 -all"
"""


def joined(answer: DnsAnswer) -> list[bytes]:
    """Each TXT record's character-strings joined, as SPF and DKIM read them."""
    texts: list[bytes] = []
    for record in answer.records:
        assert isinstance(record, tuple)
        texts.append(b"".join(part for part in record if isinstance(part, bytes)))
    return texts


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture
def zone(tmp_path: Path) -> FixtureResolver:
    return FixtureResolver([write(tmp_path, "corp.zone", ZONE)])


@pytest.fixture(autouse=True)
def _no_sinkd_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("SINKD_"):
            monkeypatch.delenv(name)


# --- fixtures from master files ----------------------------------------------------------------


async def test_a_master_file_answers_relative_names_under_its_origin(
    zone: FixtureResolver,
) -> None:
    assert await zone.query("corp.example", "MX") == DnsAnswer(
        "NOERROR", ((10, "mx.corp.example"),), 300
    )
    assert await zone.query("corp.example", "TXT") == DnsAnswer(
        "NOERROR", ((b"v=spf1 mx -all",),), 300
    )
    assert (await zone.query("mx.corp.example", "AAAA")).records == ("2001:db8::25",)


async def test_one_file_can_hold_several_zones_each_with_its_soa(zone: FixtureResolver) -> None:
    assert (await zone.query("other.example", "TXT")).records == ((b"v=spf1 -all",),)
    # Negative answers carry min(SOA TTL, SOA MINIMUM) of the name's own zone (RFC 2308 §5).
    assert await zone.query("nothing.other.example", "A") == DnsAnswer("NXDOMAIN", (), 30)
    assert await zone.query("mx.corp.example", "TXT") == DnsAnswer("NOERROR", (), 120)


async def test_a_missing_name_is_nxdomain_and_a_name_with_other_types_is_nodata(
    zone: FixtureResolver,
) -> None:
    # other.example's SOA is in the fixture: it speaks for every name of that zone.
    assert (await zone.query("nothing.other.example", "A")).rcode == "NXDOMAIN"
    nodata = await zone.query("mx.corp.example", "MX")
    assert (nodata.rcode, nodata.records) == ("NOERROR", ())
    # b.corp.example holds nothing itself but has a name below it: an empty non-terminal.
    assert (await zone.query("b.corp.example", "A")).rcode == "NOERROR"


async def test_a_cname_is_chased_within_the_fixture_with_the_shortest_ttl(
    zone: FixtureResolver,
) -> None:
    assert await zone.query("www.corp.example", "A") == DnsAnswer("NOERROR", ("192.0.2.80",), 60)
    assert (await zone.query("www.corp.example", "CNAME")).records == ("web.corp.example",)
    assert (await zone.query("www.corp.example", "MX")).rcode == "NOERROR"
    # The target elsewhere.example is in no zone of the fixture: no data, not NXDOMAIN.
    assert (await zone.query("away.corp.example", "A")).rcode == "UNKNOWN"
    assert (await zone.query("loop1.corp.example", "A")).rcode == "SERVFAIL"


async def test_a_name_outside_every_fixture_zone_is_unknown_not_nxdomain(
    zone: FixtureResolver,
) -> None:
    for name in ("nothing.else.example", "gmail.com", "example"):
        answer = await zone.query(name, "TXT")
        assert (answer.rcode, answer.unknown, answer.temporary) == ("UNKNOWN", True, False)
    assert not zone.covers("gmail.com")
    assert zone.covers("deep.below.corp.example")


async def test_offline_dns_without_any_fixture_knows_nothing_and_says_so() -> None:
    answer = await FixtureResolver().query("example.com", "TXT")
    assert answer == DnsAnswer("UNKNOWN")
    assert (await NO_DNS.query("example.com", "A")).unknown


async def test_a_record_map_that_forces_nxdomain_is_still_nxdomain(tmp_path: Path) -> None:
    resolver = FixtureResolver([write(tmp_path, "gone.yaml", "gone.example: {rcode: NXDOMAIN}\n")])
    assert (await resolver.query("gone.example", "TXT")).rcode == "NXDOMAIN"
    assert (await resolver.query("sub.gone.example", "TXT")).rcode == "NXDOMAIN"


def test_a_record_map_cannot_force_unknown_which_only_missing_data_says(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="rcode must be one of"):
        FixtureResolver([write(tmp_path, "x.yaml", "x.example: {rcode: UNKNOWN}\n")])


async def test_wildcards_match_only_names_that_do_not_exist_as_rfc_4592_says(
    zone: FixtureResolver,
) -> None:
    assert (await zone.query("anything.corp.example", "TXT")).records == ((b"wildcard",),)
    assert (await zone.query("x.y.corp.example", "TXT")).records == ((b"wildcard",),)
    # The wildcard owner has no A: NODATA, not NXDOMAIN.
    wild_a = await zone.query("anything.corp.example", "A")
    assert (wild_a.rcode, wild_a.records) == ("NOERROR", ())
    # An existing name is never replaced by the wildcard...
    assert (await zone.query("mx.corp.example", "TXT")).records == ()
    # ... nor is a name below an existing one (its closest encloser has no wildcard).
    assert (await zone.query("x.mx.corp.example", "TXT")).rcode == "NXDOMAIN"
    # b.corp.example exists (empty non-terminal): the closest encloser of c.b is b.
    assert (await zone.query("c.b.corp.example", "TXT")).rcode == "NXDOMAIN"
    assert (await zone.query("q.sub.corp.example", "A")).records == ("192.0.2.99",)
    assert (await zone.query("*.corp.example", "TXT")).records == ((b"wildcard",),)


async def test_names_are_case_insensitive_and_may_end_in_a_dot(zone: FixtureResolver) -> None:
    assert (await zone.query("MX.Corp.EXAMPLE.", "A")).records == ("192.0.2.25",)
    assert (await zone.query("upper.corp.example", "A")).records == ("192.0.2.7",)


async def test_a_txt_record_of_several_strings_stays_several_strings(
    zone: FixtureResolver,
) -> None:
    answer = await zone.query("long.corp.example", "TXT")
    assert answer.records == (
        (b"first string, ", b"second string, ", b"", b"fourth after an empty one"),
    )


async def test_a_name_no_query_can_carry_is_nxdomain(zone: FixtureResolver) -> None:
    assert (await zone.query("a" * 64 + ".corp.example", "A")).rcode == "NXDOMAIN"
    assert (await zone.query("a..corp.example", "A")).rcode == "NXDOMAIN"
    assert (await zone.query("", "A")).rcode == "NXDOMAIN"


def test_a_zone_syntax_error_names_the_file_and_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "bad.zone", "$TTL 60\n$ORIGIN x.example.\n\nwww A 192.0.2\n")
    with pytest.raises(ConfigError, match=rf"^{path}:4: DNS zone syntax error"):
        FixtureResolver([path])


def test_a_missing_zone_file_or_an_include_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"missing\.zone: cannot read"):
        FixtureResolver([tmp_path / "missing.zone"])
    path = write(tmp_path, "inc.zone", "$TTL 60\n$INCLUDE /etc/hosts\n")
    with pytest.raises(ConfigError, match=rf"{path}:2: .*INCLUDE"):
        FixtureResolver([path])


async def test_later_zone_files_replace_earlier_ones_per_name_and_type(tmp_path: Path) -> None:
    first = write(tmp_path, "a.zone", '$TTL 60\nx.example. TXT "old"\nx.example. A 192.0.2.1\n')
    second = write(tmp_path, "b.zone", '$TTL 60\nx.example. TXT "new"\n')
    fixture = FixtureResolver([first, second])
    assert (await fixture.query("x.example", "TXT")).records == ((b"new",),)
    assert (await fixture.query("x.example", "A")).records == ("192.0.2.1",)


# --- fixtures from record maps -----------------------------------------------------------------

RECORDS = """\
example.com:
  TXT: ["v=spf1 -all"]
  MX: [[10, mx.example.com]]
mx.example.com.:
  A: 192.0.2.25
4.3.2.1.zen.example:
  A: ["127.0.0.2"]
  TXT: ["listed"]
  ttl: 900
split.example:
  TXT:
    - ["v=spf1 ", "-all"]
    - !!binary AP8K
    - ""
broken.example: {rcode: SERVFAIL}
slow.example: {rcode: TIMEOUT}
refused.example: {rcode: refused}
"*.wild.example": {A: 192.0.2.9}
alias.example: {CNAME: example.com.}
"""


@pytest.fixture
def records(tmp_path: Path) -> FixtureResolver:
    return FixtureResolver([write(tmp_path, "records.yaml", RECORDS)])


async def test_a_record_map_answers_like_a_zone(records: FixtureResolver) -> None:
    assert await records.query("example.com", "MX") == DnsAnswer(
        "NOERROR", ((10, "mx.example.com"),), 300
    )
    assert await records.query("4.3.2.1.zen.example", "A") == DnsAnswer(
        "NOERROR", ("127.0.0.2",), 900
    )
    assert (await records.query("MX.example.COM", "A")).records == ("192.0.2.25",)
    assert (await records.query("alias.example", "TXT")).records == ((b"v=spf1 -all",),)
    assert (await records.query("a.b.wild.example", "A")).records == ("192.0.2.9",)
    # A record map speaks for the registrable domains of its names (Public Suffix List).
    assert (await records.query("nothing.example.com", "A")).rcode == "NXDOMAIN"
    assert (await records.query("nothing.example", "A")).rcode == "UNKNOWN"
    assert (await records.query("example.com", "A")).rcode == "NOERROR"


async def test_record_map_txt_records_keep_their_strings_and_bytes_exactly(
    records: FixtureResolver,
) -> None:
    answer = await records.query("split.example", "TXT")
    assert answer.records == ((b"v=spf1 ", b"-all"), (b"\x00\xff\n",), (b"",))


async def test_a_txt_string_over_255_bytes_is_split_into_character_strings() -> None:
    fixture = FixtureResolver(records={"long.example": {"TXT": ["x" * 600]}})
    (strings,) = (await fixture.query("long.example", "TXT")).records
    assert isinstance(strings, tuple)
    assert [len(s) for s in strings if isinstance(s, bytes)] == [255, 255, 90]


async def test_forced_rcodes_answer_every_type_of_the_name(records: FixtureResolver) -> None:
    assert await records.query("broken.example", "TXT") == DnsAnswer("SERVFAIL")
    assert await records.query("slow.example", "A") == DnsAnswer("TIMEOUT")
    refused = await records.query("refused.example", "MX")
    assert refused == DnsAnswer("REFUSED")
    assert refused.temporary


@pytest.mark.parametrize(
    ("text", "where", "problem"),
    [
        ("a.example: {A: [300.1.1.1]}\n", ":1", "no IPv4 address"),
        ("a.example:\n  AAAA: [192.0.2.1]\n", ":2", "no IPv6 address"),
        ("a.example:\n  SRV: [x]\n", ":2", "unknown record type 'SRV'"),
        ("a.example:\n  MX: [mx.example]\n", ":2", r"expected \[preference, exchange\]"),
        ("a.example: {rcode: LATER}\n", ":1", "rcode must be one of"),
        ("a.example: {rcode: SERVFAIL, A: [192.0.2.1]}\n", ":1", "cannot go with records"),
        ("a.example: [1, 2]\n", ":1", "expected a mapping"),
        ("a.example: {A: [\n", ":2", "YAML syntax error"),
    ],
)
def test_record_map_errors_name_the_file_and_the_line(
    tmp_path: Path, text: str, where: str, problem: str
) -> None:
    path = write(tmp_path, "bad.yaml", text)
    with pytest.raises(ConfigError, match=rf"^{path}{where}: .*{problem}"):
        FixtureResolver([path])


async def test_a_record_map_name_with_a_label_over_63_octets_is_skipped() -> None:
    fixture = FixtureResolver(records={"a" * 64 + ".example": {"A": "192.0.2.1"}})
    assert (await fixture.query("a" * 64 + ".example", "A")).rcode == "NXDOMAIN"


# --- the demo fixture ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo() -> FixtureResolver:
    return FixtureResolver([DEMO / "demo.zone"])


async def test_the_demo_zone_holds_the_documented_senders(demo: FixtureResolver) -> None:
    spf = await demo.query("shop.example", "TXT")
    assert spf.records == ((b"v=spf1 ip4:192.0.2.0/24 ip6:2001:db8::/32 -all",),)
    dmarc = await demo.query("_dmarc.shop.example", "TXT")
    assert dmarc.records == ((b"v=DMARC1; p=reject; rua=mailto:dmarc@shop.example",),)
    news = await demo.query("news.example", "TXT")
    assert news.records == ((b"v=spf1 include:_spf.shop.example ~all",),)
    assert (await demo.query("_spf.shop.example", "TXT")).records
    assert (await demo.query("softfail.example", "TXT")).records == ((b"v=spf1 ~all",),)
    no_spf = await demo.query("nospf.example", "TXT")
    assert no_spf.records and not any(text.startswith(b"v=spf1") for text in joined(no_spf))
    assert (await demo.query("25.2.0.192.in-addr.arpa", "PTR")).records == ("mx.shop.example",)


async def test_the_demo_dkim_key_in_the_zone_is_the_demo_private_keys_public_half(
    demo: FixtureResolver,
) -> None:
    answer = await demo.query("mail._domainkey.shop.example", "TXT")
    (record,) = answer.records
    assert isinstance(record, tuple) and len(record) > 1  # longer than one string
    (text,) = joined(answer)
    tags = dict(part.strip().partition("=")[::2] for part in text.decode().split(";"))
    private = serialization.load_pem_private_key(
        (DEMO / "demo-dkim-private.pem").read_bytes(), None
    )
    assert isinstance(private, rsa.RSAPrivateKey) and private.key_size == 2048
    public = private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert tags["v"] == "DKIM1" and tags["k"] == "rsa"
    assert base64.b64decode(tags["p"]) == public


async def test_the_demo_blocklists_list_their_entries_and_rfc_5782_test_points(
    demo: FixtureResolver,
) -> None:
    def listed(answer: DnsAnswer) -> bool:
        return answer.rcode == "NOERROR" and answer.records == ("127.0.0.2",)

    assert listed(await demo.query("99.2.0.192.dnsbl.example", "A"))
    assert (await demo.query("99.2.0.192.dnsbl.example", "TXT")).records
    assert listed(await demo.query("2.0.0.127.dnsbl.example", "A"))
    assert (await demo.query("1.0.0.127.dnsbl.example", "A")).rcode == "NXDOMAIN"
    assert (await demo.query("10.2.0.192.dnsbl.example", "A")).rcode == "NXDOMAIN"
    v6 = ".".join(reversed("00000000000000000000ffff7f000002"))
    assert listed(await demo.query(f"{v6}.dnsbl.example", "A"))
    assert (await demo.query(f"{v6[:-1]}1.dnsbl.example", "A")).rcode == "NXDOMAIN"
    assert listed(await demo.query("bad.example.dbl.example", "A"))
    assert listed(await demo.query("test.dbl.example", "A"))
    assert (await demo.query("invalid.dbl.example", "A")).rcode == "NXDOMAIN"


# --- caching ------------------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Scripted:
    """A resolver answering from a dict, counting the questions it was asked."""

    def __init__(self, answers: dict[str, DnsAnswer], delay: float = 0.0) -> None:
        self.answers = answers
        self.asked: list[tuple[str, str]] = []
        self.delay = delay

    async def query(self, name: str, rdtype: RecordType) -> DnsAnswer:
        self.asked.append((name, rdtype))
        if self.delay:
            await asyncio.sleep(self.delay)
        return self.answers.get(name, DnsAnswer("NXDOMAIN"))


async def test_the_cache_keeps_an_answer_for_its_ttl_and_no_longer() -> None:
    inner = Scripted({"a.example": DnsAnswer("NOERROR", ("192.0.2.1",), 30)})
    clock = FakeClock()
    cache = CachingResolver(inner, clock=clock)
    await cache.query("a.example", "A")
    clock.now += 29.9
    assert (await cache.query("A.Example.", "A")).records == ("192.0.2.1",)
    assert len(inner.asked) == 1
    clock.now += 0.2
    await cache.query("a.example", "A")
    assert len(inner.asked) == 2


async def test_negative_answers_are_kept_for_the_soa_ttl_or_sixty_seconds() -> None:
    inner = Scripted(
        {"soa.example": DnsAnswer("NXDOMAIN", (), 10), "nodata.example": DnsAnswer("NOERROR")}
    )
    clock = FakeClock()
    cache = CachingResolver(inner, clock=clock)
    for name in ("soa.example", "nodata.example", "unknown.example"):
        await cache.query(name, "A")
    clock.now += 11
    for name in ("soa.example", "nodata.example", "unknown.example"):
        await cache.query(name, "A")
    assert [n for n, _ in inner.asked].count("soa.example") == 2
    assert [n for n, _ in inner.asked].count("nodata.example") == 1
    clock.now += 50
    await cache.query("nodata.example", "A")
    assert [n for n, _ in inner.asked].count("nodata.example") == 2


@pytest.mark.parametrize("rcode", ["TIMEOUT", "SERVFAIL", "REFUSED"])
async def test_temporary_failures_are_never_cached(rcode: Any) -> None:
    inner = Scripted({"t.example": DnsAnswer(rcode, (), 300)})
    cache = CachingResolver(inner, clock=FakeClock())
    await cache.query("t.example", "TXT")
    await cache.query("t.example", "TXT")
    assert len(inner.asked) == 2
    assert len(cache) == 0


async def test_the_cache_holds_at_most_max_entries_dropping_the_least_recent() -> None:
    inner = Scripted({f"{i}.example": DnsAnswer("NOERROR", ("192.0.2.1",), 300) for i in range(3)})
    cache = CachingResolver(inner, max_entries=2, clock=FakeClock())
    await cache.query("0.example", "A")
    await cache.query("1.example", "A")
    await cache.query("0.example", "A")  # 0 is now the most recent
    await cache.query("2.example", "A")  # evicts 1
    await cache.query("0.example", "A")
    await cache.query("1.example", "A")
    assert [n for n, _ in inner.asked] == ["0.example", "1.example", "2.example", "1.example"]


async def test_concurrent_lookups_of_one_name_share_one_query() -> None:
    inner = Scripted({"a.example": DnsAnswer("NOERROR", ("192.0.2.1",), 300)}, delay=0.01)
    cache = CachingResolver(inner)
    answers = await asyncio.gather(*(cache.query("a.example", "A") for _ in range(20)))
    assert {a.records for a in answers} == {("192.0.2.1",)}
    assert len(inner.asked) == 1


# --- live DNS against the loopback test server --------------------------------------------------

LIVE_RECORDS: dict[str, dict[str, Any]] = {
    "example.com": {
        "SOA": ["ns.example.com. hostmaster.example.com. 1 3600 600 86400 45"],
        "TXT": ["v=spf1 -all"],
        "MX": [[10, "mx.example.com"], [20, "mx2.example.com."]],
        "A": ["192.0.2.1"],
    },
    "mx.example.com": {"A": ["192.0.2.25"], "AAAA": ["2001:db8::25"]},
    "www.example.com": {"CNAME": ["mx.example.com"]},
    "25.2.0.192.in-addr.arpa": {"PTR": ["mx.example.com"]},
    "big.example.com": {"TXT": [["x" * 250] * 8]},
    "bytes.example.com.": {"TXT": [[b"\x00\xff", "", "é"], ""]},
    "broken.example": {"rcode": "SERVFAIL"},
    "refused.example": {"rcode": "REFUSED"},
    "slow.example": {"rcode": "TIMEOUT"},
    "*.wild.example": {"A": ["192.0.2.9"]},
    "a" * 64 + ".example.com": {"A": ["192.0.2.64"]},
    "spf.example": {"SPF": ["v=spf1 -all"], "TXT": ["v=spf1 -all"]},
}


@pytest.fixture
def server(dns_server: StartDnsServer) -> DnsTestServer:
    return dns_server({k: dict(v) for k, v in LIVE_RECORDS.items()})


async def test_live_lookups_get_answers_over_udp(server: DnsTestServer) -> None:
    live = LiveResolver(server.address, timeout=5)
    assert await live.query("example.com", "TXT") == DnsAnswer("NOERROR", ((b"v=spf1 -all",),), 300)
    mx = await live.query("Example.COM.", "MX")
    assert set(mx.records) == {(10, "mx.example.com"), (20, "mx2.example.com")}
    assert (await live.query("mx.example.com", "AAAA")).records == ("2001:db8::25",)
    assert (await live.query("www.example.com", "A")).records == ("192.0.2.25",)
    assert (await live.query("25.2.0.192.in-addr.arpa", "PTR")).records == ("mx.example.com",)
    assert (await live.query("x.wild.example", "A")).records == ("192.0.2.9",)
    assert {q.transport for q in server.queries} == {"udp"}


async def test_a_big_txt_answer_is_truncated_over_udp_and_fetched_over_tcp(
    server: DnsTestServer,
) -> None:
    live = LiveResolver(server.address, timeout=5)
    answer = await live.query("big.example.com", "TXT")
    assert answer.records == (tuple([b"x" * 250] * 8),)
    assert [(q.name, q.transport) for q in server.queries] == [
        ("big.example.com", "udp"),
        ("big.example.com", "tcp"),
    ]


async def test_txt_strings_of_any_bytes_travel_exactly(server: DnsTestServer) -> None:
    live = LiveResolver(server.address, timeout=5)
    answer = await live.query("bytes.example.com", "TXT")
    assert set(answer.records) == {(b"\x00\xff", b"", "é".encode()), (b"",)}


async def test_live_negative_answers_carry_the_soa_negative_ttl(server: DnsTestServer) -> None:
    live = LiveResolver(server.address, timeout=5)
    assert await live.query("nothing.example.com", "A") == DnsAnswer("NXDOMAIN", (), 45)
    assert await live.query("example.com", "AAAA") == DnsAnswer("NOERROR", (), 45)
    assert await live.query("nothing.example", "A") == DnsAnswer("NXDOMAIN", (), 0)


async def test_live_server_failures_become_rcodes(server: DnsTestServer) -> None:
    live = LiveResolver(server.address, timeout=5)
    assert await live.query("broken.example", "TXT") == DnsAnswer("SERVFAIL")
    assert await live.query("refused.example", "TXT") == DnsAnswer("REFUSED")


async def test_a_server_that_never_answers_is_a_timeout_within_the_timeout(
    server: DnsTestServer,
) -> None:
    live = LiveResolver(server.address, timeout=0.5)
    started = time.monotonic()
    answer = await asyncio.wait_for(live.query("slow.example", "A"), 10)
    assert answer == DnsAnswer("TIMEOUT")
    assert time.monotonic() - started < 3
    server.silent = True
    answer = await asyncio.wait_for(live.query("example.com", "A"), 10)
    assert answer == DnsAnswer("TIMEOUT")
    assert answer.unanswered  # no server answered sinkd: the check is unavailable


async def test_a_fixture_that_forces_a_timeout_is_an_answer_not_an_unavailable_lookup(
    tmp_path: Path,
) -> None:
    resolver = FixtureResolver([write(tmp_path, "slow.yaml", "slow.example: {rcode: TIMEOUT}\n")])
    answer = await resolver.query("slow.example", "TXT")
    assert (answer.rcode, answer.temporary, answer.unanswered) == ("TIMEOUT", True, False)


async def test_a_port_where_nothing_listens_is_a_failure_not_an_exception() -> None:
    with DnsTestServer() as gone:
        address = gone.address
    answer = await asyncio.wait_for(LiveResolver(address, timeout=0.3).query("a.example", "A"), 10)
    assert answer.temporary


async def test_a_name_no_query_can_carry_is_nxdomain_without_asking(
    server: DnsTestServer,
) -> None:
    live = LiveResolver(server.address, timeout=5)
    assert (await live.query("a" * 64 + ".example.com", "A")).rcode == "NXDOMAIN"
    assert server.queries == []


def test_a_dns_server_must_be_an_ip_address_or_localhost() -> None:
    with pytest.raises(ConfigError, match="expected an IP address"):
        LiveResolver(("dns.example", 53), timeout=1)
    assert LiveResolver(("localhost", 5353), timeout=1).server == ("localhost", 5353)


# --- the test server itself ---------------------------------------------------------------------


def ask(server: DnsTestServer, name: str, rdtype: str, *, tcp: bool = False) -> dns.message.Message:
    query = dns.message.make_query(name, rdtype)
    host, port = server.address
    if tcp:
        return dns.query.tcp(query, host, port=port, timeout=5)
    return dns.query.udp(query, host, port=port, timeout=5, ignore_trailing=False)


def test_the_test_server_answers_udp_and_tcp_on_one_port(server: DnsTestServer) -> None:
    for tcp in (False, True):
        response = ask(server, "example.com", "A", tcp=tcp)
        assert response.flags & dns.flags.AA
        assert [r.to_text() for r in response.answer[0]] == ["192.0.2.1"]
    assert [q.transport for q in server.queries] == ["udp", "tcp"]


def test_the_test_server_sets_tc_over_512_bytes_on_udp_only(server: DnsTestServer) -> None:
    udp = ask(server, "big.example.com", "TXT")
    assert udp.flags & dns.flags.TC and not udp.answer
    tcp = ask(server, "big.example.com", "TXT", tcp=True)
    assert not tcp.flags & dns.flags.TC
    (record,) = tcp.answer[0]
    assert isinstance(record, TXT) and record.strings == tuple([b"x" * 250] * 8)


def test_the_test_server_serves_spf_type_99_ns_and_nodata(server: DnsTestServer) -> None:
    spf = ask(server, "spf.example", "SPF")
    assert spf.answer[0].rdtype == dns.rdatatype.SPF == 99
    nodata = ask(server, "example.com", "NS")
    assert nodata.rcode() == dns.rcode.NOERROR and not nodata.answer
    assert nodata.authority[0].rdtype == dns.rdatatype.SOA
    assert ask(server, "nothing.example.com", "A").rcode() == dns.rcode.NXDOMAIN


def test_the_test_server_survives_unencodable_names_and_reads_records_live(
    server: DnsTestServer,
) -> None:
    server.records["far.example"] = {"CNAME": ["b" * 64 + ".example"], "A": ["192.0.2.3"]}
    assert ask(server, "far.example", "CNAME").answer == []
    assert server.errors and "left out" in server.errors[-1]
    assert [r.to_text() for r in ask(server, "far.example", "A").answer[0]] == ["192.0.2.3"]
    server.records["new.example"] = {"NS": ["ns.new.example."]}
    answer = ask(server, "NEW.example.", "NS").answer  # compression may borrow the query's case
    assert [r.to_text().lower() for r in answer[0]] == ["ns.new.example."]


def test_a_malformed_record_makes_the_test_server_answer_servfail_and_say_why(
    server: DnsTestServer,
) -> None:
    server.records["bad.example"] = {"A": ["not an address"]}
    assert ask(server, "bad.example", "A").rcode() == dns.rcode.SERVFAIL
    assert "bad.example A" in server.errors[-1]


def test_a_stopped_test_server_answers_nothing(dns_server: StartDnsServer) -> None:
    server = dns_server({"a.example": {"A": "192.0.2.1"}})
    assert server.spec == f"127.0.0.1:{server.address[1]}"
    assert ask(server, "a.example", "A").answer
    server.stop()
    query = dns.message.make_query("a.example", "A")
    with pytest.raises((dns.exception.Timeout, OSError)):
        dns.query.udp(query, "127.0.0.1", port=server.address[1], timeout=0.2)


# --- overlay and build_resolver -----------------------------------------------------------------


async def test_the_overlay_asks_the_fixture_first_and_live_for_what_it_does_not_know() -> None:
    fixture = FixtureResolver(
        records={
            "known.example": {"TXT": "from the fixture"},
            "failing.example": {"rcode": "SERVFAIL"},
            "alias.example": {"CNAME": "outside.example", "ttl": 20},
            "*.wild.example": {"A": "192.0.2.9"},
            "a.parent.example": {"A": "192.0.2.2"},
        }
    )
    live = Scripted({"outside.example": DnsAnswer("NOERROR", ("192.0.2.77",), 300)})
    overlay = OverlayResolver(fixture, live)
    assert (await overlay.query("known.example", "TXT")).records == ((b"from the fixture",),)
    assert (await overlay.query("known.example", "A")).rcode == "NOERROR"  # NODATA, not live
    assert (await overlay.query("failing.example", "A")).rcode == "SERVFAIL"
    assert (await overlay.query("x.wild.example", "A")).records == ("192.0.2.9",)
    assert live.asked == []
    assert await overlay.query("alias.example", "A") == DnsAnswer("NOERROR", ("192.0.2.77",), 20)
    assert (await overlay.query("unknown.example", "A")).rcode == "NXDOMAIN"
    await overlay.query("parent.example", "A")  # an empty non-terminal holds nothing itself
    assert live.asked == [
        ("outside.example", "A"),
        ("unknown.example", "A"),
        ("parent.example", "A"),
    ]


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    def refuse(*args: object, **kwargs: object) -> Any:
        raise AssertionError("offline DNS must not touch the network")

    monkeypatch.setattr(dns.asyncresolver, "Resolver", refuse)
    monkeypatch.setattr(dns.asyncquery, "udp", refuse)
    monkeypatch.setattr(dns.asyncquery, "tcp", refuse)
    yield


@pytest.mark.usefixtures("no_network")
async def test_offline_dns_answers_from_fixtures_and_never_from_the_network(
    tmp_path: Path,
) -> None:
    resolver = build_resolver("offline", None, [write(tmp_path, "z.zone", ZONE)], timeout=5)
    assert isinstance(resolver, CachingResolver)
    assert (await resolver.query("corp.example", "MX")).records == ((10, "mx.corp.example"),)
    assert (await resolver.query("gmail.com", "MX")).rcode == "UNKNOWN"
    assert (await build_resolver("offline", None, [], 5).query("example.com", "A")).rcode == (
        "UNKNOWN"
    )


async def test_a_dns_server_implies_live_behind_the_fixtures(
    server: DnsTestServer, tmp_path: Path
) -> None:
    resolver = build_resolver("offline", server.address, [write(tmp_path, "z.zone", ZONE)], 5)
    assert (await resolver.query("corp.example", "MX")).records == ((10, "mx.corp.example"),)
    assert (await resolver.query("example.com", "TXT")).records == ((b"v=spf1 -all",),)
    assert [q.name for q in server.queries] == ["example.com"]


def test_build_resolver_refuses_bad_modes_and_timeouts() -> None:
    with pytest.raises(ConfigError, match="expected offline or live"):
        build_resolver("online", None, [], 5)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="--dns-timeout"):
        build_resolver("offline", None, [], 0)


# --- profiles name zone files --------------------------------------------------------------------

PROFILE = """\
schema: sinkd.profile/v1
id: {id}
title: DNS profile
models:
  - {{what: "a test", source: "the test suite"}}
"""


def test_a_profile_names_zone_files_relative_to_its_own_directory(tmp_path: Path) -> None:
    (tmp_path / "zones").mkdir()
    write(tmp_path, "zones/corp.zone", ZONE)
    parent_dir = tmp_path / "parent"
    parent_dir.mkdir()
    write(parent_dir, "own.yaml", "x.example: {A: 192.0.2.1}\n")
    write(parent_dir, "base.yaml", PROFILE.format(id="base") + "dns_zones: [own.yaml]\n")
    child = tmp_path / "child.yaml"
    child.write_text(
        PROFILE.format(id="child") + "extends: base\ndns_zones: [zones/corp.zone, ../x.zone]\n"
    )
    (tmp_path.parent / "x.zone").write_text("$TTL 60\n")
    profiles = ProfileSet([parent_dir])
    assert profiles.resolve("base").dns_zones == ((parent_dir / "own.yaml").resolve(),)
    assert profiles.resolve(str(child)).dns_zones == (
        (tmp_path / "zones" / "corp.zone").resolve(),
        (tmp_path.parent / "x.zone").resolve(),
    )


def test_a_profile_zone_file_that_does_not_exist_is_a_located_profile_error(
    tmp_path: Path,
) -> None:
    path = write(tmp_path, "p.yaml", PROFILE.format(id="p") + "dns_zones:\n  - missing.zone\n")
    with pytest.raises(ProfileError, match=rf"{path}:7: dns_zones\[0\]: DNS zone file .* found"):
        ProfileSet().resolve(str(path))


async def test_the_resolver_holds_the_zones_of_every_profile_in_use(tmp_path: Path) -> None:
    write(tmp_path, "a.zone", '$TTL 60\na.example. TXT "a"\n')
    write(tmp_path, "b.yaml", "b.example: {TXT: b}\n")
    write(tmp_path, "pa.yaml", PROFILE.format(id="pa") + "dns_zones: [a.zone]\n")
    write(tmp_path, "pb.yaml", PROFILE.format(id="pb") + "dns_zones: [b.yaml]\n")
    profiles = ProfileSet([tmp_path])
    resolver = Judge(profiles, profile="pa", routes={"b.example": "pb"}).lookups.resolver
    assert (await resolver.query("a.example", "TXT")).records == ((b"a",),)
    assert (await resolver.query("b.example", "TXT")).records == ((b"b",),)


# --- command line and server settings -------------------------------------------------------------


def eml(tmp_path: Path) -> Path:
    path = tmp_path / "m.eml"
    path.write_bytes(
        b"From: Alice <alice@shop.example>\r\nTo: bob@corp.example\r\nSubject: Hi\r\n\r\nHi\r\n"
    )
    return path


def run(*argv: str | Path) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stderr(err):
        code = main([str(a) for a in argv], out=out)
    return code, out.getvalue(), err.getvalue()


def test_check_takes_dns_zones_and_offline_mode(tmp_path: Path) -> None:
    zone = DEMO / "demo.zone"
    code, out, _ = run(
        "check", eml(tmp_path), "--profile", "no-filter", "--dns", "offline", "--dns-zone", zone
    )
    assert code == 0, out
    assert "ACCEPT" in out


def test_check_with_a_bad_zone_file_exits_2_naming_the_file(tmp_path: Path) -> None:
    bad = write(tmp_path, "bad.zone", "$TTL 60\nwww.example. A nowhere\n")
    code, _, err = run("check", eml(tmp_path), "--profile", "no-filter", "--dns-zone", bad)
    assert code == 2
    assert f"{bad}:2: DNS zone syntax error" in err


def test_dns_options_come_from_the_environment_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SINKD_DNS", "live")
    monkeypatch.setenv("SINKD_DNS_SERVER", "127.0.0.1:5353")
    monkeypatch.setenv("SINKD_DNS_ZONE", f"{tmp_path}/a.zone, {tmp_path}/b.yaml")
    monkeypatch.setenv("SINKD_DNS_TIMEOUT", "1.5")
    args = build_parser().parse_args(["serve", "--dns-zone", "c.zone"])
    assert (args.dns, args.dns_server, args.dns_timeout) == ("live", ("127.0.0.1", 5353), 1.5)
    assert args.dns_zone == [tmp_path / "a.zone", tmp_path / "b.yaml", Path("c.zone")]
    monkeypatch.setenv("SINKD_DNS", "online")
    code, _, err = run("check", eml(tmp_path))
    assert code == 2 and "SINKD_DNS='online'" in err


def test_dns_options_are_checked_and_default_to_offline(tmp_path: Path) -> None:
    args = build_parser().parse_args(["check", "x.eml"])
    assert (args.dns, args.dns_server, args.dns_zone, args.dns_timeout) == (
        "offline",
        None,
        [],
        5.0,
    )
    for bad in (["--dns", "online"], ["--dns-server", "nowhere"], ["--dns-timeout", "0"]):
        code, _, err = run("check", eml(tmp_path), *bad)
        assert code == 2, bad
        assert bad[0] in err


def test_serve_options_reach_the_settings() -> None:

    args = build_parser().parse_args(
        ["serve", "--dns-server", "[::1]:53", "--dns-zone", "a.zone", "--dns-timeout", "2"]
    )
    settings = from_namespace(args)
    assert (settings.dns, settings.dns_server) == ("offline", ("::1", 53))
    assert (settings.dns_zones, settings.dns_timeout) == ([Path("a.zone")], 2.0)


async def test_a_server_with_a_bad_zone_file_does_not_start(tmp_path: Path) -> None:
    bad = write(tmp_path, "bad.zone", "www.example. 60 TXT\n")
    app = Sinkd(Settings(port=0, db=tmp_path / "s.db", hostname="t", dns_zones=[bad]))
    with pytest.raises(ConfigError, match=str(bad)):
        await app.start()
    await app.stop()
    assert app.store is None and app.server is None


# --- the Public Suffix List behind the Organizational Domain (lookups.dns, dmarc) -------------


def test_the_quick_psl_load_gives_publicsuffixlists_own_answer_for_every_rule() -> None:
    """``dmarc._psl`` encodes only the non-ASCII rules itself, and only for a domain with an
    ``xn--`` label (start-up time); for each rule of the bundled list, as written and punycoded,
    in any case, below and at the rule, the registrable domain must be what publicsuffixlist's
    own full parse says."""
    from publicsuffixlist import PSLFILE, PublicSuffixList

    from sinkd.core.filters.dmarc import psl_org_domain

    reference = PublicSuffixList()
    rules = Path(PSLFILE).read_text("utf-8").splitlines()
    names = [r.split(" ")[0].lstrip("!").replace("*", "w") for r in rules]
    domains = [n for n in names if n and not n.startswith("//")]
    domains += [d.encode("idna").decode("ascii") for d in domains if not d.isascii()]
    assert len(domains) > 10000
    for domain in domains:
        for name in (domain, f"x.{domain}", f"y.x.{domain}", f"Y.X.{domain.upper()}"):
            assert psl_org_domain(name) == (reference.privatesuffix(name) or name), name


# --- answers at hand (answer_now) ------------------------------------------------------------


async def test_a_fixture_answers_now_exactly_what_it_answers_to_a_query(
    zone: FixtureResolver,
) -> None:
    questions: list[tuple[str, RecordType]] = [
        ("corp.example", "TXT"),
        ("www.corp.example", "A"),
        ("missing.corp.example", "A"),
        ("mx.corp.example", "TXT"),
        ("nowhere.example", "A"),  # outside every fixture zone: UNKNOWN, never NXDOMAIN
        ("loop1.corp.example", "A"),
    ]
    for name, rdtype in questions:
        assert zone.answer_now(name, rdtype) == await zone.query(name, rdtype)
    assert zone.answer_now("nowhere.example", "A") == DnsAnswer("UNKNOWN")


async def test_the_overlay_answers_now_only_what_the_fixture_answers_whole() -> None:
    fixture = FixtureResolver(
        records={
            "known.example": {"TXT": "from the fixture"},
            "alias.example": {"CNAME": "outside.example", "ttl": 20},
        }
    )
    live = Scripted({"outside.example": DnsAnswer("NOERROR", ("192.0.2.77",), 300)})
    overlay = OverlayResolver(fixture, live)
    assert overlay.answer_now("known.example", "TXT") == await overlay.query("known.example", "TXT")
    assert overlay.answer_now("alias.example", "A") is None  # the chain continues in live DNS
    assert overlay.answer_now("unknown.example", "A") is None
    assert live.asked == []


async def test_the_cache_answers_now_from_its_entries_and_keeps_what_the_fixture_answers() -> None:
    fixture = FixtureResolver(records={"known.example": {"A": "192.0.2.1", "ttl": 30}})
    live = Scripted({"live.example": DnsAnswer("NOERROR", ("192.0.2.2",), 300)})
    clock = FakeClock()
    cache = CachingResolver(OverlayResolver(fixture, live), clock=clock)
    assert cache.answer_now("live.example", "A") is None  # would wait for live DNS
    assert live.asked == []
    await cache.query("live.example", "A")
    assert cache.answer_now("Live.Example.", "A") == DnsAnswer("NOERROR", ("192.0.2.2",), 300)
    first = cache.answer_now("known.example", "A")
    assert first == await cache.query("known.example", "A")
    assert len(cache) == 2  # kept as a query keeps it
    clock.now += 301
    assert cache.answer_now("live.example", "A") is None  # expired: live DNS again
    assert len(live.asked) == 1


async def test_a_cache_over_a_resolver_without_answer_now_answers_now_only_from_its_entries() -> (
    None
):
    inner = Scripted({"a.example": DnsAnswer("NOERROR", ("192.0.2.1",), 30)})
    cache = CachingResolver(inner, clock=FakeClock())
    assert cache.answer_now("a.example", "A") is None
    await cache.query("a.example", "A")
    assert cache.answer_now("a.example", "A") == DnsAnswer("NOERROR", ("192.0.2.1",), 30)
    assert len(inner.asked) == 1
