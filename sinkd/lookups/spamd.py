"""The spamd adapter: SpamAssassin scores over the spamd protocol, through aiospamc.

Owns talking to spamd: one aiospamc client per address, built once and reused (building one
per call costs two SSL contexts, 65-95 ms of CPU each time), a concurrency limit per address
so that spamd's queue stays bounded, one timeout over waiting and answering, and parsing
spamd's REPORT into rules. Every failure becomes a ``BackendError``; it never decides policy.

aiospamc (and loguru, which it logs through) is imported on the first request, through
``sinkd.lookups.spamd_client``: most profiles ask no spamd, and importing it costs ~23 ms of
every ``sinkd check`` (``bench/startup.py``). Must not import aiospamc at module level.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sinkd.core.ports import SpamdTarget, SpamReport, SpamRule
from sinkd.errors import BackendError

if TYPE_CHECKING:
    from sinkd.lookups.spamd_client import SpamdConnection

# A REPORT body lists hits as " pts rule name   description", e.g. "1000 GTUBE  BODY: Generic
# Test..."; descriptions continue on indented lines (Mail::SpamAssassin::PerMsgStatus).
_RULE_LINE = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s+([A-Z0-9_]+)\s+(.*?)\s*$")
_CONTINUATION = re.compile(r"^\s{10,}(\S.*?)\s*$")
_SEPARATOR = re.compile(r"^-{3,}\s+-{3,}")


def parse_report(body: str) -> tuple[SpamRule, ...]:
    """The rule table of a spamd REPORT body."""
    rules: list[SpamRule] = []
    in_table = False
    for line in body.splitlines():
        if _SEPARATOR.match(line):
            in_table = True
            continue
        if not in_table:
            continue
        match = _RULE_LINE.match(line)
        if match:
            score, name, description = match.groups()
            rules.append(SpamRule(name, float(score), description))
            continue
        more = _CONTINUATION.match(line)
        if more and rules:
            last = rules[-1]
            rules[-1] = SpamRule(last.name, last.score, f"{last.description} {more.group(1)}")
        elif line.strip() == "":
            continue
    return tuple(rules)


@dataclass
class _Endpoint:
    connection: SpamdConnection
    slots: asyncio.Semaphore
    max_concurrency: int


@dataclass
class SpamdService:
    """``ports.Spamd`` on real spamd servers.

    ``override`` (``--spamd HOST:PORT``) replaces the address every profile names, so a test
    or a container can point all spamassassin filters at one spamd.
    """

    override: tuple[str, int] | None = None
    _endpoints: dict[tuple[str, int, int, float], _Endpoint] = field(default_factory=dict)

    def _endpoint(self, host: str, port: int, max_concurrency: int, timeout: float) -> _Endpoint:
        # Keyed by limit and timeout too: filters that share a spamd (--spamd makes every
        # profile share one) but differ in either must not replace each other's client and
        # semaphore on every call, nor inherit each other's timeout.
        key = (host, port, max_concurrency, timeout)
        endpoint = self._endpoints.get(key)
        if endpoint is None:
            # Lazy: aiospamc is an optional heavy dependency only a spamassassin filter needs
            # (see the module docstring); this is its first use in the process.
            from sinkd.lookups import spamd_client

            endpoint = _Endpoint(
                spamd_client.connect(host, port, timeout),
                asyncio.Semaphore(max_concurrency),
                max_concurrency,
            )
            self._endpoints[key] = endpoint
        return endpoint

    async def report(self, message: bytes, target: SpamdTarget) -> SpamReport:
        host, port = self.override or (target.host, target.port)
        address = f"{host}:{port}"
        endpoint = self._endpoint(host, port, target.max_concurrency, target.timeout)
        try:
            # One deadline over both the wait for a free slot and spamd's answer, so that a
            # saturated or hung spamd can never hold an SMTP session longer than the timeout.
            async with asyncio.timeout(target.timeout), endpoint.slots:
                response = await endpoint.connection.report(message)
        except TimeoutError:
            raise BackendError(
                f"spamd at {address} did not answer within {target.timeout:g} s"
            ) from None
        except Exception as exc:  # aiospamc raises its own tree, OSErrors and parse errors
            raise BackendError(f"spamd at {address} failed: {_describe(exc)}") from exc
        spam = response.headers.spam
        if spam is None:
            raise BackendError(f"spamd at {address} answered without a Spam header")
        body = response.body.decode("utf-8", "replace") if response.body else ""
        return SpamReport(
            score=float(spam.score),
            required=float(spam.threshold),
            is_spam=bool(spam.value),
            rules=parse_report(body),
            report=body,
            address=address,
        )


def _describe(exc: BaseException) -> str:
    cause = exc.__cause__
    text = str(exc) or type(exc).__name__
    if cause is not None and str(cause):
        text = f"{text}: {cause}" if str(exc) else str(cause)
    return text
