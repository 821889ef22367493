"""The Starlette app of sinkd's HTTP API: health checks and runtime chaos here; messages and
profiles in ``sinkd.web.messages``.

Owns the routes, JSON bodies (errors included: ``{"error": ..., "detail": ...}``) and the guard
of state-changing requests (``StateChangeGuard``). It holds no policy: chaos specs are parsed
and applied by ``sinkd.chaos``; it only reads and changes the running ``Sinkd``.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
import json
import logging
from collections.abc import Callable, Mapping
from http import HTTPStatus
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.endpoints import HTTPEndpoint
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from sinkd.chaos import STAGES, Chaos, ChaosConfig, parse_triggers
from sinkd.errors import ConfigError

if TYPE_CHECKING:
    from sinkd.runtime import Sinkd

log = logging.getLogger(__name__)

API = "/api/v1"
STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
_WILDCARD = frozenset({"", "0.0.0.0", "::"})
OPEN_PATHS = frozenset({"/livez", "/readyz"})  # answered without credentials under --http-auth


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


def create_app(sinkd: Sinkd) -> Starlette:
    """The API over a running ``sinkd`` (its SMTP listener, store, chaos and HTTP address),
    which endpoints reach as ``request.app.state.sinkd``."""
    # Here, not at the top: sinkd.web.messages builds on this module's errors and helpers.
    from sinkd.web import events, messages, openapi, routing
    from sinkd.web.dashboard import Dashboard

    routes: list[BaseRoute] = [
        Route("/livez", livez, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route(f"{API}/chaos", ChaosResource),
        *messages.routes(),
        *routing.routes(),
        *events.routes(),
        *openapi.routes(),
    ]
    app = Starlette(
        routes=routes,
        middleware=[
            Middleware(BasicAuth, credentials=sinkd.settings.http_auth),
            Middleware(StateChangeGuard, own_address=lambda: sinkd.http_address),
            Middleware(Dashboard),  # the HTML pages: README 'Dashboard', not API routes
        ],
        exception_handlers={ApiError: _api_error, HTTPException: _http_error, 500: _server_error},
    )
    app.state.sinkd = sinkd
    return app


def _sinkd(request: Request) -> Sinkd:
    sinkd: Sinkd = request.app.state.sinkd
    return sinkd


# --- health -----------------------------------------------------------------------------------


async def livez(request: Request) -> Response:
    """The process answers: 200 ``{"status": "ok"}``."""
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    """200 while the SMTP listener serves and the store takes writes, else 503 saying which
    is not (a store whose writer process died and could not be replaced takes none)."""
    sinkd = _sinkd(request)
    checks = {
        "smtp": sinkd.smtp_serving(),
        "store": sinkd.store_ready(),
    }
    if all(checks.values()):
        return JSONResponse({"status": "ok", **checks})
    return error_response(503, "not ready", checks)


# --- chaos ------------------------------------------------------------------------------------


class ChaosResource(HTTPEndpoint):
    """``GET``: the chaos in force; ``PUT``: replace it (``chaos_config``), effective from the
    next SMTP event, in open sessions too."""

    async def get(self, request: Request) -> Response:
        return JSONResponse(chaos_state(_chaos(_sinkd(request))))

    async def put(self, request: Request) -> Response:
        sinkd = _sinkd(request)
        chaos = _chaos(sinkd)
        sinkd.set_chaos(chaos_config(await read_json(request)))  # in every SMTP process
        log.info("chaos triggers=%s (set over HTTP)", chaos.describe())
        return JSONResponse(chaos_state(chaos))


def chaos_state(chaos: Chaos) -> dict[str, Any]:
    """``{"triggers": spec in sinkd's syntax ("" for none), "seed": N, "stages": [...]}``;
    ``stages`` are the stage names a trigger may use."""
    config = chaos.config
    return {
        "triggers": ",".join(t.spec() for t in config.triggers),
        "seed": config.seed,
        "stages": list(STAGES),
    }


def json_fields(body: Any, fields: tuple[str, ...], error: str, expected: str) -> dict[str, Any]:
    """``body`` as a JSON object holding only ``fields``; else ``ApiError`` 422 ``error`` with
    ``expected`` (what a right body looks like) or the first unknown field."""
    if not isinstance(body, dict):
        raise ApiError(422, error, expected)
    unknown = sorted(set(body) - set(fields))
    if unknown:
        raise ApiError(422, error, f"unknown field {unknown[0]!r}: expected {', '.join(fields)}")
    return body


def chaos_config(body: Any) -> ChaosConfig:
    """``{"triggers": SPEC, "seed": N|null}`` (sinkd's or Mailpit's trigger syntax; "" is no
    chaos; no seed: a random one). ``ApiError`` 422 names the bad field or trigger."""
    body = json_fields(
        body,
        ("triggers", "seed"),
        "invalid chaos",
        'expected a JSON object {"triggers": "...", "seed": N}',
    )
    triggers, seed = body.get("triggers"), body.get("seed")
    if not isinstance(triggers, str):
        raise ApiError(
            422, "invalid chaos", 'triggers: expected a string such as "rcpt:450:25" ("" for none)'
        )
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise ApiError(422, "invalid chaos", f"seed {seed!r}: expected a whole number >= 0 or null")
    try:
        return ChaosConfig(tuple(parse_triggers(triggers)), seed)
    except ConfigError as exc:
        raise ApiError(422, "invalid chaos", f"triggers: {exc}") from None


def _chaos(sinkd: Sinkd) -> Chaos:
    if sinkd.chaos is None:
        raise ApiError(503, "not ready", "the server has not started")
    return sinkd.chaos


# --- requests and errors ----------------------------------------------------------------------


async def read_json(request: Request) -> Any:
    """The request body as JSON (``StateChangeGuard`` checked the content type); 400 if not."""
    try:
        return json.loads(await request.body())
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        raise ApiError(400, "bad JSON", f"the request body is not JSON: {exc}") from None


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.error, exc.detail)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    error = HTTPStatus(exc.status_code).phrase.lower()
    detail: Any = exc.detail
    if exc.status_code == 404:
        detail = f"no endpoint at {request.url.path}"
    elif exc.status_code == 405:
        allowed = (exc.headers or {}).get("Allow", "")
        detail = f"{request.method} is not allowed on {request.url.path}; allowed: {allowed}"
    return error_response(exc.status_code, error, detail, headers=exc.headers)


async def _server_error(request: Request, exc: Exception) -> Response:
    log.error("HTTP %s %s failed", request.method, request.url.path, exc_info=exc)
    return error_response(500, "internal server error", type(exc).__name__)


class BasicAuth:
    """With ``credentials`` (``--http-auth USER:PASS``), every request but ``OPEN_PATHS`` must
    carry them as HTTP Basic auth (RFC 7617), compared in constant time; otherwise 401 with
    ``WWW-Authenticate: Basic realm="sinkd"``. Without, everything passes."""

    def __init__(self, app: ASGIApp, credentials: tuple[str, str] | None) -> None:
        self.app = app
        self.expected = None if credentials is None else ":".join(credentials).encode("utf-8")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            self.expected is not None
            and scope["type"] == "http"
            and scope["path"] not in OPEN_PATHS
            and not self.accepts(Headers(scope=scope).get("authorization", ""))
        ):
            refusal = error_response(
                401,
                "unauthorized",
                "this API needs HTTP Basic credentials (--http-auth)",
                headers={"WWW-Authenticate": 'Basic realm="sinkd"'},
            )
            await refusal(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def accepts(self, header: str) -> bool:
        assert self.expected is not None
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            given = base64.b64decode(token.strip(), validate=True)
        except (binascii.Error, ValueError):
            return False
        return hmac.compare_digest(given, self.expected)


class StateChangeGuard:
    """Refuses state-changing requests (POST, PUT, PATCH, DELETE) a browser could send from
    another site: 403 for a foreign ``Origin`` (or ``Sec-Fetch-Site: cross-site``), 415 unless
    ``Content-Type: application/json`` (which a cross-site form cannot send without a CORS
    preflight, and sinkd answers no preflight).

    An ``Origin`` is the server's own when its host and port are the bound address; on a
    loopback or wildcard bind ``localhost``, ``127.0.0.1`` and ``[::1]`` too, and on a wildcard
    bind any IP literal the request was addressed to (``Host``). Behind a published port
    (``docker run -p 18025:8025``) the port differs from the bound one: such an origin is the
    server's own when it equals the request's ``Host`` and its host is one of those names. Host
    names other than ``localhost`` are never trusted, so DNS rebinding gains nothing.
    """

    def __init__(self, app: ASGIApp, own_address: Callable[[], tuple[str, int] | None]) -> None:
        self.app = app
        self.own_address = own_address

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in STATE_CHANGING:
            refusal = self.refusal(Request(scope))
            if refusal is not None:
                await refusal(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def refusal(self, request: Request) -> Response | None:
        headers = request.headers
        if headers.get("sec-fetch-site", "").lower() == "cross-site":
            return error_response(403, "forbidden", "cross-site request (Sec-Fetch-Site)")
        origin = headers.get("origin")
        if origin is not None and not self.is_own(origin, headers.get("host", "")):
            return error_response(403, "forbidden", f"cross-origin request from {origin!r}")
        media_type = headers.get("content-type", "").split(";")[0].strip().lower()
        if media_type != "application/json":
            return error_response(
                415,
                "unsupported media type",
                f"expected Content-Type: application/json, got {media_type or 'none'!r}",
            )
        return None

    def is_own(self, origin: str, host_header: str) -> bool:
        address = self.own_address()
        if address is None:
            return False
        bound, port = address
        try:
            parts = urlsplit(origin)
            origin_host, origin_port = (parts.hostname or "").lower(), parts.port or 80
            requested = urlsplit(f"//{host_header}")
            requested_host, requested_port = (requested.hostname or "").lower(), requested.port
        except ValueError:
            return False
        if parts.scheme != "http":
            return False
        trusted_name = (bound in _WILDCARD or bound in _LOOPBACK_NAMES) and (
            origin_host in _LOOPBACK_NAMES or (bound in _WILDCARD and _is_ip(origin_host))
        )
        if origin_port != port:
            # A published port (docker run -p 18025:8025): the browser's origin and Host name
            # the port on the Docker host, not the one bound here. Same origin when the Origin
            # is exactly the Host the request was sent to and a name trusted below.
            return trusted_name and (requested_host, requested_port or 80) == (
                origin_host,
                origin_port,
            )
        if origin_host == bound.lower():
            return True
        if (bound in _WILDCARD or bound in _LOOPBACK_NAMES) and origin_host in _LOOPBACK_NAMES:
            return True
        if bound in _WILDCARD and _is_ip(origin_host):
            return requested_host == origin_host
        return False


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True
