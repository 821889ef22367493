"""The messages and profiles endpoints of the JSON API: list, read, delete and re-evaluate
stored verdicts; list and show profiles.

Owns parsing and validating query strings, path ids and request bodies; every answer is the one
JSON shape (docs/judging.md, "JSON shape") or ``{"error", "detail"}``. It holds no policy: reads go
through the message repository, a re-evaluation through the server's ``Judge`` (the staged
transaction SMTP and ``sinkd check`` run, with the server's resolver and spamd) and storing one
through its ``Recorder``, as SMTP stores. Nothing here builds a file path from request or
message data: profiles are looked up by id among the loaded ones, never by path.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from sinkd.core.model import Verdict, VerdictAction
from sinkd.core.profiles import LoadedProfile
from sinkd.core.schema import dump
from sinkd.errors import NotFound, SinkdError
from sinkd.services.records import StoredVerdict
from sinkd.store import Query, Repository, StoredMessage
from sinkd.web.common import (
    API,
    MESSAGE_ID,
    PROFILE_ID,
    ApiError,
    context,
    json_fields,
    read_json,
)

log = logging.getLogger(__name__)

MAX_LIMIT = 500
DEFAULT_LIMIT = 50
# ``total`` counts matches up to this many, so a list answer costs the same at any store size;
# above it the answer says ``"total_exact": false``.
TOTAL_CAP = 1_000
_LIST_PARAMS = frozenset(
    {
        "verdict",
        "profile",
        "to",
        "from",
        "subject",
        "code",
        "since",
        "until",
        "limit",
        "offset",
        "before",
        "after",
    }
)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def routes() -> list[BaseRoute]:
    return [
        Route(f"{API}/messages", list_messages, methods=["GET"]),
        Route(f"{API}/messages", clear_messages, methods=["DELETE"]),
        Route(f"{API}/messages/{{id}}", get_message, methods=["GET"]),
        Route(f"{API}/messages/{{id}}", delete_message, methods=["DELETE"]),
        Route(f"{API}/messages/{{id}}/raw", get_raw, methods=["GET"]),
        Route(f"{API}/messages/{{id}}/filtered", get_filtered, methods=["GET"]),
        Route(f"{API}/messages/{{id}}/findings", get_findings, methods=["GET"]),
        Route(f"{API}/messages/{{id}}/evaluate", evaluate_message, methods=["POST"]),
        Route(f"{API}/messages/{{id}}/release", release_message, methods=["POST"]),
        Route(f"{API}/profiles", list_profiles, methods=["GET"]),
        Route(f"{API}/profiles/{{name}}", show_profile, methods=["GET"]),
    ]


def _store(request: Request) -> Repository:
    return context(request).messages


def _message_id(request: Request) -> str:
    value = str(request.path_params["id"])
    if not MESSAGE_ID.fullmatch(value):
        raise ApiError(400, "invalid id", f"{value!r} is not a message id")
    return value


async def _get(request: Request, *, with_raw: bool = False) -> StoredMessage:
    message_id = _message_id(request)
    try:
        return await _store(request).get(message_id, with_raw=with_raw)
    except NotFound:
        raise ApiError(404, "not found", f"no message with id {message_id!r}") from None


# --- list -------------------------------------------------------------------------------------


def list_query(params: Any) -> Query:
    """``Query`` from the query string; ``ApiError`` 400 naming the bad parameter."""
    unknown = sorted(set(params.keys()) - _LIST_PARAMS)
    if unknown:
        raise ApiError(
            400,
            "bad parameter",
            f"unknown parameter {unknown[0]!r}: expected one of " + ", ".join(sorted(_LIST_PARAMS)),
        )

    def text(name: str) -> str | None:
        value = params.get(name)
        if value is None:
            return None
        if value == "":
            raise ApiError(400, "bad parameter", f"{name}: must not be empty")
        if _CONTROL.search(value):
            raise ApiError(400, "bad parameter", f"{name}: must not contain control characters")
        return str(value)

    verdict = text("verdict")
    if verdict is not None and verdict not in {v.value for v in VerdictAction}:
        raise ApiError(
            400,
            "bad parameter",
            f"verdict {verdict!r}: expected one of {', '.join(v.value for v in VerdictAction)}",
        )
    return Query(
        verdict=verdict,
        profile=text("profile"),
        to=text("to"),
        mail_from=text("from"),
        subject=text("subject"),
        code=text("code"),
        since=_moment("since", text("since")),
        until=_moment("until", text("until")),
        limit=_whole("limit", params.get("limit"), DEFAULT_LIMIT, 1, MAX_LIMIT),
        offset=_whole("offset", params.get("offset"), 0, 0, None),
        before=_whole("before", params.get("before"), 0, 1, None) or None,
        after=_cursor_after(params),
    )


def _cursor_after(params: Any) -> int | None:
    """``after`` (0 is a valid cursor: everything); a page has one cursor, so not with
    ``before``."""
    if params.get("after") is None:
        return None
    if params.get("before") is not None:
        raise ApiError(
            400,
            "bad parameter",
            "before and after: give one cursor (before pages to older messages, after to"
            " newer ones)",
        )
    return _whole("after", params.get("after"), 0, 0, None)


@dataclasses.dataclass(frozen=True, slots=True)
class Page:
    """One page of a list, newest first, and the cursors of the pages beside it: ``older``
    to pass as ``before``, ``newer`` to pass as ``after`` (None when nothing matches there
    now)."""

    rows: Sequence[StoredMessage]
    older: int | None
    newer: int | None
    more: bool  # rows beyond the page in its own direction (the first page's total shortcut)


async def page_of(store: Repository, query: Query) -> Page:
    """``query``'s page, with the cursors of its neighbours: the direction the page was read
    in is known from one extra row, the other from one indexed probe of a single row (none on
    the newest page, where nothing is newer)."""
    rows = await store.list(dataclasses.replace(query, limit=query.limit + 1))
    more = len(rows) > query.limit
    upwards = query.after is not None
    # Read upwards, the extra row is the newest one (the first); otherwise the oldest (last).
    page = rows[len(rows) - query.limit :] if upwards and more else rows[: query.limit]
    if upwards:
        newer = page[0].seq if more and page else None
        # Empty above the cursor: the page below starts at the cursor's own row.
        edge = page[-1].seq if page else (query.after or 0) + 1
        older = edge if await _any(store, query, before=edge) else None
    else:
        older = page[-1].seq if more and page else None
        newer = None
        if query.before is not None or query.offset:
            # Empty below the cursor: the page above ends at the cursor's own row.
            edge = page[0].seq if page else (query.before - 1 if query.before else None)
            if edge is not None and await _any(store, query, after=edge):
                newer = edge
    return Page(page, older, newer, more)


async def _any(
    store: Repository, query: Query, *, before: int | None = None, after: int | None = None
) -> bool:
    probe = dataclasses.replace(query, before=before, after=after, offset=0, limit=1)
    return bool(await store.list(probe))


def _whole(name: str, value: str | None, default: int, low: int, high: int | None) -> int:
    if value is None:
        return default
    bounds = f"{low}-{high}" if high is not None else f">= {low}"
    if not re.fullmatch(r"[0-9]{1,9}", value) or int(value) < low:
        raise ApiError(400, "bad parameter", f"{name} {value!r}: expected a whole number {bounds}")
    if high is not None and int(value) > high:
        raise ApiError(400, "bad parameter", f"{name} {value!r}: expected a whole number {bounds}")
    return int(value)


def _moment(name: str, value: str | None) -> datetime | None:
    if value is None:
        return None
    shape = r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})"
    try:
        if not re.fullmatch(shape, value):
            raise ValueError(value)
        moment = datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
    except ValueError:
        raise ApiError(
            400,
            "bad parameter",
            f"{name} {value!r}: expected an RFC 3339 timestamp such as 2026-01-31T12:00:00Z",
        ) from None
    return moment.astimezone(UTC)


async def list_messages(request: Request) -> Response:
    """Newest first: ``{"total", "total_exact", "limit", "offset", "next", "prev",
    "messages"}``.

    ``next`` is the cursor for the older page (``before=<next>``), null on the last one;
    ``prev`` the cursor for the newer page (``after=<prev>``: the messages stored just above
    this page), null when nothing newer matches; ``total`` counts every match of the filters
    (not just the page) up to ``TOTAL_CAP``."""
    query = list_query(request.query_params)
    store = _store(request)
    page = await page_of(store, query)
    cursorless = query.before is None and query.after is None and query.offset == 0
    if cursorless and not page.more:
        total = len(page.rows)  # the first page holds every match: no second scan to count
    else:
        total = await store.count(query, at_most=TOTAL_CAP + 1)
    return JSONResponse(
        {
            "total": min(total, TOTAL_CAP),
            "total_exact": total <= TOTAL_CAP,
            "limit": query.limit,
            "offset": query.offset,
            "next": page.older,
            "prev": page.newer,
            "messages": [row.data for row in page.rows],
        }
    )


async def clear_messages(request: Request) -> Response:
    return JSONResponse({"deleted": await _store(request).clear()})


# --- one message ------------------------------------------------------------------------------


async def get_message(request: Request) -> Response:
    return JSONResponse((await _get(request)).data)


async def get_findings(request: Request) -> Response:
    stored = await _get(request)
    return JSONResponse({"id": stored.id, "findings": stored.data["findings"]})


async def delete_message(request: Request) -> Response:
    message_id = _message_id(request)
    try:
        await _store(request).delete(message_id)
    except NotFound:
        raise ApiError(404, "not found", f"no message with id {message_id!r}") from None
    return Response(status_code=204)


def _eml(body: bytes, filename: str) -> Response:
    return Response(
        body,
        media_type="message/rfc822",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


async def get_raw(request: Request) -> Response:
    stored = await _get(request, with_raw=True)
    if stored.raw is None:
        raise ApiError(
            404, "no raw message", f"message {stored.id} was refused before DATA: no bytes"
        )
    return _eml(stored.raw, f"{stored.id}.eml")


async def get_filtered(request: Request) -> Response:
    """The message as delivered after strip actions; the original when nothing was stripped."""
    stored = await _get(request, with_raw=True)
    if StoredVerdict.from_json(stored.data).refused or stored.raw is None:
        raise ApiError(409, "refused", f"message {stored.id} was refused; nothing was delivered")
    body = stored.filtered if stored.filtered is not None else stored.raw
    return _eml(body, f"{stored.id}.filtered.eml")


# --- release ----------------------------------------------------------------------------------


async def release_message(request: Request) -> Response:
    """Mark a quarantined message released: the message with ``released_at`` set, recorded in
    the store and the log and published as a ``released`` event. 409 when its verdict is not
    quarantine or it already was released."""
    stored = await _get(request)
    record = StoredVerdict.from_json(stored.data)
    if record.verdict != VerdictAction.QUARANTINE.value:
        raise ApiError(
            409,
            "not quarantined",
            f"message {stored.id} has verdict {record.verdict!r}; only quarantine is released",
        )
    if record.released_at:
        raise _already_released(stored)
    recorder = context(request).recorder
    try:
        # With --relay, a release relays the message (queued in the release's transaction),
        # whatever --relay-verdicts says: releasing is asking for delivery.
        released = await _store(request).release(
            stored.id, datetime.now(UTC), relay=recorder.relaying
        )
        after = await _get(request)
    except NotFound:
        raise ApiError(404, "not found", f"no message with id {stored.id!r}") from None
    if not released:  # another request released it meanwhile
        raise _already_released(after)
    log.info("released id=%s released_at=%s (over HTTP)", after.id, after.data["released_at"])
    if after.data.get("relay") is not None:
        recorder.relay_queued()
    context(request).hub.publish("released", after.data)
    return JSONResponse(after.data)


def _already_released(stored: StoredMessage) -> ApiError:
    when = StoredVerdict.from_json(stored.data).released_at
    return ApiError(409, "already released", f"message {stored.id} was released at {when}")


# --- re-evaluation ----------------------------------------------------------------------------


async def evaluate_message(request: Request) -> Response:
    """Judge the stored raw message against another profile, with the stored envelope and
    identity: ``{"id", "profile", "stored", "verdicts": [...]}``. Stored only if asked, then
    exactly as SMTP stores (the store, the log line, the verdict log, the live event)."""
    body = await read_json(request)
    name, store_it = _evaluate_body(body)
    loaded = profile_by_id(request, name)
    stored = await _get(request, with_raw=True)
    if stored.raw is None:
        raise ApiError(
            409, "no raw message", f"message {stored.id} was refused before DATA: nothing to judge"
        )
    verdicts = await judge_stored(request, loaded, stored)
    recorder = context(request).recorder
    if store_it:
        # Not relayed: the message was relayed (or not) when it arrived; a re-evaluation
        # tries a profile, it does not deliver the message again.
        committed = await recorder.commit(verdicts, stored.raw, relay=False)
        if committed.error is not None:
            raise committed.error  # the store failed: an internal error, as before
        records = committed.records
    else:
        records = recorder.records(verdicts, stored.raw)
    return JSONResponse(
        {
            "id": stored.id,
            "profile": loaded.profile.id,
            "stored": store_it,
            "verdicts": [r.to_json() for r in records],
        }
    )


def _evaluate_body(body: Any) -> tuple[str, bool]:
    expected = 'expected a JSON object {"profile": "strict-finance", "store": false}'
    body = json_fields(body, ("profile", "store"), "invalid evaluation", expected)
    name, store_it = body.get("profile"), body.get("store", False)
    if not isinstance(name, str) or not name:
        raise ApiError(422, "invalid evaluation", f"profile: {expected}")
    if not isinstance(store_it, bool):
        raise ApiError(422, "invalid evaluation", f"store {store_it!r}: expected true or false")
    return name, store_it


async def judge_stored(
    request: Request, loaded: LoadedProfile, stored: StoredMessage
) -> list[Verdict]:
    """The stored message judged again by ``loaded`` through the server's judge, with the
    stored envelope and identity; ``ApiError`` 422 when the profile or a zone file it names is
    invalid on disk."""
    assert stored.raw is not None
    record = StoredVerdict.from_json(stored.data)  # the stored envelope and identity
    try:
        return await context(request).judge.evaluate(
            stored.raw,
            record.envelope,
            record.identity,
            profile=loaded.profile.id,
        )
    except SinkdError as exc:
        raise ApiError(422, "invalid profile", str(exc)) from None


# --- profiles ---------------------------------------------------------------------------------


def profile_names(request: Request) -> list[str]:
    """The ids of the profiles the server has loaded (built-ins and ``--profiles-dir``)."""
    return context(request).judge.profiles.names()


def profile_by_id(request: Request, name: str) -> LoadedProfile:
    """A profile by id among the loaded ones (never a path): 404 when there is none."""
    names = profile_names(request)
    if not PROFILE_ID.fullmatch(name) or name not in names:
        raise ApiError(
            404, "unknown profile", f"no profile {name!r}; available: {', '.join(names)}"
        )
    try:
        return context(request).judge.profile(name)
    except SinkdError as exc:
        raise ApiError(422, "invalid profile", str(exc)) from None


async def list_profiles(request: Request) -> Response:
    rows = [profile_by_id(request, name).profile for name in profile_names(request)]
    return JSONResponse({"profiles": [{"id": p.id, "title": p.title} for p in rows]})


async def show_profile(request: Request) -> Response:
    """The merged profile as JSON, as ``sinkd profiles show --json`` prints it."""
    return JSONResponse(dump(profile_by_id(request, str(request.path_params["name"])).profile))
