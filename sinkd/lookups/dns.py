"""The DNS adapter: answers from zone fixtures offline, and from real DNS only when asked.

Offline, a name outside every loaded fixture answers ``UNKNOWN`` (no data), never NXDOMAIN;
live answers carry ``live=True`` so that a live timeout can be told from a fixture's forced one.

Owns every use of dnspython: ``FixtureResolver`` answers from RFC 1035 master files and YAML
record maps, ``LiveResolver`` asks real servers, ``OverlayResolver`` and ``CachingResolver``
combine them, and ``build_resolver`` wires them from the command-line options.

Besides ``query``, the fixture, overlay and caching resolvers have ``answer_now`` (the
``AnswersNow`` protocol of ``sinkd.core.spf_eval``): the answer ``query`` would give when no
wait is needed (a fixture's, a cached one), else None. The filters take answers at hand that
way without a task, a timer or (SPF) a worker thread each; live lookups are never made there.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

import dns.asyncresolver
import dns.exception
import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdataset
import dns.rdatatype
import dns.rdtypes.ANY.SOA
import dns.rdtypes.IN.A
import dns.rdtypes.IN.AAAA
import dns.rdtypes.mxbase
import dns.rdtypes.nsbase
import dns.rdtypes.txtbase
import dns.resolver
import dns.rrset
import dns.tokenizer
import dns.zonefile
import yaml

from sinkd.core.filters.dmarc import psl_org_domain
from sinkd.core.ports import DnsAnswer, Rcode, Rdata, RecordType, Resolver
from sinkd.errors import ConfigError

log = logging.getLogger(__name__)

DnsMode = Literal["offline", "live"]
RECORD_TYPES: frozenset[str] = frozenset(get_args(RecordType))
# What a record map may force: every rcode but UNKNOWN, which only the absence of data says.
_RCODES: dict[str, Rcode] = {rcode: rcode for rcode in get_args(Rcode) if rcode != "UNKNOWN"}
RCODES: frozenset[str] = frozenset(_RCODES)
RECORD_MAP_SUFFIXES = (".yaml", ".yml")
FIXTURE_TTL = 300  # a record map's records, unless the name says ``ttl:``
NEGATIVE_TTL_UNKNOWN = 60  # a negative answer without an SOA to take the TTL from
MAX_TTL = 86400  # cap positive answers at a day, as resolvers do
MAX_NEGATIVE_TTL = 10800  # RFC 2308 §5: three hours
MAX_CNAME_CHAIN = 16
TXT_CHUNK = 255  # longest character-string (RFC 1035 §3.3)


def _name(text: str) -> dns.name.Name | None:
    """The absolute name ``text`` spells, or None where no DNS name can (label > 63, ``a..b``)."""
    text = text.strip()
    if not text:
        return None
    try:
        return dns.name.from_text(text)
    except (dns.exception.DNSException, UnicodeError, ValueError):
        return None


def _text(name: dns.name.Name) -> str:
    """A name as ``Rdata`` carries it: lower-case, without the final dot (the root stays ``.``)."""
    return name.to_text(omit_final_dot=True).lower()


def _key(text: str) -> str:
    return text.strip().rstrip(".").lower()


def _rdata(rdata: dns.rdata.Rdata) -> Rdata | None:
    """The ``Rdata`` form of one dnspython record; None for types the filters never ask for."""
    if isinstance(rdata, dns.rdtypes.IN.A.A | dns.rdtypes.IN.AAAA.AAAA):
        return str(ipaddress.ip_address(str(rdata.address)))
    if isinstance(rdata, dns.rdtypes.txtbase.TXTBase) and rdata.rdtype == dns.rdatatype.TXT:
        return tuple(bytes(s) for s in rdata.strings)
    if isinstance(rdata, dns.rdtypes.mxbase.MXBase) and rdata.rdtype == dns.rdatatype.MX:
        return int(rdata.preference), _text(rdata.exchange)
    if isinstance(rdata, dns.rdtypes.nsbase.NSBase) and rdata.rdtype in (
        dns.rdatatype.CNAME,
        dns.rdatatype.NS,
        dns.rdatatype.PTR,
    ):
        return _text(rdata.target)
    return None


def _clamp(ttl: int, limit: int) -> int:
    return max(0, min(int(ttl), limit))


def _registrable(name: dns.name.Name) -> str:
    """The registrable domain (PSL) of a name: whose zone a record map speaks for. The same
    list the DMARC filter loads (parsing it twice cost ``sinkd check`` ~35 ms of start-up)."""
    return psl_org_domain(_text(name).removeprefix("*."))


# --- fixtures -------------------------------------------------------------------------------


@dataclass(slots=True)
class _Node:
    """What the fixture holds for one owner name."""

    rrsets: dict[str, tuple[int, tuple[Rdata, ...]]] = field(default_factory=dict)
    other_types: bool = False  # records of types no filter asks for (SOA, SPF, SRV, ...)
    rcode: Rcode | None = None  # forced answer (record maps only)

    @property
    def has_data(self) -> bool:
        return bool(self.rrsets) or self.other_types or self.rcode is not None


def _located(source: str, node: yaml.Node | None, message: str) -> ConfigError:
    line = f":{node.start_mark.line + 1}" if node is not None else ""
    return ConfigError(f"{source}{line}: {message}")


def _child(node: yaml.Node | None, key: str) -> yaml.Node | None:
    """The value node under ``key`` of a mapping node (for error lines)."""
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            if k.value == key:
                found: yaml.Node = v
                return found
    return None


def _item(node: yaml.Node | None, index: int) -> yaml.Node | None:
    if isinstance(node, yaml.SequenceNode) and 0 <= index < len(node.value):
        found: yaml.Node = node.value[index]
        return found
    return node


def _txt_strings(value: Any) -> tuple[bytes, ...] | None:
    """One TXT record from a record map: a string (split at 255 bytes) or a list of strings."""
    parts = value if isinstance(value, list) else [value]
    strings: list[bytes] = []
    for part in parts:
        if isinstance(part, str):
            data = part.encode("utf-8")
        elif isinstance(part, bytes):  # YAML !!binary: arbitrary bytes
            data = part
        else:
            return None
        strings.extend(data[i : i + TXT_CHUNK] for i in range(0, len(data), TXT_CHUNK))
        if not data:
            strings.append(b"")
    return tuple(strings) or (b"",)


class _MasterFileTransaction(dns.zonefile.RRsetsReaderTransaction):
    """Collects every record of a master file, whatever zone it belongs to.

    dnspython's zone readers take one zone: they refuse an SOA anywhere but at its origin and
    drop names outside it without a word, while one fixture file may hold many zones.
    """

    def add(self, *args: Any) -> None:
        name, ttl, rdata = args
        key = (name, rdata.rdtype, rdata.covers())
        rdataset = self.rdatasets.get(key)
        if rdataset is None:
            rdataset = self.rdatasets[key] = dns.rdataset.Rdataset(
                rdata.rdclass, rdata.rdtype, rdata.covers()
            )
        rdataset.add(rdata, ttl)


class _Tokens(dns.tokenizer.Tokenizer):
    """Remembers the line each entry starts on: dnspython notices most errors after reading
    the entry's end of line, and so names the line after it."""

    entry_line = 1
    _line_start = True

    def get(self, want_leading: bool = False, want_comment: bool = False) -> dns.tokenizer.Token:
        token = super().get(want_leading, want_comment)
        if self._line_start and not (token.is_eol() or token.is_eof() or token.is_comment()):
            self.entry_line = self.line_number
        self._line_start = token.is_eol()
        return token


def _read_master(text: str, source: str) -> list[dns.rrset.RRset]:
    """A master file's records: ``$ORIGIN`` and ``$TTL`` obeyed, ``$INCLUDE`` refused, names
    before the first ``$ORIGIN`` relative to the root. Syntax errors name the entry's line."""
    manager = dns.zonefile.RRSetsReaderManager(dns.name.root, False, dns.rdataclass.IN)
    tokens = _Tokens(text, source)
    try:
        with _MasterFileTransaction(manager, True, False) as txn:  # type: ignore[no-untyped-call]
            dns.zonefile.Reader(tokens, dns.rdataclass.IN, txn, allow_include=False).read()
    except dns.exception.SyntaxError as exc:
        detail = str(exc)
        prefix = f"{source}:"
        if detail.startswith(prefix):  # "file:line: detail" with the line after the entry
            detail = detail[len(prefix) :].partition(": ")[2] or detail
        raise ConfigError(
            f"{source}:{tokens.entry_line}: DNS zone syntax error: {detail}"
        ) from None
    return manager.rrsets


class FixtureResolver:
    """DNS from files: RFC 1035 master files and YAML record maps, nothing from the network.

    A master file is read with the root as its origin, so ``$ORIGIN`` lines may switch between
    several zones in one file; names before the first ``$ORIGIN`` are relative to the root. A
    record map (``.yaml``/``.yml``) maps names to ``{TYPE: [records], "ttl": s, "rcode": R}``:
    TXT records are strings (split at 255 bytes), ``!!binary`` or lists of character-strings;
    MX records ``[preference, exchange]``; ``rcode`` forces that answer (``TIMEOUT`` included)
    for every type. Later sources replace earlier ones per name and type. Wildcards follow
    RFC 4592 (closest encloser), CNAMEs are chased within the fixture, names are
    case-insensitive, and a name that exists only as an ancestor of another answers NODATA.
    A name the fixture does not speak for (no SOA above it, no name of its registrable domain
    held) answers ``UNKNOWN``: offline, no data is not "does not exist".
    """

    def __init__(
        self, zones: Sequence[Path] = (), records: Mapping[str, Any] | None = None
    ) -> None:
        self._nodes: dict[dns.name.Name, _Node] = {}
        self._exists: set[dns.name.Name] = set()  # names with a node, and all their ancestors
        self._negative_ttl: dict[dns.name.Name, int] = {}  # zone apex -> RFC 2308 §5 TTL
        self._domains: set[str] = set()  # registrable domains of the names the fixture holds
        for path in zones:
            self.load(path)
        if records is not None:
            self.add_records(records, source="<records>")

    # -- loading --

    def load(self, path: Path) -> None:
        """Add a master file, or a record map when the name ends in ``.yaml``/``.yml``."""
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read DNS zone: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise ConfigError(f"{path}: DNS zone is not UTF-8 text") from None
        if path.suffix.lower() in RECORD_MAP_SUFFIXES:
            self.add_record_map_text(text, source=str(path))
        else:
            self.add_master_text(text, source=str(path))

    def add_master_text(self, text: str, source: str = "<zone>") -> None:
        """Add the records of an RFC 1035 master file's text."""
        try:
            rrsets = _read_master(text, source)
        except dns.exception.DNSException as exc:
            raise ConfigError(f"{source}: DNS zone error: {exc}") from None
        for rrset in rrsets:
            node = self._node(rrset.name)
            rdtype = dns.rdatatype.to_text(rrset.rdtype)
            if rrset.rdtype == dns.rdatatype.SOA:
                soa = rrset[0]
                assert isinstance(soa, dns.rdtypes.ANY.SOA.SOA)
                self._negative_ttl[rrset.name] = min(int(rrset.ttl), int(soa.minimum))
            if rdtype in RECORD_TYPES:
                records = tuple(r for r in map(_rdata, rrset) if r is not None)
                node.rrsets[rdtype] = (int(rrset.ttl), records)
            else:
                node.other_types = True

    def add_record_map_text(self, text: str, source: str = "<records>") -> None:
        """Add a YAML record map; errors name the source and the line."""
        try:
            root = yaml.compose(text, Loader=yaml.SafeLoader)
            data = yaml.safe_load(text) if root is not None else {}
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line = f":{mark.line + 1}" if mark is not None else ""
            problem = getattr(exc, "problem", None) or str(exc)
            raise ConfigError(f"{source}{line}: YAML syntax error: {problem}") from None
        self.add_records(data, source=source, node=root)

    def add_records(
        self, records: Any, *, source: str = "<records>", node: yaml.Node | None = None
    ) -> None:
        """Add a record map already loaded (``node``, when given, locates errors)."""
        if not isinstance(records, Mapping):
            raise _located(source, node, "a DNS record map must be a mapping of name -> records")
        for owner, entry in records.items():
            where = _child(node, owner) if isinstance(owner, str) else node
            if not isinstance(owner, str):
                raise _located(source, where, f"{owner!r}: a name must be a string")
            if not isinstance(entry, Mapping):
                raise _located(source, where, f"{owner}: expected a mapping of TYPE -> records")
            name = _name(owner)
            if name is None:  # a label over 63 octets, an empty label: unreachable by any query
                log.debug("%s: %r is no DNS name; no query can ask for it", source, owner)
                continue
            self._add_entry(name, owner, entry, source, where)

    def _add_entry(
        self,
        name: dns.name.Name,
        owner: str,
        entry: Mapping[Any, Any],
        source: str,
        where: yaml.Node | None,
    ) -> None:
        ttl = entry.get("ttl", FIXTURE_TTL)
        if not isinstance(ttl, int) or isinstance(ttl, bool) or ttl < 0:
            raise _located(source, _child(where, "ttl"), f"{owner}: ttl must be whole seconds")
        rcode = entry.get("rcode")
        if rcode is not None and (not isinstance(rcode, str) or rcode.upper() not in RCODES):
            raise _located(
                source,
                _child(where, "rcode"),
                f"{owner}: rcode must be one of {', '.join(sorted(RCODES))}, got {rcode!r}",
            )
        rrsets: dict[str, tuple[int, tuple[Rdata, ...]]] = {}
        for key, values in entry.items():
            if key in ("ttl", "rcode"):
                continue
            rdtype = str(key).upper()
            at = _child(where, str(key))
            if rdtype not in RECORD_TYPES:
                raise _located(
                    source,
                    at,
                    f"{owner}: unknown record type {key!r} "
                    f"(expected {', '.join(sorted(RECORD_TYPES))}, ttl or rcode)",
                )
            items = values if isinstance(values, list) else [values]
            if rdtype == "MX" and len(items) == 2 and isinstance(items[0], int):
                items = [items]  # MX: [10, mx.example] is one record
            parsed = tuple(
                self._record(rdtype, value, f"{owner} {rdtype}", source, _item(at, i))
                for i, value in enumerate(items)
            )
            rrsets[rdtype] = (ttl, parsed)
        if rcode is not None and rrsets:
            raise _located(source, where, f"{owner}: a forced rcode cannot go with records")
        node = self._node(name)
        node.rrsets.update(rrsets)
        if rcode is not None:
            node.rcode = _RCODES[rcode.upper()]

    @staticmethod
    def _record(rdtype: str, value: Any, what: str, source: str, at: yaml.Node | None) -> Rdata:
        if rdtype in ("A", "AAAA"):
            try:
                address = ipaddress.ip_address(str(value))
            except ValueError:
                address = None
            if address is None or address.version != (4 if rdtype == "A" else 6):
                version = 4 if rdtype == "A" else 6
                raise _located(source, at, f"{what}: {value!r} is no IPv{version} address")
            return str(address)
        if rdtype == "TXT":
            strings = _txt_strings(value)
            if strings is None:
                raise _located(source, at, f"{what}: expected a string or a list of strings")
            return strings
        if rdtype == "MX":
            ok = (
                isinstance(value, list)
                and len(value) == 2
                and isinstance(value[0], int)
                and 0 <= value[0] <= 65535
                and isinstance(value[1], str)
            )
            if not ok:
                raise _located(source, at, f"{what}: expected [preference, exchange]")
            return int(value[0]), _key(value[1]) or "."
        if not isinstance(value, str) or not _key(value):
            raise _located(source, at, f"{what}: expected a name")
        return _key(value)

    def _node(self, name: dns.name.Name) -> _Node:
        node = self._nodes.get(name)
        if node is None:
            node = self._nodes[name] = _Node()
            self._domains.add(_registrable(name))
            ancestor = name
            while ancestor not in self._exists:
                self._exists.add(ancestor)
                if ancestor == dns.name.root:
                    break
                ancestor = ancestor.parent()
        return node

    # -- answering --

    def knows(self, name: str) -> bool:
        """Whether the fixture holds records or a forced rcode for ``name`` (wildcards count)."""
        qname = _name(name)
        if qname is None:
            return False
        node, _ = self._find(qname)
        return node is not None and node.has_data

    def covers(self, name: str) -> bool:
        """Whether the fixture speaks for ``name``: it lies in a zone whose SOA a master file
        holds, or shares its registrable domain (Public Suffix List) with a name the fixture
        holds. Only there does a missing name mean NXDOMAIN or NODATA; elsewhere the fixture
        knows nothing, and offline DNS answers ``UNKNOWN``."""
        qname = _name(name)
        return qname is not None and self._covers(qname)

    def _covers(self, qname: dns.name.Name) -> bool:
        ancestor = qname
        while True:
            if ancestor in self._negative_ttl:
                return True
            if ancestor == dns.name.root:
                break
            ancestor = ancestor.parent()
        return _registrable(qname) in self._domains

    def _find(self, qname: dns.name.Name) -> tuple[_Node | None, bool]:
        """The node answering for ``qname`` (its own or a wildcard's, RFC 4592 §3.3.1) and
        whether the name exists at all; (None, False) is NXDOMAIN."""
        if qname in self._exists:
            return self._nodes.get(qname), True
        encloser = qname
        while encloser not in self._exists and encloser != dns.name.root:
            encloser = encloser.parent()
        if encloser not in self._exists:
            return None, False
        wildcard = dns.name.Name((b"*", *encloser.labels))
        if wildcard in self._exists:
            return self._nodes.get(wildcard), True
        return None, False

    def _negative(self, name: dns.name.Name) -> int:
        """RFC 2308 §5: the negative TTL of the zone holding ``name``; 0 when no SOA says."""
        while True:
            if name in self._negative_ttl:
                return self._negative_ttl[name]
            if name == dns.name.root:
                return 0
            name = name.parent()

    def lookup(self, name: str, rdtype: RecordType) -> tuple[DnsAnswer, str | None]:
        """The fixture's answer, and the name where the answer must continue outside the
        fixture: ``name`` itself when the fixture knows nothing about it, a CNAME target the
        fixture does not know, or None when the fixture's answer is complete. For a name the
        fixture holds nothing for, the answer is NXDOMAIN or NODATA where the fixture speaks
        for the name's zone (``covers``) and ``UNKNOWN`` elsewhere: no data is not NXDOMAIN."""
        qname = _name(name)
        if qname is None:
            return DnsAnswer("NXDOMAIN"), None
        chain_ttl: int | None = None
        seen: set[dns.name.Name] = set()
        current = qname
        for _ in range(MAX_CNAME_CHAIN):
            node, exists = self._find(current)
            if node is None or not node.has_data:
                if not self._covers(current):
                    return DnsAnswer("UNKNOWN", (), chain_ttl or 0), _text(current)
                negative = self._negative(current)
                ttl = negative if chain_ttl is None else min(chain_ttl, negative or chain_ttl)
                rcode: Rcode = "NOERROR" if exists else "NXDOMAIN"
                return DnsAnswer(rcode, (), ttl), _text(current)
            if node.rcode is not None:
                return DnsAnswer(node.rcode), None
            if rdtype in node.rrsets:
                ttl, records = node.rrsets[rdtype]
                ttl = ttl if chain_ttl is None else min(chain_ttl, ttl)
                return DnsAnswer("NOERROR", records, ttl), None
            cname = node.rrsets.get("CNAME")
            if cname is None or not cname[1]:
                negative = self._negative(current)
                ttl = negative if chain_ttl is None else min(chain_ttl, negative or chain_ttl)
                return DnsAnswer("NOERROR", (), ttl), None
            chain_ttl = cname[0] if chain_ttl is None else min(chain_ttl, cname[0])
            seen.add(current)
            target = _name(str(cname[1][0]))
            if target is None:
                return DnsAnswer("NXDOMAIN", (), chain_ttl), None
            if target in seen:
                log.debug("CNAME loop at %s", _text(target))
                return DnsAnswer("SERVFAIL"), None
            current = target
        return DnsAnswer("SERVFAIL"), None  # a chain this long is a loop in all but name

    async def query(self, name: str, rdtype: RecordType) -> DnsAnswer:
        answer, _ = self.lookup(name, rdtype)
        return answer

    def answer_now(self, name: str, rdtype: RecordType) -> DnsAnswer | None:
        """What ``query`` answers, never waiting: a fixture always knows at once
        (``sinkd.core.spf_eval.AnswersNow``)."""
        answer, _ = self.lookup(name, rdtype)
        return answer


# --- live DNS -------------------------------------------------------------------------------


def _negative_ttl(response: dns.message.Message | None) -> int:
    """RFC 2308 §5: min(SOA TTL, SOA MINIMUM) from the authority section; 0 without one."""
    if response is None:
        return 0
    for rrset in response.authority:
        if rrset.rdtype == dns.rdatatype.SOA and len(rrset):
            soa = rrset[0]
            if isinstance(soa, dns.rdtypes.ANY.SOA.SOA):
                return _clamp(min(int(rrset.ttl), int(soa.minimum)), MAX_NEGATIVE_TTL)
    return 0


def _failure_rcode(exc: dns.resolver.NoNameservers) -> Rcode:
    """REFUSED when every server that answered refused; SERVFAIL otherwise."""
    rcodes = {
        response.rcode()
        for *_, response in exc.kwargs.get("errors", [])
        if isinstance(response, dns.message.Message)
    }
    return "REFUSED" if rcodes == {dns.rcode.REFUSED} else "SERVFAIL"


def _nameserver(host: str) -> str:
    if host.lower() == "localhost":
        return "127.0.0.1"
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        raise ConfigError(
            f"--dns-server {host}: expected an IP address (a name would need DNS to find)"
        ) from None


class LiveResolver:
    """Real DNS through dnspython: the system's resolvers, or one server (``HOST:PORT``).

    Every lookup has ``timeout`` seconds in all; truncated UDP answers are retried over TCP
    by dnspython. DNS trouble never raises: it becomes the answer's rcode.
    """

    def __init__(self, server: tuple[str, int] | None, timeout: float) -> None:
        try:
            resolver = dns.asyncresolver.Resolver(configure=server is None)
        except dns.resolver.NoResolverConfiguration as exc:
            raise ConfigError(
                f"--dns live: no system DNS configuration ({exc}); pass --dns-server HOST:PORT"
            ) from None
        if server is not None:
            host, port = server
            resolver.nameservers = [_nameserver(host)]
            resolver.port = port
        resolver.cache = None  # CachingResolver caches, with sinkd's rules
        resolver.lifetime = timeout
        self.server = server
        self.timeout = timeout
        self._resolver = resolver
        self._logged: set[type[BaseException]] = set()

    async def query(self, name: str, rdtype: RecordType) -> DnsAnswer:
        qname = _name(name)
        if qname is None:
            return DnsAnswer("NXDOMAIN")  # no query can carry it, so no such name exists
        try:
            answer = await self._resolver.resolve(
                qname, rdtype, lifetime=self.timeout, search=False, raise_on_no_answer=True
            )
        except dns.resolver.NXDOMAIN as exc:
            responses = list(exc.kwargs.get("responses", {}).values())
            ttl = _negative_ttl(responses[-1] if responses else None)
            return DnsAnswer("NXDOMAIN", (), ttl, live=True)
        except dns.resolver.NoAnswer as exc:
            response = exc.kwargs.get("response")
            message = response if isinstance(response, dns.message.Message) else None
            return DnsAnswer("NOERROR", (), _negative_ttl(message), live=True)
        except dns.resolver.NoNameservers as exc:
            return DnsAnswer(_failure_rcode(exc), live=True)
        except dns.exception.Timeout:
            return DnsAnswer("TIMEOUT", live=True)  # no server answered: ``unanswered``
        except dns.exception.DNSException as exc:
            log.debug("DNS %s %s: %s", name, rdtype, exc)
            return DnsAnswer("SERVFAIL", live=True)
        except Exception as exc:
            if type(exc) not in self._logged:
                self._logged.add(type(exc))
                log.debug("DNS %s %s: unexpected error", name, rdtype, exc_info=True)
            return DnsAnswer("SERVFAIL", live=True)
        rrset = answer.rrset
        records = tuple(r for r in map(_rdata, rrset or ()) if r is not None)
        ttl = _clamp(answer.chaining_result.minimum_ttl, MAX_TTL)
        return DnsAnswer("NOERROR", records, ttl, live=True)


class OverlayResolver:
    """The fixture where it knows the name (records, a forced rcode, a wildcard), else ``live``;
    a fixture CNAME to a name it does not know continues in ``live``."""

    def __init__(self, fixture: FixtureResolver, live: Resolver) -> None:
        self.fixture = fixture
        self.live = live

    async def query(self, name: str, rdtype: RecordType) -> DnsAnswer:
        answer, rest = self.fixture.lookup(name, rdtype)
        if rest is None:
            return answer
        if _key(rest) == _key(name):
            return await self.live.query(name, rdtype)
        tail = await self.live.query(rest, rdtype)  # the fixture's CNAME chain left the fixture
        ttl = min(answer.ttl, tail.ttl) if tail.ttl else answer.ttl
        return DnsAnswer(tail.rcode, tail.records, ttl, tail.live)

    def answer_now(self, name: str, rdtype: RecordType) -> DnsAnswer | None:
        """The fixture's complete answer; None when live DNS must be asked (it may wait)."""
        answer, rest = self.fixture.lookup(name, rdtype)
        return answer if rest is None else None


# --- caching --------------------------------------------------------------------------------

_CacheKey = tuple[str, str]


class CachingResolver:
    """Keeps answers for their TTL: negative ones for the SOA's negative TTL (60 s when none is
    known); temporary failures (TIMEOUT, SERVFAIL, REFUSED) are never kept. Concurrent
    lookups of one name and type share one query. At most ``max_entries``, least recent out."""

    def __init__(
        self,
        inner: Resolver,
        max_entries: int = 10000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.inner = inner
        self.max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[_CacheKey, tuple[float, DnsAnswer]] = OrderedDict()
        self._inflight: dict[_CacheKey, asyncio.Future[DnsAnswer]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        self._entries.clear()

    async def query(self, name: str, rdtype: RecordType) -> DnsAnswer:
        key = (_key(name), rdtype)
        answer = self._cached(key)
        if answer is not None:
            return answer
        pending = self._inflight.get(key)
        if pending is None:
            pending = asyncio.ensure_future(self._fetch(key, name, rdtype))
            pending.add_done_callback(_retrieve)
            self._inflight[key] = pending
        return await asyncio.shield(pending)

    def answer_now(self, name: str, rdtype: RecordType) -> DnsAnswer | None:
        """What ``query`` answers when no wait is needed: a cached answer, or the inner
        resolver's immediate one (kept as ``query`` keeps it); None when a lookup must wait,
        or one for the same name and type is already under way."""
        key = (_key(name), rdtype)
        answer = self._cached(key)
        if answer is not None or key in self._inflight:
            return answer
        inner = getattr(self.inner, "answer_now", None)
        answer = inner(name, rdtype) if inner is not None else None
        if answer is not None:
            self._keep(key, answer)
        return answer

    def _cached(self, key: _CacheKey) -> DnsAnswer | None:
        entry = self._entries.get(key)
        if entry is not None:
            expires, answer = entry
            if self._clock() < expires:
                self._entries.move_to_end(key)
                return answer
            del self._entries[key]
        return None

    async def _fetch(self, key: _CacheKey, name: str, rdtype: RecordType) -> DnsAnswer:
        try:
            answer = await self.inner.query(name, rdtype)
        finally:
            self._inflight.pop(key, None)
        self._keep(key, answer)
        return answer

    def _keep(self, key: _CacheKey, answer: DnsAnswer) -> None:
        lifetime = _cache_lifetime(answer)
        if lifetime > 0:
            self._entries[key] = (self._clock() + lifetime, answer)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)


def _retrieve(future: asyncio.Future[DnsAnswer]) -> None:
    """Mark a shared lookup's exception as seen when every waiter has gone."""
    if not future.cancelled():
        future.exception()


def _cache_lifetime(answer: DnsAnswer) -> int:
    if answer.temporary:
        return 0
    if answer.records:
        return _clamp(answer.ttl, MAX_TTL)
    return _clamp(answer.ttl, MAX_NEGATIVE_TTL) if answer.ttl > 0 else NEGATIVE_TTL_UNKNOWN


# --- wiring ---------------------------------------------------------------------------------


def build_resolver(
    mode: DnsMode, server: tuple[str, int] | None, zones: Sequence[Path], timeout: float
) -> Resolver:
    """Offline (the default): the fixtures alone, nothing leaves the machine, and a name no
    fixture speaks for is ``UNKNOWN`` (never NXDOMAIN). Live, or with a server (which implies
    live): the fixtures first, then real DNS. Cached either way."""
    if mode not in ("offline", "live"):
        raise ConfigError(f"--dns {mode!r}: expected offline or live")
    if not timeout > 0:
        raise ConfigError(f"--dns-timeout {timeout}: expected a positive number of seconds")
    fixture = FixtureResolver(_unique(zones))
    if mode == "offline" and server is None:
        return CachingResolver(fixture)
    return CachingResolver(OverlayResolver(fixture, LiveResolver(server, timeout)))


def _unique(paths: Sequence[Path]) -> list[Path]:
    """Each file once, at its last place (later files win)."""
    seen: dict[Path, None] = {}
    for path in reversed(paths):
        seen.setdefault(path.resolve() if path.exists() else path, None)
    return list(reversed(seen))
