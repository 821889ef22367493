"""Apply strip actions: produce the filtered message a recipient would get.

Owns turning a merged ``StripPlan`` into new message bytes: whole parts replaced by notices,
HTML parts rewritten without the stripped classes, everything else byte-for-byte as received.
Pure; it decides nothing (the filters do) and never parses the message twice (it reads the
tree and the HTML scans the filters already built).
"""

from __future__ import annotations

from sinkd.core.decoding import CHARSET_ALIASES
from sinkd.core.message import ParsedMessage
from sinkd.core.mimetree import rebuild
from sinkd.core.model import StripPlan


def _covered(path: str, removed: set[str]) -> bool:
    """Whether ``path`` lies inside a part that is removed whole."""
    if "" in removed:
        return True
    return any(path == r or path.startswith(r + ".") for r in removed)


def _encode(text: str, charset: str | None) -> bytes:
    """Text back into the part's own charset, so that its headers stay true.

    The codec is the one ``decode_text`` read the part with. A label it could not use (unknown,
    a bytes-to-bytes codec such as "base64", a NUL in the name) was read as UTF-8 or Latin-1,
    so UTF-8 written back reads back the same; characters the charset cannot hold (and lone
    surrogates a UTF-7 body can decode to) become character references, which HTML renders.
    """
    label = (charset or "").strip().strip("\"'").lower()
    codec = CHARSET_ALIASES.get(label, label) or "utf-8"
    try:
        return text.encode(codec, errors="xmlcharrefreplace")
    except (LookupError, ValueError, UnicodeError, TypeError):
        # LookupError: unknown or not a text encoding; ValueError: NUL in the name;
        # UnicodeError/TypeError: a codec that refuses the error handler (idna, undefined).
        return text.encode("utf-8", errors="xmlcharrefreplace")


def apply_strip(message: ParsedMessage, plan: StripPlan) -> tuple[bytes, list[str]]:
    """The filtered message and one line per removed item (part or HTML element)."""
    tree = message.tree
    raw = message.raw
    removed: list[str] = []
    replacements: dict[str, bytes] = {}
    removed_parts = set(plan.parts)
    for path, classes in plan.html.items():
        if _covered(path, removed_parts):
            continue
        node = tree.find(path)
        # The message's own HtmlBody: the scan the mime filter planned for this strip is reused.
        new_html, hits = message.html_body(node.text(raw)).strip(classes)
        if hits:
            replacements[path] = _encode(new_html, node.params.get("charset"))
            label = path or "body"
            removed.extend(f"part {label}: {hit.what}" for hit in hits)
    # In message order: part "10" comes after part "2".
    for path in sorted(plan.parts, key=lambda p: [int(n) for n in p.split(".") if n.isdigit()]):
        node = tree.find(path)
        name = f" {node.filename!r}" if node.filename else ""
        removed.append(f"part {path or 'body'}{name} ({node.content_type})")
    filtered = rebuild(raw, tree, remove=dict(plan.parts), replace_body=replacements)
    return filtered, removed
