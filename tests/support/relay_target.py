"""An SMTP server for sinkd to relay to (``--relay``): aiosmtpd on a loopback port in the test's
event loop, recording every envelope and message it accepts. It answers as told: chosen
recipients 4xx or 5xx, DATA 4xx for the first N transactions, STARTTLS and AUTH required; it
can be stopped and started again on the same port (a catcher restarting)."""

from __future__ import annotations

import asyncio
import ssl
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from sinkd.web.hub import Subscription

TIMEOUT = 15.0  # a bound on a relay that never comes, never a threshold a passing test nears


@dataclass(frozen=True)
class Delivery:
    """One message the target accepted: its envelope and its bytes as received."""

    mail_from: str
    rcpt_to: tuple[str, ...]
    data: bytes
    tls: bool
    auth: str | None

    @property
    def headers(self) -> bytes:
        return self.data.split(b"\r\n\r\n", 1)[0]


@dataclass
class RelayTarget:
    """The target's policy and what it received. ``reject`` recipients get 550, ``defer``
    ones 450 (always); the first ``defer_data`` DATA commands get 451; ``credentials`` (user,
    password) requires AUTH over TLS; ``tls`` (a server context) offers STARTTLS, required
    when ``require_starttls``."""

    reject: frozenset[str] = frozenset()
    defer: frozenset[str] = frozenset()
    defer_data: int = 0
    tls: ssl.SSLContext | None = None
    require_starttls: bool = False
    credentials: tuple[str, str] | None = None
    deliveries: list[Delivery] = field(default_factory=list)
    transactions: int = 0  # MAIL commands seen (attempts that got that far)
    connections: int = 0  # SMTP connections accepted
    auth_attempts: list[tuple[str, str]] = field(default_factory=list)
    port: int = 0
    # When set, DATA waits for it (set it to let the message through); data_started is set
    # when a DATA command is waiting.
    hold_data: asyncio.Event | None = None
    data_started: asyncio.Event = field(default_factory=asyncio.Event)
    _server: asyncio.Server | None = None
    _changed: asyncio.Condition | None = None
    _open: weakref.WeakSet[SMTP] = field(default_factory=weakref.WeakSet)

    async def start(self, port: int = 0) -> int:
        """Listen on 127.0.0.1 (``port``, or a free one the first time); the port."""
        self._changed = self._changed or asyncio.Condition()
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._protocol, "127.0.0.1", port or self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        """Stop listening and drop open connections (a catcher going down)."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
            for protocol in list(self._open):  # Server.close_clients is Python 3.13's
                if protocol.transport is not None:
                    protocol.transport.close()
            self._open.clear()
            await server.wait_closed()

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    async def wait_for(self, count: int) -> list[Delivery]:
        """Wait (up to ``TIMEOUT``) until ``count`` messages were delivered; the deliveries."""
        return await self.wait_until(lambda deliveries: len(deliveries) >= count)

    async def wait_until(self, done: Callable[[list[Delivery]], bool]) -> list[Delivery]:
        """Wait (up to ``TIMEOUT``) until ``done(deliveries)``; the deliveries."""
        assert self._changed is not None
        async with asyncio.timeout(TIMEOUT), self._changed:
            await self._changed.wait_for(lambda: done(self.deliveries))
        return list(self.deliveries)

    def _protocol(self) -> SMTP:
        kwargs: dict[str, Any] = {}
        if self.credentials is not None:
            kwargs.update(
                authenticator=self._authenticate, auth_required=True, auth_require_tls=True
            )
        protocol = SMTP(
            _Handler(self),
            hostname="target.test",
            tls_context=self.tls,
            require_starttls=self.require_starttls,
            **kwargs,
        )
        self._open.add(protocol)
        self.connections += 1
        return protocol

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        if not isinstance(data, LoginPassword):
            return AuthResult(success=False, handled=False)
        user, password = data.login.decode(), data.password.decode()
        self.auth_attempts.append((user, password))
        return AuthResult(success=(user, password) == self.credentials, auth_data=user)

    async def _delivered(self, delivery: Delivery) -> None:
        assert self._changed is not None
        async with self._changed:
            self.deliveries.append(delivery)
            self._changed.notify_all()


class _Handler:
    def __init__(self, target: RelayTarget) -> None:
        self.target = target

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        self.target.transactions += 1
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 2.1.0 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if address in self.target.reject:
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
        if address in self.target.defer:
            return f"450 4.2.1 <{address}>: Recipient address rejected: try again later"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.target.hold_data is not None:
            self.target.data_started.set()
            await self.target.hold_data.wait()
        if self.target.defer_data > 0:
            self.target.defer_data -= 1
            return "451 4.3.0 Temporary failure, try again"
        data = envelope.original_content or b""
        auth = session.auth_data if isinstance(session.auth_data, str) else None
        await self.target._delivered(
            Delivery(
                envelope.mail_from or "",
                tuple(envelope.rcpt_tos),
                data,
                session.ssl is not None,
                auth,
            )
        )
        return "250 2.0.0 Ok: queued"


async def relay_settled(subscription: Subscription, message_id: str) -> dict[str, Any]:
    """The relay state of ``message_id`` once an attempt left it delivered or failed, from
    the live events (the relayer publishes a ``relay`` event after each attempt)."""
    async with asyncio.timeout(TIMEOUT):
        while True:
            event = await subscription.next()
            assert event is not None, "the event stream ended"
            if event.name == "relay" and event.data["id"] == message_id:
                state: dict[str, Any] = event.data["relay"]
                if state["status"] != "queued":
                    return state


async def relay_attempts(subscription: Subscription, message_id: str, count: int) -> dict[str, Any]:
    """The relay state of ``message_id`` after its ``count``-th attempt (live events)."""
    async with asyncio.timeout(TIMEOUT):
        while True:
            event = await subscription.next()
            assert event is not None, "the event stream ended"
            if event.name == "relay" and event.data["id"] == message_id:
                state: dict[str, Any] = event.data["relay"]
                if state["attempts"] >= count:
                    return state
