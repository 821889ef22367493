"""The Starlette app of sinkd's HTTP API: health checks, ``/metrics`` and runtime chaos here;
messages and profiles in ``sinkd.web.messages``.

Owns the routes, JSON bodies (errors included: ``{"error": ..., "detail": ...}``) and the guards
in front of them: the ``Host`` allowlist against DNS rebinding (``HostGuard``), the cap on
request bodies (``BodyLimit``) and the guard of state-changing requests (``StateChangeGuard``).
It holds no policy: chaos specs are parsed and applied by ``sinkd.core.chaos``; it reads and
changes the running server only through the narrow dependencies of ``WebContext``
(``sinkd.web.common``), never the server's runtime object.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
import logging
from collections.abc import Callable, Sequence
from http import HTTPStatus
from typing import Any
from urllib.parse import urlsplit

from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.endpoints import HTTPEndpoint
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sinkd.core.chaos import STAGES, Chaos, ChaosConfig, parse_triggers
from sinkd.errors import ConfigError
from sinkd.services.metrics import CONTENT_TYPE
from sinkd.web import events, messages, openapi, routing
from sinkd.web.common import (
    API,
    BODY_LIMIT,
    OPEN_PATHS,
    ApiError,
    ServerControl,
    WebContext,
    context,
    error_response,
    json_fields,
    read_json,
)
from sinkd.web.dashboard import Dashboard

__all__ = ["API", "BODY_LIMIT", "OPEN_PATHS", "ApiError", "HostGuard", "create_app"]

log = logging.getLogger(__name__)

STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
_WILDCARD = frozenset({"", "0.0.0.0", "::"})
ANY_HOST = "*"  # --http-allowed-host '*': no Host check (unsafe: docs/security.md)


def create_app(ctx: WebContext) -> Starlette:
    """The API and the dashboard over ``ctx`` (the judge, the recorder, the message repository,
    the event hub, the delivery state and the server's controls), which endpoints reach as
    ``context(request)``."""
    routes: list[BaseRoute] = [
        Route("/livez", livez, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route(f"{API}/chaos", ChaosResource),
        *messages.routes(),
        *routing.routes(),
        *events.routes(),
        *openapi.routes(),
    ]
    server = ctx.server
    app = Starlette(
        routes=routes,
        middleware=[
            # First: a page under a rebound name learns nothing, not even that auth is on.
            Middleware(HostGuard, allowed=ctx.http.allowed_hosts, bind_host=ctx.http.bind_host),
            Middleware(BodyLimit, limit=BODY_LIMIT),
            Middleware(BasicAuth, credentials=ctx.http.auth),
            Middleware(StateChangeGuard, own_address=lambda: server.http_address),
            Middleware(Dashboard),  # the HTML pages: docs/dashboard.md, not API routes
        ],
        exception_handlers={ApiError: _api_error, HTTPException: _http_error, 500: _server_error},
    )
    app.state.context = ctx
    return app


# --- health -----------------------------------------------------------------------------------


async def livez(request: Request) -> Response:
    """The process answers: 200 ``{"status": "ok"}``."""
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    """200 while the SMTP listener serves and the store takes writes, else 503 saying which
    is not (a store whose writer process died and could not be replaced takes none)."""
    server = context(request).server
    checks = {
        "smtp": server.smtp_serving(),
        "store": server.store_ready(),
    }
    if all(checks.values()):
        return JSONResponse({"status": "ok", **checks})
    return error_response(503, "not ready", checks)


async def metrics(request: Request) -> Response:
    """The server's metrics in Prometheus text format (``sinkd.services.metrics``); behind
    the ``Host`` rule and ``--http-auth`` like the API, so a scrape config needs the
    credentials."""
    ctx = context(request)
    counted = ctx.metrics
    if counted is None:
        raise ApiError(404, "not found", "this server keeps no metrics")
    await ctx.server.gather_metrics()  # the workers' histograms and sessions (--workers)
    return Response(counted.render(), media_type=None, headers={"Content-Type": CONTENT_TYPE})


# --- chaos ------------------------------------------------------------------------------------


class ChaosResource(HTTPEndpoint):
    """``GET``: the chaos in force; ``PUT``: replace it (``chaos_config``), effective from the
    next SMTP event, in open sessions too."""

    async def get(self, request: Request) -> Response:
        return JSONResponse(chaos_state(_chaos(context(request).server)))

    async def put(self, request: Request) -> Response:
        server = context(request).server
        chaos = _chaos(server)
        server.set_chaos(chaos_config(await read_json(request)))  # in every SMTP process
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


def _chaos(server: ServerControl) -> Chaos:
    if server.chaos is None:
        raise ApiError(503, "not ready", "the server has not started")
    return server.chaos


# --- requests and errors ----------------------------------------------------------------------


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


class HostGuard:
    """Serves only requests whose ``Host`` (RFC 9110 §7.2) names this server as the developer
    reaches it: a loopback name (``localhost``, any ``*.localhost``: RFC 6761 §6.3 keeps those
    on loopback), an IP literal, the bind address (``--http-host``) or a name in ``allowed``
    (``--http-allowed-host``; ``*`` turns the check off). Anything else is 403 with a JSON body
    naming the option, except ``OPEN_PATHS``, which reveal nothing.

    Why: a page on ``evil.example`` can rebind its own name to 127.0.0.1 and then read sinkd
    with same-origin requests, which the browser sends with ``Host: evil.example``; CORS and
    ``StateChangeGuard`` cannot tell those from the dashboard's own. The ``Host`` is the one
    thing the attacker cannot choose. webpack-dev-server (``allowedHosts: 'auto'``), Vite
    (``server.allowedHosts``, GHSA-vg6x-rcgg-rjx6) and Jupyter (``allow_remote_access`` /
    ``local_hostnames``) answer the attack the same way.

    IP literals pass whatever the bind (as in Vite, which allows "all IP addresses", and
    Jupyter, which allows local ones): rebinding needs a *name* whose answer the attacker
    controls; a page loaded from ``http://203.0.113.9:8025/`` was served by whoever holds that
    address, and the browser never re-resolves a literal, so a foreign page cannot end up on an
    IP-literal origin that reaches sinkd. This keeps ``docker run -p`` (``127.0.0.1:18025``) and
    a container's own address working with no option. The port is ignored: behind a published
    port it differs from the bound one, and rebinding keeps the attacker's port anyway.

    A request with no ``Host`` is refused too (unless ``*``): HTTP/1.1 requires one (RFC 9112
    §3.2) and every client sinkd documents sends one; refusing costs nothing and leaves no
    request unchecked.
    """

    def __init__(self, app: ASGIApp, allowed: Sequence[str], bind_host: str) -> None:
        self.app = app
        names = {_host_name(name) for name in allowed}
        self.any_host = ANY_HOST in names
        if bind_host not in _WILDCARD:
            names.add(_host_name(bind_host))
        self.names = frozenset(names | _LOOPBACK_NAMES)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not self.any_host and scope["path"] not in OPEN_PATHS:
            host = Headers(scope=scope).get("host")
            if not self.allows(host):
                await self.refusal(host)(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def allows(self, host_header: str | None) -> bool:
        if host_header is None:
            return False
        name = _host_name(host_header, with_port=True)
        if not name:
            return False
        return name in self.names or name.endswith(".localhost") or _is_ip(name)

    def refusal(self, host_header: str | None) -> Response:
        if host_header is None:
            detail = (
                "a request without a Host header is refused: this guards against DNS "
                "rebinding (docs/security.md)"
            )
        else:
            name = _host_name(host_header, with_port=True) or host_header
            detail = (
                f"Host {name[:100]!r} is not a name of this server: open it as localhost or "
                f"127.0.0.1, or start sinkd with --http-allowed-host {name[:100]} (env "
                "SINKD_HTTP_ALLOWED_HOSTS) if that name is yours; this guards against DNS "
                "rebinding (docs/security.md)"
            )
        return error_response(403, "forbidden", detail)


def _host_name(text: str, *, with_port: bool = False) -> str:
    """The host of a ``Host`` header or an option value, lower-cased, without the port,
    brackets or a trailing dot (``localhost.`` is ``localhost``); "" if it does not parse."""
    text = text.strip().lower()
    if text == ANY_HOST:
        return text
    if not with_port and text.count(":") > 1 and not text.startswith("["):
        return text  # a bare IPv6 address given as an option: ::1
    try:
        host = urlsplit(f"//{text}").hostname or ""
    except ValueError:
        return ""
    return host.removesuffix(".")


class _BodyTooLarge(Exception):
    pass


class BodyLimit:
    """Refuses a request body over ``limit`` bytes with 413 before it is read whole: at once
    from ``Content-Length``, and for a chunked body (RFC 9112 §7.1, no length up front) as soon
    as the bytes received pass the limit, from a ``receive`` that counts them. The answer closes
    the connection, so the server does not go on reading what the client still sends."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            await self.refusal()(scope, receive, send)
            return
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise _BodyTooLarge
            return message

        async def watching_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, watching_send)
        except _BodyTooLarge:
            if started:  # a streaming answer that reads the body as it goes: nothing to say
                raise
            await self.refusal()(scope, receive, send)

    def refusal(self) -> Response:
        return error_response(
            413,
            "content too large",
            f"request bodies are limited to {self.limit} bytes (docs/http-api.md)",
            headers={"Connection": "close"},
        )
