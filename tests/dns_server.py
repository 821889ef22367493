"""A real DNS server for tests: a record map served over UDP and TCP on one loopback port.

Built on dnspython's message parsing and the standard library's ``socketserver`` (one thread
per server, one per request), so it needs nothing sinkd does not already depend on and lets
tests control every byte: TXT character-strings travel exactly as given, answers over 512
bytes (or the client's EDNS size) come back truncated over UDP, and names can be made to fail
with any rcode or never to answer at all.

The record map has the shape ``sinkd.lookups.dns.FixtureResolver`` reads::

    {
        "example.com": {"TXT": ["v=spf1 -all"], "MX": [[10, "mx.example.com"]]},
        "4.3.2.1.zen.example": {"A": ["127.0.0.2"], "ttl": 60},
        "broken.example": {"rcode": "SERVFAIL"},   # any rcode; "TIMEOUT" never answers
    }

Types: A, AAAA, TXT and SPF (a record is a string, split at 255 bytes, ``bytes``, or a list of
character-strings), MX (``[preference, exchange]``), CNAME, PTR, NS (a name), and any other
type in presentation format (``"SOA": ["ns.example. host.example. 1 3600 600 86400 300"]``:
an SOA makes negative answers carry it). Names are case-insensitive, may end in a dot, and
``*`` labels are wildcards (RFC 4592). A name no query can carry (a label over 63 octets, an
empty label) is kept but never matches; a record whose target is such a name is left out.
``records`` is read at every query, so tests may change it while the server runs.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import socket
import socketserver
import struct
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, Self

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.SOA
import dns.rrset

RecordMap = dict[str, dict[str, Any]]
Transport = Literal["udp", "tcp"]
UDP_LIMIT = 512  # RFC 1035 §4.2.1, for clients that do not say otherwise with EDNS
TCP_LIMIT = 65535
DEFAULT_TTL = 300
BIND_ATTEMPTS = 50
POLL_INTERVAL = 0.05  # how quickly serve_forever notices stop(); not a readiness wait
_NAME_TYPES = {dns.rdatatype.CNAME, dns.rdatatype.PTR, dns.rdatatype.NS}
_TXT_TYPES = {dns.rdatatype.TXT, dns.rdatatype.SPF}


@dataclass(frozen=True, slots=True)
class Query:
    """One question the server received."""

    name: str  # lower-case, without the final dot
    rdtype: str
    transport: Transport


class _Drop(Exception):
    """Never answer this query (``rcode: TIMEOUT``, or ``silent``)."""


class _Unencodable(Exception):
    """A record no DNS message can carry (its target has a label over 63 octets)."""


def _name(text: str) -> dns.name.Name | None:
    text = text.strip()
    if not text:
        return None
    try:
        return dns.name.from_text(text)
    except (dns.exception.DNSException, UnicodeError, ValueError):
        return None


def _text(name: dns.name.Name) -> str:
    return name.to_text(omit_final_dot=True).lower()


def _strings(value: Any) -> tuple[bytes, ...]:
    """One TXT/SPF record's character-strings, exactly; a string over 255 bytes is split."""
    parts = value if isinstance(value, list | tuple) else [value]
    strings: list[bytes] = []
    for part in parts:
        if isinstance(part, str):
            data = part.encode("utf-8")
        elif isinstance(part, bytes | bytearray):
            data = bytes(part)
        else:
            raise ValueError(f"TXT: expected a string, bytes or a list of them, got {part!r}")
        strings.extend(data[i : i + 255] for i in range(0, len(data), 255))
        if not data:
            strings.append(b"")
    return tuple(strings) or (b"",)


def _target(text: Any) -> dns.name.Name:
    if not isinstance(text, str):
        raise ValueError(f"expected a name, got {text!r}")
    name = _name(text)
    if name is None:
        raise _Unencodable(text)
    return name


def _rdata(rdtype: dns.rdatatype.RdataType, value: Any) -> dns.rdata.Rdata:
    """One record of the map as dnspython rdata."""
    IN = dns.rdataclass.IN
    if rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
        address = ipaddress.ip_address(str(value))
        return dns.rdata.from_text(IN, rdtype, str(address))
    if rdtype in _TXT_TYPES:
        from dns.rdtypes.ANY.SPF import SPF
        from dns.rdtypes.ANY.TXT import TXT

        cls = TXT if rdtype == dns.rdatatype.TXT else SPF
        return cls(IN, rdtype, _strings(value))
    if rdtype == dns.rdatatype.MX:
        from dns.rdtypes.ANY.MX import MX

        if not (isinstance(value, list | tuple) and len(value) == 2):
            raise ValueError(f"MX: expected [preference, exchange], got {value!r}")
        return MX(IN, rdtype, int(value[0]), _target(value[1]))  # type: ignore[no-untyped-call]
    if rdtype in _NAME_TYPES:
        return dns.rdata.from_text(IN, rdtype, _target(value).to_text())
    return dns.rdata.from_text(IN, rdtype, str(value), origin=dns.name.root, relativize=False)


def _recv_exactly(conn: socket.socket, size: int) -> bytes | None:
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            return None
        data += chunk
    return data


class _UdpHandler(socketserver.BaseRequestHandler):
    server: _UdpServer

    def handle(self) -> None:
        data, sock = self.request
        reply = self.server.owner.respond(data, "udp")
        if reply is not None:
            with contextlib.suppress(OSError):
                sock.sendto(reply, self.client_address)


class _TcpHandler(socketserver.BaseRequestHandler):
    server: _TcpServer

    def handle(self) -> None:
        owner = self.server.owner
        conn: socket.socket = self.request
        owner._track(conn, True)
        try:
            while not owner._stopping.is_set():
                header = _recv_exactly(conn, 2)
                data = _recv_exactly(conn, struct.unpack("!H", header)[0]) if header else None
                if data is None:
                    return
                reply = owner.respond(data, "tcp")
                if reply is None:  # never answer: hold the connection open until stop()
                    owner._stopping.wait()
                    return
                conn.sendall(struct.pack("!H", len(reply)) + reply)
        except OSError:
            return
        finally:
            owner._track(conn, False)


class _UdpServer(socketserver.ThreadingUDPServer):
    allow_reuse_address = False
    daemon_threads = False
    block_on_close = True  # stop() joins every request thread

    def __init__(self, owner: DnsTestServer, address: tuple[str, int], family: int) -> None:
        self.owner = owner
        self.address_family = family
        super().__init__(address, _UdpHandler)


class _TcpServer(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = False
    block_on_close = True

    def __init__(self, owner: DnsTestServer, address: tuple[str, int], family: int) -> None:
        self.owner = owner
        self.address_family = family
        super().__init__(address, _TcpHandler)


class DnsTestServer:
    """Serves ``records`` on ``host`` over UDP and TCP on one port: ``start()``, ``address``,
    ``stop()``, or ``with DnsTestServer(records) as server:``.

    ``silent = True`` stops it answering anything (for timeouts); ``queries`` lists what it
    was asked, with the transport; ``errors`` lists records it could not serve (it answered
    SERVFAIL for them). ``udp_limit`` caps UDP answers whatever EDNS size the client offers.
    """

    def __init__(
        self,
        records: RecordMap | None = None,
        *,
        host: str = "127.0.0.1",
        udp_limit: int | None = None,
    ) -> None:
        self.records: RecordMap = records if records is not None else {}
        self.host = host
        self.udp_limit = udp_limit
        self.silent = False
        self.queries: list[Query] = []
        self.errors: list[str] = []
        self._udp: _UdpServer | None = None
        self._tcp: _TcpServer | None = None
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        self._lock = threading.Lock()

    # -- life cycle --

    @property
    def address(self) -> tuple[str, int]:
        if self._udp is None:
            raise RuntimeError("the DNS test server is not started")
        return self.host, int(self._udp.server_address[1])

    @property
    def spec(self) -> str:
        """``HOST:PORT``, as ``--dns-server`` takes it."""
        host, port = self.address
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    def start(self) -> Self:
        """Bind UDP on a free port and TCP on the same number, then serve in threads.

        The sockets are bound and listening when this returns, so the server is ready.
        """
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        for _ in range(BIND_ATTEMPTS):
            udp = _UdpServer(self, (self.host, 0), family)
            port = int(udp.server_address[1])
            try:
                tcp = _TcpServer(self, (self.host, port), family)
            except OSError as exc:
                udp.server_close()
                if exc.errno != errno.EADDRINUSE:
                    raise
                continue
            break
        else:
            raise RuntimeError(f"no port free for both UDP and TCP in {BIND_ATTEMPTS} attempts")
        self._udp, self._tcp = udp, tcp
        self._stopping.clear()
        for server, kind in ((udp, "udp"), (tcp, "tcp")):
            thread = threading.Thread(
                target=server.serve_forever,
                kwargs={"poll_interval": POLL_INTERVAL},
                name=f"dns-test-{kind}-{port}",
                daemon=True,
            )
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        """Stop serving, close held connections, join every thread."""
        self._stopping.set()
        with self._lock:
            for conn in self._connections:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
        for server in (self._udp, self._tcp):
            if server is not None:
                server.shutdown()
                server.server_close()
        for thread in self._threads:
            thread.join()
        self._threads.clear()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _track(self, conn: socket.socket, add: bool) -> None:
        with self._lock:
            if add:
                self._connections.add(conn)
            else:
                self._connections.discard(conn)

    # -- answering --

    def respond(self, wire: bytes, transport: Transport) -> bytes | None:
        """The reply to one query message, or None to send nothing."""
        try:
            query = dns.message.from_wire(wire)
        except dns.message.ShortHeader:
            return None
        except Exception:  # a malformed question: FORMERR, as a server would
            if len(wire) < 12:
                return None
            flags = dns.flags.QR | dns.rcode.FORMERR
            return wire[:2] + struct.pack("!HHHHH", flags, 0, 0, 0, 0)
        if self.silent:
            return None
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        if query.opcode() != dns.opcode.QUERY:
            response.set_rcode(dns.rcode.NOTIMP)
            return response.to_wire()
        if len(query.question) != 1:
            response.set_rcode(dns.rcode.FORMERR)
            return response.to_wire()
        question = query.question[0]
        rdtype = dns.rdatatype.RdataType.make(question.rdtype)
        self.queries.append(Query(_text(question.name), rdtype.name, transport))
        if question.rdclass != dns.rdataclass.IN:
            response.set_rcode(dns.rcode.REFUSED)
            return response.to_wire()
        try:
            rcode, answer, authority = self._resolve(question.name, rdtype)
        except _Drop:
            return None
        except Exception as exc:
            self.errors.append(f"{_text(question.name)} {rdtype.name}: {exc!r}")
            rcode, answer, authority = dns.rcode.SERVFAIL, [], []
        response.set_rcode(rcode)
        response.answer = answer
        response.authority = authority
        if transport == "tcp":
            limit = TCP_LIMIT
        elif self.udp_limit is not None:
            limit = self.udp_limit
        else:
            limit = max(UDP_LIMIT, query.payload) if query.edns >= 0 else UDP_LIMIT
        try:
            return response.to_wire(max_size=limit)
        except dns.exception.TooBig:
            if transport == "tcp":
                self.errors.append(f"{_text(question.name)} {rdtype.name}: answer over 64 KiB")
                return self._servfail(query)
        except Exception as exc:
            self.errors.append(f"{_text(question.name)} {rdtype.name}: {exc!r}")
            return self._servfail(query)
        truncated = dns.message.make_response(query)  # header and question only: ask over TCP
        truncated.flags |= dns.flags.AA | dns.flags.TC
        truncated.set_rcode(rcode)
        return truncated.to_wire()

    @staticmethod
    def _servfail(query: dns.message.Message) -> bytes:
        response = dns.message.make_response(query)
        response.set_rcode(dns.rcode.SERVFAIL)
        return response.to_wire()

    def _index(self) -> dict[dns.name.Name, Mapping[str, Any]]:
        index: dict[dns.name.Name, Mapping[str, Any]] = {}
        for owner, entry in list(self.records.items()):
            name = _name(owner)
            if name is not None and isinstance(entry, Mapping):
                index[name] = {str(k).upper(): v for k, v in entry.items()}
        return index

    def _resolve(
        self, qname: dns.name.Name, rdtype: dns.rdatatype.RdataType
    ) -> tuple[dns.rcode.Rcode, list[dns.rrset.RRset], list[dns.rrset.RRset]]:
        index = self._index()
        exists: set[dns.name.Name] = set()
        for name in index:
            while name not in exists:
                exists.add(name)
                if name == dns.name.root:
                    break
                name = name.parent()
        answer: list[dns.rrset.RRset] = []
        seen: set[dns.name.Name] = set()
        current = qname
        while current not in seen and len(seen) < 16:
            seen.add(current)
            entry, found_name = self._entry(index, exists, current)
            if entry is None:
                rcode = dns.rcode.NOERROR if found_name else dns.rcode.NXDOMAIN
                if answer:  # a CNAME chain's end: the rcode is the last name's (RFC 6604)
                    return rcode, answer, []
                return rcode, answer, self._soa(index, current)
            forced = entry.get("RCODE")
            if forced is not None:
                if str(forced).upper() == "TIMEOUT":
                    raise _Drop
                return dns.rcode.from_text(str(forced).upper()), [], []
            ttl = int(entry.get("TTL", DEFAULT_TTL))
            wanted = [rdtype] if rdtype != dns.rdatatype.ANY else self._types(entry)
            found = [r for r in (self._rrset(current, t, entry, ttl) for t in wanted) if r]
            if found:
                return dns.rcode.NOERROR, answer + found, []
            cname = self._rrset(current, dns.rdatatype.CNAME, entry, ttl)
            if cname is None or rdtype == dns.rdatatype.CNAME:
                return dns.rcode.NOERROR, answer, [] if answer else self._soa(index, current)
            answer.append(cname)
            current = next(iter(cname)).target
        return dns.rcode.SERVFAIL, [], []  # a CNAME loop

    @staticmethod
    def _entry(
        index: Mapping[dns.name.Name, Mapping[str, Any]],
        exists: set[dns.name.Name],
        qname: dns.name.Name,
    ) -> tuple[Mapping[str, Any] | None, bool]:
        """The name's own data, or the wildcard's at its closest encloser (RFC 4592 §3.3.1),
        and whether the name exists (False: NXDOMAIN)."""
        if qname in exists:
            return index.get(qname), True
        encloser = qname
        while encloser not in exists and encloser != dns.name.root:
            encloser = encloser.parent()
        wildcard = dns.name.Name((b"*", *encloser.labels))
        return index.get(wildcard), wildcard in exists

    @staticmethod
    def _types(entry: Mapping[str, Any]) -> list[dns.rdatatype.RdataType]:
        return [dns.rdatatype.from_text(k) for k in entry if k not in ("TTL", "RCODE")]

    def _rrset(
        self,
        owner: dns.name.Name,
        rdtype: dns.rdatatype.RdataType,
        entry: Mapping[str, Any],
        ttl: int,
    ) -> dns.rrset.RRset | None:
        values = entry.get(rdtype.name)
        if values is None:
            return None
        if not isinstance(values, list) or (
            rdtype == dns.rdatatype.MX and len(values) == 2 and isinstance(values[0], int)
        ):
            values = [values]
        rrset = dns.rrset.RRset(owner, dns.rdataclass.IN, rdtype)
        for value in values:
            try:
                rrset.add(_rdata(rdtype, value), ttl)
            except _Unencodable as exc:
                self.errors.append(f"{_text(owner)} {rdtype.name}: no DNS name {exc}; left out")
        return rrset if len(rrset) else None

    def _soa(
        self, index: Mapping[dns.name.Name, Mapping[str, Any]], name: dns.name.Name
    ) -> list[dns.rrset.RRset]:
        """The SOA of the closest enclosing name that has one, for a negative answer."""
        while True:
            entry = index.get(name)
            if entry is not None and "SOA" in entry:
                rrset = self._rrset(name, dns.rdatatype.SOA, entry, int(entry.get("TTL", 300)))
                return [rrset] if rrset is not None else []
            if name == dns.name.root:
                return []
            name = name.parent()
