"""``GET /api/v1/events``: live events as Server-Sent Events.

Owns the stream's wire format: a ``: subscribed`` comment first (the subscription is in place),
then one ``event: NAME`` / ``data: JSON`` block per event from the ``Hub``, and a ``: heartbeat``
comment after ``HEARTBEAT`` seconds of quiet. The stream ends when the client disconnects (the
subscription is dropped at once, not at the next write), when the hub drops a slow subscriber
and when the server stops (the hub is closed).
"""

from __future__ import annotations

import asyncio
import json

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import Receive, Scope, Send

from sinkd.web.common import API, context
from sinkd.web.hub import Event, Hub, Subscription

HEARTBEAT = 15.0  # seconds; proxies and browsers keep a stream open that sees traffic


def routes() -> list[BaseRoute]:
    return [Route(f"{API}/events", events, methods=["GET"])]


async def events(request: Request) -> Response:
    hub = context(request).hub
    heartbeat: float = getattr(request.app.state, "heartbeat", HEARTBEAT)
    client = request.client
    name = f"{client.host}:{client.port}" if client is not None else "unknown"
    return EventStream(hub, hub.subscribe(name), heartbeat)


def sse(event: Event) -> bytes:
    """One event block; the JSON is one line (``json.dumps`` escapes newlines)."""
    return f"event: {event.name}\ndata: {json.dumps(event.data)}\n\n".encode()


class EventStream(Response):
    """A ``text/event-stream`` response fed by one hub subscription."""

    media_type = "text/event-stream"

    def __init__(self, hub: Hub, subscription: Subscription, heartbeat: float) -> None:
        # Not Response.__init__: it would add Content-Length to an endless body.
        self.hub = hub
        self.subscription = subscription
        self.heartbeat = heartbeat
        self.status_code = 200
        self.background = None
        self.raw_headers = [
            (b"content-type", b"text/event-stream; charset=utf-8"),
            (b"cache-control", b"no-cache"),
            (b"x-accel-buffering", b"no"),
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        watcher = asyncio.create_task(self._watch(receive))
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            await self._chunk(send, b": subscribed\n\n")
            while True:
                try:
                    event = await asyncio.wait_for(self.subscription.next(), self.heartbeat)
                except TimeoutError:
                    await self._chunk(send, b": heartbeat\n\n")
                    continue
                if event is None:
                    break
                await self._chunk(send, sse(event))
            if not watcher.done():  # the client is still there: end the body properly
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        except OSError:
            pass  # the client went away mid-write
        finally:
            watcher.cancel()
            self.hub.unsubscribe(self.subscription)

    async def _watch(self, receive: Receive) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        self.hub.unsubscribe(self.subscription)

    @staticmethod
    async def _chunk(send: Send, body: bytes) -> None:
        await send({"type": "http.response.body", "body": body, "more_body": True})
