"""Basic auth (``--http-auth``) and the OpenAPI document against a real ``Sinkd``."""

from __future__ import annotations

import json

import httpx
import pytest
from starlette.routing import Route

from sinkd.server.runtime import Sinkd
from tests.conftest import StartServer
from tests.support.smtp import TIMEOUT
from tests.support.web import assert_error, base_url

PROTECTED = [
    "/api/v1/messages",
    "/api/v1/chaos",
    "/api/v1/profiles",
    "/api/v1/openapi.json",
    "/api/v1/events",
]


@pytest.fixture
async def app(start_server: StartServer) -> Sinkd:
    return await start_server(http=True, http_auth=("ann", "s3cret:x"))


# --- basic auth -----------------------------------------------------------------------------


@pytest.mark.parametrize("path", PROTECTED)
async def test_without_credentials_every_api_endpoint_is_401_with_a_basic_challenge(
    http: httpx.AsyncClient, path: str
) -> None:
    response = await http.get(path)
    assert_error(response, 401)
    assert response.headers["www-authenticate"] == 'Basic realm="sinkd"'


@pytest.mark.parametrize(
    "auth", [("ann", "wrong"), ("bob", "s3cret:x"), ("ann", "s3cret"), ("", "")]
)
async def test_wrong_credentials_are_401(http: httpx.AsyncClient, auth: tuple[str, str]) -> None:
    assert_error(await http.get("/api/v1/messages", auth=auth), 401)


async def test_a_malformed_authorization_header_is_401(http: httpx.AsyncClient) -> None:
    for header in ["Basic !!!", "Bearer YW5uOnMzY3JldDp4", "Basic"]:
        assert_error(await http.get("/api/v1/messages", headers={"Authorization": header}), 401)


async def test_the_right_credentials_are_let_through(http: httpx.AsyncClient) -> None:
    response = await http.get("/api/v1/messages", auth=("ann", "s3cret:x"))
    assert response.status_code == 200, response.text
    assert response.json()["total"] == 0


async def test_health_checks_need_no_credentials(http: httpx.AsyncClient) -> None:
    assert (await http.get("/livez")).status_code == 200
    assert (await http.get("/readyz")).status_code == 200


async def test_a_state_change_without_credentials_is_refused_and_changes_nothing(
    http: httpx.AsyncClient,
) -> None:
    body = json.dumps({"triggers": "rcpt:451:100"})
    headers = {"Content-Type": "application/json"}
    assert_error(await http.put("/api/v1/chaos", content=body, headers=headers), 401)
    chaos = await http.get("/api/v1/chaos", auth=("ann", "s3cret:x"))
    assert chaos.json()["triggers"] == ""


async def test_without_http_auth_the_api_is_open(start_server: StartServer) -> None:
    app = await start_server(http=True)
    async with httpx.AsyncClient(base_url=base_url(app), timeout=TIMEOUT) as client:
        assert (await client.get("/api/v1/messages")).status_code == 200


# --- OpenAPI --------------------------------------------------------------------------------


async def test_the_openapi_document_is_json_with_openapi_3_1_and_paths(
    http: httpx.AsyncClient,
) -> None:
    response = await http.get("/api/v1/openapi.json", auth=("ann", "s3cret:x"))
    assert response.status_code == 200
    document = json.loads(response.content)
    assert document["openapi"].startswith("3.1")
    assert document["paths"]
    assert {"error", "detail"} <= set(document["components"]["schemas"]["Error"]["properties"])


async def test_every_route_and_method_of_the_app_appears_in_the_openapi_document(
    app: Sinkd, http: httpx.AsyncClient
) -> None:
    document = (await http.get("/api/v1/openapi.json", auth=("ann", "s3cret:x"))).json()
    assert app.http is not None
    served = set()
    for route in app.http.app.routes:  # type: ignore[attr-defined]
        assert isinstance(route, Route)
        methods = route.methods or {  # an HTTPEndpoint class: the methods it defines
            m.upper()
            for m in ("get", "put", "post", "patch", "delete")
            if hasattr(route.endpoint, m)
        }
        served |= {(route.path, m.lower()) for m in methods if m != "HEAD"}
    documented = {(path, method) for path, ops in document["paths"].items() for method in ops}
    assert served == documented


async def test_every_path_parameter_is_described(http: httpx.AsyncClient) -> None:
    document = (await http.get("/api/v1/openapi.json", auth=("ann", "s3cret:x"))).json()
    for path, ops in document["paths"].items():
        wanted = {part[1:-1] for part in path.split("/") if part.startswith("{")}
        for op in ops.values():
            given = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
            assert given == wanted, path
