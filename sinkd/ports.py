"""What the pure core may ask of the outside world, as interfaces only.

Owns the ``Lookups`` bundle handed to every filter and the value types that cross it. Real
adapters (``spamd.py``; DNS later) implement these and are injected by the runtime; the core
never opens a socket or a file itself, and tests pass fakes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


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


@dataclass(frozen=True, slots=True)
class Lookups:
    """Injected lookups for network-backed filters; None where the runtime provides none."""

    spamd: Spamd | None = None


NO_LOOKUPS = Lookups()
