"""uvicorn embedded in sinkd's event loop: started and stopped by ``Sinkd``.

Owns binding the HTTP sockets (``localhost``, the default: 127.0.0.1 and ::1 on one port, see
``sinkd.listen``; a bind error is a ``ConfigError`` naming the address, not
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
from sinkd.listen import listen

_SHUTDOWN_GRACE = 5  # seconds open HTTP connections get to finish at stop


class _EmbeddedServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # the loop's owner (``sinkd serve``) handles SIGINT and SIGTERM


class HttpServer:
    """``await start()``, then ``address`` (the bound host and port; 127.0.0.1's under
    ``localhost``) and ``addresses`` (every one: also ::1's); ``await stop()``."""

    def __init__(self, app: ASGIApp, host: str, port: int) -> None:
        self.app = app
        self.host = host
        self.port = port
        self.address: tuple[str, int] | None = None
        self.addresses: list[tuple[str, int]] = []
        self._server: _EmbeddedServer | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        sockets = _bind(self.host, self.port)
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
        self._task = asyncio.create_task(server.serve(sockets=sockets), name="sinkd-http")
        while not server.started:
            if self._task.done():
                task, self._server, self._task = self._task, None, None
                for sock in sockets:
                    sock.close()
                task.result()  # raises what stopped it
                raise RuntimeError("the HTTP server stopped during start-up")
            await asyncio.sleep(0.01)
        # One asyncio server per socket (uvicorn's startup), in the order given: IPv4 first.
        self.addresses = [
            (sock.getsockname()[0], sock.getsockname()[1])
            for served in server.servers
            for sock in served.sockets
        ]
        self.address = self.addresses[0]

    async def stop(self) -> None:
        if self._server is None or self._task is None:
            return
        self._server.should_exit = True
        try:
            await self._task
        finally:
            self._server = self._task = None
            self.addresses = []


def _bind(host: str, port: int) -> list[socket.socket]:
    try:
        return listen(host, port, backlog=100)
    except socket.gaierror as exc:
        raise ConfigError(f"--http-host {host}: cannot listen there: {exc}") from None
    except OSError as exc:
        raise ConfigError(
            f"--http-port {port}: cannot listen on {host}:{port}: {exc.strerror or exc} "
            "(pick another port, 0 for a free one, or pass --no-http)"
        ) from None
