"""SPF checks whose answers are all at hand run inline (no worker thread) and give exactly the
result the worker gives: every scenario of the OpenSPF RFC 7208 suite is evaluated both ways
over the same records, and a check that meets an answer not at hand starts again in a worker.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from sinkd.core import spf_eval
from sinkd.core.ports import DnsAnswer, RecordType
from sinkd.core.spf_eval import AnswersNow, check_host
from sinkd.lookups.dns import CachingResolver, FixtureResolver
from tests.support.spf import FakeResolver, ImmediateResolver, Records, zonedata_to_records

SUITE = Path(__file__).parent / "rfc7208-tests.yml"


def _cases() -> list[Any]:
    cases = []
    with SUITE.open("rb") as stream:
        for number, scenario in enumerate(yaml.safe_load_all(stream)):
            records = zonedata_to_records(scenario["zonedata"])
            for test_name, test in scenario["tests"].items():
                cases.append(pytest.param(records, test, id=f"{number}/{test_name}"))
    return cases


CASES = _cases()


async def _check(resolver: FakeResolver, test: dict[str, Any]) -> spf_eval.SpfResult:
    return await check_host(
        resolver, test["host"], test["mailfrom"], test["helo"], default_explanation="DEFAULT"
    )


@pytest.mark.parametrize(("records", "test"), CASES)
async def test_an_inline_check_is_the_same_as_the_worker_check(
    records: Records, test: dict[str, Any]
) -> None:
    in_worker = await _check(FakeResolver(records), test)
    immediate = ImmediateResolver(records)
    inline = await _check(immediate, test)
    assert inline == in_worker
    assert immediate.questions == []  # every answer came through answer_now, none was awaited


@pytest.mark.parametrize(("records", "test"), CASES)
async def test_a_check_that_meets_an_answer_not_at_hand_is_the_same_in_its_worker(
    records: Records, test: dict[str, Any]
) -> None:
    in_worker = await _check(FakeResolver(records), test)
    partly = ImmediateResolver(records, only=frozenset({"TXT"}))  # A, MX, PTR... must wait
    assert await _check(partly, test) == in_worker


async def test_a_check_with_every_answer_at_hand_starts_no_worker_thread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def no_thread(*args: object, **kwargs: object) -> object:
        raise AssertionError("the check went to a worker thread")

    monkeypatch.setattr("sinkd.core.spf_eval.asyncio.to_thread", no_thread)
    records = zonedata_to_records({"example.com": [{"TXT": "v=spf1 ip4:192.0.2.0/24 -all"}]})
    outcome = await check_host(ImmediateResolver(records), "192.0.2.1", "a@example.com", "h")
    assert outcome.result == "pass"


async def test_offline_dns_without_data_is_none_and_unjudged_inline_as_in_a_worker() -> None:
    fixture = FixtureResolver()  # no zones: every name is UNKNOWN, never NXDOMAIN
    assert isinstance(CachingResolver(fixture), AnswersNow)
    inline = await check_host(CachingResolver(fixture), "192.0.2.1", "a@example.com", "h")

    class Waiting:  # the same fixture, only through query: the worker path
        async def query(self, name: str, rdtype: RecordType) -> DnsAnswer:
            return await fixture.query(name, rdtype)

    in_worker = await check_host(Waiting(), "192.0.2.1", "a@example.com", "h")
    assert inline == in_worker
    assert inline.result == "none"
    assert inline.unknown == ("example.com",)
