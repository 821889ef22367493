"""aiospamc behind ``sinkd.lookups.spamd``: one client per spamd address, asking REPORT.

Owns every import of aiospamc and loguru, so that ``sinkd.lookups.spamd`` can load them on
its first request instead of on every start-up (~23 ms of ``sinkd check``, which rarely asks
a spamd). Must not decide policy, keep state between clients or turn failures into findings:
it returns aiospamc's response or raises aiospamc's exceptions, which ``SpamdService`` maps
to ``BackendError``.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiospamc.client import Client
from aiospamc.connections import TcpConnectionManager, Timeout
from aiospamc.requests import Request
from aiospamc.responses import Response
from loguru import logger

# aiospamc logs every request and every failure through loguru's global logger; sinkd logs
# once, where a failure becomes a finding, so aiospamc's own logging stays off.
logger.disable("aiospamc")


class _ClosingTcpConnectionManager(TcpConnectionManager):  # type: ignore[misc]
    """aiospamc's manager closes its socket only after a complete answer; this one closes it
    however the request ends, so a spamd that times out does not leak a socket per message."""

    async def _send(self, data: bytes) -> bytes:
        reader, writer = await self._connect()
        try:
            writer.write(data)
            if writer.can_write_eof():
                writer.write_eof()
            await writer.drain()
            response: bytes = await self._receive(reader)
            return response
        finally:
            writer.close()


@dataclass(frozen=True)
class SpamdConnection:
    """One aiospamc client for one spamd address (building one costs two SSL contexts,
    65-95 ms of CPU, so callers keep it)."""

    client: Client

    async def report(self, message: bytes) -> Response:
        """spamd's answer to REPORT for ``message``; aiospamc's exceptions pass through."""
        response: Response = await self.client.request(Request("REPORT", body=message))
        return response


def connect(host: str, port: int, timeout: float) -> SpamdConnection:
    """A connection to spamd at ``host:port`` whose every request ends within ``timeout``."""
    manager = _ClosingTcpConnectionManager(host, port, timeout=Timeout(total=timeout))
    return SpamdConnection(Client(manager))
