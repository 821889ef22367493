"""What every module of the HTTP layer shares: the API prefix, the JSON error answer, request
body helpers, the id shapes paths are checked against, and ``WebContext``, the narrow set of
dependencies the app is built over.

Owns those shared pieces only, so that the route modules (``messages``, ``routing``,
``events``, ``openapi``, the dashboard's) build on it and never on each other's private
helpers. The web layer reaches the running server only through ``WebContext``: the judge, the
recorder, the message repository, the event hub, the delivery state, the metrics and the
``ServerControl`` protocol; it never imports ``sinkd.server``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from starlette.requests import Request
from starlette.responses import JSONResponse

from sinkd.core.chaos import Chaos, ChaosConfig
from sinkd.services.judge import Judge
from sinkd.services.metrics import Metrics
from sinkd.services.recorder import Recorder
from sinkd.store import Repository
from sinkd.web.hub import Hub

API = "/api/v1"
OPEN_PATHS = frozenset({"/livez", "/readyz"})  # answered without credentials under --http-auth
# Every body sinkd reads is a small JSON control object (chaos, routing, evaluate, release); no
# route takes a message over HTTP (mail comes over SMTP, capped by --max-message-size), so one
# cap fits every route family. docs/http-api.md documents it.
BODY_LIMIT = 64 * 1024
MESSAGE_ID = re.compile(r"[0-9A-Za-z][0-9A-Za-z_-]{0,63}")  # a path's message id
PROFILE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")  # a profile id, never a path


class ApiError(Exception):
    """An error answer: ``status`` with the body ``{"error": error, "detail": detail}``."""

    def __init__(self, status: int, error: str, detail: Any = None) -> None:
        super().__init__(error)
        self.status = status
        self.error = error
        self.detail = detail


def error_response(
    status: int, error: str, detail: Any = None, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"error": error, "detail": detail}, status_code=status, headers=headers)


def json_fields(body: Any, fields: tuple[str, ...], error: str, expected: str) -> dict[str, Any]:
    """``body`` as a JSON object holding only ``fields``; else ``ApiError`` 422 ``error`` with
    ``expected`` (what a right body looks like) or the first unknown field."""
    if not isinstance(body, dict):
        raise ApiError(422, error, expected)
    unknown = sorted(set(body) - set(fields))
    if unknown:
        raise ApiError(422, error, f"unknown field {unknown[0]!r}: expected {', '.join(fields)}")
    return body


async def read_json(request: Request) -> Any:
    """The request body as JSON (``StateChangeGuard`` checked the content type); 400 if not."""
    try:
        return json.loads(await request.body())
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        raise ApiError(400, "bad JSON", f"the request body is not JSON: {exc}") from None


class ServerControl(Protocol):
    """What the API reads and changes of the running server beyond judging and storing:
    readiness, chaos, putting a recipient routing in force in every SMTP process, and its own
    HTTP address (the routing in force is the ``Judge``'s)."""

    http_address: tuple[str, int] | None
    chaos: Chaos | None

    def smtp_serving(self) -> bool: ...

    def store_ready(self) -> bool: ...

    def set_chaos(self, config: ChaosConfig) -> None: ...

    def set_routing(self, profile: str, routes: Mapping[str, str]) -> None: ...

    async def gather_metrics(self) -> None:
        """Bring the other SMTP processes' own measurements into the metrics (``--workers``)."""


@dataclass(frozen=True)
class HttpOptions:
    """The HTTP options the guards need: ``--http-host``, ``--http-allowed-host``,
    ``--http-auth``."""

    bind_host: str
    allowed_hosts: Sequence[str] = ()
    auth: tuple[str, str] | None = None


class DeliveryAdmin(Protocol):
    """What ``/api/v1/delivery-state`` reads and clears: the server's delivery state, one
    process's memory (``sinkd.core.delivery_state``) or the tables every instance shares
    (``sinkd.store.pg_state``). Both may raise ``DeliveryStateUnavailable`` (answered 503)."""

    async def entries(self) -> int: ...

    async def forget(self) -> int: ...


@dataclass(frozen=True)
class WebContext:
    """Everything the app is built over (``create_app``), reached as ``context(request)``."""

    judge: Judge
    recorder: Recorder
    messages: Repository
    hub: Hub
    delivery: DeliveryAdmin
    server: ServerControl
    http: HttpOptions
    metrics: Metrics | None = None  # GET /metrics (404 without)
    heartbeat: float | None = None  # the event stream's, when not the default (tests)
    cache: dict[str, Any] = field(default_factory=dict)


def context(request: Request) -> WebContext:
    ctx: WebContext = request.app.state.context
    return ctx
