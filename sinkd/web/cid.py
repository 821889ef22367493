"""``cid:`` images in the dashboard's renderings, shown from the message's own parts.

Owns the two halves of RFC 2392 for the renderings: rewriting a rendering's ``cid:`` references
(``src``, ``background`` and ``poster`` attributes, CSS ``url(cid:...)`` in ``style``
attributes and ``<style>`` elements) to the part route of the same copy of the message, and
finding the part a ``cid:`` URL names in that copy (its ``Content-ID`` without the angle
brackets equals the URL's percent-decoded addr-spec, RFC 2392 §2). It must never fetch anything
(a ``cid:`` reference never falls back to the network), never serve a part of another message
or of the other copy, and never serve anything but a raster image: ``image/svg+xml`` is refused
(SVG is a document that can carry script, event handlers and external loads; it would be
contained by the route's CSP, but a raster-only list does not depend on that, and Gmail, among
other clients, does not show SVG in mail either). Like the rest of the renderings it treats the
HTML as hostile: it changes URL values only and leaves everything else as captured.
"""

from __future__ import annotations

import logging
import re
from email.message import EmailMessage
from urllib.parse import quote, unquote

from selectolax.lexbor import LexborHTMLParser

from sinkd.core.html.depth import is_document, too_deep

__all__ = ["SERVED_TYPES", "find_image", "with_part_urls"]

log = logging.getLogger(__name__)

# Raster formats a browser decodes as an image and nothing else. Declared types outside this
# list (image/svg+xml above all, or an unknown image/x-something) are not served.
SERVED_TYPES = frozenset(
    {
        "image/png",
        "image/apng",
        "image/gif",
        "image/jpeg",
        "image/jpg",  # not registered, but common in mail; still only decoded as an image
        "image/pjpeg",
        "image/webp",
        "image/avif",
        "image/bmp",
        "image/x-icon",
        "image/vnd.microsoft.icon",
    }
)
_URL_ATTRIBUTES = ("src", "background", "poster")
# CSS url() with a cid: target, quoted or not (CSS Values 4 §4.5.1).
_CSS_URL = re.compile(r"""url\(\s*(["']?)\s*cid:([^"')\s]*)\s*\1\s*\)""", re.IGNORECASE)
# Characters left as they are in the rewritten path; everything else is percent-encoded, so
# the URL never holds a quote, a parenthesis or a space (safe in an attribute and in CSS).
_PATH_SAFE = "@.-_~!$&*+,;="


def cid_of(url: str) -> str | None:
    """The Content-ID a ``cid:`` URL names (percent-decoded, RFC 2392 §2), else None."""
    value = url.strip()
    if value[:4].lower() != "cid:":
        return None
    return unquote(value[4:]).strip()


def with_part_urls(html: str, base: str) -> tuple[str, bool]:
    """``html`` with every ``cid:`` reference pointing at ``base`` + the quoted Content-ID,
    and whether any was rewritten. Unchanged (and False) without a ``cid:`` reference, or
    when it is too deeply nested to parse cheaply (the images then stay broken)."""
    if "cid:" not in html.lower() or too_deep(html) is not None:
        return html, False
    tree = LexborHTMLParser(html, is_fragment=not is_document(html))
    rewritten = 0

    def part_url(cid: str) -> str:
        return base + quote(cid, safe=_PATH_SAFE)

    def css(text: str) -> str:
        nonlocal rewritten

        def one(match: re.Match[str]) -> str:
            nonlocal rewritten
            rewritten += 1
            return f'url("{part_url(unquote(match[2]).strip())}")'

        return _CSS_URL.sub(one, text)

    for node in tree.css(", ".join(f"[{name}]" for name in _URL_ATTRIBUTES)):
        for name in _URL_ATTRIBUTES:
            value = node.attrs.get(name)
            cid = None if value is None else cid_of(value)
            if cid is not None:
                node.attrs[name] = part_url(cid)
                rewritten += 1
    for node in tree.css("[style]"):
        style = node.attrs.get("style") or ""
        if "cid:" in style.lower():
            node.attrs["style"] = css(style)
    for node in tree.css("style"):
        for child in list(node.iter(include_text=True)):
            text = child.text_content or ""
            if child.tag == "-text" and "cid:" in text.lower():
                # Only URLs change, into percent-encoded paths: no "</style" can appear.
                child.replace_with(css(text))
    if not rewritten:
        return html, False
    return tree.html or "", True


def find_image(parsed: EmailMessage, cid: str) -> tuple[bytes, str] | None:
    """The bytes and declared type of the part whose Content-ID is ``cid``, when it is a
    served raster image; None for no such part, another type, or an undecodable body."""
    for part in parsed.walk():
        if part.is_multipart():
            continue
        header = part.get("Content-ID")
        if header is None or _bare(str(header)) != cid:
            continue
        media_type = part.get_content_type()
        if media_type not in SERVED_TYPES:
            log.debug("cid %r names a %s part: not served", cid, media_type)
            return None
        try:
            body = part.get_payload(decode=True)
        except Exception:  # a broken transfer encoding: an empty image, not an error page
            return None
        return (body, media_type) if isinstance(body, bytes) and body else None
    return None


def _bare(content_id: str) -> str:
    """A Content-ID header's msg-id without its angle brackets (RFC 2045 §7, RFC 2392)."""
    value = content_id.strip()
    if value.startswith("<") and value.endswith(">"):
        value = value[1:-1]
    return value.strip()
