"""The captured message as a page of its own, for the dashboard's sandboxed frames.

``/messages/{id}/render/original`` and ``/messages/{id}/render/filtered`` answer the HTML part
(or the text part, escaped) with their own Content-Security-Policy: no scripts, no remote loads
(``img-src data:``) and the CSP ``sandbox`` directive, so that the document is sandboxed even
when opened directly rather than in the message page's ``<iframe sandbox>``. With
``?remote_images=1`` the policy allows ``img-src http: https:`` and nothing else: still no
scripts, styles, fonts or frames from anywhere.

``cid:`` images (RFC 2392) are shown from the message's own parts: the rendering's ``cid:``
references point at ``/messages/{id}/render/{which}/cid/{content-id}`` (``sinkd.web.cid``),
which answers only a raster image part of that same copy (the filtered copy lacks what
stripping removed, so those stay broken), and the frame's ``img-src`` names exactly that path,
so a ``cid:`` image never falls back to the network and the toggle is unchanged.

The original is marked where the filters stripped something (``sinkd.web.marking``): an
attribute with a per-response random name and a label element, styled by one appended
``<style>``. Marks add attributes and escaped text only; they never take anything out of the
hostile HTML, so it stays exactly as contained as unmarked. Nothing here builds a file path.
"""

from __future__ import annotations

import email
import email.policy
import secrets
from email.message import EmailMessage
from html import escape
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Route

from sinkd.core.html import HTML_CLASSES
from sinkd.errors import NotFound
from sinkd.services.records import StoredVerdict
from sinkd.store import StoredMessage
from sinkd.web.cid import find_image, with_part_urls
from sinkd.web.common import MESSAGE_ID, context

WHICH = ("original", "filtered")
IMAGES_BLOCKED = "data:"
IMAGES_ALLOWED = "data: http: https:"  # the toggle: remote images, and never anything else


def frame_csp(remote_images: bool, parts: str | None = None) -> str:
    """The frame's policy; ``parts`` is the source of its own ``cid:`` images (an origin and
    the part route's path prefix), when the rendering references any."""
    images = IMAGES_ALLOWED if remote_images else IMAGES_BLOCKED
    if parts is not None:
        images += f" {parts}"
    return (
        f"default-src 'none'; img-src {images}; style-src 'unsafe-inline'; font-src data:; "
        "script-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'self'; sandbox"
    )


# The part route's answer: an image (or nothing), never a document that could run anything.
PART_CSP = "default-src 'none'; sandbox"
_PART_HEADERS = {
    "Content-Security-Policy": PART_CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def routes() -> list[BaseRoute]:
    return [
        Route("/messages/{id}/render/{which}", render, methods=["GET"]),
        Route("/messages/{id}/render/{which}/cid/{cid:path}", part_image, methods=["GET"]),
    ]


def remote_images_on(request: Request) -> bool:
    """The toggle: only the exact value ``1`` turns remote images on."""
    return request.query_params.get("remote_images") == "1"


def _frame_response(
    body: str, remote_images: bool, status: int = 200, parts: str | None = None
) -> HTMLResponse:
    return HTMLResponse(
        body,
        status_code=status,
        headers={
            "Content-Security-Policy": frame_csp(remote_images, parts),
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
            "Cache-Control": "no-store",
        },
    )


def _note(text: str) -> str:
    style = "font:14px/1.5 system-ui,sans-serif;color:#6b7385;margin:24px;text-align:center"
    return f'<p style="{style}">{escape(text)}</p>'


async def render(request: Request) -> Response:
    remote = remote_images_on(request)
    message_id = str(request.path_params["id"])
    which = str(request.path_params["which"])
    if which not in WHICH or not MESSAGE_ID.fullmatch(message_id):
        return _frame_response(_note("No such rendering."), False, 404)
    try:
        stored = await context(request).messages.get(message_id, with_raw=True)
    except NotFound:
        return _frame_response(_note(f"There is no message with id {message_id}."), False, 404)
    if stored.raw is None:
        return _frame_response(_note("Refused before DATA: no message was received."), remote)
    if which == "original":
        doc = marked_original(stored)
    elif StoredVerdict.from_json(stored.data).refused:
        return _frame_response(_note("Nothing was delivered: the message was refused."), remote)
    else:
        doc, _ = rendering(stored.filtered or stored.raw)
    path = f"/messages/{message_id}/render/{which}/cid/"
    doc, inline = with_part_urls(doc, path)
    return _frame_response(doc, remote, parts=_source(request, path) if inline else None)


def _source(request: Request, path: str) -> str:
    """A CSP source for ``path`` on this server: the origin the browser used (the host guard
    has checked its Host) with the path prefix, so the frame may load its own parts and no
    other URL of the dashboard. CSP host-sources have no IPv6 literals, so there the origin
    stands as ``'self'`` (CSP 3's self-origin is the document URL's origin, which Chromium
    keeps for a sandboxed document too)."""
    url = request.url
    if url.hostname is not None and ":" in url.hostname:
        return "'self'"
    return f"{url.scheme}://{url.netloc}{path}"


async def part_image(request: Request) -> Response:
    """A ``cid:`` image of one copy of one message: the part's bytes under its declared raster
    type, or an empty 404 (no such message or part, not an image, a refused copy) that a
    browser shows as a broken image rather than an error page."""
    message_id = str(request.path_params["id"])
    which = str(request.path_params["which"])
    cid = str(request.path_params["cid"])
    if which not in WHICH or not MESSAGE_ID.fullmatch(message_id):
        return _no_image()
    try:
        stored = await context(request).messages.get(message_id, with_raw=True)
    except NotFound:
        return _no_image()
    if which == "original":
        raw = stored.raw
    elif stored.raw is None or StoredVerdict.from_json(stored.data).refused:
        raw = None  # nothing was delivered: no delivered images either
    else:
        raw = stored.filtered or stored.raw
    parsed = None if raw is None else parse_message(raw)
    found = None if parsed is None else find_image(parsed, cid)
    if found is None:
        return _no_image()
    body, media_type = found
    return Response(body, media_type=media_type, headers=_PART_HEADERS)


def _no_image() -> Response:
    return Response(b"", status_code=404, headers=_PART_HEADERS)


def parse_message(raw: bytes) -> EmailMessage | None:
    """The message parsed for display, or None when it cannot be."""
    try:
        parsed = email.message_from_bytes(raw, policy=email.policy.default)
    except Exception:
        return None
    return parsed if isinstance(parsed, EmailMessage) else None


def rendering(raw: bytes) -> tuple[str, bool]:
    """The HTML part as a document (True), or the text part escaped in ``<pre>`` (False)."""
    parsed = parse_message(raw)
    if parsed is None:
        return _note("The message could not be parsed."), False
    try:
        part = parsed.get_body(preferencelist=("html", "plain"))
        if part is None:
            return _note("The message has no text or HTML part."), False
        content = part.get_content()
    except Exception as exc:  # a broken part: say so rather than fail the page
        return _note(f"The body could not be decoded ({type(exc).__name__})."), False
    text = content if isinstance(content, str) else bytes(content).decode("utf-8", "replace")
    if part.get_content_type() == "text/html":
        return text, True
    style = "white-space:pre-wrap;font:14px/1.5 ui-monospace,monospace;margin:12px"
    return f'<pre style="{style}">{escape(text)}</pre>', False


def stripped_classes(data: dict[str, Any]) -> frozenset[str]:
    """The HTML classes the stored verdict's strip findings removed (``MIME_*`` with
    ``detail.class``), when anything was stripped at all."""
    if not data.get("stripped"):
        return frozenset()
    classes = set()
    for finding in data.get("findings") or []:
        cls = (finding.get("detail") or {}).get("class")
        if finding.get("action") == "strip" and cls in HTML_CLASSES:
            classes.add(str(cls))
    return frozenset(classes)


def marked_original(stored: StoredMessage) -> str:
    """The original rendering with what the filters stripped marked in place."""
    assert stored.raw is not None
    doc, is_html = rendering(stored.raw)
    classes = stripped_classes(stored.data)
    if not is_html or not classes:
        return doc
    # Imported here: marking brings the HTML policy's walk and tinycss2, which only this view
    # needs (selectolax itself is loaded already, for cid: references).
    from sinkd.web.marking import MARK_TAG, mark_html

    attr = f"data-sinkd-{secrets.token_hex(6)}"  # a mail cannot know it, so cannot forge marks
    marked, count = mark_html(doc, classes, attr)
    if not count:
        return doc
    return marked + _mark_style(attr, MARK_TAG)


def _mark_style(attr: str, tag: str) -> str:
    colour = "#c2185b"
    label = (
        "all:initial!important;display:inline-block!important;margin:3px 4px!important;"
        f"padding:1px 8px!important;border-radius:4px!important;background:{colour}!important;"
        "color:#fff!important;font:600 11px/1.6 system-ui,-apple-system,sans-serif!important;"
        "visibility:visible!important;opacity:1!important;position:static!important;"
        "max-width:95%!important;white-space:normal!important;text-align:left!important;"
        "letter-spacing:normal!important;text-transform:none!important"
    )
    return (
        "<style>"
        f"[{attr}=removed]{{outline:2px dashed {colour}!important;outline-offset:2px!important}}"
        f"[{attr}=changed]{{outline:2px dotted {colour}!important;outline-offset:2px!important}}"
        f"{tag}[{attr}=label]{{{label}}}"
        "</style>"
    )
