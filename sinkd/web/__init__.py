"""sinkd's HTTP layer: the JSON API (health checks, runtime chaos, messages and profiles).

``create_app`` builds the Starlette app over a running ``Sinkd``; ``HttpServer`` serves it with
uvicorn in the same asyncio loop as the SMTP listener. The rest of the API and the dashboard
grow here, one module per concern (``messages.py``), each adding routes to ``create_app``.
"""

from __future__ import annotations

from sinkd.web.app import create_app
from sinkd.web.server import HttpServer

__all__ = ["HttpServer", "create_app"]
