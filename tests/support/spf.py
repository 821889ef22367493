"""The DNS fakes the SPF and Sender ID tests share (tests/core/spf runs the OpenSPF RFC 7208
suite with them).

``zonedata_to_records`` turns the suite's zonedata into a plain record map; ``FakeResolver``
serves such a map through the ``Resolver`` port. The loopback DNS server of
tests/dns_server.py can serve the same map once it lands.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from sinkd.core.ports import DnsAnswer, Rdata, RecordType

MAX_CNAME_CHAIN = 8

# {name: {"TXT": [[b"s1", b"s2"], ...], "A": ["192.0.2.1"], "MX": [[10, "mx.example"]],
#         "rcode": "TIMEOUT"}}: the record types a name has and, under "rcode", what a question
# for any other type of that name gets (the suite's bare "TIMEOUT" entry).
Records = dict[str, dict[str, Any]]


def _name(value: str) -> str:
    return value.rstrip(".").lower()


def _txt(value: Any) -> list[bytes]:
    """A TXT (or SPF) value of the suite as its character-strings, UTF-8 encoded as pyspf's
    testspf.py does (so "\\xEF\\xBB\\xBF" in the YAML is the octets of U+00EF U+00BB U+00BF)."""
    strings = [value] if isinstance(value, str) else list(value)
    return [str(s).encode("utf-8") for s in strings]


def zonedata_to_records(zonedata: Mapping[str, Any]) -> Records:
    """The suite's zonedata (names → lists of ``{TYPE: value}`` or ``TIMEOUT``) as a record map.

    As the suite's header asks of drivers, SPF (type 99) records are also served as TXT records
    of the same name when the name has no TXT entry at all (``TXT: NONE`` means "no TXT
    records" and also stops that copy). They stay under ``"SPF"`` too, for a server that
    answers type 99: RFC 7208 §3.1 checkers never ask for it. A bare ``TIMEOUT`` becomes
    ``"rcode": "TIMEOUT"``, the answer to every type the name has no records of; only
    spftimeout.example.net has both, and nothing asks it for another type.
    """
    records: Records = {}
    for raw_name, entries in zonedata.items():
        name = _name(raw_name)
        node: dict[str, Any] = records.setdefault(name, {})
        spf_records: list[list[bytes]] = []
        has_txt = False
        for entry in entries or []:
            if entry == "TIMEOUT":
                node["rcode"] = "TIMEOUT"
                continue
            if not isinstance(entry, dict) or len(entry) != 1:
                raise ValueError(f"{raw_name}: unsupported zonedata entry {entry!r}")
            ((rtype, value),) = entry.items()
            if rtype == "SPF":
                spf_records.append(_txt(value))
                node.setdefault("SPF", []).append(_txt(value))
            elif rtype == "TXT":
                has_txt = True
                if value != "NONE":
                    node.setdefault("TXT", []).append(_txt(value))
            elif rtype in ("A", "AAAA", "PTR", "CNAME"):
                node.setdefault(rtype, []).append(str(value))
            elif rtype == "MX":
                preference, exchange = value
                node.setdefault("MX", []).append([int(preference), str(exchange)])
            else:
                raise ValueError(f"{raw_name}: unsupported record type {rtype!r}")
        if spf_records and not has_txt:
            node.setdefault("TXT", []).extend(spf_records)
    return records


def _rdata(rdtype: str, value: Any) -> Rdata:
    if rdtype == "TXT":
        return tuple(s if isinstance(s, bytes) else str(s).encode("utf-8") for s in value)
    if rdtype == "MX":
        return (int(value[0]), _name(str(value[1])))
    if rdtype in ("PTR", "CNAME"):
        return _name(str(value))
    return str(value)


class FakeResolver:
    """A recursive resolver's view of a record map: CNAMEs are followed (a loop or an over-long
    chain ends in NODATA, as an authoritative server answers it), a name absent from the map is
    NXDOMAIN, a present name without the type is NODATA unless the map gives an rcode.
    ``questions`` records every question asked, in order."""

    def __init__(self, records: Records) -> None:
        self.records = records
        self.questions: list[tuple[str, RecordType]] = []

    async def query(self, name: str, rdtype: RecordType) -> DnsAnswer:
        self.questions.append((name, rdtype))
        return self.answer(name, rdtype)

    def answer(self, name: str, rdtype: RecordType) -> DnsAnswer:
        seen: set[str] = set()
        current = _name(name)
        while True:
            node = self.records.get(current)
            if node is None:
                return DnsAnswer("NXDOMAIN")
            if rdtype in node:
                return DnsAnswer("NOERROR", tuple(_rdata(rdtype, v) for v in node[rdtype]), 300)
            if "CNAME" in node and rdtype != "CNAME":
                seen.add(current)
                current = _name(node["CNAME"][0])
                if current in seen or len(seen) > MAX_CNAME_CHAIN:
                    return DnsAnswer("NOERROR")
                continue
            return DnsAnswer(node.get("rcode", "NOERROR"))


class ImmediateResolver(FakeResolver):
    """The same answers, also given without waiting (``answer_now``, as the fixture and the
    cache give them), so that SPF checks run inline. ``only`` limits ``answer_now`` to those
    record types: the others "need a lookup" (None), as a live resolver's misses do."""

    def __init__(self, records: Records, only: frozenset[str] | None = None) -> None:
        super().__init__(records)
        self.only = only
        self.answered_now: list[tuple[str, RecordType]] = []

    def answer_now(self, name: str, rdtype: RecordType) -> DnsAnswer | None:
        if self.only is not None and rdtype not in self.only:
            return None
        self.answered_now.append((name, rdtype))
        return self.answer(name, rdtype)


def resolver_for(zonedata: Mapping[str, Any]) -> FakeResolver:
    """A fake resolver serving zonedata written as the suite writes it."""
    return FakeResolver(zonedata_to_records(zonedata))


class HangingResolver:
    """A resolver that never answers (breaking the port's promise), to prove the bound holds.
    ``cancelled`` counts the questions whose waiting coroutine was cancelled."""

    def __init__(self) -> None:
        self.asked = 0
        self.cancelled = 0
        self.first_question = asyncio.Event()

    async def query(self, name: str, rdtype: RecordType) -> DnsAnswer:
        self.asked += 1
        self.first_question.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        return DnsAnswer("NOERROR")
