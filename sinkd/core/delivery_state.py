"""What a running server remembers about delivery attempts: greylist triplets and recent
messages per client.

Owns the in-memory state behind the ``greylist`` and ``rate_limit`` filters, one instance per
server (``runtime.py`` makes it and injects it through ``ports.Lookups.state``), and the
greylist's rule itself (``greylist_step``), which ``sinkd.store.pg_state`` applies to the
triplets several instances share in PostgreSQL. Pure: no I/O,
no clock of its own (every method takes ``now``) and bounded memory (expired entries are swept,
and past ``max_entries`` the least recently used go first). Not thread-safe: the server calls it
from its one event loop.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field, replace
from typing import TypeVar

from sinkd.core.ports import GreylistDecision

__all__ = ["DeliveryState", "GreylistDecision", "GreylistEntry", "greylist_step"]

SWEEP_INTERVAL = 60.0  # seconds of the injected clock between sweeps of expired entries
MAX_ENTRIES = 100_000  # per table: triplets, and (scope, client) message windows
MAX_PER_CLIENT = 100_000  # timestamps kept per client window (rate limits are far lower)

_K = TypeVar("_K")
_V = TypeVar("_V")


@dataclass(frozen=True, slots=True)
class GreylistEntry:
    """What is remembered of one triplet, wherever it is kept (this module's memory, or the
    ``greylist`` table of a PostgreSQL store shared by several instances)."""

    first_seen: float
    last_seen: float
    expires: float  # pending: first_seen + retry window; passed: last_seen + remember
    attempts: int = 1
    passed_at: float | None = None
    remember: float = 0.0


def greylist_step(
    entry: GreylistEntry | None,
    now: float,
    delay: float,
    retry_window: float,
    remember: float,
) -> tuple[GreylistEntry, GreylistDecision]:
    """The greylist's one rule, pure: the triplet's entry after an attempt at ``now`` and the
    decision, given its stored ``entry`` (None when unknown). Every memory applies it (the
    in-process ``DeliveryState`` and ``sinkd.store.pg_state``), so instances sharing a
    database decide exactly as one process does.

    The first attempt is recorded and deferred (even with a delay of 0: greylisting is the
    deferral). A retry before ``delay`` is deferred again with the time left; a retry after
    ``delay`` and within ``retry_window`` of the first attempt passes, and the triplet is then
    remembered for ``remember`` seconds since it was last seen, passing at once. A retry after
    the window, or after being forgotten, starts over. ``delay`` is the one in force (the
    caller applies ``--greylist-delay``).
    """
    window = max(retry_window, delay)
    if entry is not None and (passed_at := entry.passed_at) is not None:
        if now <= entry.expires:
            entry = replace(
                entry, last_seen=now, attempts=entry.attempts + 1, expires=now + entry.remember
            )
            return entry, GreylistDecision(
                passed=True,
                first_seen=entry.first_seen,
                retry_after=0.0,
                waited=passed_at - entry.first_seen,
                remembered=True,
                attempts=entry.attempts,
                delay=delay,
            )
        entry = None  # forgotten: a new first attempt
    if entry is not None:
        elapsed = max(0.0, now - entry.first_seen)
        if elapsed <= window:
            attempts = entry.attempts + 1
            if elapsed >= delay:
                entry = replace(
                    entry,
                    attempts=attempts,
                    last_seen=now,
                    passed_at=now,
                    remember=remember,
                    expires=now + remember,
                )
                return entry, GreylistDecision(
                    passed=True,
                    first_seen=entry.first_seen,
                    retry_after=0.0,
                    waited=elapsed,
                    attempts=attempts,
                    delay=delay,
                )
            entry = replace(entry, attempts=attempts, last_seen=now)
            return entry, GreylistDecision(
                passed=False,
                first_seen=entry.first_seen,
                retry_after=delay - elapsed,
                attempts=attempts,
                delay=delay,
            )
    # New, forgotten, or retried too late: this attempt is the first one.
    entry = GreylistEntry(first_seen=now, last_seen=now, expires=now + window)
    return entry, GreylistDecision(passed=False, first_seen=now, retry_after=delay, delay=delay)


@dataclass(slots=True)
class _Window:
    window: float
    times: deque[float] = field(default_factory=lambda: deque(maxlen=MAX_PER_CLIENT))


class DeliveryState:
    """Greylist triplets and per-client message timestamps of one server.

    ``delay_override`` (``sinkd serve --greylist-delay``) replaces every greylist filter's
    ``delay``, so that tests and demos need not wait five minutes.
    """

    def __init__(
        self,
        *,
        delay_override: float | None = None,
        max_entries: int = MAX_ENTRIES,
        sweep_interval: float = SWEEP_INTERVAL,
    ) -> None:
        if delay_override is not None and delay_override < 0:
            raise ValueError("delay_override must be 0 or more seconds")
        self.delay_override = delay_override
        self.max_entries = max_entries
        self.sweep_interval = sweep_interval
        self._triplets: dict[tuple[str, str, str], GreylistEntry] = {}
        self._windows: dict[tuple[str, str], _Window] = {}
        self._last_sweep: float | None = None

    def __len__(self) -> int:
        """Entries held: triplets plus client message windows."""
        return len(self._triplets) + len(self._windows)

    # --- greylisting -------------------------------------------------------------------------

    async def greylist(
        self,
        key: tuple[str, str, str],
        now: float,
        delay: float,
        retry_window: float,
        remember: float,
    ) -> GreylistDecision:
        """One attempt of the triplet ``key`` at time ``now`` (``greylist_step`` says what
        passes). Async for ``ports.DeliveryMemory``'s sake; it does no I/O."""
        return self.greylist_now(key, now, delay, retry_window, remember)

    def greylist_now(
        self,
        key: tuple[str, str, str],
        now: float,
        delay: float,
        retry_window: float,
        remember: float,
    ) -> GreylistDecision:
        """``greylist`` without the coroutine: for synchronous callers of this memory."""
        if self.delay_override is not None:
            delay = self.delay_override
        self._maybe_sweep(now)
        entry = self._triplets.pop(key, None)  # re-inserted below: most recently used last
        entry, decision = greylist_step(entry, now, delay, retry_window, remember)
        self._triplets[key] = entry
        self._bound(self._triplets)
        return decision

    # --- message rates -----------------------------------------------------------------------

    async def note_message(
        self, client_ip: str, now: float, window: float = 60.0, *, scope: str = ""
    ) -> int:
        """``note_message_now`` for ``ports.DeliveryMemory``: no I/O."""
        return self.note_message_now(client_ip, now, window, scope=scope)

    def note_message_now(
        self, client_ip: str, now: float, window: float = 60.0, *, scope: str = ""
    ) -> int:
        """Record one message from ``client_ip`` at ``now``; return how many that client sent
        in the sliding window ``(now - window, now]``, this one included. ``scope`` keeps the
        counters of different filters apart."""
        self._maybe_sweep(now)
        key = (scope, client_ip)
        entry = self._windows.pop(key, None) or _Window(window)
        entry.window = window
        cutoff = now - window
        times = entry.times
        while times and times[0] <= cutoff:
            times.popleft()
        times.append(now)
        self._windows[key] = entry
        self._bound(self._windows)
        return len(times)

    async def entries(self) -> int:
        """``len()`` for the HTTP API (``web.common.DeliveryAdmin``)."""
        return len(self)

    async def forget(self) -> int:
        """``clear()`` for the HTTP API (``web.common.DeliveryAdmin``)."""
        return self.clear()

    def clear(self) -> int:
        """Forget every triplet and every client window (a fresh server's memory, e.g. between
        tests); return how many entries there were."""
        entries = len(self)
        self._triplets.clear()
        self._windows.clear()
        self._last_sweep = None
        return entries

    # --- bounded memory ----------------------------------------------------------------------

    def _maybe_sweep(self, now: float) -> None:
        if self._last_sweep is not None and 0 <= now - self._last_sweep < self.sweep_interval:
            return
        self._last_sweep = now
        self.sweep(now)

    def sweep(self, now: float) -> None:
        """Forget every expired triplet and every client with no message in its window."""
        for key in [k for k, t in self._triplets.items() if t.expires < now]:
            del self._triplets[key]
        idle = [k for k, w in self._windows.items() if not w.times or w.times[-1] <= now - w.window]
        for wkey in idle:
            del self._windows[wkey]

    def _bound(self, table: dict[_K, _V]) -> None:
        """Past ``max_entries``, drop the least recently used entries."""
        while len(table) > self.max_entries:
            del table[next(iter(table))]
