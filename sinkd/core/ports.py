"""What the pure core may ask of the outside world, as interfaces only.

Owns the ``Lookups`` bundle handed to every filter and the value types that cross it. Real
adapters (``spamd.py``, ``dns.py``) implement these and are injected by the runtime; the core
never opens a socket or a file itself, and tests pass fakes.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, TypeAlias

from sinkd.core.model import Reply


@dataclass(frozen=True, slots=True)
class SpamdTarget:
    """Where and how a filter wants a message scored by spamd."""

    host: str
    port: int
    timeout: float  # seconds for the whole request, including waiting for a free slot
    max_concurrency: int  # requests in flight to this spamd at once


@dataclass(frozen=True, slots=True)
class SpamRule:
    """One SpamAssassin rule that hit, as spamd's REPORT lists it."""

    name: str
    score: float
    description: str


@dataclass(frozen=True, slots=True)
class SpamReport:
    """spamd's answer: the score, the threshold it applies, every rule hit and the report."""

    score: float
    required: float
    is_spam: bool
    rules: tuple[SpamRule, ...]
    report: str
    address: str  # the spamd that answered, "host:port"


class Spamd(Protocol):
    """Scores messages with SpamAssassin; raises ``BackendError`` on any failure or timeout."""

    async def report(self, message: bytes, target: SpamdTarget) -> SpamReport: ...


RecordType = Literal["A", "AAAA", "TXT", "MX", "PTR", "CNAME", "NS"]
# One record's data, by type: A/AAAA the address text; TXT the character-strings as received
# (RFC 1035 §3.3.14; SPF and DKIM join them, RFC 7208 §3.3); MX (preference, exchange);
# PTR/CNAME/NS the target name. Names are absolute-less, lower-case, without the final dot.
Rdata: TypeAlias = str | tuple[bytes, ...] | tuple[int, str]
# ``UNKNOWN`` is no DNS rcode: it is offline DNS saying "no fixture has data for this name",
# which is neither NXDOMAIN nor NODATA (the name may well exist) nor a failure to retry.
Rcode = Literal["NOERROR", "NXDOMAIN", "SERVFAIL", "REFUSED", "TIMEOUT", "UNKNOWN"]

NO_DNS_DATA_HINT = "Give it with --dns-zone FILE or judge with --dns live."


@dataclass(frozen=True, slots=True)
class DnsAnswer:
    """The answer to one question. NOERROR with no records is NODATA (RFC 2308 §2.2).

    ``live`` says the answer came from (or was awaited from) real DNS rather than a fixture:
    a live TIMEOUT means no server answered sinkd, so the check could not be judged, while a
    fixture's forced TIMEOUT models the gateway's own DNS trouble and is a real answer.
    """

    rcode: Rcode
    records: tuple[Rdata, ...] = ()
    ttl: int = 0
    live: bool = field(default=False, compare=False)  # where it came from, not what

    @property
    def temporary(self) -> bool:
        """A failure worth retrying later: SPF's temperror (RFC 7208 §2.6.6). ``UNKNOWN`` is
        not one: nothing would answer differently later."""
        return self.rcode in ("SERVFAIL", "TIMEOUT", "REFUSED")

    @property
    def unknown(self) -> bool:
        """Offline DNS has no data for the name: the check depending on it cannot be judged."""
        return self.rcode == "UNKNOWN"

    @property
    def unanswered(self) -> bool:
        """Live DNS gave no answer in time: the check is unavailable, the verdict incomplete."""
        return self.live and self.rcode == "TIMEOUT"


def no_dns_data_reason(check: str, names: Sequence[str]) -> str:
    """The plain sentence of a finding whose check offline DNS left without data."""
    shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
    return (
        f"{check} could not be judged: sinkd's DNS is offline and no fixture has data for "
        f"{shown or 'the names it needs'}. {NO_DNS_DATA_HINT}"
    )


class Resolver(Protocol):
    """DNS as the filters see it. Never raises for DNS trouble: a timeout is an answer
    (``rcode="TIMEOUT"``) so that a check turns it into a temperror, never a hung session."""

    async def query(self, name: str, rdtype: RecordType) -> DnsAnswer: ...


class NoDns:
    """DNS with no data at all: every name is ``UNKNOWN``. What offline DNS without fixtures
    answers, and what a transaction gets when nobody injects a resolver."""

    async def query(self, name: str, rdtype: RecordType) -> DnsAnswer:
        return DnsAnswer("UNKNOWN")


NO_DNS = NoDns()


class TimeSource(Protocol):
    """The time filters see, in seconds since the epoch. Tests inject a fake one. (Not named
    Clock: ``sinkd.store.sql.Clock`` is the writer's watermark of received times.)"""

    def now(self) -> float: ...


class SystemClock:
    """The machine's wall clock (``time.time``)."""

    def now(self) -> float:
        return time.time()


SYSTEM_CLOCK = SystemClock()


@dataclass(frozen=True, slots=True)
class GreylistDecision:
    """What the greylist memory says about one attempt of a (client, sender, recipient)
    triplet. ``retry_after`` is the time left until a retry passes (0 once passed);
    ``waited`` is how long the triplet waited before it first passed; ``remembered`` says it
    passed at once because it had passed before; ``delay`` is the delay actually applied
    (``--greylist-delay`` overrides the profile's)."""

    passed: bool
    first_seen: float
    retry_after: float
    waited: float = 0.0
    remembered: bool = False
    attempts: int = 1
    delay: float = 0.0


class DeliveryMemory(Protocol):
    """What delivery-behaviour filters remember between SMTP sessions: greylist triplets and
    recent messages per client. One process's memory (``sinkd.core.delivery_state``), or the
    tables several instances share in PostgreSQL (``sinkd.store.pg_state``): hence async.
    A memory that cannot be reached raises ``DeliveryStateUnavailable``; the filters answer
    it with ``STATE_UNAVAILABLE_REPLY``, never with a pass decided without the state."""

    async def greylist(
        self,
        key: tuple[str, str, str],
        now: float,
        delay: float,
        retry_window: float,
        remember: float,
    ) -> GreylistDecision: ...

    async def note_message(
        self, client_ip: str, now: float, window: float = 60.0, *, scope: str = ""
    ) -> int: ...


# What Postfix answers when its policy service (postgrey, policyd) cannot be reached:
# postconf(5) smtpd_policy_service_default_action, default "451 4.3.5 Server configuration
# problem" (Postfix 3.0 and later; `postconf -d` here prints it). A shared delivery state
# that PostgreSQL cannot give is sinkd's counterpart of that unreachable policy service.
STATE_UNAVAILABLE_REPLY = Reply(451, "4.3.5", "Server configuration problem")


@dataclass(frozen=True, slots=True)
class Lookups:
    """Injected lookups for network-backed filters. By default DNS has data for no name (as
    offline DNS without fixtures: every answer ``UNKNOWN``); without spamd, spamassassin
    filters report an error. Without ``state`` (``sinkd check``) nothing is remembered between
    messages: greylisting is skipped and rate limits see one message."""

    spamd: Spamd | None = None
    resolver: Resolver | None = NO_DNS
    clock: TimeSource = SYSTEM_CLOCK
    state: DeliveryMemory | None = None


NO_LOOKUPS = Lookups()
