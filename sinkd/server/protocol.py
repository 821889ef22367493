"""The SMTP protocol: aiosmtpd's ``SMTP`` with what sinkd adds to the conversation.

Owns ``SinkdSMTP`` (RFC 3463 enhanced codes on every reply, the DATA reader, the MAIL/RCPT
address fast path and SIZE checks, XCLIENT's command, the connection's ``ConnectionSession``,
chaos at connect, the session after a refusing greeting (503 until QUIT), the hook before DATA's
354, and ``clone()``: a cheap protocol per connection), the AUTH authenticator
and ``protocol_factory``/``build_protocol``. What each stage means (limits, tarpits, judging,
committing before replying) is the handler's (``sinkd.server.handler``); XCLIENT's attributes
and parsing are ``sinkd.server.xclient``'s. It never decides policy and never relays anything.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import secrets
import types
import warnings
from collections.abc import Awaitable, Callable
from typing import Any, AnyStr

import aiosmtpd.smtp
from aiosmtpd.smtp import (
    MISSING,
    SMTP,
    AuthResult,
    LoginPassword,
    Session,
    _AuthMechAttr,
    syntax,
)
from aiosmtpd.smtp import Envelope as SmtpEnvelope

from sinkd.server import xclient
from sinkd.server.handler import SinkHandler
from sinkd.server.options import ServerOptions
from sinkd.server.session import ConnectionSession

log = logging.getLogger("sinkd.smtp")  # every SMTP module logs here: users select on it

# Lines longer than RFC 5322's 998 octets are common in ESP-made HTML; real gateways mostly
# accept them, so sinkd does too (and records a FORMAT_LONG_LINES finding) up to this bound.
DATA_LINE_LIMIT = 65536

# aiosmtpd's own replies carry no enhanced status code. Having advertised
# ENHANCEDSTATUSCODES we owe one on every reply (RFC 2034 §3), so they are rewritten here.
_ENHANCED: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"^250 OK$"), "250 2.0.0 OK"),
    (re.compile(r"^250 (Syntax|Supported commands): (.*)$"), r"250 2.0.0 \1: \2"),  # HELP
    (re.compile(r"^221 Bye$"), "221 2.0.0 Bye"),
    (re.compile(r"^252 (.*)$"), r"252 2.5.0 \1"),
    (re.compile(r"^354 (.*)$"), r"354 \1"),  # intermediate replies take no enhanced code
    (re.compile(r"^220 Ready to start TLS$"), "220 2.0.0 Ready to start TLS"),
    (re.compile(r"^500 Command line too long$"), "500 5.5.2 Command line too long"),
    (re.compile(r"^500 Line too long.*$"), "500 5.5.2 Line too long (RFC 5321 §4.5.3.1.6)"),
    (re.compile(r"^500 Error: bad syntax$"), "500 5.5.2 Error: bad syntax"),
    (re.compile(r"^500 Error: strict ASCII mode$"), "500 5.6.7 Error: non-ASCII without SMTPUTF8"),
    (re.compile(r"^500 Error: command (.*)$"), r"500 5.5.1 Error: command \1"),
    (re.compile(r"^501 (.*)$"), r"501 5.5.4 \1"),
    (re.compile(r"^502 (.*)$"), r"502 5.5.1 \1"),
    (re.compile(r"^503 (.*)$"), r"503 5.5.1 \1"),
    (re.compile(r"^530 (.*)$"), r"530 5.7.0 \1"),
    (re.compile(r"^552 Error: Too much mail data$"), "552 5.3.4 Message size exceeds fixed limit"),
    (
        re.compile(r"^552 Error: message size exceeds.*$"),
        "552 5.3.4 Message size exceeds fixed limit",
    ),
    (re.compile(r"^553 (?!\d\.)(.*)$"), r"553 5.1.3 \1"),
    (re.compile(r"^554 Command refused.*$"), "554 5.7.0 Command refused due to lack of security"),
    (re.compile(r"^555 (.*)$"), r"555 5.5.4 \1"),
]
# What SMTP.__init__ sets afresh for each connection (aiosmtpd 1.4.6); see SinkdSMTP.clone.
_CONNECTION_STATE: dict[str, Any] = {
    "_timeout_handle": None,
    "_tls_handshake_okay": True,
    "_tls_protocol": None,
    "_original_transport": None,
    "session": None,
    "envelope": None,
    "transport": None,
    "_handler_coroutine": None,
    "_idle_deadline": 0.0,
    "_stage": "connect",
}
# A reverse- or forward-path that is a plain <local@domain> (RFC 5321 §4.1.2 Dot-string and
# sub-domains), then the parameters after any spaces; a comment after ">" is left to aiosmtpd.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_PLAIN_PATH = re.compile(
    rf"[ \t]*<({_ATEXT}(?:\.{_ATEXT})*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*)>[ \t]*+(?!\()(.*)",
    re.DOTALL,
)
_SIZE_VALUE = re.compile(r"[0-9]{1,20}")  # RFC 1870 §3: size-value ::= 1*20DIGIT
_HAS_ENHANCED = re.compile(r"^\d{3}[ -][245]\.\d{1,3}\.\d{1,3}( |$)")


_LOG_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING}
_aiosmtpd_sanitized_log = aiosmtpd.smtp.sanitized_log


def _sanitized_log(func: Callable[..., None], msg: AnyStr, *args: Any, **kwargs: Any) -> None:
    """aiosmtpd's ``sanitized_log``, asking the logger first whether the line is wanted.

    aiosmtpd logs every command line twice through it (at DEBUG and INFO), masking AUTH
    credentials with a regular expression before the logger checks its level; with "mail.log"
    at WARNING (``sinkd.server.logs``) that was ~2-4 us a command for nothing. With the level
    on, aiosmtpd's own function runs, so what is logged is unchanged."""
    logger = getattr(func, "__self__", None)
    level = _LOG_LEVELS.get(getattr(func, "__name__", ""))
    if not isinstance(logger, logging.Logger) or level is None or logger.isEnabledFor(level):
        _aiosmtpd_sanitized_log(func, msg, *args, **kwargs)


# aiosmtpd's command loop looks the function up in its module on every line.
aiosmtpd.smtp.sanitized_log = _sanitized_log


def enhance(status: str) -> str:
    """Give one of aiosmtpd's built-in replies its RFC 3463 enhanced status code."""
    if _HAS_ENHANCED.match(status) or status[3:4] == "-":
        return status
    return _rewrite(status)


# aiosmtpd's own replies are a few fixed lines (the 354 on every DATA among them): each is
# rewritten once, not matched against every pattern on each message (~3 us a 354).
@functools.lru_cache(maxsize=256)
def _rewrite(status: str) -> str:
    for pattern, replacement in _ENHANCED:
        if pattern.match(status):
            return pattern.sub(replacement, status)
    return status


class SinkdSMTP(SMTP):
    """aiosmtpd's SMTP with sinkd's additions: XCLIENT, enhanced codes on every reply."""

    line_length_limit = DATA_LINE_LIMIT
    event_handler: SinkHandler  # aiosmtpd's is untyped; this class calls sinkd's own hooks on it

    def __init__(self, handler: SinkHandler, **kwargs: Any) -> None:
        with warnings.catch_warnings():
            # AUTH without TLS is deliberate here (apps insist on AUTH; see docs/security.md).
            warnings.simplefilter("ignore")
            super().__init__(handler, **kwargs)
        self.connection = ConnectionSession()  # what the handler keeps about this connection
        self._idle_deadline = 0.0  # loop time at which an idle connection is closed
        # The command whose replies are being sent (GET /metrics counts replies by it):
        # "connect" for the greeting, "other" for replies to no recognised command.
        self._stage = "connect"
        # aiosmtpd counts MAIL's size limit from this base; the extensions add to it.
        self.command_size_limits["XCLIENT"] = 2048

    def clone(self) -> SinkdSMTP:
        """A fresh protocol for the next connection, configured like this one.

        aiosmtpd's ``__init__`` reflects over the handler and the protocol on every connection
        (``inspect.getmembers``, ``dir``, ``inspect.signature``): ~85% of a new protocol's
        cost and, at 1 KB messages, a tenth of a message's CPU. The reflection's results are
        the same for every connection of a server, so they are computed once, for a prototype,
        and each connection gets a copy: the stream machinery from asyncio's own ``__init__``,
        the per-connection attributes reset, the prototype's methods re-bound to the copy.
        ``tests/server/test_protocol_fast_paths.py`` checks the copy against a fully built
        protocol, so a new aiosmtpd that adds an attribute fails there rather than here.
        """
        copy = object.__new__(type(self))
        state = copy.__dict__
        state.update(self.__dict__)
        asyncio.StreamReaderProtocol.__init__(
            copy,
            asyncio.StreamReader(loop=self.loop, limit=self.line_length_limit),
            client_connected_cb=copy._cb_client_connected,
            loop=self.loop,
        )
        state.update(_CONNECTION_STATE)
        state["connection"] = ConnectionSession()
        state["_smtp_methods"] = {
            name: _Staged(copy, name.lower(), _rebind(method, copy))
            for name, method in self._smtp_methods.items()
        }
        state["_auth_methods"] = {
            name: _AuthMechAttr(_rebind(entry.method, copy), True) if entry.is_builtin else entry
            for name, entry in self._auth_methods.items()
        }
        return copy

    def _reset_timeout(self, duration: float | None = None) -> None:
        # aiosmtpd cancels its idle timer and schedules a new one on every command: a new
        # TimerHandle and a heap push each time, the cancelled ones left in the loop's heap
        # until it is swept (~3 us a command, four commands a message). The deadline moves
        # instead; the one timer, firing before it, re-arms for what is left (_idle_check).
        # aiosmtpd's connection_lost cancels whatever handle is current, as before.
        loop = self.loop
        deadline = loop.time() + (duration or self._timeout_duration)
        self._idle_deadline = deadline
        handle = self._timeout_handle
        if handle is None or handle.cancelled() or deadline < handle.when():
            if handle is not None:
                handle.cancel()  # a shorter timeout than the armed one (PROXY's)
            self._timeout_handle = loop.call_at(deadline, self._idle_check)

    def _idle_check(self) -> None:
        """The idle timer fired: close the connection if no command came since it was armed
        for long enough, else wait out the rest (see ``_reset_timeout``)."""
        if self.loop.time() < self._idle_deadline:
            self._timeout_handle = self.loop.call_at(self._idle_deadline, self._idle_check)
        else:
            self._timeout_cb()  # type: ignore[no-untyped-call]

    async def push(self, status: AnyStr) -> None:
        # Replies are str, except AUTH's "334 <challenge>" continuations, which aiosmtpd pushes
        # as bytes and which take no enhanced code (RFC 4954 §4): pass those through untouched.
        # Every reply is counted once, at its last line (RFC 5321 §4.2.1: "250-" continues).
        metrics = self.event_handler.metrics
        if isinstance(status, str):
            if metrics is not None and status[3:4] != "-":
                metrics.reply(status[:1], self._stage)
            await super().push(enhance(status))
        else:
            if metrics is not None:
                metrics.reply("3", self._stage)
            await super().push(status)

    @property
    def tls(self) -> bool:
        """Whether STARTTLS has encrypted the connection."""
        return self._tls_protocol is not None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        connection = self.connection
        if connection.counted is None and self.transport is None:  # not STARTTLS's second call
            peer = transport.get_extra_info("peername")
            connection.counted = peer[0] if isinstance(peer, tuple) else "unknown"
            connection.refusal = self.event_handler.connection_opened(connection.counted)
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        super().connection_lost(error)
        connection = self.connection
        if connection.counted is not None:
            self.event_handler.connection_closed(connection.counted)
            connection.counted = None

    async def _call_handler_hook(self, command: str, *args: Any) -> Any:
        # Tarpits: RCPT's and DATA's replies wait. The delay is known before the hook runs
        # (DATA's hook ends the transaction that names the recipients' profiles).
        delay = self.event_handler.tarpit_delay(self, command, args)
        status = await super()._call_handler_hook(command, *args)
        if delay > 0:
            await asyncio.sleep(delay)
        return status

    async def _handle_client(self) -> None:
        if not await self.event_handler.before_greeting(self):  # connection limit, tarpit
            return
        # Chaos at connect answers in place of the 220 greeting, then closes. Behind a PROXY
        # header, handle_PROXY asks instead, once the header has been read.
        if self._proxy_timeout is None:
            refused = self.event_handler.inject(self, "connect")
            if refused is not None:
                if refused and self.transport is not None:
                    await self.push(refused)
                    self.transport.close()
                return
            # The profile may refuse the client in place of the greeting (Postfix with
            # smtpd_delay_reject = no). Behind a PROXY header the greeting comes before the
            # client is known: the refusal then comes at MAIL FROM, as the filter gives it.
            denied = await self.event_handler.greeting_refusal(self)
            if denied is not None:
                await self._refused_session(*denied)
                return
        await super()._handle_client()

    async def _refused_session(self, refusal: str, later: str) -> None:
        """The rest of a session whose client was refused at the greeting: ``refusal`` now,
        ``later`` to every command but QUIT, until QUIT or the idle timeout (Postfix's
        smtpd.c answers so after a refusing greeting, RFC 5321 §3.1; observed with 3.7.11:
        "503 5.7.0 Error: access denied for name[addr]", even to EHLO, RSET and XCLIENT)."""
        await self.push(refusal)
        while self.transport is not None and not self.transport.is_closing():
            try:
                line = await self._reader.readline()
            except (ConnectionError, ValueError):  # ValueError: a line over the stream limit
                break
            if not line.endswith(b"\n"):
                break  # the client closed the connection
            self._reset_timeout()
            words = line.split(None, 1)
            verb = words[0].decode("ascii", "replace").upper() if words else ""
            # The replies count under the command answered, as the command loop's (metrics).
            self._stage = verb.lower() if hasattr(self, f"smtp_{verb}") else "other"
            if verb == "QUIT":
                await self.push("221 2.0.0 Bye")
                break
            await self.push(later)
        if self.transport is not None:
            self.transport.close()

    def drop(self) -> None:
        """Close the connection at once, sending nothing more (chaos ``disconnect``): the
        transport is aborted, so a reply pushed after this never reaches the wire, and the
        command loop ends, as after QUIT."""
        if self._handler_coroutine is not None:
            self._handler_coroutine.cancel()
        if isinstance(self.transport, asyncio.WriteTransport):
            self.transport.abort()

    @syntax("DATA")
    async def smtp_DATA(self, arg: str) -> None:
        # aiosmtpd's own smtp_DATA reads the message a line at a time (a readuntil and a few
        # Python steps per line: ~1.3 us a line, a third of a 20 KB message's protocol cost).
        # This reads up to each ".\r\n" instead, which only the end of data and lines ending
        # in a dot contain, and applies the same rules to the whole: data ends only at
        # CRLF.CRLF (RFC 5321 §4.1.1.4; no bare-LF look-alikes, see smuggling), a leading dot
        # is removed from each line (§4.5.2), more than the size limit is 552 after the end
        # (§4.5.3.1.10), a line over the line limit is 500, whichever came first, as aiosmtpd.
        if await self.check_helo_needed() or await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None
        if not self.envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return
        if arg:
            await self.push("501 Syntax: DATA")
            return
        # A profile's filters may answer the DATA command itself (Postfix's
        # smtpd_data_restrictions, smtpd.c data_cmd()): their refusal replaces the 354, and the
        # transaction stays open, as in Postfix (the client may RSET, QUIT or try DATA again).
        refusal = await self.event_handler.data_command(self)
        if refusal is not None:
            await self.push(refusal)
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        try:
            content, refusal = await self._read_data()
        except asyncio.CancelledError:
            log.info("Connection lost during DATA")
            self._writer.close()
            raise
        if refusal is not None:
            await self.push(refusal)
            self._set_post_data_state()  # type: ignore[no-untyped-call]
            return
        self.envelope.content = content
        self.envelope.original_content = content
        status = await self._call_handler_hook("DATA")
        self._set_post_data_state()  # type: ignore[no-untyped-call]
        await self.push("250 OK" if status is MISSING else status)

    async def _read_data(self) -> tuple[bytes, str | None]:
        """The message up to CRLF.CRLF, dot-unstuffed; or a refusal once it has been read."""
        reader = self._reader
        limit = self.data_size_limit
        # The CRLF ending the DATA command line counts before the first line: ".\r\n" at once
        # is an empty message.
        data = bytearray(b"\r\n")
        refusal: str | None = None
        while not data.endswith(b"\r\n.\r\n"):
            try:
                data += await reader.readuntil(b".\r\n")
            except asyncio.LimitOverrunError as over:
                # No ".\r\n" within the stream limit: take what cannot hold one (so this part
                # cannot end the data either), go on.
                data += await reader.readexactly(over.consumed)
            if refusal is None and limit and len(data) - 2 > limit + 3:
                refusal = self._too_long(data) or "552 Error: Too much mail data"
            if refusal is not None and len(data) > 8:
                del data[2:-5]  # keep the tail: the end may straddle two reads
        if refusal is not None:
            return b"", refusal
        del data[-3:]  # the ".\r\n" line; the CRLF before it ends the last line
        size = len(data) - 2
        if limit and size > limit:
            return b"", self._too_long(data) or "552 Error: Too much mail data"
        if size > self.line_length_limit:
            refusal = self._too_long(data)
            if refusal is not None:
                return b"", refusal
        # Deleting at the front of a bytearray moves its start, not its bytes: the message is
        # copied once, into the bytes it is judged and stored as (a 20 MiB message was copied
        # three times here, ~40 ms of the event loop).
        del data[: 3 if data.startswith(b"\r\n.") else 2]
        return _unstuffed(data), None

    def _too_long(self, data: bytearray) -> str | None:
        """aiosmtpd's reply when a line of ``data`` exceeds the line limit (it refuses those
        even when the message is also too big, if the long line came first)."""
        if _longest_line_reaches(data, self.line_length_limit - 1):
            return "500 Line too long (see RFC5321 4.5.3.1.6)"
        return None

    @syntax("MAIL FROM: <address>", extended=" [SP <mail-parameters>]")  # keeps it in HELP
    async def smtp_MAIL(self, arg: str | None) -> None:
        # RFC 1870: SIZE=1*20DIGIT, given once. aiosmtpd lets a repeated SIZE or non-ASCII
        # digits ("SIZE=²") through to int(), which fails as a 451 internal error; refuse them
        # as the syntax errors they are.
        sizes = self._size_params(arg) if arg and "SIZE=" in arg.upper() else []
        if len(sizes) > 1 or not all(_SIZE_VALUE.fullmatch(size) for size in sizes):
            await self.push("501 5.5.4 Syntax error in parameters: SIZE=<1 to 20 digits>, once")
            return
        # RFC 1870 §6.1: refuse a declared SIZE over the server's fixed limit at MAIL FROM,
        # with 552 5.3.4 (aiosmtpd's own reply lacks the enhanced code).
        if sizes and self.data_size_limit and int(sizes[0]) > self.data_size_limit:
            await self.push("552 5.3.4 Message size exceeds fixed maximum message size")
            return
        await super().smtp_MAIL(arg)

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        # aiosmtpd parses every MAIL/RCPT address with the email package's RFC 5322 parser:
        # ~0.2 ms an address, most of a small message's protocol cost. Nearly every address
        # is a plain <dot-atom@domain>, for which that parser returns exactly what this match
        # does (tests/server/test_protocol_fast_paths.py compares the two); anything else goes
        # the long way.
        if arg and not self.local_part_limit:
            plain = _PLAIN_PATH.match(arg)
            if plain is not None:
                return plain[1], plain[2]
        try:
            address, rest = super()._getaddr(arg)
        except IndexError:
            # The email package's parser indexes past the end on some truncated addresses
            # ("<", "x@"); aiosmtpd only expects HeaderParseError, and the IndexError became
            # "451 4.3.0 Internal error". A malformed address it is (553 5.1.3 / 501 5.5.4).
            return None, None
        return address, rest

    def _size_params(self, arg: str | None) -> list[str]:
        """The values of every SIZE= parameter after MAIL FROM's address."""
        rest = self._strip_command_keyword("FROM:", arg) if arg else None
        params = self._getaddr(rest)[1] if rest else None
        return [p[5:] for p in (params or "").split() if p[:5].upper() == "SIZE="]

    async def smtp_XCLIENT(self, arg: str | None) -> None:
        """Postfix XCLIENT: let a trusted client set the identity the filters see.

        sinkd is a test sink, so every client is trusted; the simulated identity is recorded
        with source "xclient". Success answers with a new greeting and resets the session, as
        Postfix does; the client then says EHLO again.
        """
        assert self.envelope is not None and self.session is not None
        if self.envelope.mail_from:
            await self.push("503 5.5.1 Error: MAIL transaction in progress")
            return
        update = xclient.parse(arg, self.connection.xclient)
        if isinstance(update, str):
            await self.push(update)
            return
        self.connection.take_xclient(update)
        self.session.host_name = None
        self.session.extended_smtp = False
        self._set_rset_state()  # type: ignore[no-untyped-call]
        # XCLIENT starts a new session: a profile refusing the new client at the greeting
        # answers XCLIENT with that refusal (observed with Postfix 3.7.11, XCLIENT_README).
        denied = await self.event_handler.greeting_refusal(self)
        if denied is not None:
            await self._refused_session(*denied)
            return
        await self.push(f"220 {self.hostname} {self.__ident__}")


def _longest_line_reaches(data: bytearray, length: int) -> bool:
    """Whether a line of ``data`` (the pieces between CRLFs) has ``length`` octets or more.

    Splitting a 20 MiB message into its lines to measure them held the event loop ~110 ms.
    This looks, from each line's start, for the last CRLF within ``length`` octets (a C
    search): none means the line there is that long; else the next line starts after it. A
    step skips up to ``length`` octets, so a message takes a few hundred searches."""
    start = 0
    end = len(data)
    while end - start >= length:
        crlf = data.rfind(b"\r\n", start, start + length + 1)
        if crlf < 0:
            return True
        start = crlf + 2
    return False


def _unstuffed(data: bytearray) -> bytes:
    """``data`` without the dot each line starting with one had added (RFC 5321 §4.5.2), as
    one new bytes object: the pieces between the removed dots are joined from views of
    ``data``, never copied on their own first."""
    at = data.find(b"\r\n.")
    if at < 0:
        return bytes(data)
    with memoryview(data) as view:
        pieces = []
        start = 0
        while at >= 0:
            pieces.append(view[start : at + 2])
            start = at + 3
            at = data.find(b"\r\n.", start)
        pieces.append(view[start:])
        body = b"".join(pieces)
        for piece in pieces:
            piece.release()
    return body


def make_authenticator(options: ServerOptions) -> Callable[..., AuthResult]:
    """AUTH PLAIN/LOGIN: any credentials, or exactly the configured pair."""

    def authenticate(
        server: SMTP, session: Session, envelope: SmtpEnvelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        if isinstance(server, SinkdSMTP):  # chaos decides before the credentials are checked
            refused = server.event_handler.inject(server, "auth")
            if refused is not None:  # "" (dropped): handled, so nothing more is sent
                return AuthResult(success=False, handled=not refused, message=refused or None)
        if options.auth_user is None:
            return AuthResult(success=True, auth_data=auth_data)
        user = auth_data.login.decode("utf-8", "replace")
        password = auth_data.password.decode("utf-8", "replace")
        ok = secrets.compare_digest(user, options.auth_user) and secrets.compare_digest(
            password, options.auth_password or ""
        )
        return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)

    return authenticate


class _Staged:
    """An SMTP command's handler (``method``, bound to ``__self__``) that marks the
    protocol's replies as that command's while it runs: aiosmtpd's command loop keeps the verb
    in a local variable, and the replies it sends itself before dispatching (unknown command,
    line too long, STARTTLS first) belong to no command ("other")."""

    __slots__ = ("__self__", "method", "stage")

    def __init__(
        self, protocol: SinkdSMTP, stage: str, method: Callable[[str], Awaitable[None]]
    ) -> None:
        self.__self__ = protocol
        self.stage = stage
        self.method = method

    def __getattr__(self, name: str) -> Any:
        # aiosmtpd's HELP reads the @syntax attributes (__smtp_syntax__, ...) off the method.
        return getattr(self.method, name)

    async def __call__(self, arg: str) -> None:
        protocol = self.__self__
        protocol._stage = self.stage
        try:
            await self.method(arg)
        finally:
            protocol._stage = "other"


def _rebind(method: Any, target: object) -> Any:
    """``method`` (bound to a prototype) bound to ``target`` instead."""
    return types.MethodType(method.__func__, target)


def protocol_factory(handler: SinkHandler, options: ServerOptions) -> Callable[[], SinkdSMTP]:
    """A new ``SinkdSMTP`` per connection, configured from the server options: a clone of one
    prototype built here (see ``SinkdSMTP.clone``). Call it with the server's loop running."""
    return build_protocol(handler, options).clone


def build_protocol(handler: SinkHandler, options: ServerOptions) -> SinkdSMTP:
    """One ``SinkdSMTP`` built the long way, through aiosmtpd's ``__init__``."""
    authenticator = make_authenticator(options)
    return SinkdSMTP(
        handler,
        data_size_limit=options.max_message_size,
        enable_SMTPUTF8=True,
        decode_data=False,
        hostname=options.hostname,
        ident="ESMTP sinkd",
        tls_context=options.tls_context,
        timeout=options.timeout,
        auth_required=options.auth == "required",
        auth_require_tls=False,
        authenticator=authenticator,
        auth_exclude_mechanism=["LOGIN", "PLAIN"] if options.auth == "off" else None,
        proxy_protocol_timeout=10.0 if options.proxy_protocol else None,
    )
