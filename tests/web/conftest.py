"""Fixtures the HTTP API and dashboard tests share: a server with HTTP on free ports (``app``;
a module that needs other settings defines its own ``app``, which ``http`` then uses) and an
httpx client of its API (``http``)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from sinkd.server.runtime import Sinkd
from tests.conftest import StartServer
from tests.support.smtp import TIMEOUT
from tests.support.web import base_url


@pytest.fixture
async def app(start_server: StartServer) -> Sinkd:
    return await start_server(http=True)


@pytest.fixture
async def http(app: Sinkd) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=base_url(app), timeout=TIMEOUT) as client:
        yield client
