"""A shared delivery state that cannot be reached, for filter tests.

Owns ``UnreachableMemory``, a ``ports.DeliveryMemory`` that raises
``DeliveryStateUnavailable`` on every call as ``sinkd.store.pg_state`` does while PostgreSQL
is down, so that filter tests can check the 451 4.3.5 answer without a server to stop (the
store's own tests stop a real one).
"""

from __future__ import annotations

from sinkd.core.ports import GreylistDecision
from sinkd.errors import DeliveryStateUnavailable

OUTAGE = "PostgreSQL at 127.0.0.1:1 is unreachable: connection refused"


class UnreachableMemory:
    """A shared delivery state whose database does not answer; ``calls`` counts the asks."""

    def __init__(self) -> None:
        self.calls = 0

    async def greylist(
        self,
        key: tuple[str, str, str],
        now: float,
        delay: float,
        retry_window: float,
        remember: float,
    ) -> GreylistDecision:
        self.calls += 1
        raise DeliveryStateUnavailable(OUTAGE)

    async def note_message(
        self, client_ip: str, now: float, window: float = 60.0, *, scope: str = ""
    ) -> int:
        self.calls += 1
        raise DeliveryStateUnavailable(OUTAGE)
