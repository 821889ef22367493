"""What every dashboard page shares: the page frame and its security headers, escaping, the
verdict badge, the banner for checks that could not judge, and reading the path's stored
message.

Owns those fragments so that the page modules (``dashboard``, ``compare``, ``renderings``)
build on one public place rather than on each other. Every value passes through ``e()``;
captured HTML never appears here.
"""

from __future__ import annotations

from collections.abc import Iterable
from html import escape
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from sinkd.core.model import Unjudged
from sinkd.errors import NotFound
from sinkd.services.records import StoredFinding, StoredVerdict
from sinkd.store import StoredMessage
from sinkd.web.common import MESSAGE_ID, context

NO_DNS_DATA = Unjudged.NO_DNS_DATA.value

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


def e(value: object) -> str:
    """Escaped text for an element body or a quoted attribute value."""
    return escape("" if value is None else str(value), quote=True)


def page(title: str, body: str, status: int = 200) -> HTMLResponse:
    html = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>{e(title)} · sinkd</title>
<link rel="icon" href="data:,">
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


def not_found(detail: str) -> HTMLResponse:
    return page(
        "Not found",
        f'<h1>Not found</h1><p class="muted">{e(detail)}</p>'
        '<p><a href="/">Back to messages</a></p>',
        status=404,
    )


def badge(
    verdict: str, *, disposition: str | None = None, stripped: bool = False, released: bool = False
) -> str:
    """The verdict as a coloured badge, with markers for a tagged or junk disposition, for
    stripped content and for a released quarantine."""
    parts = [f'<span class="badge v-{e(verdict)}">{e(verdict)}</span>']
    if disposition in {"tagged", "junk"}:
        parts.append(f'<span class="marker">{e(disposition)}</span>')
    if stripped:
        parts.append('<span class="marker m-stripped">stripped</span>')
    if released:
        parts.append('<span class="marker">released</span>')
    return "".join(parts)


def verdict_badge(stored: StoredVerdict) -> str:
    """``badge`` for a stored verdict."""
    return badge(
        stored.verdict,
        disposition=stored.disposition,
        stripped=bool(stored.stripped),
        released=stored.released_at is not None,
    )


def relay_fact(data: dict[str, Any]) -> str:
    """The message page's relay line (``--relay``): status, attempts and the last reply, or
    nothing when the message was not queued for relaying."""
    relay = data.get("relay")
    if not isinstance(relay, dict):
        return ""
    reply = relay.get("last_reply")
    if isinstance(reply, dict) and "error" in reply:
        shown = str(reply["error"])
    elif isinstance(reply, dict):
        shown = " ".join(str(reply.get(k) or "") for k in ("code", "enhanced", "text")).strip()
    else:
        shown = "no attempt yet"
    attempts = int(relay.get("attempts") or 0)
    when = relay.get("next_attempt_at") if relay.get("status") == "queued" else None
    retry = f", next attempt {_utc(str(when))}" if when else ""
    return (
        f'<dt>Relay</dt><dd id="relay"><span class="marker relay-{e(relay.get("status"))}">'
        f"{e(relay.get('status'))}</span> after {attempts} attempt{'' if attempts == 1 else 's'}"
        f'{e(retry)}: <code class="reply">{e(shown)}</code></dd>'
    )


def release_button(stored: StoredVerdict, message_id: str) -> str:
    """The message page's Release button for a quarantined message not released yet; it
    posts to the API's release endpoint (``/static/dashboard.js``), so a release from the
    dashboard is the API's, relay included (``--relay``)."""
    if stored.verdict != "quarantine" or stored.released_at is not None:
        return ""
    return (
        f'<button class="button" type="button" id="release-button" data-id="{e(message_id)}">'
        'Release</button><span id="release-error" class="muted"></span>'
    )


def _utc(value: str) -> str:
    return value[:19].replace("T", " ") + " UTC"


async def stored_message(request: Request) -> StoredMessage | Response:
    """The stored message (with its bytes) the path's ``{id}`` names, or the 404 page."""
    message_id = str(request.path_params["id"])
    if not MESSAGE_ID.fullmatch(message_id):  # the API's id shape
        return not_found(f"{message_id!r} is not a message id")
    try:
        return await context(request).messages.get(message_id, with_raw=True)
    except NotFound:
        return not_found(f"There is no message with id {message_id!r}.")


def unjudged_notes(findings: Iterable[StoredFinding]) -> str:
    """A plain banner when checks were judged without DNS data (naming the checks, the names
    and how to give the data) and when a check could not answer (the verdict is incomplete)."""
    findings = list(findings)
    no_data = [f for f in findings if f.unjudged == NO_DNS_DATA]
    other = [f for f in findings if f.unjudged not in (None, NO_DNS_DATA)]
    out = []
    if no_data:
        names: list[str] = []
        for finding in no_data:
            for name in finding.detail.get("dns_names") or ():
                if str(name) not in names:
                    names.append(str(name))
        codes = ", ".join(dict.fromkeys(f.code for f in no_data))
        out.append(
            '<p class="note dns-note" id="dns-note"><strong>Judged without DNS data.</strong> '
            f"sinkd's DNS is offline and no fixture has data for {e(', '.join(names))}, so "
            f"{e(codes)} could not be judged: they are recorded, never counted as a pass or a "
            "failure. Give the data with <code>--dns-zone FILE</code> or judge with "
            "<code>--dns live</code>.</p>"
        )
    if other:
        codes = ", ".join(dict.fromkeys(f.code for f in other))
        out.append(
            '<p class="note incomplete-note" id="incomplete-note"><strong>Not fully '
            f"judged.</strong> {e(codes)} could not answer, so the verdict was reached without "
            "them.</p>"
        )
    return "".join(out)
