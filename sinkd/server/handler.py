"""``SinkHandler``: the aiosmtpd hooks between the SMTP protocol and the services.

Owns what each stage does: chaos injection (the core's ``Chaos`` decides, this logs and
answers), connection limits and tarpits (the default or recipients' profile's ``smtp``
settings), the default profile's refusals at the greeting and at HELO/EHLO and the recipients'
profiles' at the DATA command (before 354), one engine ``Transaction`` per mail transaction
through ``Judge.transaction()``, and
replying only after ``Recorder.commit()`` stored every verdict (which also writes the one log
line per verdict); a message whose judge worker died is answered 451 with nothing stored.
It reads and writes the connection's ``ConnectionSession`` and sees the protocol only as
``SmtpServer`` (``sinkd.server.session``): it must not import
``sinkd.server.protocol``, decide policy (the engine does) or build lookups or stores.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Protocol

from aiosmtpd.smtp import Envelope as SmtpEnvelope
from aiosmtpd.smtp import Session

from sinkd.core.chaos import Chaos, ChaosStage, log_injected
from sinkd.core.engine import Router, access_denied
from sinkd.core.model import Reply, Stage, Verdict
from sinkd.errors import BackendError
from sinkd.server import xclient
from sinkd.server.options import ServerOptions
from sinkd.server.session import SmtpServer
from sinkd.services.ids import new_message_id
from sinkd.services.judge import Judge
from sinkd.services.metrics import Metrics
from sinkd.services.recorder import Recorder, format_reply

log = logging.getLogger("sinkd.smtp")  # every SMTP module logs here: users select on it

TEMPFAIL_INTERNAL = Reply(451, "4.3.0", "Internal error; try again later")


class SharedConnections(Protocol):
    """Open SMTP connections counted across every instance of a shared store
    (``sinkd.store.pg_state.PgDeliveryState``): counted without I/O when a connection is made
    or lost, the shared count awaited before the greeting."""

    def connection_opened(self, ip: str) -> None: ...

    def connection_closed(self, ip: str) -> None: ...

    async def connections_from(self, ip: str) -> int: ...


class SinkHandler:
    """aiosmtpd handler: one engine ``Transaction`` per mail transaction."""

    def __init__(
        self,
        judge: Judge,
        recorder: Recorder,
        options: ServerOptions,
        chaos: Chaos | None = None,
        metrics: Metrics | None = None,
        shared: SharedConnections | None = None,
    ) -> None:
        self.judge = judge  # builds each transaction under the routing in force
        self.recorder = recorder  # stores, logs and publishes every verdict before its reply
        self.options = options
        self.chaos = chaos or Chaos()
        self.connections: dict[str, int] = {}  # open connections per connecting address
        self.metrics = metrics  # open sessions and judging time (the recorder counts verdicts)
        # With a PostgreSQL store, connection limits count every instance's connections.
        self.shared = shared

    @property
    def router(self) -> Router:
        """The routing in force (the judge's): connection limits and tarpits read it."""
        return self.judge.router

    # --- chaos ------------------------------------------------------------------------------

    def inject(self, server: SmtpServer, stage: ChaosStage) -> str | None:
        """Chaos at ``stage`` (docs/cli.md, "Chaos"): None to go on as usual, else the reply line to
        send instead of the real answer, or "" when a ``disconnect`` trigger has dropped the
        connection. Injected failures are logged, never stored: they are no verdict."""
        trigger = self.chaos.decide(stage)
        if trigger is None:
            return None
        peer = server.session.peer if server.session is not None else None
        log_injected(trigger, peer[0] if isinstance(peer, tuple) else None)
        if trigger.disconnect:
            server.drop()
            return ""
        return format_reply(trigger.reply())

    # --- connection limits and tarpits (the profile's smtp settings) ------------------------

    def connection_opened(self, ip: str) -> str | None:
        """Count a new connection from ``ip``: the 421 reply line when it is one too many
        (the default profile's ``max_connections_per_ip``, Postfix's
        smtpd_client_connection_count_limit), else None. Called when the connection is made,
        where nothing can be awaited: with shared counts the limit is checked by
        ``before_greeting`` instead, once the other instances' count has been read."""
        self.connections[ip] = open_now = self.connections.get(ip, 0) + 1
        if self.metrics is not None:
            self.metrics.sessions.inc()
        if self.shared is not None:
            self.shared.connection_opened(ip)
            return None
        return self._over_limit(ip, open_now)

    def _over_limit(self, ip: str, open_now: int) -> str | None:
        pipeline = self.router.default
        limit = pipeline.profile.smtp.max_connections_per_ip
        if limit is None or open_now <= limit:
            return None
        log.warning(
            "connection limit: %d connections from %s, limit %d; refused with 421",
            open_now,
            ip,
            limit,
        )
        variables = {"client_ip": ip, "hostname": self.options.hostname}
        return format_reply(pipeline.connection_reply.render(variables))

    def connection_closed(self, ip: str) -> None:
        if self.metrics is not None:
            self.metrics.sessions.dec()
        left = self.connections.get(ip, 0) - 1
        if left > 0:
            self.connections[ip] = left
        else:
            self.connections.pop(ip, None)
        if self.shared is not None:
            self.shared.connection_closed(ip)

    async def _limit_refusal(self, server: SmtpServer) -> str | None:
        """The 421 for a connection over the limit from the address it counts under, or None."""
        refusal = server.connection.refusal
        ip = server.connection.counted
        limited = self.router.default.profile.smtp.max_connections_per_ip is not None
        # Only a profile with a limit waits for the shared count (one round trip); the
        # shared state writes this instance's count in the background anyway.
        if refusal is None and self.shared is not None and ip is not None and limited:
            refusal = self._over_limit(ip, await self.shared.connections_from(ip))
        return refusal

    async def before_greeting(self, server: SmtpServer) -> bool:
        """Refuse a connection over the limit (421, then close), or wait out the default
        profile's banner tarpit. False when the connection was refused. Behind a PROXY
        header the connection comes from the balancer: its limit is checked in
        ``handle_PROXY``, under the client's address."""
        refusal = None if self.options.proxy_protocol else await self._limit_refusal(server)
        if refusal is not None:
            await server.push(refusal)
            if server.transport is not None:
                server.transport.close()
            return False
        delay = self.router.default.profile.smtp.tarpit.banner
        if delay > 0:
            try:
                await asyncio.sleep(delay)
            except asyncio.CancelledError:  # the client gave up waiting: close our end too
                if server.transport is not None:
                    server.transport.close()
                raise
        return True

    def tarpit_delay(self, server: SmtpServer, command: str, args: tuple[Any, ...]) -> float:
        """Seconds to wait before answering ``command``: RCPT by the recipient's profile,
        DATA by the slowest profile among the transaction's recipients."""
        if command == "RCPT" and args and isinstance(args[0], str):
            return self.router.pipeline_for(args[0]).profile.smtp.tarpit.rcpt
        if command == "DATA":  # every command passes here: only DATA reads the session
            transaction = server.connection.transaction
            if transaction is not None:
                pipelines = transaction.pipelines
                return max((p.profile.smtp.tarpit.data for p in pipelines), default=0.0)
        return 0.0

    # --- refusals before MAIL FROM (the default profile's filters that answer there) --------

    async def session_refusal(self, server: SmtpServer, stage: Stage) -> Verdict | None:
        """The default profile's refusal of the client at the greeting (``Stage.CONNECT``) or
        at HELO/EHLO (``Stage.HELO``), stored before it is answered, or None to go on. A
        profile none of whose filters answers there is not asked (no transaction is built)."""
        if not self.router.default.answers_at(stage) or server.session is None:
            return None
        identity = server.connection.identity(server.session, self.options, tls=server.tls)
        transaction = self.judge.transaction(identity)
        verdict = await transaction.session(stage)
        if verdict is None:
            return None
        await self.recorder.commit([verdict], None, transaction_id=new_message_id())
        return verdict

    async def greeting_refusal(self, server: SmtpServer) -> tuple[str, str] | None:
        """The reply refusing the client in place of the greeting (or of XCLIENT's new
        greeting) and the one every later command but QUIT gets, or None to greet it."""
        try:
            verdict = await self.session_refusal(server, Stage.CONNECT)
        except Exception:
            log.exception("connect evaluation failed")
            return None  # greeted as usual: MAIL FROM judges the client again
        if verdict is None:
            return None
        return format_reply(verdict.reply), format_reply(access_denied(verdict.envelope.client))

    async def _helo_refusal(self, server: SmtpServer) -> str | None:
        try:
            verdict = await self.session_refusal(server, Stage.HELO)
        except Exception:
            log.exception("HELO evaluation failed")
            return format_reply(TEMPFAIL_INTERNAL)
        return None if verdict is None else format_reply(verdict.reply)

    # --- aiosmtpd hooks ---------------------------------------------------------------------

    async def handle_PROXY(
        self, server: SmtpServer, session: Session, envelope: SmtpEnvelope, proxy_data: Any
    ) -> bool:
        refused = self.inject(server, "connect")  # chaos at connect, in place of the greeting
        if refused is not None:
            if refused:
                await server.push(refused)
            return False  # aiosmtpd closes the connection
        # The connection counts under the client's address, not the balancer's: Postfix
        # behind HAProxy (smtpd_upstream_proxy_protocol = haproxy) takes the client address
        # from the header before its anvil(8) connection count, so every client behind one
        # balancer is not one client (postconf(5) smtpd_client_connection_count_limit).
        source = getattr(proxy_data, "src_addr", None)
        counted = server.connection.counted
        if source is not None and counted is not None:
            self.connection_closed(counted)
            server.connection.counted = str(source)
            server.connection.refusal = self.connection_opened(str(source))
            refusal = await self._limit_refusal(server)
            if refusal is not None:
                await server.push(refusal)
                return False  # aiosmtpd closes the connection
        return True  # the header was valid (aiosmtpd checked it); its source address is used

    async def handle_EHLO(
        self,
        server: SmtpServer,
        session: Session,
        envelope: SmtpEnvelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        session.host_name = hostname
        server.connection.transaction = None
        refused = self.inject(server, "ehlo")
        if refused is not None:  # chaos: the client is not greeted (MAIL gets 503)
            session.host_name, session.extended_smtp = None, False
            return [refused]
        refused = await self._helo_refusal(server)
        if refused is not None:  # the profile refuses this HELO name: the client is not greeted
            session.host_name, session.extended_smtp = None, False
            return [refused]
        extra = [
            "250-PIPELINING",
            "250-ENHANCEDSTATUSCODES",
            f"250-{xclient.EHLO_KEYWORD}",
        ]
        lines = [
            r
            for r in responses[:-1]
            if not (self.options.auth == "off" and r.startswith("250-AUTH"))
        ]
        return [*lines, *extra, responses[-1]]

    async def handle_HELO(
        self, server: SmtpServer, session: Session, envelope: SmtpEnvelope, hostname: str
    ) -> str:
        session.host_name = hostname
        server.connection.transaction = None
        refused = self.inject(server, "ehlo")
        if refused is None:
            refused = await self._helo_refusal(server)
        if refused is not None:  # chaos or the profile: the client is not greeted
            session.host_name = None
            return refused
        return f"250 {server.hostname}"

    async def handle_RSET(
        self, server: SmtpServer, session: Session, envelope: SmtpEnvelope
    ) -> str:
        server.connection.transaction = None
        return "250 2.0.0 Ok"

    async def handle_NOOP(
        self, server: SmtpServer, session: Session, envelope: SmtpEnvelope, arg: str
    ) -> str:
        return "250 2.0.0 Ok"

    async def handle_MAIL(
        self,
        server: SmtpServer,
        session: Session,
        envelope: SmtpEnvelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        refused = self.inject(server, "mail")  # chaos: refused before any transaction exists
        if refused is not None:
            return refused
        size = None
        for option in mail_options:
            if option.upper().startswith("SIZE="):
                size = int(option[5:])
        connection = server.connection
        identity = connection.identity(session, self.options, tls=server.tls)
        transaction = self.judge.transaction(identity)
        connection.open(transaction)
        try:
            # aiosmtpd spells the null reverse-path "<>"; the engine's envelope spells it "".
            verdict = await transaction.mail("" if address == "<>" else address, size)
            if verdict is not None:
                connection.transaction = None
                return await self._commit([verdict], None, connection.transaction_id)
        except Exception:
            log.exception("MAIL FROM evaluation failed")
            connection.transaction = None
            return format_reply(TEMPFAIL_INTERNAL)
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 Ok"

    async def handle_RCPT(
        self,
        server: SmtpServer,
        session: Session,
        envelope: SmtpEnvelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        transaction = server.connection.transaction
        if transaction is None:
            return "503 5.5.1 Error: need MAIL command"
        if not address or address.strip("<>") == "":
            # RFC 5321 §4.1.1.3: the null path is a reverse-path only; Postfix says the same.
            return "501 5.1.3 Bad recipient address syntax"
        if len(envelope.rcpt_tos) >= self.options.max_recipients:
            return "452 4.5.3 Error: too many recipients"  # RFC 5321 §4.5.3.1.10
        refused = self.inject(server, "rcpt")  # chaos: the recipient is not added
        if refused is not None:
            return refused
        try:
            verdict = await transaction.rcpt(address)
            if verdict is not None:
                return await self._commit([verdict], None, server.connection.transaction_id)
        except Exception:
            log.exception("RCPT TO evaluation failed")
            return format_reply(TEMPFAIL_INTERNAL)
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 Ok"

    async def data_command(self, server: SmtpServer) -> str | None:
        """The reply refusing the DATA command before its 354, stored first, or None to go on
        (only profiles whose filters answer the DATA command are asked)."""
        connection = server.connection
        transaction = connection.transaction
        if transaction is None or not transaction.recipients:
            return None  # handle_DATA answers 503
        try:
            verdicts = await transaction.data_command()
        except Exception:
            log.exception("DATA command evaluation failed")
            return format_reply(TEMPFAIL_INTERNAL)
        if not verdicts:
            return None
        return await self._commit(verdicts, None, connection.transaction_id)

    async def handle_DATA(
        self, server: SmtpServer, session: Session, envelope: SmtpEnvelope
    ) -> str:
        connection = server.connection
        transaction, connection.transaction = connection.transaction, None
        if transaction is None or not transaction.recipients:
            return "503 5.5.1 Error: need RCPT command"
        refused = self.inject(server, "data")  # chaos: data received, no verdict, nothing stored
        if refused is not None:
            return refused
        raw = envelope.original_content
        assert isinstance(raw, bytes)
        started = time.perf_counter()
        try:
            verdicts = await transaction.data(raw)
        except BackendError as exc:
            # A judge worker died (sinkd.services.offload logged why and started the pool
            # again): nothing is stored, and the client retries after the 451.
            log.warning("DATA not judged, answered 451: %s", exc)
            return format_reply(TEMPFAIL_INTERNAL)
        except Exception:
            log.exception("DATA evaluation failed")
            return format_reply(TEMPFAIL_INTERNAL)
        if self.metrics is not None:
            self.metrics.filter_seconds.observe(time.perf_counter() - started)
        return await self._commit(verdicts, raw, connection.transaction_id)

    async def handle_exception(self, error: Exception) -> str:
        # aiosmtpd's default shows the Python class name to the client; never do that.
        log.exception("SMTP session error", exc_info=error)
        return format_reply(TEMPFAIL_INTERNAL)

    # --- commit -----------------------------------------------------------------------------

    async def _commit(self, verdicts: list[Verdict], raw: bytes | None, transaction_id: str) -> str:
        """Store every verdict, then answer: the reply is sent only after the commit."""
        committed = await self.recorder.commit(verdicts, raw, transaction_id=transaction_id)
        return format_reply(committed.reply)
