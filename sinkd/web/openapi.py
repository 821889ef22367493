"""``GET /api/v1/openapi.json``: the API described as an OpenAPI 3.1 document, written by hand.

Owns that document only; a test checks that every route of the app appears in it.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from sinkd.web.common import API, BODY_LIMIT, OPEN_PATHS

_JSON = "application/json"


def routes() -> list[BaseRoute]:
    return [Route(f"{API}/openapi.json", openapi_json, methods=["GET"])]


async def openapi_json(request: Request) -> Response:
    return JSONResponse(document())


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {_JSON: {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    return {str(code): {"$ref": f"#/components/responses/E{code}"} for code in codes}


def _op(
    summary: str,
    ok: dict[str, Any],
    *errors: int,
    status: int = 200,
    params: list[dict[str, Any]] | None = None,
    body: dict[str, Any] | None = None,
) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "responses": {str(status): ok, **_errors(*errors)}}
    if params:
        op["parameters"] = params
    if body is not None:
        op["requestBody"] = {"required": True, "content": {_JSON: {"schema": body}}}
    return op


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }


_ID = {
    "name": "id",
    "in": "path",
    "required": True,
    "description": "a message id",
    "schema": {"type": "string", "pattern": "^[0-9A-Za-z][0-9A-Za-z_-]{0,63}$"},
}
_NAME = {
    "name": "name",
    "in": "path",
    "required": True,
    "description": "a profile id",
    "schema": {"type": "string"},
}
_EML = {"description": "the message", "content": {"message/rfc822": {"schema": {"type": "string"}}}}
_STRING = {"type": "string"}
_TIME = {"type": "string", "format": "date-time"}

_LIST_PARAMS = [
    _query("verdict", {"enum": ["accept", "quarantine", "reject"]}, "the verdict"),
    _query("profile", _STRING, "the profile id"),
    _query("to", _STRING, "a substring of a recipient, ignoring case (Unicode)"),
    _query("from", _STRING, "a substring of the envelope sender, ignoring case (Unicode)"),
    _query("subject", _STRING, "a substring of the subject, ignoring case (Unicode)"),
    _query("code", _STRING, "a finding code, exact"),
    _query("since", _TIME, "RFC 3339; since <= received_at"),
    _query("until", _TIME, "RFC 3339; received_at < until"),
    _query("limit", {"type": "integer", "minimum": 1, "maximum": 500, "default": 50}, "page"),
    _query(
        "before",
        {"type": "integer", "minimum": 1},
        "paging cursor: the previous answer's `next`; only older messages follow, and new"
        " arrivals never shift a page (the documented way to page)",
    ),
    _query(
        "after",
        {"type": "integer", "minimum": 0},
        "paging cursor: the previous answer's `prev`; the page of messages stored just after"
        " it (the rows above an older page), still newest first; not with `before`",
    ),
    _query(
        "offset",
        {"type": "integer", "minimum": 0, "default": 0},
        "skip this many matches (from the cursor); its cost grows with it, prefer the cursors"
        " (kept for compatibility)",
    ),
]

_ERROR_TEXT = {
    400: "bad JSON, a malformed id or a bad parameter",
    401: "no or wrong HTTP Basic credentials (only with --http-auth)",
    403: "a Host that is not sinkd's (the DNS rebinding guard), or a cross-site state-changing "
    "request",
    404: "no such endpoint, message or profile",
    405: "method not allowed",
    409: "the message's state forbids it",
    413: f"a request body over {BODY_LIMIT} bytes",
    415: "not Content-Type: application/json",
    422: "an invalid body (or an unknown profile in it)",
    503: "not ready",
}


def document() -> dict[str, Any]:
    message = _json(_ref("Message"), "a message in the one JSON shape")
    routing = _json(_ref("Routing"), "the routing in force")
    paths: dict[str, Any] = {
        "/livez": {"get": _op("the process answers", _json({"type": "object"}, "ok"))},
        "/readyz": {
            "get": _op("SMTP listener and store are up", _json({"type": "object"}, "ok"), 503)
        },
        "/metrics": {
            "get": _op(
                "Prometheus metrics: messages, findings, SMTP replies, commit and filter-core "
                "time, open sessions, build info (docs/http-api.md, Metrics)",
                {
                    "description": "Prometheus text format 0.0.4",
                    "content": {"text/plain; version=0.0.4": {"schema": _STRING}},
                },
                401,
            )
        },
        f"{API}/chaos": {
            "get": _op("the chaos in force", _json(_ref("Chaos"), "chaos"), 401),
            "put": _op(
                "replace the chaos",
                _json(_ref("Chaos"), "the new chaos"),
                400,
                401,
                403,
                415,
                422,
                body={
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["triggers"],
                    "properties": {
                        "triggers": _STRING,
                        "seed": {"type": ["integer", "null"], "minimum": 0},
                    },
                },
            ),
        },
        f"{API}/routing": {
            "get": _op("the default profile and the recipient routes", routing, 401, 503),
            "put": _op(
                "replace the default profile and the recipient routes (from the next MAIL FROM)",
                routing,
                400,
                401,
                403,
                409,
                415,
                422,
                503,
                body={
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["profile"],
                    "properties": {
                        "profile": {**_STRING, "description": "a profile id, never a path"},
                        "routes": {
                            "type": "object",
                            "description": "recipient domain (or *.domain) -> profile id",
                            "additionalProperties": _STRING,
                        },
                    },
                },
            ),
        },
        f"{API}/delivery-state": {
            "get": _op(
                "how many greylist triplets and rate-limit windows the server remembers "
                "(with a PostgreSQL store: every instance's, as they share them)",
                _json({"type": "object", "properties": {"entries": {"type": "integer"}}}, "ok"),
                401,
                503,
            ),
            "delete": _op(
                "forget every greylist triplet and rate-limit window (of every instance "
                "sharing a PostgreSQL store)",
                _json({"type": "object", "properties": {"forgotten": {"type": "integer"}}}, "ok"),
                401,
                403,
                415,
                503,
            ),
        },
        f"{API}/messages": {
            "get": _op(
                "list messages, newest first",
                _json(
                    {
                        "type": "object",
                        "properties": {
                            "total": {
                                "type": "integer",
                                "description": "matches of the filters, counted up to 1000",
                            },
                            "total_exact": {
                                "type": "boolean",
                                "description": "false when more than 1000 match",
                            },
                            "limit": {"type": "integer"},
                            "offset": {"type": "integer"},
                            "next": {
                                "type": ["integer", "null"],
                                "description": "pass as `before` for the next (older) page;"
                                " null on the last page",
                            },
                            "prev": {
                                "type": ["integer", "null"],
                                "description": "pass as `after` for the previous (newer) page;"
                                " null when nothing newer matches",
                            },
                            "messages": {"type": "array", "items": _ref("Message")},
                        },
                    },
                    "a page of messages",
                ),
                400,
                401,
                params=_LIST_PARAMS,
            ),
            "delete": _op(
                "remove every message",
                _json({"type": "object", "properties": {"deleted": {"type": "integer"}}}, "ok"),
                401,
                403,
                415,
            ),
        },
        f"{API}/messages/{{id}}": {
            "get": _op("one message", message, 400, 401, 404, params=[_ID]),
            "delete": _op(
                "remove one message",
                {"description": "removed"},
                400,
                401,
                403,
                404,
                415,
                status=204,
                params=[_ID],
            ),
        },
        f"{API}/messages/{{id}}/raw": {
            "get": _op("the bytes received", _EML, 400, 401, 404, params=[_ID])
        },
        f"{API}/messages/{{id}}/filtered": {
            "get": _op("the copy as delivered", _EML, 400, 401, 404, 409, params=[_ID])
        },
        f"{API}/messages/{{id}}/findings": {
            "get": _op(
                "the message's findings",
                _json(
                    {
                        "type": "object",
                        "properties": {
                            "id": _STRING,
                            "findings": {"type": "array", "items": _ref("Finding")},
                        },
                    },
                    "findings",
                ),
                400,
                401,
                404,
                params=[_ID],
            )
        },
        f"{API}/messages/{{id}}/evaluate": {
            "post": _op(
                "judge the stored message against another profile",
                _json(
                    {
                        "type": "object",
                        "properties": {
                            "id": _STRING,
                            "profile": _STRING,
                            "stored": {"type": "boolean"},
                            "verdicts": {"type": "array", "items": _ref("Message")},
                        },
                    },
                    "the verdicts",
                ),
                400,
                401,
                403,
                404,
                409,
                415,
                422,
                params=[_ID],
                body={
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["profile"],
                    "properties": {"profile": _STRING, "store": {"type": "boolean"}},
                },
            )
        },
        f"{API}/messages/{{id}}/release": {
            "post": _op(
                "release a quarantined message (sets released_at); with --relay it is relayed "
                "onward too, queued in the same transaction (its relay field)",
                message,
                400,
                401,
                403,
                404,
                409,
                415,
                params=[_ID],
            )
        },
        f"{API}/events": {
            "get": _op(
                "live events (Server-Sent Events): `event: verdict` per stored record, "
                "`event: released` per release, each with the message as `data`; "
                "`event: relay` after each relay attempt (--relay), `{id, relay}`; "
                "a comment heartbeat every 15 s",
                {
                    "description": "an event stream",
                    "content": {"text/event-stream": {"schema": _STRING}},
                },
                401,
            )
        },
        f"{API}/openapi.json": {
            "get": _op("this document", _json({"type": "object"}, "OpenAPI 3.1"), 401)
        },
        f"{API}/profiles": {
            "get": _op(
                "the profiles",
                _json(
                    {
                        "type": "object",
                        "properties": {
                            "profiles": {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "properties": {"id": _STRING, "title": _STRING},
                                },
                            }
                        },
                    },
                    "profiles",
                ),
                401,
            )
        },
        f"{API}/profiles/{{name}}": {
            "get": _op(
                "one merged profile",
                _json({"type": "object"}, "the profile"),
                401,
                404,
                422,
                params=[_NAME],
            )
        },
    }
    for path, ops in paths.items():
        if path in OPEN_PATHS:
            continue
        for op in ops.values():
            # sinkd.web.app.HostGuard and BodyLimit stand in front of every other route.
            op["responses"] = dict(sorted({**op["responses"], **_errors(403, 413)}.items()))
    return {
        "openapi": "3.1.0",
        "info": {"title": "sinkd HTTP API", "version": "1"},
        "paths": paths,
        "components": {
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error", "detail"],
                    "properties": {"error": _STRING, "detail": {}},
                },
                "Chaos": {
                    "type": "object",
                    "properties": {
                        "triggers": _STRING,
                        "seed": {"type": "integer"},
                        "stages": {"type": "array", "items": _STRING},
                    },
                },
                "Routing": {
                    "type": "object",
                    "properties": {
                        "profile": _STRING,
                        "routes": {"type": "object", "additionalProperties": _STRING},
                        "profiles": {
                            "type": "array",
                            "items": _STRING,
                            "description": "the profile ids a PUT may name",
                        },
                    },
                },
                "Finding": {
                    "type": "object",
                    "description": "one evaluated rule and what it found (docs/judging.md)",
                    "required": ["code", "filter", "category", "action", "reason", "unjudged"],
                    "properties": {
                        "code": _STRING,
                        "filter": _STRING,
                        "category": _STRING,
                        "action": _STRING,
                        "score": {"type": "number"},
                        "reason": _STRING,
                        "stage": _STRING,
                        "decided": {"type": "boolean"},
                        "unjudged": {
                            "enum": ["no-dns-data", "unavailable", "error", None],
                            "description": (
                                "set when the check could not reach its own answer; the "
                                "finding then records only. no-dns-data: sinkd's DNS is "
                                "offline and no fixture has data for detail.dns_names (give "
                                "it with --dns-zone FILE or judge with --dns live); "
                                "unavailable: a scanner or live DNS did not answer; error: "
                                "the filter failed on this message"
                            ),
                        },
                        "detail": {
                            "type": "object",
                            "description": (
                                "the evidence; authentication findings carry result, and "
                                "unjudged ones dns_names"
                            ),
                        },
                    },
                },
                "Message": {
                    "type": "object",
                    "description": "the one JSON shape (docs/judging.md)",
                    "required": ["id", "received_at", "profile", "verdict", "findings"],
                    "properties": {
                        "id": _STRING,
                        "received_at": _TIME,
                        "transaction_id": _STRING,
                        "profile": _STRING,
                        "verdict": {"enum": ["accept", "quarantine", "reject"]},
                        "disposition": _STRING,
                        "score": {"type": "number"},
                        "stage": _STRING,
                        "reply": {"type": "object"},
                        "envelope": {"type": "object"},
                        "identity": {"type": ["object", "null"]},
                        "subject": {"type": ["string", "null"]},
                        "stripped": {"type": "array"},
                        "fully_judged": {
                            "type": "boolean",
                            "description": (
                                "false when a check the profile needs could not answer (a "
                                "scanner down, a live DNS timeout, a filter error: a finding "
                                "with unjudged unavailable or error); checks offline DNS had "
                                "no data for (unjudged no-dns-data) do not make it false"
                            ),
                        },
                        "findings": {"type": "array", "items": _ref("Finding")},
                        "size": {"type": ["integer", "null"]},
                        "released_at": {"type": ["string", "null"], "format": "date-time"},
                        "relay": {
                            "oneOf": [_ref("Relay"), {"type": "null"}],
                            "description": "null unless the message was queued for relaying "
                            "onward (--relay)",
                        },
                    },
                },
                "Relay": {
                    "type": "object",
                    "description": (
                        "relaying onward (--relay): queued while any recipient is pending, "
                        "delivered when every one was, failed otherwise"
                    ),
                    "required": [
                        "status",
                        "attempts",
                        "queued_at",
                        "last_attempt_at",
                        "next_attempt_at",
                        "done_at",
                        "last_reply",
                        "recipients",
                    ],
                    "properties": {
                        "status": {"enum": ["queued", "delivered", "failed"]},
                        "attempts": {"type": "integer"},
                        "queued_at": _TIME,
                        "last_attempt_at": {"type": ["string", "null"], "format": "date-time"},
                        "next_attempt_at": {"type": ["string", "null"], "format": "date-time"},
                        "done_at": {"type": ["string", "null"], "format": "date-time"},
                        "last_reply": {"oneOf": [_ref("RelayReply"), {"type": "null"}]},
                        "recipients": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["address", "status", "reply"],
                                "properties": {
                                    "address": _STRING,
                                    "status": {"enum": ["queued", "delivered", "failed"]},
                                    "reply": {"oneOf": [_ref("RelayReply"), {"type": "null"}]},
                                },
                            },
                        },
                    },
                },
                "RelayReply": {
                    "description": (
                        "the target's SMTP reply, or {error} when there was none (connection, "
                        "TLS, AUTH, timeout, or the relay's lifetime ran out)"
                    ),
                    "oneOf": [
                        {
                            "type": "object",
                            "required": ["code", "enhanced", "text"],
                            "properties": {
                                "code": {"type": "integer"},
                                "enhanced": {"type": ["string", "null"]},
                                "text": _STRING,
                            },
                        },
                        {
                            "type": "object",
                            "required": ["error"],
                            "properties": {"error": _STRING},
                        },
                    ],
                },
            },
            "responses": {
                f"E{code}": _json(_ref("Error"), text) for code, text in _ERROR_TEXT.items()
            },
        },
    }
