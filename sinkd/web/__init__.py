"""sinkd's HTTP layer: the JSON API (first slice: health checks and runtime chaos).

``create_app`` builds the Starlette app over a running ``Sinkd``; ``HttpServer`` serves it with
uvicorn in the same asyncio loop as the SMTP listener. The full API and the dashboard are a
later issue and grow here, one module per concern, each adding routes to ``create_app``.
"""

from __future__ import annotations

from sinkd.web.app import create_app
from sinkd.web.server import HttpServer

__all__ = ["HttpServer", "create_app"]
