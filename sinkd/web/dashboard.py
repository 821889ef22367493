"""The dashboard: server-rendered HTML pages over the store and the profiles.

``/`` lists verdicts (live through ``/api/v1/events``; filters and keyset paging by plain
links), ``/messages/{id}`` explains one, ``/profiles/{name}`` states a policy in plain language;
the compare and report pages live in ``sinkd.web.compare``, the captured mail's own pages in
``sinkd.web.renderings``. Pages are Python string templates in which every value passes through
``e()`` (``html.escape``); captured HTML never appears in them, only in ``<iframe sandbox="">``
frames over the rendering endpoint. Every response carries ``CSP`` and ``nosniff``; the one
script and stylesheet are package files served under fixed names, so nothing here builds a file
path from request or message data.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from email.message import Message
from importlib import resources
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, Route, Router
from starlette.types import ASGIApp, Receive, Scope, Send

from sinkd.core.model import Category, VerdictAction
from sinkd.core.schema import dump
from sinkd.services.records import StoredFinding, StoredVerdict
from sinkd.store import Query, StoredMessage
from sinkd.web import compare, renderings
from sinkd.web.common import ApiError, context
from sinkd.web.messages import page_of, profile_by_id, profile_names
from sinkd.web.pages import CSP as CSP
from sinkd.web.pages import (
    SECURITY_HEADERS,
    e,
    not_found,
    page,
    relay_fact,
    release_button,
    stored_message,
    verdict_badge,
)
from sinkd.web.pages import unjudged_notes as unjudged_notes
from sinkd.web.renderings import parse_message, remote_images_on, stripped_classes

LIST_LIMIT = 50  # rows per page of the list
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
        *renderings.routes(),
        *compare.routes(),
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
                await page(exc.error, body, exc.status)(scope, receive, send)
            return
        await self.app(scope, receive, send)


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


# --- shared fragments -------------------------------------------------------------------------


def deciding_reason(stored: StoredVerdict) -> str:
    """The deciding finding's reason; for mail accepted without one, what was stripped."""
    deciding = stored.deciding
    if deciding is not None:
        return deciding.reason
    if stored.stripped:
        return "accepted after stripping " + ", ".join(_stripped_what(stored.findings))
    return "accepted"


def _stripped_what(findings: Iterable[StoredFinding]) -> list[str]:
    what = []
    for finding in findings:
        if finding.action == "strip":
            what.append((finding.html_class or finding.code).replace("_", " ").lower())
    return list(dict.fromkeys(what)) or ["content"]


def _when(value: str) -> str:
    return value[:19].replace("T", " ")


def _envelope(stored: StoredVerdict) -> tuple[str, str]:
    sender = stored.envelope.mail_from or "<>"
    rcpts = ", ".join(stored.envelope.rcpt_to) or "—"
    return sender, rcpts


# --- the list ---------------------------------------------------------------------------------


def _list_view(request: Request) -> tuple[Query, dict[str, str]]:
    """The list's filters and page from the query string. The page is a plain link, so a bad
    value (a hand-edited URL, two cursors, an old ``offset`` link) falls back to the default
    (the newest page) rather than failing."""
    params = request.query_params
    verdict = params.get("verdict") or ""
    if verdict not in {v.value for v in VerdictAction}:
        verdict = ""
    profile = params.get("profile") or ""
    if profile not in profile_names(request):
        profile = ""
    subject = (params.get("subject") or "").strip()[:200]
    before, after = _cursor(params.get("before")), _cursor(params.get("after"))
    if before is not None and after is not None:
        before = after = None
    query = Query(
        verdict=verdict or None,
        profile=profile or None,
        subject=subject or None,
        limit=LIST_LIMIT,
        before=before or None,  # before=0 names no row: the default view
        after=after,
    )
    return query, {"verdict": verdict, "profile": profile, "subject": subject}


def _cursor(text: str | None) -> int | None:
    """A page cursor (a ``seq``) from a link, or None for anything else."""
    return int(text) if text and text.isdigit() and len(text) < 10 else None


def _list_url(filters: dict[str, str], **cursor: int) -> str:
    """The list with these filters, at the page of ``before=`` or ``after=`` (or the newest)."""
    params = {k: v for k, v in filters.items() if v}
    params.update({k: str(v) for k, v in cursor.items()})
    return "/" + (f"?{urlencode(params)}" if params else "")


async def index(request: Request) -> Response:
    query, filters = _list_view(request)
    store = context(request).messages
    total = await store.count(query)
    listed = await page_of(store, query)
    rows = listed.rows
    verdicts = [v.value for v in VerdictAction]
    paged = query.before is not None or query.after is not None

    def options(values: Iterable[str], chosen: str) -> str:
        return "".join(
            f'<option value="{e(v)}"{" selected" if v == chosen else ""}>{e(v)}</option>'
            for v in values
        )

    filtered = any(filters.values())
    body_rows = "".join(_row(StoredVerdict.from_json(row.data)) for row in rows)
    if rows:
        empty = ""
    elif filtered or paged:
        empty = (
            '<tr class="empty"><td colspan="6"><b>No messages match.</b> '
            '<a href="/">Show all messages</a></td></tr>'
        )
    else:
        empty = (
            '<tr class="empty"><td colspan="6"><b>No messages yet.</b> Send one to sinkd\'s '
            "SMTP port and it appears here as soon as it is judged.</td></tr>"
        )
    # The page's position: how many matches are newer than its first row (an index range
    # count, as the list itself; the rows never move, only this number does).
    above = 0
    if rows and paged and rows[0].seq is not None:
        newer_query = dataclasses.replace(query, before=None, after=rows[0].seq)
        above = await store.count(newer_query, cursors=True)
    first = above + 1 if rows else 0
    last = above + len(rows)
    if listed.newer is not None:
        newest = f'<a class="page-link" id="newest" href="{e(_list_url(filters))}">« Newest</a>'
        newer = (
            f'<a class="page-link" rel="prev" id="newer" '
            f'href="{e(_list_url(filters, after=listed.newer))}">← Newer</a>'
        )
    else:
        newest = '<span class="page-link off">« Newest</span>'
        newer = '<span class="page-link off">← Newer</span>'
    older = (
        f'<a class="page-link" rel="next" id="older" '
        f'href="{e(_list_url(filters, before=listed.older))}">Older →</a>'
        if listed.older is not None
        else '<span class="page-link off">Older →</span>'
    )
    pager = (
        f'<nav class="pager" aria-label="pages">{newest}{newer}'
        f'<span class="range" id="range">{first}–{last} of {total}</span>{older}</nav>'
    )
    clear = '<a class="clear" href="/">Clear</a>' if filtered else ""
    body = f"""
<div class="titlebar">
  <h1>Messages <span class="count" id="total">{total}</span></h1>
  <span id="live" class="live" data-state="connecting">connecting…</span>
</div>
<form method="get" action="/" class="filter" id="filters">
  <label>Verdict <select id="verdict-filter" name="verdict"><option value="">all</option>
    {options(verdicts, filters["verdict"])}</select></label>
  <label>Profile <select id="profile-filter" name="profile"><option value="">all</option>
    {options(profile_names(request), filters["profile"])}</select></label>
  <label>Subject <input id="subject-filter" name="subject" type="search" maxlength="200"
    placeholder="contains…" value="{e(filters["subject"])}"></label>
  <button type="submit">Filter</button>{clear}
</form>
<table class="list" id="messages" data-verdict="{e(filters["verdict"])}"
  data-profile="{e(filters["profile"])}" data-subject="{e(filters["subject"])}"
  data-newest="{"0" if listed.newer is not None else "1"}">
<thead><tr><th>Verdict</th><th>Subject</th><th>From → To</th><th>Profile</th>
<th>Reason</th><th>Received</th></tr></thead>
<tbody>{body_rows}{empty}</tbody>
</table>
{pager}
"""
    return page("Messages", body)


def _row(stored: StoredVerdict) -> str:
    sender, rcpts = _envelope(stored)
    message_id = e(stored.id)
    profile = stored.profile
    return (
        f'<tr data-id="{message_id}" data-verdict="{e(stored.verdict)}">'
        f'<td class="nowrap">{verdict_badge(stored)}</td>'
        f'<td><a href="/messages/{message_id}">{e(stored.subject or "(no subject)")}</a></td>'
        f'<td class="addr">{e(sender)} → {e(rcpts)}</td>'
        f'<td><a href="/profiles/{e(profile)}">{e(profile)}</a></td>'
        f'<td class="reason">{e(deciding_reason(stored))}</td>'
        f'<td class="nowrap muted">{e(_when(stored.received_at))}</td></tr>'
    )


# --- one message ------------------------------------------------------------------------------


async def message_page(request: Request) -> Response:
    stored = await stored_message(request)
    if isinstance(stored, Response):
        return stored
    verdict = StoredVerdict.from_json(stored.data)
    title = verdict.subject or stored.id
    return page(title, _message_body(stored, verdict, remote_images_on(request)))


def _message_body(stored: StoredMessage, verdict: StoredVerdict, remote_images: bool) -> str:
    sender, rcpts = _envelope(verdict)
    reply_text = verdict.reply.line()
    profile = verdict.profile
    subject = verdict.subject or "(no subject)"
    actions = (
        (
            f'<a class="button" id="compare-link" href="/compare/{e(stored.id)}">Compare with '
            "every profile</a>"
            f'<a class="button" id="report-link" href="/messages/{e(stored.id)}/report">'
            "Deliverability report</a>"
        )
        if stored.raw is not None
        else ""
    ) + f'<a class="button quiet" href="/api/v1/messages/{e(stored.id)}/raw">Download .eml</a>'
    actions += release_button(verdict, stored.id)
    summary = f"""
<p class="crumbs"><a href="/">Messages</a> › {e(subject)}</p>
<div class="titlebar"><h1>{e(subject)}</h1>{verdict_badge(verdict)}</div>
<p class="reason-lead">{e(deciding_reason(verdict))}</p>
<p class="actions">{actions}</p>
<dl class="facts">
  <dt>Verdict</dt><dd>{e(verdict.verdict)} ({e(verdict.disposition)})</dd>
  <dt>Score</dt><dd>{e(verdict.score)}</dd>
  <dt>SMTP reply</dt><dd><code class="reply">{e(reply_text)}</code></dd>
  <dt>Profile</dt><dd><a href="/profiles/{e(profile)}">{e(profile)}</a></dd>
  <dt>From → To</dt><dd>{e(sender)} → {e(rcpts)}</dd>
  <dt>Stage</dt><dd>{e(verdict.stage)}</dd>
  <dt>Received</dt><dd>{e(verdict.received_at)}</dd>{relay_fact(stored.data)}
  <dt>Id</dt><dd><code>{e(stored.id)}</code>
    <a href="/api/v1/messages/{e(stored.id)}">JSON</a></dd>
</dl>
"""
    rendered = _renderings(stored, verdict, remote_images)
    notes = unjudged_notes(verdict.findings)
    return summary + notes + _findings(verdict.findings) + rendered + _headers(stored.raw)


def _findings(findings: Sequence[StoredFinding]) -> str:
    if not findings:
        return '<section><h2>Findings</h2><p class="muted">No filter said anything.</p></section>'
    groups: dict[str, list[StoredFinding]] = {}
    for finding in findings:
        groups.setdefault(finding.category, []).append(finding)
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
            decided = ' class="decided"' if f.decided else ""
            mark = ' <span class="marker">decided</span>' if f.decided else ""
            if f.unjudged:
                mark += f' <span class="marker unjudged">not judged: {e(f.unjudged)}</span>'
            out.append(
                f"<tr{decided}><td><code>{e(f.code)}</code>{mark}"
                f'<div class="muted small">{e(f.filter)}</div></td>'
                f'<td>{e(f.action)}</td><td class="num">{e(f.score)}</td>'
                f'<td class="finding-reason">{e(f.reason)}</td></tr>'
            )
        out.append("</tbody></table>")
    out.append("</div></section>")
    return "".join(out)


def _frame(stored: StoredMessage, which: str, remote_images: bool) -> str:
    """A sandboxed frame (no scripts, no same origin) over the rendering endpoint, which
    answers with its own CSP: the toggle widens that one to remote images, never the page's."""
    query = "?remote_images=1" if remote_images else ""
    src = f"/messages/{stored.id}/render/{which}{query}"
    return (
        f'<iframe class="mail {e(which)}" sandbox="" referrerpolicy="no-referrer" '
        f'title="{e(which)} rendering" src="{e(src)}"></iframe>'
    )


def _renderings(stored: StoredMessage, verdict: StoredVerdict, remote_images: bool) -> str:
    refused = verdict.refused
    stripped = verdict.stripped
    if stripped:
        items = "<ul class='stripped'>" + "".join(f"<li>{e(s)}</li>" for s in stripped) + "</ul>"
        many = len(stripped) > 5  # a long list folds away; the marks in the original remain
        stripped_html = (
            f"<details{'' if many else ' open'}><summary>{len(stripped)} item"
            f"{'s' if len(stripped) != 1 else ''} removed</summary>{items}</details>"
        )
    else:
        stripped_html = '<p class="muted small">Nothing was stripped.</p>'

    if stored.raw is None:
        original = _empty_frame("Refused before DATA: no message was received.")
    else:
        original = _frame(stored, "original", remote_images)
    if refused or stored.raw is None:
        delivered = _empty_frame("Nothing was delivered: the message was refused.")
    else:
        delivered = _frame(stored, "filtered", remote_images)
    legend = (
        '<p class="legend small"><span class="scissors">✂</span> Labels and dashed outlines '
        "mark what the filter removed.</p>"
        if stored.raw is not None and stripped_classes(stored.data)
        else ""
    )
    if remote_images:
        toggle = (
            '<div class="remote on" id="remote-images"><b>Remote images are loaded</b> from the '
            "sender's servers in this view (the sender may learn that the message was opened)."
            f' <a href="/messages/{e(stored.id)}">Block them again</a></div>'
        )
    else:
        toggle = (
            '<div class="remote" id="remote-images">Remote images are blocked, as most mail '
            f'clients do. <a href="/messages/{e(stored.id)}?remote_images=1">Load remote '
            "images</a></div>"
        )
    return f"""
<section><h2>Original and delivered</h2>
{toggle}
<div class="side">
  <div class="pane"><h3>Original (as sent)</h3>{legend}
    {original}</div>
  <div class="pane"><h3>Delivered (filtered)</h3>
    {delivered}
    <h4>Stripped</h4>{stripped_html}</div>
</div>
<p class="muted small">Captured HTML is shown in sandboxed frames under their own
Content-Security-Policy: no scripts run, and nothing remote loads unless you allow images.</p>
</section>
"""


def _empty_frame(text: str) -> str:
    return f'<div class="frame-empty muted">{e(text)}</div>'


def _headers(raw: bytes | None) -> str:
    parsed = parse_message(raw) if raw is not None else None
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
    name = str(request.path_params["name"])
    try:
        loaded = profile_by_id(request, name)  # the API's lookup: by id among the loaded ones
    except ApiError as exc:
        if exc.status == 404:
            return not_found(f"There is no profile {name!r}.")
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
    # A models entry gives a source or, where no document says, an assumption (schema.Spec).
    models = "".join(
        f"<li>{e(m.get('what'))}<div class='muted small'>"
        + (
            f"Source: {e(m['source'])}"
            if m.get("source")
            else f"Assumption: {e(m.get('assumption'))}"
        )
        + "</div></li>"
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
    return page(str(data.get("title") or name), body)
