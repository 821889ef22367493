"""The state-change guard behind a published port, as in ``docker run -p 18025:8025``: sinkd
binds the wildcard address on one port while the browser talks to another on the Docker host.
Requests go to a real server; the ``Host`` and ``Origin`` headers are the ones a browser sends
for the published address."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from sinkd.server.runtime import Sinkd
from tests.conftest import StartServer
from tests.support.smtp import TIMEOUT
from tests.support.web import CHAOS, assert_error, put_chaos

PUBLISHED = 18025  # the port on the Docker host; sinkd itself listens on a free one


@pytest.fixture
async def app(start_server: StartServer) -> Sinkd:
    return await start_server(http=True, http_host="0.0.0.0")  # as in the container


@pytest.fixture
async def http(app: Sinkd) -> AsyncIterator[httpx.AsyncClient]:
    assert app.http_address is not None
    url = f"http://127.0.0.1:{app.http_address[1]}"
    async with httpx.AsyncClient(base_url=url, timeout=TIMEOUT) as client:
        yield client


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "192.0.2.10", "[::1]"])
async def test_the_dashboard_origin_of_a_published_port_may_change_state(
    http: httpx.AsyncClient, host: str
) -> None:
    address = f"{host}:{PUBLISHED}"
    response = await put_chaos(
        http, {"triggers": "mail:451:1"}, Host=address, Origin=f"http://{address}"
    )
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    ("host_header", "origin"),
    [
        # another local site (a dev server on :3000) posting to the published port
        (f"localhost:{PUBLISHED}", "http://localhost:3000"),
        # DNS rebinding: a name the attacker controls, resolved to the Docker host
        (f"rebind.example:{PUBLISHED}", f"http://rebind.example:{PUBLISHED}"),
        # the right port, another IP than the request was sent to
        (f"192.0.2.10:{PUBLISHED}", f"http://192.0.2.99:{PUBLISHED}"),
        (f"localhost:{PUBLISHED}", f"https://localhost:{PUBLISHED}"),
    ],
)
async def test_other_origins_are_still_refused_behind_a_published_port(
    http: httpx.AsyncClient, host_header: str, origin: str
) -> None:
    response = await put_chaos(http, {"triggers": "mail:451:1"}, Host=host_header, Origin=origin)
    assert_error(response, 403)
    assert (await http.get(CHAOS)).json()["triggers"] == ""
