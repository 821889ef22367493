"""The per-connection session: what sinkd remembers about one SMTP connection beside
aiosmtpd's own ``Session``, and what the handler may ask of the protocol.

Owns ``ConnectionSession`` (the XCLIENT attributes, the open engine ``Transaction`` and its id,
the address counted against the connection limit and the refusal decided at connect, and the
effective client identity, computed here and nowhere else) and ``SmtpServer``, the small
``typing.Protocol`` through which the handler sees the SMTP protocol, so that ``handler`` never
imports ``protocol`` (which imports ``handler``). It sends nothing, judges nothing and stores
nothing.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Protocol

from aiosmtpd.smtp import LoginPassword, Session

from sinkd.core.engine import Transaction
from sinkd.core.model import ClientIdentity
from sinkd.server.options import ServerOptions
from sinkd.server.xclient import XclientAttributes
from sinkd.services.ids import new_message_id
from sinkd.services.judge import Identity


@dataclass
class ConnectionSession:
    """One connection's state, kept by the protocol (``SinkdSMTP.connection``) and read and
    written by the handler. A new connection starts with a fresh one."""

    xclient: XclientAttributes = field(default_factory=XclientAttributes)
    # The engine's staged transaction between MAIL FROM and the end of DATA (None outside one),
    # and the id its verdicts are committed under (kept after it ends, for the last commit).
    transaction: Transaction | None = None
    transaction_id: str = ""
    # The connecting address while it counts against max_connections_per_ip, and the 421 reply
    # when this connection is one too many (decided at connect, sent before the greeting).
    counted: str | None = None
    refusal: str | None = None

    def open(self, transaction: Transaction) -> None:
        """MAIL FROM began ``transaction``: it gets a new id."""
        self.transaction = transaction
        self.transaction_id = new_message_id()

    def take_xclient(self, attributes: XclientAttributes) -> None:
        """A successful XCLIENT: its attributes from now on, and no transaction (the client
        starts over with EHLO, as after Postfix's XCLIENT). The connection count stays."""
        self.xclient = attributes
        self.transaction = None
        self.transaction_id = ""

    def client(self, session: Session, options: ServerOptions) -> ClientIdentity:
        """The client the filters see: XCLIENT's address, else the PROXY header's, else the
        configured ``client_ip``, else the connecting address; XCLIENT's HELO, else the
        configured one, else the one the client said."""
        xclient = self.xclient
        peer = session.peer[0] if isinstance(session.peer, tuple) else None
        proxy_ip = None
        if session.proxy_data is not None and session.proxy_data.src_addr is not None:
            proxy_ip = str(session.proxy_data.src_addr)
        if xclient.addr:
            ip, source = xclient.addr, "xclient"
        elif proxy_ip:
            ip, source = proxy_ip, "proxy"
        elif options.client_ip:
            ip, source = options.client_ip, "option"
        else:
            ip, source = peer or "0.0.0.0", "connection"
        helo = xclient.helo or options.helo or session.host_name
        return ClientIdentity(ip=ip, helo=helo, name=xclient.name, source=source, peer=peer)

    def identity(self, session: Session, options: ServerOptions, *, tls: bool) -> Identity:
        """Who sends, as the judge takes it: the client, the authenticated user (XCLIENT's
        LOGIN, else AUTH's login) and whether the connection is encrypted."""
        auth_user = None
        if self.xclient.login:
            auth_user = self.xclient.login
        elif isinstance(session.auth_data, LoginPassword):
            auth_user = session.auth_data.login.decode("utf-8", "replace")
        return Identity(self.client(session, options), auth_user, tls=tls)


class SmtpServer(Protocol):
    """What the handler uses of the SMTP protocol (``sinkd.server.protocol.SinkdSMTP``)."""

    @property
    def connection(self) -> ConnectionSession: ...

    @property
    def session(self) -> Session | None: ...

    @property
    def transport(self) -> asyncio.BaseTransport | None: ...

    @property
    def hostname(self) -> str: ...

    @property
    def tls(self) -> bool:
        """Whether STARTTLS has encrypted the connection."""
        ...

    async def push(self, status: str) -> None: ...

    def drop(self) -> None: ...
