"""uvicorn embedded in sinkd's event loop: started and stopped by ``Sinkd``.

Owns binding the HTTP socket (a bind error is a ``ConfigError`` naming the address, not
uvicorn's ``sys.exit``) and a clean shutdown. sinkd's own loop keeps SIGINT and SIGTERM:
the embedded server installs no signal handlers.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator

import uvicorn
from starlette.types import ASGIApp

from sinkd.errors import ConfigError

_SHUTDOWN_GRACE = 5  # seconds open HTTP connections get to finish at stop


class _EmbeddedServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # the loop's owner (``sinkd serve``) handles SIGINT and SIGTERM


class HttpServer:
    """``await start()``, then ``address`` (the bound host and port); ``await stop()``."""

    def __init__(self, app: ASGIApp, host: str, port: int) -> None:
        self.app = app
        self.host = host
        self.port = port
        self.address: tuple[str, int] | None = None
        self._server: _EmbeddedServer | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        sock = _bind(self.host, self.port)
        config = uvicorn.Config(
            self.app,
            host=self.host,
            port=self.port,
            log_level="warning",
            log_config=None,  # keep sinkd's logging set-up (text or JSON lines)
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=_SHUTDOWN_GRACE,
        )
        server = self._server = _EmbeddedServer(config)
        self._task = asyncio.create_task(server.serve(sockets=[sock]), name="sinkd-http")
        while not server.started:
            if self._task.done():
                task, self._server, self._task = self._task, None, None
                sock.close()
                task.result()  # raises what stopped it
                raise RuntimeError("the HTTP server stopped during start-up")
            await asyncio.sleep(0.01)
        host, port = server.servers[0].sockets[0].getsockname()[:2]
        self.address = (host, port)

    async def stop(self) -> None:
        if self._server is None or self._task is None:
            return
        self._server.should_exit = True
        try:
            await self._task
        finally:
            self._server = self._task = None


def _bind(host: str, port: int) -> socket.socket:
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise ConfigError(f"--http-host {host}: cannot listen there: {exc}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(100)
    except OSError as exc:
        sock.close()
        raise ConfigError(
            f"--http-port {port}: cannot listen on {host}:{port}: {exc.strerror or exc} "
            "(pick another port, 0 for a free one, or pass --no-http)"
        ) from None
    sock.setblocking(False)
    return sock
