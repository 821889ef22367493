"""The OpenSPF RFC 7208 test suite (release 2014.04 + 2019.08 additions), every test of every
scenario, run through sinkd's SPF evaluator and its live DNS layer (``sinkd.lookups.dns``) against a
real DNS server on a loopback port serving the scenario's zonedata over UDP and TCP.

``rfc7208-tests.yml``, ``.LICENSE`` and ``.CHANGES`` are copied unchanged from pyspf 2.0.14's
sdist (``test/``); the licence is BSD-style and its notice travels with the file. The zonedata
becomes a plain record map (``tests.support.spf.zonedata_to_records``) that the server serves.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from sinkd.core.ports import DnsAnswer, Resolver
from sinkd.core.spf_eval import check_host
from sinkd.lookups.dns import build_resolver
from tests.dns_server import DnsTestServer
from tests.support.spf import FakeResolver, Records, zonedata_to_records

SUITE = Path(__file__).parent / "rfc7208-tests.yml"
# What the suite's explanation "DEFAULT" stands for: the checker's own text (testspf.py sets it).
DEFAULT_EXPLANATION = "DEFAULT"


@pytest.fixture(scope="module")
def suite_dns() -> Iterator[DnsTestServer]:
    """One loopback DNS server for the whole suite; each test swaps in its scenario's records."""
    server = DnsTestServer({}).start()
    yield server
    server.stop()


def resolver_for_case(server: DnsTestServer, records: Records) -> Resolver:
    # The scenario's TIMEOUT names must time out for real: the server stays silent for them,
    # and the resolver's own deadline turns that into a TIMEOUT answer (a temperror).
    server.records.clear()
    for name, entry in records.items():
        if "rcode" in entry and "TXT" in entry:
            # The suite marks a name TIMEOUT beside its TXT record only to say that queries of
            # type SPF (99) time out (spftimeout: "we don't do type SPF anymore"); sinkd asks
            # for TXT alone, so the server answers the TXT and keeps no forced rcode there.
            entry = {k: v for k, v in entry.items() if k != "rcode"}
        server.records[name] = entry
    return build_resolver("live", server.address, [], timeout=1.0)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _cases() -> list[Any]:
    cases = []
    with SUITE.open("rb") as stream:
        for scenario in yaml.safe_load_all(stream):
            records = zonedata_to_records(scenario["zonedata"])
            for test_name, test in scenario["tests"].items():
                test_id = f"{_slug(scenario['description'])}/{test_name}"
                cases.append(pytest.param(records, test, id=test_id))
    return cases


CASES = _cases()


def test_the_vendored_suite_holds_all_its_scenarios_and_tests() -> None:
    with SUITE.open("rb") as stream:
        scenarios = list(yaml.safe_load_all(stream))
    assert len(scenarios) == 16
    assert len(CASES) == sum(len(s["tests"]) for s in scenarios) == 203
    assert len({c.id for c in CASES}) == len(CASES)


def test_spf_records_stand_in_for_txt_only_where_a_name_has_no_txt_entry() -> None:
    records = zonedata_to_records(
        {
            "both.example": [{"TXT": "v=spf1 -all"}, {"SPF": "v=spf1 +all"}],
            "spfonly.example": [{"SPF": "v=spf1 -all"}, {"TXT": "NONE"}],
            "generated.example": [{"SPF": ["v=spf1 ", "-all"]}],
            "slow.example": [{"A": "192.0.2.1"}, "TIMEOUT"],
        }
    )
    assert records["both.example"] == {"TXT": [[b"v=spf1 -all"]], "SPF": [[b"v=spf1 +all"]]}
    assert records["spfonly.example"] == {"SPF": [[b"v=spf1 -all"]]}
    assert records["generated.example"]["TXT"] == [[b"v=spf1 ", b"-all"]]
    assert records["slow.example"] == {"A": ["192.0.2.1"], "rcode": "TIMEOUT"}


async def test_the_fake_resolver_answers_nxdomain_nodata_timeouts_and_follows_cnames() -> None:
    resolver = FakeResolver(
        {
            "a.example": {"TXT": [[b"v=spf1 ", b"-all"]], "rcode": "TIMEOUT"},
            "alias.example": {"CNAME": ["A.example."]},
            "loop.example": {"CNAME": ["loop.example"]},
        }
    )
    assert await resolver.query("A.example.", "TXT") == DnsAnswer(
        "NOERROR", ((b"v=spf1 ", b"-all"),), 300
    )
    assert (await resolver.query("a.example", "A")).rcode == "TIMEOUT"
    assert (await resolver.query("alias.example", "TXT")).records == ((b"v=spf1 ", b"-all"),)
    assert await resolver.query("loop.example", "A") == DnsAnswer("NOERROR")
    assert (await resolver.query("missing.example", "TXT")).rcode == "NXDOMAIN"


@pytest.mark.parametrize(("records", "test"), CASES)
async def test_rfc7208_suite(
    suite_dns: DnsTestServer, records: Records, test: dict[str, Any]
) -> None:
    expected = test["result"]
    acceptable = [expected] if isinstance(expected, str) else list(expected)
    outcome = await check_host(
        resolver_for_case(suite_dns, records),
        test["host"],
        test["mailfrom"],
        test["helo"],
        default_explanation=DEFAULT_EXPLANATION,
    )
    spec = test.get("spec")
    assert outcome.result in acceptable, (
        f"RFC 7208 {spec}: {outcome.result} ({outcome.explanation}), expected {acceptable}"
    )
    if "explanation" in test:
        assert outcome.explanation == test["explanation"], f"RFC 7208 {spec}"
