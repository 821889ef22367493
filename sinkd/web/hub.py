"""The in-process event hub behind ``GET /api/v1/events``: publish once, every subscriber gets it.

Owns the subscribers, each a bounded ``asyncio.Queue``. A subscriber that falls ``QUEUE_SIZE``
events behind is dropped (logged; its stream ends, the client may reconnect) so that a slow
reader never holds up SMTP. It knows nothing of storage or HTTP: events are a name and a JSON
object, published from the event loop's thread.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

QUEUE_SIZE = 256


@dataclass(frozen=True, slots=True)
class Event:
    name: str  # "verdict", "released"
    data: dict[str, Any]


@dataclass(eq=False)
class Subscription:
    """``await next()``: the next event, or None once the subscription has ended (dropped as
    too slow, unsubscribed, or the hub closed)."""

    name: str
    queue: asyncio.Queue[Event | None] = field(
        default_factory=lambda: asyncio.Queue(maxsize=QUEUE_SIZE + 1)  # +1: the end marker
    )
    ended: bool = False

    async def next(self) -> Event | None:
        if self.ended and self.queue.empty():
            return None
        return await self.queue.get()

    def end(self) -> None:
        if self.ended:
            return
        self.ended = True
        self.queue.put_nowait(None)  # room is kept for it: events stop at QUEUE_SIZE


class Hub:
    def __init__(self) -> None:
        self._subscribers: set[Subscription] = set()
        self._closed = False
        self._changed = asyncio.Event()  # set whenever a subscription starts or ends

    async def wait_for_subscribers(self, count: int) -> None:
        """Return once exactly ``count`` subscriptions are open (for tests and shutdown)."""
        while len(self._subscribers) != count:
            self._changed.clear()
            await self._changed.wait()

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    def subscribe(self, name: str = "subscriber") -> Subscription:
        subscription = Subscription(name)
        if self._closed:
            subscription.end()
        else:
            self._subscribers.add(subscription)
            self._changed.set()
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        self._subscribers.discard(subscription)
        self._changed.set()
        subscription.end()

    def publish(self, name: str, data: dict[str, Any]) -> None:
        """Queue ``data`` as event ``name`` for every subscriber; never blocks."""
        event = Event(name, data)
        for subscription in list(self._subscribers):
            if subscription.queue.qsize() >= QUEUE_SIZE:
                log.warning(
                    "event subscriber %s dropped: %d events behind", subscription.name, QUEUE_SIZE
                )
                self.unsubscribe(subscription)
            else:
                subscription.queue.put_nowait(event)

    def close(self) -> None:
        """End every subscription (server stop); later subscriptions end at once."""
        self._closed = True
        for subscription in list(self._subscribers):
            self.unsubscribe(subscription)
