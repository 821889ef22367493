"""Reading ``GET /api/v1/events`` (server-sent events) in tests: ``subscribed(http)`` opens a
stream once the subscription is in place, ``Stream.event()`` gives the next event as
(event, data), failing the test after ``TIMEOUT`` seconds."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx

from tests.support.smtp import TIMEOUT

EVENTS = "/api/v1/events"


class Stream:
    """An open event stream: ``await next()`` gives the next block as (event, data) or
    ("comment", text), failing the test after ``TIMEOUT`` seconds."""

    def __init__(self, lines: AsyncIterator[str]) -> None:
        self.lines = lines

    async def next(self) -> tuple[str, Any]:
        return await asyncio.wait_for(self._block(), TIMEOUT)

    async def _block(self) -> tuple[str, Any]:
        fields: dict[str, str] = {}
        async for line in self.lines:
            if line == "":
                if fields:
                    break
                continue
            if line.startswith(":"):
                return "comment", line[1:].strip()
            name, _, value = line.partition(": ")
            fields[name] = value
        else:
            return "end", None
        return fields["event"], json.loads(fields["data"])

    async def event(self) -> tuple[str, Any]:
        """The next event, skipping heartbeats."""
        while True:
            kind, data = await self.next()
            if kind != "comment":
                return kind, data


@asynccontextmanager
async def subscribed(http: httpx.AsyncClient) -> AsyncIterator[Stream]:
    async with http.stream("GET", EVENTS) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        stream = Stream(response.aiter_lines())
        assert await stream.next() == ("comment", "subscribed")  # the subscription is in place
        yield stream
