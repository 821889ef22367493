"""The dashboard's what-if pages for one stored message: ``/compare/{id}`` (every profile's
verdict in one table) and ``/messages/{id}/report`` (the deliverability report of
``sinkd report``, population estimate included).

Owns only presentation and wiring: each profile's verdict comes from the API's re-evaluation
(``sinkd.web.messages.judge_stored``: the server's ``Judge`` with the stored envelope and
identity), the rows and the report page from ``sinkd.reports.deliverability``, the estimate
from the same ``Judge`` (``sinkd.core.population`` under it). Nothing is stored.
"""

from __future__ import annotations

import logging
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Route

from sinkd.core.model import Verdict
from sinkd.core.population import Population
from sinkd.errors import SinkdError
from sinkd.reports.deliverability import MessageReport, profile_row, render_html
from sinkd.services.records import StoredFinding, StoredVerdict
from sinkd.store import StoredMessage
from sinkd.web.common import ApiError, context
from sinkd.web.messages import judge_stored, profile_by_id, profile_names
from sinkd.web.pages import badge, e, page, stored_message, unjudged_notes

log = logging.getLogger(__name__)

# The report is one self-contained page: inline CSS and SVG, no scripts, nothing remote.
REPORT_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)


def routes() -> list[BaseRoute]:
    return [
        Route("/compare/{id}", compare_page, methods=["GET"]),
        Route("/messages/{id}/report", report_page, methods=["GET"]),
    ]


async def _stored_with_content(request: Request) -> StoredMessage | Response:
    """The path's stored message, or the page saying why it cannot be judged again (no such
    message; refused before DATA, so sinkd never had its content)."""
    stored = await stored_message(request)
    if isinstance(stored, Response) or stored.raw is not None:
        return stored
    return page(
        "Nothing to compare",
        f"<h1>Nothing to compare</h1><p class='muted'>Message <code>{e(stored.id)}</code> was "
        "refused before DATA: sinkd never received its content.</p>"
        f'<p><a href="/messages/{e(stored.id)}">Back to the message</a></p>',
        status=409,
    )


async def every_profile(request: Request, stored: StoredMessage) -> list[tuple[str, Verdict | str]]:
    """Each loaded profile's verdict on the stored message (or why there is none), by id."""
    out: list[tuple[str, Verdict | str]] = []
    for name in profile_names(request):
        try:
            verdicts = await judge_stored(request, profile_by_id(request, name), stored)
        except ApiError as exc:  # a broken profile file: one row says so, the others stand
            out.append((name, str(exc.detail)))
            continue
        out.extend((name, verdict) for verdict in verdicts)
    return out


# --- compare ----------------------------------------------------------------------------------


async def compare_page(request: Request) -> Response:
    stored = await _stored_with_content(request)
    if isinstance(stored, Response):
        return stored
    results = await every_profile(request, stored)
    record = StoredVerdict.from_json(stored.data)
    own = record.profile
    rows = "".join(_compare_row(name, result, name == own) for name, result in results)
    counts: dict[str, int] = {}
    for _, result in results:
        if not isinstance(result, str):
            key = "stripped" if result.stripped and result.verdict.value == "accept" else None
            key = key or result.verdict.value
            counts[key] = counts.get(key, 0) + 1
    summary = "".join(
        f'<span class="tally t-{e(k)}"><b>{n}</b> {e(k)}</span>'
        for k, n in sorted(counts.items(), key=lambda kv: _ORDER.index(kv[0]))
    )
    subject = record.subject or "(no subject)"
    # One banner for every profile's checks that could not judge (no DNS data, a scanner down),
    # as the message page and the report say it: the same names would repeat on every row.
    judged = [r for _, r in results if not isinstance(r, str)]
    notes = unjudged_notes(StoredFinding.from_json(f.to_json()) for v in judged for f in v.findings)
    body = f"""
<p class="crumbs"><a href="/">Messages</a> › <a href="/messages/{e(stored.id)}">{e(subject)}</a>
 › Compare</p>
<div class="titlebar"><h1>Every profile on this message</h1></div>
<p class="lead">The stored message, with its envelope, judged again by each profile sinkd has
loaded. Nothing is stored; the row marked <span class="marker">this message</span> is the
profile it was received under.</p>
{notes}
<p class="tallies" id="tallies">{summary}</p>
<table class="list compare" id="compare">
<thead><tr><th>Profile</th><th>Verdict</th><th>Stage</th><th>SMTP reply</th>
<th>Deciding reasons</th><th>Stripped</th><th class="num">Score</th></tr></thead>
<tbody>{rows}</tbody>
</table>
<p class="actions"><a class="button" href="/messages/{e(stored.id)}/report">Deliverability
report across the surveyed population →</a></p>
"""
    return page(f"Compare · {subject}", body)


_ORDER = ["accept", "stripped", "quarantine", "reject"]


def _compare_row(name: str, result: Verdict | str, own: bool) -> str:
    mark = ' <span class="marker">this message</span>' if own else ""
    profile = f'<a href="/profiles/{e(name)}">{e(name)}</a>{mark}'
    if isinstance(result, str):
        return (
            f'<tr data-profile="{e(name)}" data-verdict="error"><td>{profile}</td>'
            f'<td colspan="6" class="muted">Could not evaluate: {e(result)}</td></tr>'
        )
    row: dict[str, Any] = profile_row(result)
    reasons = "".join(f"<li>{e(r)}</li>" for r in row["reasons"])
    reasons_html = (
        f"<ul class='reasons'>{reasons}</ul>" if reasons else '<span class="muted">—</span>'
    )
    stripped = row["stripped"]
    if not stripped:
        stripped_html = '<span class="muted">—</span>'
    else:
        items = "".join(f"<li>{e(s)}</li>" for s in stripped)
        stripped_html = (
            f"<details><summary>{len(stripped)} item{'s' if len(stripped) != 1 else ''}"
            f"</summary><ul class='stripped'>{items}</ul></details>"
        )
    own_class = ' class="own"' if own else ""
    verdict = badge(row["verdict"], stripped=bool(row["stripped"]))
    incomplete = (
        ' <span class="marker incomplete">not fully judged</span>' if result.incomplete else ""
    )
    return (
        f'<tr{own_class} data-profile="{e(name)}" data-verdict="{e(row["verdict"])}">'
        f"<td>{profile}</td><td class='nowrap'>{verdict}{incomplete}</td>"
        f"<td>{e(row['stage'])}</td><td><code class='reply'>{e(row['reply'])}</code></td>"
        f"<td class='reason'>{reasons_html}</td><td>{stripped_html}</td>"
        f"<td class='num'>{result.score:.1f}</td></tr>"
    )


# --- report -----------------------------------------------------------------------------------


def _population(request: Request) -> Population:
    """The survey model over the loaded profiles, loaded once by the judge (its pipelines
    too)."""
    try:
        return context(request).judge.population()
    except SinkdError as exc:
        raise ApiError(422, "invalid population model", str(exc)) from None


async def report_page(request: Request) -> Response:
    stored = await _stored_with_content(request)
    if isinstance(stored, Response):
        return stored
    _population(request)  # an invalid model is a 422 before any profile is judged
    results = await every_profile(request, stored)
    verdicts = [v for _, v in results if not isinstance(v, str)]
    record = StoredVerdict.from_json(stored.data)
    assert stored.raw is not None  # _stored_with_content answered for a message without
    try:
        # The stored sender exactly as the message was judged: address, HELO, name, source,
        # real peer, AUTH user and TLS (services.records, the one place that reads them back).
        estimate = await context(request).judge.estimate(
            stored.raw, record.envelope, record.identity
        )
    except SinkdError as exc:
        raise ApiError(422, "cannot estimate", str(exc)) from None
    report = MessageReport(f"message {stored.id}", record.subject, verdicts, estimate)
    html = render_html([report], back=(f"/messages/{stored.id}", "Back to the message"))
    return HTMLResponse(
        html,
        headers={
            "Content-Security-Policy": REPORT_CSP,
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
        },
    )
