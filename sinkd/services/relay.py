"""Relaying onward (``sinkd serve --relay``): the ``Relayer`` delivers queued messages to the one
SMTP server the settings name, and records each attempt in the relay queue.

Owns one delivery attempt (connect, STARTTLS, AUTH, MAIL, RCPT per pending recipient, DATA)
with aiosmtplib, what its replies mean for each recipient (as an MTA reads them: 2xx
delivered, 5xx failed for good, 4xx or a broken connection deferred), the retry schedule
(exponential backoff, a lifetime), the ``Received:`` trace field sinkd adds, and the task that
picks due relays from the queue: woken after a commit that queued one, at the earliest
``next_attempt_at``, and once at start-up (a queue left by kill -9 is picked up).

It must not take a target from a message (only from ``RelayConfig``), change a verdict, or put
the relay password anywhere but the AUTH exchange: not in a log line, a recorded reply, the
JSON or an error. The queue itself (same commit as the verdict) is the store's; which records
are queued is the ``Recorder``'s decision.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import logging
import re
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

# A runtime dependency for this module (pyproject says why): an async SMTP client with
# STARTTLS, AUTH and the low-level MAIL/RCPT/DATA calls that give each recipient's reply.
import aiosmtplib

from sinkd.errors import ConfigError, NotFound, StoreError
from sinkd.services.metrics import Metrics
from sinkd.services.recorder import Events
from sinkd.services.settings import RelayStartTls, RelayTarget, Settings
from sinkd.store import (
    RELAY_DELIVERED,
    RELAY_FAILED,
    RELAY_QUEUED,
    RelayEntry,
    RelayStore,
    iso,
    moment,
)

log = logging.getLogger(__name__)

COMMAND_TIMEOUT = 60.0  # seconds for the connection and each SMTP command (aiosmtplib's default)
STOP_GRACE = 10.0  # seconds in-flight attempts get to finish when the server stops
# How long an idle connection to the target is kept for the next relay: Postfix's
# smtp_connection_cache_time_limit (default 2s, postconf(5)). Opening one per message (TCP,
# greeting, EHLO, STARTTLS, AUTH, QUIT) was most of what relaying cost (bench/relay.py).
REUSE_SECONDS = 2.0
_ENHANCED = re.compile(r"^([245]\.\d{1,3}\.\d{1,3})\s+(.*)$", re.DOTALL)


@dataclass(frozen=True)
class RelayConfig:
    """Where and how to relay: only ever from the settings (``--relay`` and its options)."""

    target: RelayTarget
    hostname: str  # sinkd's own name: EHLO and the Received field's "by"
    starttls: RelayStartTls = "opportunistic"
    user: str | None = None
    password: str | None = field(default=None, repr=False)  # the AUTH exchange only
    ca: Path | None = None
    insecure: bool = False
    backoff: tuple[float, float] = (1.0, 300.0)
    lifetime: float = 86400.0
    concurrency: int = 4
    timeout: float = COMMAND_TIMEOUT

    @classmethod
    def of(cls, s: Settings) -> RelayConfig | None:
        """The relay configuration of ``s``; None without ``--relay`` (nothing is relayed)."""
        if s.relay is None:
            return None
        return cls(
            target=s.relay,
            hostname=s.hostname,
            starttls=s.relay_starttls,
            user=s.relay_user,
            password=s.relay_password,
            ca=s.relay_ca,
            insecure=s.relay_insecure,
            backoff=s.relay_backoff,
            lifetime=s.relay_lifetime,
            concurrency=s.relay_concurrency,
        )

    def tls_context(self) -> ssl.SSLContext:
        """For ``smtps://`` and ``--relay-starttls require``: verification on unless
        ``--relay-insecure``; ``--relay-ca`` replaces the system's CA certificates."""
        try:
            context = ssl.create_default_context(cafile=None if self.ca is None else str(self.ca))
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"--relay-ca {self.ca}: no PEM CA certificates ({exc})") from exc
        if self.insecure:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    def opportunistic_context(self) -> ssl.SSLContext:
        """For ``--relay-starttls opportunistic``: encryption without certificate checks, as
        Postfix's ``smtp_tls_security_level = may`` (postconf(5): "Since sending in the clear
        is acceptable, demanding stronger than default TLS security merely reduces
        interoperability"; only its ``verify`` and ``secure`` levels check the certificate).
        A staging catcher with a self-signed certificate then gets its mail, encrypted."""
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context

    def delay(self, attempts: int) -> float:
        """Seconds before the next try after ``attempts`` tries: MIN doubling up to MAX."""
        low, high = self.backoff
        return float(min(high, low * 2 ** max(0, min(attempts - 1, 32))))


def reply_json(code: int, message: str) -> dict[str, Any]:
    """An SMTP reply as the relay state records it: code, enhanced status (RFC 3463) when
    the text starts with one, and the rest of the text (one line)."""
    text = " ".join(message.split())
    found = _ENHANCED.match(text)
    if found is None:
        return {"code": code, "enhanced": None, "text": text}
    return {"code": code, "enhanced": found.group(1), "text": found.group(2)}


def error_json(text: str) -> dict[str, Any]:
    """A failure without an SMTP reply (connection refused, timeout, TLS)."""
    return {"error": " ".join(text.split())}


def received_field(data: dict[str, Any], hostname: str, received_at: datetime) -> bytes:
    """The ``Received:`` trace field sinkd adds to what it relays. RFC 5321 §4.4: an SMTP
    server that relays a message MUST insert one, naming where it came from (the client's
    EHLO name and address), itself, the protocol (RFC 3848: ESMTP, ESMTPS with TLS, ESMTPA
    with AUTH) and the message's id, stamped with when it was received."""
    envelope = data.get("envelope") or {}
    identity = data.get("identity") or {}
    helo = _token(str(envelope.get("helo") or "unknown"))
    ip = _token(str(envelope.get("client_ip") or identity.get("ip") or "unknown"))
    if ":" in ip:
        ip = f"IPv6:{ip}"  # RFC 5321 §4.1.3: an IPv6 address literal says so
    protocol = (
        "ESMTP" + ("S" if identity.get("tls") else "") + ("A" if identity.get("auth_user") else "")
    )
    rcpts = envelope.get("rcpt_to") or []
    recipient = f"\r\n\tfor <{_token(str(rcpts[0]))}>" if len(rcpts) == 1 else ""
    line = (
        f"Received: from {helo} ([{ip}])\r\n\tby {_token(hostname)} (sinkd) with {protocol}"
        f" id {_token(str(data.get('id')))}{recipient};\r\n\t"
        f"{email.utils.format_datetime(received_at.astimezone(UTC))}\r\n"
    )
    return line.encode("utf-8", "replace")


def _token(text: str) -> str:
    """A value fit for the field: no whitespace, parentheses or control characters."""
    cleaned = re.sub(r"[\s()<>;\\\x00-\x1f\x7f]", "", text)
    return cleaned[:255] or "unknown"


@dataclass
class _Attempt:
    """What one attempt found for the pending recipients: address -> (status, reply)."""

    outcomes: dict[str, tuple[str, dict[str, Any]]] = field(default_factory=dict)
    last_reply: dict[str, Any] | None = None

    def settle(self, addresses: Sequence[str], status: str, reply: dict[str, Any]) -> None:
        for address in addresses:
            self.outcomes.setdefault(address, (status, reply))
        self.last_reply = reply


class Relayer:
    """Delivers what the relay queue holds, ``config.concurrency`` messages at a time.
    ``start()`` scans the queue at once; ``wake()`` after anything was queued; ``stop()``
    lets attempts in flight finish within a grace time (what does not stays queued)."""

    def __init__(
        self,
        config: RelayConfig,
        store: RelayStore,
        *,
        metrics: Metrics | None = None,
        events: Events | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.config = config
        self.store = store
        self.metrics = metrics
        self.events = events
        self.clock = clock
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._inflight: dict[str, asyncio.Task[None]] = {}
        # Connections left open after a finished transaction, newest last, with the loop time
        # they became idle; at most --relay-concurrency, closed after REUSE_SECONDS.
        self._idle: list[tuple[aiosmtplib.SMTP, float]] = []
        self._sweeper: asyncio.Task[None] | None = None
        # Relays whose last outcome could not be recorded (the store failed): not tried again
        # before this, so a broken store does not turn into a loop hammering the target.
        self._not_before: dict[str, datetime] = {}
        # Attempts finish while the queue is being read: a read begun before an attempt
        # recorded its outcome still shows the relay as it was, due, and dispatching it again
        # would deliver it twice. Each finished attempt gets the next number; a read skips the
        # relays finished after it began (the wake-up that follows reads them afresh).
        self._finishes = 0
        self._finished: dict[str, int] = {}
        self._context = config.tls_context()  # made once: a bad --relay-ca fails at start
        self._opportunistic = config.opportunistic_context()

    def start(self) -> None:
        log.info(
            "relaying to %s (starttls=%s auth=%s verify=%s)",
            self.config.target,
            self.config.starttls,
            "yes" if self.config.user else "no",
            "off" if self.config.insecure or self._opportunistic_only else "on",
        )
        self._task = asyncio.get_running_loop().create_task(self._run(), name="sinkd-relayer")

    @property
    def _opportunistic_only(self) -> bool:
        """Whether TLS is only ever opportunistic STARTTLS (certificates not checked)."""
        c = self.config
        return not c.target.implicit_tls and c.starttls == "opportunistic"

    def wake(self) -> None:
        """Something was queued: look at the queue now (from the relayer's event loop)."""
        self._wake.set()

    async def stop(self, grace: float = STOP_GRACE) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        inflight = list(self._inflight.values())
        if inflight:
            _, pending = await asyncio.wait(inflight, timeout=grace)
            for attempt in pending:  # abandoned: the relay stays queued as it was
                attempt.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            if pending:
                log.warning("relay: %d attempt(s) abandoned at stop; still queued", len(pending))
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        idle, self._idle = self._idle, []
        await asyncio.gather(*(_quit(smtp) for smtp, _ in idle))

    # -- the queue ---------------------------------------------------------------------------

    async def _run(self) -> None:
        limit = self.config.concurrency
        while True:
            self._wake.clear()
            timeout: float | None
            begun = self._finishes
            # Outcomes recorded before this read began are in it (recorded, then finished).
            self._finished = {k: n for k, n in self._finished.items() if n > begun}
            if len(self._inflight) >= limit:
                # Every connection is busy: a read could start nothing. The next attempt to
                # finish wakes this loop (under load, a read per commit was the relayer's
                # largest cost: bench/relay.py).
                await self._wake.wait()
                continue
            try:
                timeout = self._dispatch(
                    await self.store.relay_queue(2 * limit + len(self._inflight)), begun
                )
            except StoreError as exc:  # a store that is closing or broken: look again later
                log.error("relay: cannot read the queue: %s", exc)
                timeout = self.config.backoff[0]
            except Exception:  # a bug must not end relaying for good
                log.exception("relay: reading the queue failed unexpectedly")
                timeout = self.config.backoff[0]
            try:
                async with asyncio.timeout(timeout):
                    await self._wake.wait()
            except TimeoutError:
                pass

    def _dispatch(self, entries: Sequence[RelayEntry], begun: int) -> float | None:
        """Start the due relays there is room for (of a read begun after ``begun`` finished
        attempts); seconds until the next one is due (None: nothing is waiting but what a
        wake-up or a finished attempt brings)."""
        now = self.clock()
        soonest: datetime | None = None
        for entry in entries:
            if entry.message_id in self._inflight:
                continue
            if self._finished.get(entry.message_id, 0) > begun:
                continue  # read before its attempt recorded the outcome: stale
            due = moment(entry.next_attempt_at)
            held = self._not_before.get(entry.message_id)
            if held is not None:
                if held > now:
                    due = max(due, held)
                else:
                    del self._not_before[entry.message_id]
            if due > now:
                soonest = due if soonest is None else min(soonest, due)
            elif len(self._inflight) < self.config.concurrency:
                task = asyncio.get_running_loop().create_task(self._attempt_task(entry))
                self._inflight[entry.message_id] = task
        if soonest is None:
            return None
        return max(0.0, (soonest - now).total_seconds())

    async def _attempt_task(self, entry: RelayEntry) -> None:
        try:
            await self.attempt(entry)
        except Exception:  # a bug or a broken store: the relay stays queued, tried again later
            log.exception("relay id=%s: attempt failed unexpectedly", entry.message_id)
            delay = timedelta(seconds=self.config.delay(int(entry.state["attempts"]) + 1))
            self._not_before[entry.message_id] = self.clock() + delay
        finally:
            self._finishes += 1
            self._finished[entry.message_id] = self._finishes
            self._inflight.pop(entry.message_id, None)
            self._wake.set()

    # -- one attempt -------------------------------------------------------------------------

    async def attempt(self, entry: RelayEntry) -> dict[str, Any] | None:
        """Try to deliver one queued relay to its pending recipients and record the outcome;
        the new state, or None when the message is gone (deleted meanwhile)."""
        try:
            stored = await self.store.get(entry.message_id, with_raw=True)
        except NotFound:
            return None
        state = entry.state
        pending = [r["address"] for r in state["recipients"] if r["status"] == RELAY_QUEUED]
        started = self.clock()
        body = stored.filtered if stored.filtered is not None else stored.raw
        if body is None:  # never queued by the store; a state that cannot be delivered
            found = _Attempt()
            found.settle(pending, RELAY_FAILED, error_json("the message has no stored bytes"))
        else:
            received_at = moment(str(stored.data.get("received_at") or iso(started)))
            message = received_field(stored.data, self.config.hostname, received_at) + body
            sender = str((stored.data.get("envelope") or {}).get("mail_from") or "")
            found = await self._deliver(sender, pending, message)
        new = self._next_state(state, found, started)
        self._count(found)
        log.info(
            "relay id=%s target=%s attempt=%d outcome=%s reply=%s",
            entry.message_id,
            self.config.target,
            new["attempts"],
            " ".join(f"{a}={s}" for a, (s, _) in found.outcomes.items()) or "none",
            _shown(found.last_reply),
        )
        try:
            recorded = await self.store.relay_update(entry.message_id, new)
        except StoreError as exc:  # the attempt is tried again (SMTP's at-least-once)
            log.error("relay id=%s: cannot record the attempt: %s", entry.message_id, exc)
            delay = timedelta(seconds=self.config.delay(int(new["attempts"])))
            self._not_before[entry.message_id] = self.clock() + delay
            return new
        if recorded and self.events is not None and self.events.subscribers:
            # The live event stream's "relay" event: the message's new relay state.
            self.events.publish("relay", {"id": entry.message_id, "relay": new})
        return new

    def _next_state(
        self, state: dict[str, Any], found: _Attempt, started: datetime
    ) -> dict[str, Any]:
        attempts = int(state["attempts"]) + 1
        recipients = []
        for r in state["recipients"]:
            if r["status"] == RELAY_QUEUED and r["address"] in found.outcomes:
                status, reply = found.outcomes[r["address"]]
                r = {"address": r["address"], "status": status, "reply": reply}
            recipients.append(r)
        waiting = [r for r in recipients if r["status"] == RELAY_QUEUED]
        now = self.clock()
        next_at: str | None = None
        if waiting:
            queued_at = moment(str(state["queued_at"]))
            end = queued_at + timedelta(seconds=self.config.lifetime)
            # The last try is at the end of the lifetime, however long the backoff has grown.
            retry = min(now + timedelta(seconds=self.config.delay(attempts)), end)
            if now >= end:
                # Postfix's maximal_queue_lifetime: a message deferred that long bounces.
                reason = error_json(
                    f"still deferred {self.config.lifetime:g} s after it was queued"
                    f" (--relay-lifetime); last: {_shown(found.last_reply)}"
                )
                recipients = [
                    {"address": r["address"], "status": RELAY_FAILED, "reply": reason}
                    if r["status"] == RELAY_QUEUED
                    else r
                    for r in recipients
                ]
                found.last_reply = reason
                waiting = []
            else:
                next_at = iso(retry)
        if waiting:
            status = RELAY_QUEUED
        elif all(r["status"] == RELAY_DELIVERED for r in recipients):
            status = RELAY_DELIVERED
        else:
            status = RELAY_FAILED
        return {
            "status": status,
            "attempts": attempts,
            "queued_at": state["queued_at"],
            "last_attempt_at": iso(started),
            "next_attempt_at": next_at,
            "done_at": None if waiting else iso(now),
            "last_reply": found.last_reply,
            "recipients": recipients,
        }

    def _count(self, found: _Attempt) -> None:
        if self.metrics is None:
            return
        for status, _ in found.outcomes.values():
            outcome = "deferred" if status == RELAY_QUEUED else status
            self.metrics.relay_attempts.labels(outcome).inc()

    async def _deliver(self, sender: str, recipients: Sequence[str], message: bytes) -> _Attempt:
        """One SMTP transaction to the target for ``recipients``. Each gets delivered (RCPT
        and DATA 2xx), failed (5xx to it, to MAIL or to DATA; never retried) or queued again
        (4xx, or the connection, TLS or AUTH failed: deferred, as Postfix defers)."""
        found = _Attempt()
        c = self.config
        accepted: list[str] = []
        smtp: aiosmtplib.SMTP | None = None
        reusable = False  # whether the connection ends a transaction in a known state
        try:
            smtp = await self._connection()
            utf8 = not all(a.isascii() for a in (sender, *recipients))
            options = []
            if not message.isascii() and smtp.supports_extension("8bitmime"):
                options.append("BODY=8BITMIME")  # RFC 6152
            if utf8 and smtp.supports_extension("smtputf8"):
                options.append("SMTPUTF8")  # RFC 6531
            encoding = "utf-8" if utf8 else "ascii"
            try:
                await smtp.mail(sender, options=options, encoding=encoding)
            except aiosmtplib.SMTPResponseException as exc:
                reply = reply_json(exc.code, exc.message)
                found.settle(recipients, _status(exc.code), reply)
                reusable = await _reset(smtp)
                return found
            for address in recipients:
                try:
                    await smtp.rcpt(address, encoding=encoding)
                except aiosmtplib.SMTPResponseException as exc:
                    found.settle([address], _status(exc.code), reply_json(exc.code, exc.message))
                else:
                    accepted.append(address)
            if not accepted:
                reusable = await _reset(smtp)
                return found
            try:
                response = await smtp.data(message)
            except aiosmtplib.SMTPResponseException as exc:
                found.settle(accepted, _status(exc.code), reply_json(exc.code, exc.message))
            else:
                reply = reply_json(response.code, response.message)
                found.settle(accepted, RELAY_DELIVERED, reply)
            reusable = True  # the transaction ended with the target's reply to DATA
        except (aiosmtplib.SMTPException, OSError, ssl.SSLError, TimeoutError) as exc:
            # Nothing was confirmed for whoever is left: try again later. (A connection lost
            # after the target's 250 to DATA delivers those twice: SMTP's at-least-once.)
            found.settle(recipients, RELAY_QUEUED, error_json(_describe(exc, c.target)))
        except asyncio.CancelledError:
            if smtp is not None:  # abandoned (stop): drop the connection, no QUIT
                smtp.close()
            raise
        if smtp is not None:
            if reusable and smtp.is_connected and len(self._idle) < c.concurrency:
                self._idle.append((smtp, asyncio.get_running_loop().time()))
                self._sweep_later()
            else:
                await _quit(smtp)
        return found

    async def _connection(self) -> aiosmtplib.SMTP:
        """A connection ready for MAIL: an idle one that answers RSET (as Postfix's SMTP
        client checks a cached session, smtp_rset_timeout in postconf(5)), else a new one
        (connected, EHLO, STARTTLS as configured, AUTH)."""
        now = asyncio.get_running_loop().time()
        while self._idle:
            smtp, since = self._idle.pop()
            if now - since <= REUSE_SECONDS and smtp.is_connected and await _reset(smtp):
                return smtp
            await _quit(smtp)
        c = self.config
        smtp = aiosmtplib.SMTP(
            hostname=c.target.host,
            port=c.target.port,
            local_hostname=c.hostname,
            timeout=c.timeout,
            use_tls=c.target.implicit_tls,
            # aiosmtplib: None upgrades when STARTTLS is offered, True requires it.
            start_tls=(
                False
                if c.target.implicit_tls or c.starttls == "off"
                else (True if c.starttls == "require" else None)
            ),
            tls_context=self._opportunistic if self._opportunistic_only else self._context,
        )
        try:
            await smtp.connect()
            if smtp.is_ehlo_or_helo_needed:
                await smtp.ehlo()
            if c.user is not None and c.password is not None:
                # A 535 defers, as Postfix's smtp_sasl_auth_soft_bounce (default yes) does:
                # a wrong password is fixed by the operator, the mail must not be lost.
                await smtp.login(c.user, c.password)
        except asyncio.CancelledError:
            smtp.close()
            raise
        except BaseException:
            await _quit(smtp)
            raise
        return smtp

    def _sweep_later(self) -> None:
        """Close the connections idle for longer than REUSE_SECONDS, once they are."""
        if self._sweeper is None or self._sweeper.done():
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep())

    async def _sweep(self) -> None:
        loop = asyncio.get_running_loop()
        while self._idle:
            oldest = min(since for _, since in self._idle)
            await asyncio.sleep(max(0.0, oldest + REUSE_SECONDS - loop.time()))
            now = loop.time()
            expired = [(smtp, since) for smtp, since in self._idle if now - since >= REUSE_SECONDS]
            self._idle = [entry for entry in self._idle if entry not in expired]
            await asyncio.gather(*(_quit(smtp) for smtp, _ in expired))


async def _reset(smtp: aiosmtplib.SMTP) -> bool:
    """RSET (RFC 5321 §4.1.1.5): whether the connection is in a clean state for a new
    transaction."""
    try:
        await smtp.rset()
    except (aiosmtplib.SMTPException, OSError, TimeoutError):
        return False
    return True


async def _quit(smtp: aiosmtplib.SMTP) -> None:
    """End a connection politely (QUIT) if it is still up, then close it."""
    with contextlib.suppress(aiosmtplib.SMTPException, OSError, TimeoutError, ssl.SSLError):
        if smtp.is_connected:
            await smtp.quit()
    smtp.close()


def _status(code: int) -> str:
    """A reply's meaning for a recipient: 2xx delivered, 5xx failed, else deferred."""
    if 200 <= code < 300:
        return RELAY_DELIVERED
    return RELAY_FAILED if 500 <= code < 600 else RELAY_QUEUED


def _describe(exc: BaseException, target: RelayTarget) -> str:
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return f"{target}: {exc.code} {exc.message}"
    text = str(exc) or type(exc).__name__
    if isinstance(exc, aiosmtplib.SMTPException) and "STARTTLS" in text:
        text += " (--relay-starttls require)"
    return f"{target}: {text}"


def _shown(reply: dict[str, Any] | None) -> str:
    if reply is None:
        return "-"
    if "error" in reply:
        return repr(reply["error"])
    return repr(f"{reply['code']} {reply['enhanced'] or ''} {reply['text']}".replace("  ", " "))
