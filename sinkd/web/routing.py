"""The routing and delivery-state endpoints: which profile judges which recipients, changed at
runtime, and forgetting what greylisting and rate limits remember.

Owns validating ``PUT /api/v1/routing`` bodies (profile ids only, never paths; domains as
``--route`` takes them) and the JSON answers. It holds no policy: the ``Judge`` says which
routing is in force, the server's ``set_routing`` (``ServerControl``) puts a new one in force
in every SMTP process, the delivery state (``WebContext.delivery``) forgets: this process's
memory, or with ``--store postgresql://...`` what every instance shares. Test suites (the
pytest plugin) use both between tests, also against a sinkd running elsewhere (Docker).
"""

from __future__ import annotations

import re
from typing import Any

from starlette.endpoints import HTTPEndpoint
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from sinkd.errors import ConfigError, DeliveryStateUnavailable, SinkdError
from sinkd.services.judge import Judge
from sinkd.web.common import (
    API,
    PROFILE_ID,
    ApiError,
    context,
    json_fields,
    read_json,
)

# A domain as --route takes it: "example.com", or "*.example.com" for its subdomains.
_DOMAIN = re.compile(r"(\*\.)?[a-z0-9_]([a-z0-9_-]{0,62})(\.[a-z0-9_]([a-z0-9_-]{0,62}))*")
MAX_ROUTES = 1000
_EXPECTED = 'expected a JSON object {"profile": "strict-finance", "routes": {"domain": "profile"}}'


def routes() -> list[BaseRoute]:
    return [
        Route(f"{API}/routing", RoutingResource),
        Route(f"{API}/delivery-state", DeliveryStateResource),
    ]


def routing_state(judge: Judge) -> dict[str, Any]:
    """``{"profile": id, "routes": {domain: id}, "profiles": [ids a PUT may name]}``."""
    profile, routes = judge.routing()
    return {"profile": profile, "routes": routes, "profiles": judge.known_profiles()}


class RoutingResource(HTTPEndpoint):
    """``GET``: the default profile and the recipient routes in force; ``PUT``: replace both,
    effective from the next MAIL FROM (open transactions keep theirs)."""

    async def get(self, request: Request) -> Response:
        return JSONResponse(routing_state(context(request).judge))

    async def put(self, request: Request) -> Response:
        ctx = context(request)
        profile, routes = routing_body(await read_json(request), ctx.judge.known_profiles())
        try:
            ctx.server.set_routing(profile, routes)
        except ConfigError as exc:  # a greylisting profile on a server of several processes
            raise ApiError(409, "routing conflicts with --workers", str(exc)) from None
        except SinkdError as exc:  # a profile or a DNS zone it names is invalid on disk
            raise ApiError(422, "invalid profile", str(exc)) from None
        return JSONResponse(routing_state(ctx.judge))


def routing_body(body: Any, known: list[str]) -> tuple[str, dict[str, str]]:
    """``(profile, routes)`` from a PUT body; ``ApiError`` 422 naming the bad field."""
    body = json_fields(body, ("profile", "routes"), "invalid routing", _EXPECTED)
    profile, routes = body.get("profile"), body.get("routes", {})
    if not isinstance(profile, str) or not profile:
        raise ApiError(422, "invalid routing", f"profile: {_EXPECTED}")
    if not isinstance(routes, dict):
        raise ApiError(422, "invalid routing", f"routes: {_EXPECTED}")
    if len(routes) > MAX_ROUTES:
        raise ApiError(422, "invalid routing", f"routes: at most {MAX_ROUTES} domains")
    _check_profile("profile", profile, known)
    clean: dict[str, str] = {}
    for domain, name in routes.items():
        where = f"routes[{domain!r}]"
        norm = domain.strip().lower().rstrip(".")
        if len(norm) > 253 or not _DOMAIN.fullmatch(norm):
            raise ApiError(
                422, "invalid routing", f"{where}: expected a domain such as partner.example"
            )
        if not isinstance(name, str):
            raise ApiError(422, "invalid routing", f"{where}: expected a profile id")
        _check_profile(where, name, known)
        clean[norm] = name
    return profile, clean


def _check_profile(where: str, name: str, known: list[str]) -> None:
    if not PROFILE_ID.fullmatch(name) or name not in known:
        raise ApiError(
            422,
            "unknown profile",
            f"{where}: no profile {name!r}; available: {', '.join(known)}",
        )


class DeliveryStateResource(HTTPEndpoint):
    """What greylisting and rate limits remember: ``GET`` how many entries, ``DELETE`` forget
    them all (as a restart would), so that one test's attempts do not greylist or rate-limit
    the next test's."""

    async def get(self, request: Request) -> Response:
        try:
            return JSONResponse({"entries": await context(request).delivery.entries()})
        except DeliveryStateUnavailable as error:
            raise ApiError(503, "delivery state unavailable", str(error)) from error

    async def delete(self, request: Request) -> Response:
        try:
            return JSONResponse({"forgotten": await context(request).delivery.forget()})
        except DeliveryStateUnavailable as error:
            raise ApiError(503, "delivery state unavailable", str(error)) from error
