"""The dashboard: server-rendered HTML pages over the store and the profiles.

``/`` lists verdicts (live through ``/api/v1/events``), ``/messages/{id}`` explains one,
``/profiles/{name}`` states a policy in plain language. Pages are Python string templates in
which every value passes through ``e()`` (``html.escape``); captured HTML is shown only inside
``<iframe sandbox="" srcdoc=...>``, escaped as an attribute value. Every response carries
``CSP`` and ``nosniff``; the one script and stylesheet are package files served under fixed
names, so nothing here builds a file path from request or message data.
"""

from __future__ import annotations

import email
import email.policy
from collections.abc import Iterable
from email.message import EmailMessage, Message
from html import escape
from importlib import resources
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Match, Route, Router
from starlette.types import ASGIApp, Receive, Scope, Send

from sinkd.errors import NotFound
from sinkd.model import Category, VerdictAction
from sinkd.schema import dump
from sinkd.store import Query, Store, StoredMessage
from sinkd.web.app import ApiError

if TYPE_CHECKING:
    from sinkd.runtime import Sinkd

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; frame-src 'self'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
LIST_LIMIT = 200
CATEGORY_TITLES = {
    Category.ENVELOPE.value: "Envelope",
    Category.AUTHENTICATION.value: "Authentication",
    Category.CONTENT.value: "Content",
    Category.ATTACHMENTS.value: "Attachments",
    Category.SCORE.value: "Score",
    Category.FORMAT.value: "Format",
    Category.DELIVERY.value: "Delivery",
}
# Static files by fixed name: (package file, media type). Never a path from the request.
_STATIC = {
    "dashboard.js": "text/javascript; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
}


def routes() -> list[BaseRoute]:
    return [
        Route("/", index, methods=["GET"]),
        Route("/messages/{id}", message_page, methods=["GET"]),
        Route("/profiles/{name}", profile_page, methods=["GET"]),
        Route("/static/dashboard.js", _static("dashboard.js"), methods=["GET"]),
        Route("/static/dashboard.css", _static("dashboard.css"), methods=["GET"]),
    ]


class Dashboard:
    """Middleware answering the dashboard's pages before the API's router sees the request.

    The pages are not part of the JSON API, so they are not among the app's routes (every one
    of which the OpenAPI document describes); anything that is not a dashboard ``GET`` passes
    through to the API unchanged. It sits inside ``BasicAuth``, so ``--http-auth`` covers it.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.router = Router(routes=routes())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and any(
            route.matches(scope)[0] is Match.FULL for route in self.router.routes
        ):
            try:
                await self.router(scope, receive, send)
            except ApiError as exc:  # outside the app's exception handlers: answer here
                body = f"<h1>{e(exc.error)}</h1><p>{e(exc.detail)}</p>"
                await _page(exc.error, body, exc.status)(scope, receive, send)
            return
        await self.app(scope, receive, send)


def e(value: object) -> str:
    """Escaped text for an element body or a quoted attribute value."""
    return escape("" if value is None else str(value), quote=True)


def _static(name: str) -> Any:
    media_type = _STATIC[name]
    body = (resources.files("sinkd.web") / "static" / name).read_bytes()

    async def serve(request: Request) -> Response:
        return Response(
            body,
            media_type=media_type,
            headers=SECURITY_HEADERS | {"Cache-Control": "no-cache"},
        )

    return serve


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    html = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>{e(title)} · sinkd</title>
<link rel="stylesheet" href="/static/dashboard.css">
</head>
<body>
<header class="top"><a class="brand" href="/">sinkd</a>
<span class="tagline">SMTP sink · corporate mail filter</span>
<nav><a href="/">Messages</a> <a href="/api/v1/openapi.json">API</a></nav></header>
<main>
{body}
</main>
<script src="/static/dashboard.js"></script>
</body>
</html>
"""
    return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)


def _not_found(detail: str) -> HTMLResponse:
    return _page(
        "Not found",
        f'<h1>Not found</h1><p class="muted">{e(detail)}</p>'
        '<p><a href="/">Back to messages</a></p>',
        status=404,
    )


def _store(request: Request) -> Store:
    sinkd: Sinkd = request.app.state.sinkd
    if sinkd.store is None:
        raise ApiError(503, "not ready", "the message store is not open")
    return sinkd.store


# --- shared fragments -------------------------------------------------------------------------


def badge(data: dict[str, Any]) -> str:
    verdict = str(data.get("verdict", ""))
    parts = [f'<span class="badge v-{e(verdict)}">{e(verdict)}</span>']
    disposition = data.get("disposition")
    if disposition in {"tagged", "junk"}:
        parts.append(f'<span class="marker">{e(disposition)}</span>')
    if data.get("stripped"):
        parts.append('<span class="marker m-stripped">stripped</span>')
    if data.get("released_at"):
        parts.append('<span class="marker">released</span>')
    return "".join(parts)


def deciding_reason(data: dict[str, Any]) -> str:
    for finding in data.get("findings") or []:
        if finding.get("decided"):
            return str(finding.get("reason", ""))
    return "accepted"


def _when(value: object) -> str:
    text = str(value or "")
    return text[:19].replace("T", " ")


def _envelope(data: dict[str, Any]) -> tuple[str, str]:
    envelope = data.get("envelope") or {}
    sender = envelope.get("mail_from") or "<>"
    rcpts = ", ".join(envelope.get("rcpt_to") or []) or "—"
    return sender, rcpts


# --- the list ---------------------------------------------------------------------------------


async def index(request: Request) -> Response:
    verdict = request.query_params.get("verdict") or None
    verdicts = [v.value for v in VerdictAction]
    if verdict not in verdicts:
        verdict = None
    store = _store(request)
    query = Query(verdict=verdict, limit=LIST_LIMIT)
    total = await store.count(query)
    rows = await store.list(query)
    options = "".join(
        f'<option value="{e(v)}"{" selected" if v == verdict else ""}>{e(v)}</option>'
        for v in verdicts
    )
    body_rows = "".join(_row(row.data) for row in rows)
    empty = "" if rows else '<tr class="empty"><td colspan="6">No messages yet.</td></tr>'
    body = f"""
<div class="titlebar">
  <h1>Messages <span class="count" id="total">{total}</span></h1>
  <form method="get" action="/" class="filter">
    <label for="verdict-filter">Verdict</label>
    <select id="verdict-filter" name="verdict"><option value="">all</option>{options}</select>
    <button type="submit">Filter</button>
  </form>
  <span id="live" class="live" data-state="connecting">connecting…</span>
</div>
<table class="list" id="messages" data-verdict="{e(verdict or "")}">
<thead><tr><th>Verdict</th><th>Subject</th><th>From → To</th><th>Profile</th>
<th>Reason</th><th>Time</th></tr></thead>
<tbody>{body_rows}{empty}</tbody>
</table>
"""
    return _page("Messages", body)


def _row(data: dict[str, Any]) -> str:
    sender, rcpts = _envelope(data)
    message_id = e(data.get("id"))
    profile = data.get("profile") or ""
    return (
        f'<tr data-id="{message_id}" data-verdict="{e(data.get("verdict"))}">'
        f'<td class="nowrap">{badge(data)}</td>'
        f'<td><a href="/messages/{message_id}">{e(data.get("subject") or "(no subject)")}</a></td>'
        f'<td class="addr">{e(sender)} → {e(rcpts)}</td>'
        f'<td><a href="/profiles/{e(profile)}">{e(profile)}</a></td>'
        f'<td class="reason">{e(deciding_reason(data))}</td>'
        f'<td class="nowrap muted">{e(_when(data.get("received_at")))}</td></tr>'
    )


# --- one message ------------------------------------------------------------------------------


async def message_page(request: Request) -> Response:
    message_id = str(request.path_params["id"])
    from sinkd.web.messages import _ID  # the API's id shape

    if not _ID.fullmatch(message_id):
        return _not_found(f"{message_id!r} is not a message id")
    try:
        stored = await _store(request).get(message_id, with_raw=True)
    except NotFound:
        return _not_found(f"There is no message with id {message_id!r}.")
    return _page(str(stored.data.get("subject") or stored.id), _message_body(stored))


def _message_body(stored: StoredMessage) -> str:
    data = stored.data
    sender, rcpts = _envelope(data)
    reply = data.get("reply") or {}
    reply_text = " ".join(str(reply.get(k) or "") for k in ("code", "enhanced", "text")).strip()
    profile = data.get("profile") or ""
    summary = f"""
<div class="titlebar"><h1>{e(data.get("subject") or "(no subject)")}</h1>{badge(data)}</div>
<p class="reason-lead">{e(deciding_reason(data))}</p>
<dl class="facts">
  <dt>Verdict</dt><dd>{e(data.get("verdict"))} ({e(data.get("disposition"))})</dd>
  <dt>Score</dt><dd>{e(data.get("score"))}</dd>
  <dt>SMTP reply</dt><dd><code class="reply">{e(reply_text)}</code></dd>
  <dt>Profile</dt><dd><a href="/profiles/{e(profile)}">{e(profile)}</a></dd>
  <dt>From → To</dt><dd>{e(sender)} → {e(rcpts)}</dd>
  <dt>Stage</dt><dd>{e(data.get("stage"))}</dd>
  <dt>Received</dt><dd>{e(data.get("received_at"))}</dd>
  <dt>Id</dt><dd><code>{e(stored.id)}</code>
    <a href="/api/v1/messages/{e(stored.id)}">JSON</a></dd>
</dl>
"""
    return summary + _findings(data) + _renderings(stored) + _headers(stored.raw)


def _findings(data: dict[str, Any]) -> str:
    findings = data.get("findings") or []
    if not findings:
        return '<section><h2>Findings</h2><p class="muted">No filter said anything.</p></section>'
    groups: dict[str, list[dict[str, Any]]] = {}
    for finding in findings:
        groups.setdefault(str(finding.get("category", "")), []).append(finding)
    order = [*CATEGORY_TITLES, *(c for c in groups if c not in CATEGORY_TITLES)]
    out = ['<section><h2>Findings</h2><div class="findings">']
    for category in order:
        if category not in groups:
            continue
        out.append(
            f'<h3 class="cat">{e(CATEGORY_TITLES.get(category, category))}</h3>'
            '<table class="grid"><thead><tr><th>Code</th><th>Action</th><th>Score</th>'
            "<th>Reason</th></tr></thead><tbody>"
        )
        for f in groups[category]:
            decided = ' class="decided"' if f.get("decided") else ""
            mark = ' <span class="marker">decided</span>' if f.get("decided") else ""
            out.append(
                f"<tr{decided}><td><code>{e(f.get('code'))}</code>{mark}"
                f'<div class="muted small">{e(f.get("filter"))}</div></td>'
                f'<td>{e(f.get("action"))}</td><td class="num">{e(f.get("score"))}</td>'
                f'<td class="finding-reason">{e(f.get("reason"))}</td></tr>'
            )
        out.append("</tbody></table>")
    out.append("</div></section>")
    return "".join(out)


def _parse(raw: bytes) -> EmailMessage | None:
    try:
        parsed = email.message_from_bytes(raw, policy=email.policy.default)
    except Exception:
        return None
    return parsed if isinstance(parsed, EmailMessage) else None


def _rendering(raw: bytes | None) -> str | None:
    """The HTML part (or the text part, escaped, in ``<pre>``) as a document for srcdoc."""
    if raw is None:
        return None
    parsed = _parse(raw)
    if parsed is None:
        return None
    try:
        part = parsed.get_body(preferencelist=("html", "plain"))
        if part is None:
            return "<p><em>(no text or HTML part)</em></p>"
        content = part.get_content()
    except Exception as exc:  # a broken part: say so rather than fail the page
        return f"<p><em>(the body could not be decoded: {e(type(exc).__name__)})</em></p>"
    text = content if isinstance(content, str) else bytes(content).decode("utf-8", "replace")
    if part.get_content_type() == "text/html":
        return text
    style = "white-space:pre-wrap;font:14px/1.5 ui-monospace,monospace;margin:12px"
    return f'<pre style="{style}">{e(text)}</pre>'


def _frame(label: str, doc: str | None, empty: str) -> str:
    if doc is None:
        return f'<div class="frame-empty muted">{e(empty)}</div>'
    return (
        f'<iframe class="mail {e(label)}" sandbox="" referrerpolicy="no-referrer" '
        f'title="{e(label)} rendering" srcdoc="{e(doc)}"></iframe>'
    )


def _renderings(stored: StoredMessage) -> str:
    data = stored.data
    refused = data.get("verdict") == VerdictAction.REJECT.value or stored.raw is None
    original = _rendering(stored.raw)
    delivered = None if refused else _rendering(stored.filtered or stored.raw)
    stripped: list[str] = list(data.get("stripped") or [])
    stripped_html = (
        "<ul class='stripped'>" + "".join(f"<li>{e(s)}</li>" for s in stripped) + "</ul>"
        if stripped
        else '<p class="muted small">Nothing was stripped.</p>'
    )
    return f"""
<section><h2>Original and delivered</h2>
<div class="side">
  <div class="pane"><h3>Original (as sent)</h3>
    {_frame("original", original, "Refused before DATA: no message was received.")}</div>
  <div class="pane"><h3>Delivered (filtered)</h3>
    {_frame("filtered", delivered, "Nothing was delivered: the message was refused.")}
    <h4>Stripped</h4>{stripped_html}</div>
</div>
<p class="muted small">Captured HTML is shown in sandboxed frames: no scripts run and no
remote content loads.</p>
</section>
"""


def _headers(raw: bytes | None) -> str:
    parsed = _parse(raw) if raw is not None else None
    if parsed is None:
        return ""
    rows = "".join(
        f"<tr><th>{e(name)}</th><td>{e(value)}</td></tr>" for name, value in _items(parsed)
    )
    return f'<section><h2>Headers</h2><table class="grid headers">{rows}</table></section>'


def _items(parsed: Message) -> Iterable[tuple[str, str]]:
    for name, value in parsed.items():
        yield str(name), str(value)


# --- profiles ---------------------------------------------------------------------------------

_ACTION_GROUPS = (
    ("refuses", "Refuses", {"reject", "tempfail", "discard"}),
    ("strips", "Strips", {"strip"}),
    ("quarantines", "Quarantines", {"quarantine", "junk"}),
    ("scores", "Scores", {"score", "tag"}),
    ("allows", "Lets through", {"allow"}),
)


def _policy_items(filters: list[dict[str, Any]]) -> dict[str, list[str]]:
    """Every outcome in the filters, grouped by what it does, as one line each."""
    grouped: dict[str, list[str]] = {key: [] for key, _, _ in _ACTION_GROUPS}

    def visit(node: Any, spec: dict[str, Any], path: list[str]) -> None:
        if isinstance(node, dict):
            action = node.get("action")
            score = node.get("score")
            if isinstance(score, int | float) and score and action in (None, "score"):
                action = "score"
            if isinstance(action, str):
                _record(grouped, spec, path, node, action)
            for key, value in node.items():
                if isinstance(value, dict | list):
                    visit(value, spec, [*path, str(key)])
        elif isinstance(node, list):
            for item in node:
                label = item.get("id") if isinstance(item, dict) else None
                visit(item, spec, [*path, str(label)] if label else path)

    for spec in filters:
        visit(spec, spec, [])
    return grouped


def _record(
    grouped: dict[str, list[str]],
    spec: dict[str, Any],
    path: list[str],
    node: dict[str, Any],
    action: str,
) -> None:
    key = next((k for k, _, actions in _ACTION_GROUPS if action in actions), None)
    if key is None:
        return
    skip = {"rules", "on", "classes", "codes", "zones", "attachments", "default"}
    where = " › ".join(p.replace("_", " ") for p in path if p not in skip)
    what = f"{spec.get('name')} ({spec.get('kind')})" + (f": {where}" if where else "")
    extra = []
    score = node.get("score")
    if key == "scores" and isinstance(score, int | float) and score:
        extra.append(f"{score:+g} points")
    if node.get("describe"):
        extra.append(str(node["describe"]))
    if node.get("reply"):
        extra.append(f"reply {node['reply']}")
    if action not in {"reject", "strip", "quarantine", "score", "allow"}:
        extra.append(action)
    note = f' <span class="muted">— {e("; ".join(extra))}</span>' if extra else ""
    grouped[key].append(f"<b>{e(what)}</b>{note}")


async def profile_page(request: Request) -> Response:
    from sinkd.web.messages import _profile  # the API's lookup: by id among the loaded ones

    name = str(request.path_params["name"])
    try:
        loaded = _profile(request, name)
    except ApiError as exc:
        if exc.status == 404:
            return _not_found(f"There is no profile {name!r}.")
        raise
    data = dump(loaded.profile)
    grouped = _policy_items(list(data.get("filters") or []))
    sections = []
    for key, title, _ in _ACTION_GROUPS:
        items = grouped[key]
        inner = (
            "<ul>" + "".join(f"<li>{item}</li>" for item in items) + "</ul>"
            if items
            else '<p class="muted">Nothing.</p>'
        )
        sections.append(f'<section class="policy {e(key)}"><h2>{e(title)}</h2>{inner}</section>')
    thresholds = (data.get("scoring") or {}).get("thresholds") or {}
    threshold_rows = "".join(
        f"<tr><th>{e(k)}</th><td class='num'>{e(v)}</td></tr>"
        for k, v in thresholds.items()
        if v is not None
    )
    models = "".join(
        f"<li>{e(m.get('what'))}<div class='muted small'>Source: {e(m.get('source'))}</div></li>"
        for m in data.get("models") or []
    )
    extends = data.get("extends")
    extends_html = (
        f'<p>Extends <a href="/profiles/{e(extends)}">{e(extends)}</a>.</p>' if extends else ""
    )
    body = f"""
<div class="titlebar"><h1>{e(data.get("title"))}</h1><code>{e(data.get("id"))}</code></div>
<p class="lead">{e(data.get("description"))}</p>
{extends_html}
<div class="policy-grid">{"".join(sections)}</div>
<section><h2>Score thresholds</h2>
{
        f'<table class="grid narrow">{threshold_rows}</table>'
        if threshold_rows
        else '<p class="muted">No score thresholds: scores are recorded only.</p>'
    }
</section>
<section><h2>What it models (sources)</h2><ul class="models">{models}</ul></section>
"""
    return _page(str(data.get("title") or name), body)
