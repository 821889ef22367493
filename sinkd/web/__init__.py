"""sinkd's HTTP layer: the JSON API (health checks, runtime chaos, messages and profiles).

``create_app`` builds the Starlette app over a ``WebContext`` (``common.py``: the judge, the
recorder, the message repository, the event hub, the delivery state and the server's controls;
never the server's runtime object); ``HttpServer`` serves it with uvicorn in the same asyncio
loop as the SMTP listener. The API and the dashboard grow here, one module per concern
(``messages.py``, ``routing.py``, ``dashboard.py``, ...), sharing only ``common.py`` and
``pages.py``; this package never imports ``sinkd.server``.
"""

from __future__ import annotations

from sinkd.web.app import create_app
from sinkd.web.server import HttpServer

__all__ = ["HttpServer", "create_app"]
