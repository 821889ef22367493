"""Find and strip what corporate mail filters forbid in an HTML body: images, tracking pixels,
multimedia, active script and hidden text, judged on a real HTML5 parse (lexbor), never by regular
expressions over markup. Pure: no I/O, no logging, and no HTML makes it raise.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from html import escape
from typing import Any

import tinycss2  # type: ignore[import-untyped]
from selectolax.lexbor import LexborHTMLParser, LexborNode, SelectolaxError
from tinycss2.color3 import parse_color  # type: ignore[import-untyped]

from sinkd.core.html.depth import too_deep

__all__ = ["HTML_CLASSES", "HtmlHit", "HtmlReport", "inspect_html", "mark_html", "strip_html"]

HTML_CLASSES: tuple[str, ...] = (
    "images",
    "tracking_pixels",
    "multimedia",
    "active_script",
    "hidden_text",
)


@dataclass(frozen=True, slots=True)
class HtmlHit:
    """One forbidden thing: its class, a short human description and, for hidden text, the text."""

    cls: str
    what: str
    text: str | None = None
    remote: bool = False  # an image the mail client fetches from the network to show it
    # The element as a reason names it for a reader: its tag and one identifying thing, such as
    # "<iframe> from www.youtube.com", "inline <script>", "onclick handler on <a>".
    label: str = ""


@dataclass(frozen=True, slots=True)
class HtmlReport:
    """Every hit in one HTML body, in document order, or why the body could not be inspected."""

    hits: tuple[HtmlHit, ...]
    problem: str | None = None  # set when the HTML was not inspected (too deeply nested)

    def of(self, cls: str) -> list[HtmlHit]:
        return [hit for hit in self.hits if hit.cls == cls]

    def classes(self) -> frozenset[str]:
        return frozenset(hit.cls for hit in self.hits)


# Scans planned for stripping by inspect_html(plan=...), kept for the strip_html call that
# usually follows for the same HTML, so that one message is parsed and walked once, not twice.
# Filters run on the event loop's one thread; the cache stays tiny and entries are used once.
_PLANNED: OrderedDict[str, tuple[_Scan, frozenset[str], list[_Found]]] = OrderedDict()
_PLANNED_MAX = 8


def inspect_html(html: str, *, plan: Collection[str] = ()) -> HtmlReport:
    """Every hit of every class in ``html`` (a full document or a fragment).

    ``plan`` names the classes a later ``strip_html`` of the same text is likely to remove;
    the scan then prepares those edits too and is kept for it.
    """
    depth = too_deep(html)
    if depth is not None:
        return HtmlReport((), f"HTML nested more than {depth - 1} levels deep; not inspected")
    planned = frozenset(plan)
    scan = _Scan(html, planned)
    found = scan.run()
    if planned and any(f.hit.cls in planned for f in found):
        _PLANNED[html] = (scan, planned, found)
        while len(_PLANNED) > _PLANNED_MAX:
            _PLANNED.popitem(last=False)
    return HtmlReport(tuple(f.hit for f in found))


def strip_html(html: str, classes: Collection[str]) -> tuple[str, list[HtmlHit]]:
    """``html`` with everything of ``classes`` removed, and the hits that went with it.

    A fragment comes back as a fragment and a document as a document, both serialized by lexbor.
    The removed hits are those of ``classes`` plus any other hit inside a removed element (a
    tracking pixel goes with ``images``; an ``<object>``'s script hit goes with ``multimedia``).
    When nothing of ``classes`` is present, ``html`` is returned unchanged, byte for byte.
    """
    wanted = frozenset(classes)
    unknown = wanted.difference(HTML_CLASSES)
    if unknown:
        raise ValueError(f"unknown HTML classes {sorted(unknown)}; known: {list(HTML_CLASSES)}")
    if not wanted or too_deep(html) is not None:
        return html, []  # nothing asked, or too deep to parse safely (reported as unscannable)
    cached = _PLANNED.pop(html, None)
    if cached is not None and _same_edits(cached, wanted):
        scan, _, found = cached
    else:
        scan = _Scan(html, wanted)
        found = scan.run()
    if not any(f.hit.cls in wanted for f in found):
        return html, []
    scan.apply()
    removed = [f.hit for f in found if f.hit.cls in wanted or f.doomed]
    return scan.serialize(), removed


# What a mark's label says, by the class of its first hit.
_MARK_LABELS = {
    "images": "image removed",
    "tracking_pixels": "tracking pixel removed",
    "multimedia": "media removed",
    "active_script": "script removed",
    "hidden_text": "hidden text removed",
}
MARK_TAG = "sinkd-mark"  # the label element; a custom element name no mail uses for layout
# Labels inside these would not render (or would move <head> content into <body>).
_NO_LABEL_INSIDE = frozenset({"head", "svg", "math", "select", "template", "noscript"})


def mark_html(html: str, classes: Collection[str], attr: str) -> tuple[str, int]:
    """``html`` with what ``strip_html(html, classes)`` would edit marked instead, and how many
    marks there are.

    Every element strip_html would remove or change gets the attribute ``attr`` (``removed``
    or ``changed``), and a ``<sinkd-mark attr="label" title="what">`` element with a short label
    is inserted before it (or before hidden text), unless it sits where a label cannot render.
    Nothing of the mail is removed or rewritten, so the caller must keep treating the result as
    the hostile mail it is; what is added is attributes and text only (escaped when serialized),
    and ``attr`` must be an attribute name the caller chose (validated here), so that a mail
    cannot forge a mark a stylesheet selects by it.
    """
    if not _MARK_ATTR.fullmatch(attr):
        raise ValueError(f"mark attribute {attr!r}: expected data-[a-z0-9-]+")
    wanted = frozenset(classes)
    unknown = wanted.difference(HTML_CLASSES)
    if unknown:
        raise ValueError(f"unknown HTML classes {sorted(unknown)}; known: {list(HTML_CLASSES)}")
    if not wanted or too_deep(html) is not None:
        return html, 0
    scan = _Scan(html, wanted)
    found = scan.run()
    if not any(f.hit.cls in wanted for f in found):
        return html, 0
    marks = 0
    by_order: dict[int, list[_Action]] = {}
    for action in scan.actions:
        by_order.setdefault(action.order, []).append(action)
    for order, actions in sorted(by_order.items()):
        node = actions[0].node
        removed = any(a.kind in _ENDING for a in actions)
        hits = _mark_hits(scan, order, actions, removed)
        if node.tag == "-text":
            if any(a.kind == _REMOVE for a in actions) and _starts_soft(scan, actions[0].slot):
                continue  # one label per hidden passage: only at its first text node
        else:
            node.attrs[attr] = "removed" if removed else "changed"
        if _label_fits(node):
            node.insert_before(_label(hits, attr, removed or node.tag == "-text"))
            marks += 1
        elif node.tag != "-text":
            marks += 1
    return scan.serialize(), marks


_MARK_ATTR = re.compile(r"data-[a-z0-9][a-z0-9-]{0,40}")


def _mark_hits(scan: _Scan, order: int, actions: list[_Action], removed: bool) -> list[HtmlHit]:
    slots: list[int] = [a.slot for a in actions if a.slot >= 0]
    if not slots:
        start, end = scan.spans.get(order, (0, 0))
        slots = list(range(start, end))
    hits = []
    for index in slots:
        found = scan.slots[index]
        if found is None:
            continue
        if removed or (found.hit.cls in scan.strip and found.hit.cls != "hidden_text"):
            hits.append(found.hit)
    return hits


def _starts_soft(scan: _Scan, slot: int) -> bool:
    """False for the first text node of a hidden passage, True for its later ones."""
    seen = scan.labelled
    if slot in seen:
        return True
    seen.add(slot)
    return False


def _label_fits(node: LexborNode) -> bool:
    """Whether a label before ``node`` renders where it stands (a fragment's top-level nodes
    have no parent to insert into)."""
    parent = node.parent
    if parent is None or node.tag == "html":  # nothing renders outside the document element
        return False
    while parent is not None:
        if parent.tag in _NO_LABEL_INSIDE:
            return False
        parent = parent.parent
    return True


def _label(hits: list[HtmlHit], attr: str, removed: bool) -> LexborNode:
    if hits:
        text = _MARK_LABELS.get(hits[0].cls, "removed")
        if not removed:
            text += " from this element"
        quote = next((h.text for h in hits if h.text), None)
        if quote:
            text += f": “{_short(quote, 48)}”"
        title = "; ".join(dict.fromkeys(h.what for h in hits))
    else:
        text, title = "removed", "removed with the element around it"
    # Escaped text parsed as a fragment: it can only ever become this one element with text.
    fragment = LexborHTMLParser(
        f'<{MARK_TAG} {attr}="label" title="{escape(title, quote=True)}">'
        f"✂ {escape(text, quote=False)}</{MARK_TAG}>",
        is_fragment=True,
    )
    label = fragment.root
    assert label is not None
    return label


def _same_edits(cached: tuple[_Scan, frozenset[str], list[_Found]], wanted: frozenset[str]) -> bool:
    """Whether a scan planned for some classes makes exactly the edits ``wanted`` asks for:
    it planned them all, and the extra classes it planned found nothing to remove."""
    _, planned, found = cached
    extra = planned - wanted
    return wanted <= planned and not any(f.hit.cls in extra for f in found)


# --- Tuning -------------------------------------------------------------------------------------

# Text closer than this to its background (Euclidean distance in 0-255 RGB space, out of a
# maximum of 441.7) is unreadable: #eeeeee on white (29.4) still is, #e5e5e5 (45) no longer.
# Light grey footers in real newsletters sit at #999-#bbb (distance > 110), far from the line.
COLOUR_DISTANCE = 30.0
# Opacity at or below this is invisible in practice: templates hide things with opacity:0.01, and
# nobody sets a readable text to 5%.
MAX_HIDDEN_OPACITY = 0.05
# Off-screen positioning: every hiding recipe uses -999px to -9999px, while layouts never
# place content 500px outside the page.
OFFSCREEN_PX = -500.0
# Font sizes at or below these cannot be read: absolute sizes in px, relative (em, rem, %/100).
TINY_FONT_PX = 1.0
TINY_FONT_RELATIVE = 0.1
QUOTE_CHARS = 80
WHAT_VALUE_CHARS = 60

# Zero-width characters that make visible text carry hidden content or break words for filters.
# ZWNJ and ZWJ are also real typography (Persian and Indic ligature control, emoji sequences),
# so between two non-ASCII characters they are left alone.
_ZERO_WIDTH = frozenset("\u200b\u200c\u200d\u2060\ufeff")
_JOINERS = frozenset("\u200c\u200d")
_SOFT_HYPHEN = "\u00ad"
# A word with this many soft hyphens whose pieces average under this many characters is
# obfuscated ("V­i­a­g­r­a"), not hyphenated ("Donau­dampf­schiff­fahrt").
_SOFT_HYPHENS_MIN = 3
_SOFT_HYPHEN_PIECE = 3.0
# Invisible characters dropped from quotes and from the "is there any text" test; preheader
# padding is made of them (&zwnj;&nbsp;&#847;).
_DROP_INVISIBLE = {
    ord(c): None for c in "\u200b\u200c\u200d\u200e\u200f\u2060\u2061\u2062\u2063\u2064\ufeff"
}
_DROP_INVISIBLE.update({0x00AD: None, 0x034F: None, 0x180E: None})

_REMOTE = ("http://", "https://", "//")
# Browsers drop these before a URL's scheme (the URL standard's C0 control or space).
_URL_LEADING = "".join(chr(c) for c in range(33))
_CACHE_CHARS = 4096  # longer style or colour strings (data: URIs) are analysed, not cached
# Attributes whose value a browser navigates to or loads, hence where javascript: executes.
_URL_ATTRS = frozenset(
    {"href", "src", "action", "formaction", "data", "xlink:href", "background", "lowsrc", "dynsrc"}
)
# SVG animation elements can write a javascript: URL into an href at run time.
_SVG_ANIMATION_ATTRS = ("to", "from", "values")
_SCRIPT_SCHEMES = ("javascript:", "vbscript:")
# Elements that run code or load another document; <object> and <embed> are also multimedia.
_ACTIVE_ELEMENTS = frozenset({"iframe", "frame", "object", "embed", "applet"})
_MULTIMEDIA_ELEMENTS = frozenset({"video", "audio", "embed", "object", "bgsound"})
_FORM_CONTROLS = frozenset({"input", "button", "select", "textarea", "keygen"})
# Elements that change the walk's context for their subtree.
_CONTEXT_TAGS = frozenset({"svg", "form", "video", "audio", "picture"})
# Elements forbidden as such (or inside something forbidden); the rest need no tag checks.
_SPECIAL_TAGS = (
    frozenset({"img", "input", "source", "image", "picture", "script", "form", "meta"})
    | _MULTIMEDIA_ELEMENTS
    | _ACTIVE_ELEMENTS
    | _FORM_CONTROLS
)
_NOTHING: frozenset[str] = frozenset()
# Elements whose attributes (or defaults) set the text colour.
_COLOUR_TAGS = frozenset({"a", "font", "body"})
# Text in these is never rendered, so it can be neither hidden nor carry zero-width tricks.
_UNRENDERED = frozenset({"head", "title", "script", "style", "template", "xml"})
_IMAGE_PROPS = frozenset(
    {
        "background",
        "background-image",
        "list-style",
        "list-style-image",
        "border-image",
        "border-image-source",
    }
)
# CSS that runs code in old Internet Explorer (expression(), .htc behaviours) and old Firefox.
_SCRIPT_PROPS = frozenset({"behavior", "-moz-binding"})
# Properties a <style> rule must set for its matched elements to be worth a selector query.
_SHEET_PROPS = frozenset(
    {
        "display",
        "visibility",
        "opacity",
        "position",
        "left",
        "top",
        "text-indent",
        "height",
        "max-height",
        "width",
        "max-width",
        "overflow",
        "overflow-x",
        "overflow-y",
        "mso-hide",
        "font-size",
        "font",
        "color",
        "background",
        "background-color",
        "background-image",
    }
)
# Selector pieces that only match on interaction or generate content; never static hiding.
_DYNAMIC_PSEUDO = (":hover", ":focus", ":active", ":visited", ":target", "::", ":before", ":after")
# Unconditional @media preludes: their rules apply like top-level ones.
_ALWAYS_MEDIA = frozenset({"", "all", "screen", "only screen"})
_SHEET_CACHE_CHARS = 256 * 1024  # cache parsed <style> text up to this size

_WHITE = (255.0, 255.0, 255.0)
_BLACK = (0.0, 0.0, 0.0, 1.0)
_LINK_BLUE = (0.0, 0.0, 238.0, 1.0)  # the HTML default for <a href> without a colour

RGB = tuple[float, float, float]
RGBA = tuple[float, float, float, float]
Decls = Mapping[str, tuple[str, bool]]  # property -> (value without !important, important)

# tinycss2 1.3 renamed the declaration-block parser; 1.2 (the floor we support) has the old one.
_parse_block: Callable[..., Any] = getattr(
    tinycss2, "parse_blocks_contents", tinycss2.parse_declaration_list
)


# --- Inline style attributes --------------------------------------------------------------------


def _split_style(style: str) -> list[str]:
    """Declarations of a style attribute, split on ``;`` outside parentheses.

    A hand splitter, not tinycss2: newsletters carry hundreds of style attributes and this runs
    per message. Parentheses matter because data: URIs contain ``;`` (``url(data:a/b;base64,..)``).
    """
    pieces = style.split(";")
    if "(" not in style:
        return pieces
    merged: list[str] = []
    pending: str | None = None
    for piece in pieces:
        if pending is not None:
            pending += ";" + piece
            if pending.count("(") <= pending.count(")"):
                merged.append(pending)
                pending = None
        elif "(" in piece and piece.count("(") > piece.count(")"):
            pending = piece
        else:
            merged.append(piece)
    if pending is not None:
        merged.append(pending)
    return merged


def _declaration(piece: str) -> tuple[str, str, bool] | None:
    """``(property, value, important)`` of one ``prop: value`` piece, or None when it is not one."""
    prop, colon, value = piece.partition(":")
    if not colon:
        return None
    prop = prop.strip().lower()
    value = value.strip()
    if not prop:
        return None
    important = False
    bang = value.rfind("!")
    if bang >= 0 and value[bang + 1 :].strip().lower() == "important":
        value = value[:bang].rstrip()
        important = True
    return prop, value, important


def _declarations(style: str) -> dict[str, tuple[str, bool]]:
    decls: dict[str, tuple[str, bool]] = {}
    for piece in _split_style(style):
        parsed = _declaration(piece)
        if parsed is None:
            continue
        prop, value, important = parsed
        old = decls.get(prop)
        if old is None or important or not old[1]:
            decls[prop] = (value, important)
    return decls


@dataclass(frozen=True, slots=True)
class _Style:
    """What one element's declarations mean to the policy, computed once per distinct style."""

    hard: str | None = None  # why the element and its subtree are hidden outright
    display_none: bool = False
    font_tiny: bool | None = None  # None: inherited from the parent
    invisible: bool | None = None  # visibility:hidden; None: inherited
    color: str | None = None  # as written; set at all means links keep it
    fg: RGBA | None = None  # the colour, parsed; None when unset or not a colour
    bg: RGBA | None = None  # the background colour, parsed
    bg_image: bool = False
    image_props: tuple[str, ...] = ()
    image_url: str | None = None
    script_props: tuple[str, ...] = ()
    script_decl: str | None = None  # the first of them, as written
    width: float | None = None
    height: float | None = None
    inherited: bool = False  # changes anything the subtree inherits (hiding, colours, size)
    colour_only: bool = False  # of all that, sets only the text colour


_NO_STYLE = _Style()


def _inline_style(style: str) -> _Style:
    if len(style) > _CACHE_CHARS:
        return _analyze(_declarations(style))
    return _cached_inline_style(style)


@lru_cache(maxsize=4096)
def _cached_inline_style(style: str) -> _Style:
    # Cached by text: a newsletter repeats the same few dozen style strings hundreds of times.
    return _analyze(_declarations(style))


def _analyze(decls: Decls) -> _Style:
    def value(prop: str) -> str:
        entry = decls.get(prop)
        return entry[0].lower() if entry else ""

    # Each test first asks whether its property is there at all: most styles set none of them.
    reasons: list[str] = []
    display_none = "display" in decls and value("display") == "none"
    if display_none:
        reasons.append("display:none")
    if "opacity" in decls:
        opacity = _number(value("opacity"))
        if opacity is not None and opacity <= MAX_HIDDEN_OPACITY:
            reasons.append(f"opacity:{value('opacity')}")
    if "position" in decls and value("position") in ("absolute", "fixed"):
        for side in ("left", "top"):
            px = _px(value(side))
            if px is not None and px <= OFFSCREEN_PX:
                reasons.append(f"position:{value('position')};{side}:{value(side)}")
                break
    if "text-indent" in decls:
        indent = _px(value("text-indent"))
        if indent is not None and indent <= OFFSCREEN_PX:
            reasons.append(f"text-indent:{value('text-indent')}")
    if ("overflow" in decls or "overflow-x" in decls or "overflow-y" in decls) and {
        value("overflow"),
        value("overflow-x"),
        value("overflow-y"),
    } & {"hidden", "clip"}:
        for prop in ("height", "max-height", "width", "max-width"):
            if _px(value(prop)) == 0.0:
                reasons.append(f"{prop}:{value(prop)};overflow:hidden")
                break
    if "mso-hide" in decls and value("mso-hide") == "all":
        reasons.append("mso-hide:all")

    font_tiny = _font_tiny(value("font-size")) if "font-size" in decls else None
    if font_tiny is None and "font" in decls:
        font_tiny = _font_shorthand_tiny(value("font"))
    invisible: bool | None = None
    if "visibility" in decls:
        visibility = value("visibility")
        if visibility in ("hidden", "collapse"):
            invisible = True
        elif visibility == "visible":
            invisible = False

    bg_color: str | None = None
    bg_image = False
    if "background" in decls:
        bg_color, bg_image = _background(decls["background"][0][:_CACHE_CHARS])
    if "background-color" in decls:
        bg_color = decls["background-color"][0]
    if "background-image" in decls:
        bg_img = value("background-image")
        bg_image = bg_image or "url(" in bg_img or "gradient(" in bg_img or "image-set(" in bg_img

    image_props: list[str] = []
    image_url: str | None = None
    script_props: list[str] = []
    script_decl: str | None = None
    for prop, (raw, _important) in decls.items():
        if prop in _SCRIPT_PROPS:
            script_props.append(prop)
            script_decl = script_decl or f"{prop}:{raw}"
        elif "(" in raw or ":" in raw:  # url(), expression(), javascript:
            lowered = raw.lower()
            if prop in _IMAGE_PROPS and "url(" in lowered:
                image_props.append(prop)
                image_url = image_url or raw
            if "expression(" in lowered or "javascript:" in lowered:
                script_props.append(prop)
                script_decl = script_decl or f"{prop}:{raw}"

    color = decls["color"][0] if "color" in decls else None
    fg = _colour(color[:_CACHE_CHARS]) if color else None
    bg = _colour(bg_color[:_CACHE_CHARS]) if bg_color else None
    hard = "; ".join(reasons) or None
    others = bool(hard or font_tiny is not None or invisible is not None or bg_color or bg_image)
    inherited = others or bool(color)
    return _Style(
        hard=hard,
        display_none=display_none,
        font_tiny=font_tiny,
        invisible=invisible,
        color=color,
        fg=fg,
        bg=bg,
        bg_image=bg_image,
        image_props=tuple(image_props),
        image_url=image_url,
        script_props=tuple(script_props),
        script_decl=script_decl,
        width=_px(value("width")) if "width" in decls else None,
        height=_px(value("height")) if "height" in decls else None,
        inherited=inherited,
        colour_only=bool(color) and not others,
    )


def _reshows(decls: Decls) -> bool:
    """Whether declarations (of a responsive @media rule) undo hiding."""

    def value(prop: str) -> str:
        entry = decls.get(prop)
        return entry[0].lower() if entry else ""

    opacity = _number(value("opacity"))
    return (
        value("display") not in ("", "none")
        or value("visibility") == "visible"
        or value("overflow") == "visible"
        or any(value(p) not in ("", "0", "0px") for p in ("max-height", "height"))
        or (opacity is not None and opacity > MAX_HIDDEN_OPACITY)
        or ("font-size" in decls and _font_tiny(value("font-size")) is False)
    )


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


_UNIT_PX = {"px": 1.0, "pt": 4 / 3, "em": 16.0, "rem": 16.0, "pc": 16.0, "cm": 37.8, "mm": 3.78}


def _length(text: str) -> tuple[float, str] | None:
    """``(number, unit)`` of a CSS length such as ``-9999px`` or ``0``; None when it is not one."""
    text = text.strip()
    end = len(text)
    while end and (text[end - 1].isalpha() or text[end - 1] == "%"):
        end -= 1
    number = _number(text[:end])
    if number is None:
        return None
    return number, text[end:]


def _px(text: str) -> float | None:
    if not text:
        return None
    parsed = _length(text)
    if parsed is None:
        return None
    number, unit = parsed
    if unit == "" or unit == "%":
        return number if number == 0 or unit == "" else None
    factor = _UNIT_PX.get(unit)
    return None if factor is None else number * factor


def _font_tiny(text: str) -> bool | None:
    """True for unreadably small, False for a readable absolute size, None for "as the parent"."""
    if not text or text in ("inherit", "unset", "smaller", "larger"):
        return None
    parsed = _length(text)
    if parsed is None:
        return False  # a keyword (small, medium, ...) or calc(): readable
    number, unit = parsed
    if unit in ("em", "rem", "%"):
        factor = number / 100 if unit == "%" else number
        # Relative to a tiny parent stays tiny, and the parent decides that, hence None.
        return True if factor <= TINY_FONT_RELATIVE else None
    px = _px(text)
    if px is None:
        return False
    return px <= TINY_FONT_PX


def _font_shorthand_tiny(text: str) -> bool | None:
    """Font size inside the ``font`` shorthand (``font: 0/0 a`` is a classic hiding recipe)."""
    for token in text.split():
        size = token.split("/", 1)[0]
        if size and (size[0].isdigit() or size[0] == "."):
            parsed = _length(size)
            if parsed is not None and (parsed[1] or parsed[0] == 0):
                return _font_tiny(size)
    return None


# --- Colours (tinycss2, cached) -----------------------------------------------------------------


@lru_cache(maxsize=1024)
def _colour(text: str, legacy: bool = False) -> RGBA | None:
    """RGBA (0-255, alpha 0-1) of a CSS colour; None for unknown, ``inherit`` or ``currentColor``.

    ``legacy`` accepts what HTML attributes accept too: ``bgcolor="ffffff"`` without the hash.
    """
    parsed = parse_color(text.strip())
    if parsed is None and legacy:
        bare = text.strip()
        if len(bare) in (3, 6) and all(c in "0123456789abcdefABCDEF" for c in bare):
            parsed = parse_color("#" + bare)
    if parsed is None or isinstance(parsed, str):
        return None
    red, green, blue, alpha = (float(x) for x in parsed)
    return red * 255, green * 255, blue * 255, alpha


@lru_cache(maxsize=1024)
def _background(text: str) -> tuple[str | None, bool]:
    """The colour (as written) and whether there is an image in a ``background`` shorthand."""
    colour: str | None = None
    image = False
    for token in tinycss2.parse_component_value_list(text, skip_comments=True):
        kind = token.type
        if kind == "url":
            image = True
        elif kind == "function":
            name = str(token.lower_name)
            if name == "url" or name.endswith("gradient") or name == "image-set":
                image = True
            elif colour is None and isinstance(parse_color(token), tuple):
                colour = str(tinycss2.serialize([token]))
        elif kind in ("hash", "ident") and colour is None and isinstance(parse_color(token), tuple):
            colour = str(tinycss2.serialize([token]))
    return colour, image


def _hex(colour: RGB | RGBA) -> str:
    return "#" + "".join(f"{round(c):02x}" for c in colour[:3])


def _over(colour: RGBA, under: RGB) -> RGB:
    """``colour`` as it looks painted over ``under``."""
    alpha = colour[3]
    return (
        colour[0] * alpha + under[0] * (1 - alpha),
        colour[1] * alpha + under[1] * (1 - alpha),
        colour[2] * alpha + under[2] * (1 - alpha),
    )


def _near(text: RGBA, background: RGB) -> bool:
    red, green, blue = _over(text, background)
    distance2 = (red - background[0]) ** 2 + (green - background[1]) ** 2
    distance2 += (blue - background[2]) ** 2
    return distance2 < COLOUR_DISTANCE**2


# --- <style> blocks (tinycss2, cached) ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Rule:
    selector: str
    media: bool  # inside a conditional @media/@supports: responsive, not always applied
    decls: tuple[tuple[str, str, bool], ...]  # the declarations in _SHEET_PROPS
    images: tuple[str, ...]  # image declarations as written
    scripts: tuple[str, ...]  # script declarations as written


def _sheet_rules(css: str) -> tuple[_Rule, ...]:
    if len(css) <= _SHEET_CACHE_CHARS:
        return _cached_sheet_rules(css)
    return _parse_sheet(css)


@lru_cache(maxsize=256)
def _cached_sheet_rules(css: str) -> tuple[_Rule, ...]:
    # tinycss2 is pure Python: a 2 KB newsletter stylesheet costs about a millisecond, and the
    # same template arrives again and again.
    return _parse_sheet(css)


def _parse_sheet(css: str) -> tuple[_Rule, ...]:
    rules: list[_Rule] = []
    _collect_rules(tinycss2.parse_stylesheet(_tokenizable(css), True, True), False, 0, rules)
    return tuple(rules)


# tinycss2 reads every integer token with int(), and CPython refuses int() of a string longer
# than sys.get_int_max_str_digits() (4300 by default, CVE-2020-10735). A longer run of digits is
# cut to this many before tokenizing: the number stays one a browser clamps (10**3999 px is as
# out of range as the original), and nothing else of the sheet changes.
_MAX_DIGITS = 4000
# Anchored at the start of a run: unanchored, every digit of a 4000-digit run would start a
# failing match of its own (quadratic: 2.5 s for 1 MB of such runs).
_LONG_DIGITS = re.compile(rf"(?<![0-9])[0-9]{{{_MAX_DIGITS + 1},}}")


def _tokenizable(css: str) -> str:
    """``css`` with every run of digits cut to ``_MAX_DIGITS``, so that tinycss2 never raises."""
    if len(css) <= _MAX_DIGITS:
        return css
    return _LONG_DIGITS.sub(lambda match: match.group()[:_MAX_DIGITS], css)


def _collect_rules(nodes: Iterable[Any], media: bool, depth: int, rules: list[_Rule]) -> None:
    """The style rules among ``nodes``, in source order, those in @media/@supports included."""
    for node in nodes:
        if node.type == "qualified-rule":
            rule = _rule(node, media)
            if rule is not None:
                rules.append(rule)
        elif (
            node.type == "at-rule"
            and node.lower_at_keyword in ("media", "supports")
            and node.content is not None
            and depth < 4  # nesting is bounded so that hostile CSS cannot recurse deep
        ):
            prelude = " ".join(str(tinycss2.serialize(node.prelude)).lower().split())
            conditional = node.lower_at_keyword == "supports" or prelude not in _ALWAYS_MEDIA
            inner = tinycss2.parse_rule_list(node.content, True, True)
            _collect_rules(inner, media or conditional, depth + 1, rules)


def _rule(node: Any, media: bool) -> _Rule | None:
    selector = " ".join(str(tinycss2.serialize(node.prelude)).split())
    decls: list[tuple[str, str, bool]] = []
    images: list[str] = []
    scripts: list[str] = []
    for item in _parse_block(node.content, skip_comments=True, skip_whitespace=True):
        if item.type != "declaration":
            continue
        prop = str(item.lower_name)
        if not (
            prop in _SHEET_PROPS
            or prop in _SCRIPT_PROPS
            or any(token.type in ("function", "url") for token in item.value)
        ):
            continue  # serializing is the costly part, and most declarations are layout
        value = " ".join(str(tinycss2.serialize(item.value)).split())
        important = bool(item.important)
        lowered = value.lower()
        if prop in _IMAGE_PROPS and "url(" in lowered:
            images.append(f"{prop}:{value}")
        if prop in _SCRIPT_PROPS or "expression(" in lowered or "javascript:" in lowered:
            scripts.append(f"{prop}:{value}")
        if prop in _SHEET_PROPS:
            decls.append((prop, value, important))
    if not (decls or images or scripts):
        return None
    return _Rule(selector, media, tuple(decls), tuple(images), tuple(scripts))


def _rewrite_sheet(css: str, drop_images: bool, drop_scripts: bool) -> str:
    """``css`` without its image and/or script declarations; rules left empty are dropped."""
    out: list[str] = []
    sheet = tinycss2.parse_stylesheet(_tokenizable(css), skip_comments=False, skip_whitespace=False)
    for node in sheet:
        out.append(_rewrite_node(node, drop_images, drop_scripts, 0))
    return "".join(out)


def _rewrite_node(node: Any, drop_images: bool, drop_scripts: bool, depth: int) -> str:
    if node.type == "error":
        # What the parser could not make a rule of ("//-->" before the end of the sheet, a
        # stray "}"): tinycss2 keeps no text for it and refuses to serialize it, and browsers
        # drop it (CSS Syntax Level 3, #consume-a-qualified-rule: a rule cut off by the end of
        # the sheet is a parse error and yields no rule), so the rewritten sheet drops it too.
        return ""
    if (
        node.type == "at-rule"
        and node.lower_at_keyword in ("media", "supports")
        and node.content is not None
        and depth < 4
    ):
        inner = tinycss2.parse_rule_list(node.content, False, False)
        body = "".join(_rewrite_node(n, drop_images, drop_scripts, depth + 1) for n in inner)
        prelude = str(tinycss2.serialize(node.prelude))
        return f"@{node.at_keyword}{prelude}{{{body}}}"
    if node.type != "qualified-rule":
        return str(node.serialize())
    kept: list[str] = []
    dropped = False
    for item in _parse_block(node.content, skip_comments=True, skip_whitespace=True):
        if item.type != "declaration":
            continue
        prop = str(item.lower_name)
        lowered = str(tinycss2.serialize(item.value)).lower()
        image = prop in _IMAGE_PROPS and "url(" in lowered
        script = prop in _SCRIPT_PROPS or "expression(" in lowered or "javascript:" in lowered
        if (image and drop_images) or (script and drop_scripts):
            dropped = True
            continue
        kept.append(str(item.serialize()))
    if not dropped:
        return str(node.serialize())
    if not kept:
        return ""
    return f"{tinycss2.serialize(node.prelude)}{{{'; '.join(kept)}}}"


# --- Descriptions -------------------------------------------------------------------------------


def _short(text: str, limit: int = WHAT_VALUE_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _tag(tag: str, attrs: Mapping[str, str | None], *names: str) -> str:
    """``<tag name="value" ...>`` with only ``names`` (those present), values shortened."""
    parts = [tag]
    for name in names:
        if name in attrs:
            value = attrs[name]
            parts.append(name if value is None else f'{name}="{_short(value)}"')
    return "<" + " ".join(parts) + ">"


def _quote(text: str) -> str:
    """Hidden text as a reader of the hit wants it: no invisible characters, spaces collapsed."""
    collapsed = " ".join(text.translate(_DROP_INVISIBLE).split())
    return _short(collapsed, QUOTE_CHARS)


def _source_kind(src: str) -> str:
    lowered = src.strip().lower()
    if lowered.startswith("cid:"):
        return "cid: attachment"
    if lowered.startswith("data:"):
        return f"data: URI, {_size(len(src))}"
    if lowered.startswith(_REMOTE):
        return "remote http(s):"
    return "relative URL" if lowered else "no src"


_CSS_URL = re.compile(r"""url\(\s*['"]?([^'")\s]*)""", re.IGNORECASE)


def _css_url(text: str) -> str:
    """The first ``url(...)`` in CSS text, or ""."""
    match = _CSS_URL.search(text)
    return match.group(1) if match else ""


def _host(url: str) -> str | None:
    """The host of an http(s) or protocol-relative URL, lower-case and without a port."""
    text = url.strip(_URL_LEADING)
    if not text.lower().startswith(_REMOTE):
        return None
    authority = re.split(r"[/?#\\]", text.split("//", 1)[1], maxsplit=1)[0]
    host = authority.rpartition("@")[2]
    if not host.startswith("["):
        host = host.partition(":")[0]
    return _short(host.lower(), 60) or None


def _origin(src: str) -> str:
    """Where an element's content comes from, as a reason says it: " from cdn.example.com",
    " cid:logo@example" (an attached part), " (data: URI)", ' src="img/a.png"', or ""."""
    text = src.strip(_URL_LEADING)
    if not text:
        return ""
    host = _host(text)
    if host is not None:
        return f" from {host}"
    lowered = text.lower()
    if lowered.startswith("cid:"):
        return f" {_short(text, 40)}"
    if lowered.startswith("data:"):
        return " (data: URI)"
    return f' src="{_short(text, 40)}"'


def _size(chars: int) -> str:
    if chars >= 1024 * 1024:
        return f"{chars / (1024 * 1024):.1f} MB"
    return f"{max(1, round(chars / 1024))} KB"


def _script_url(value: str) -> str | None:
    """The scheme when ``value`` is a javascript:/vbscript: URL, read as browsers read it.

    The parser has already decoded entities (``&#106;avascript:``); browsers also drop leading
    spaces and control characters and any tab or newline, even inside the scheme.
    """
    colon = value.find(":")
    if colon < 0:
        return None  # relative URLs, fragments
    head = value[:colon]
    if not head.isalnum():  # https, mailto, cid, ... need no cleaning
        head = head.lstrip(_URL_LEADING).replace("\t", "").replace("\n", "").replace("\r", "")
    scheme = head.lower() + ":"
    return scheme if scheme in _SCRIPT_SCHEMES else None


def _dimension(style_px: float | None, attr: str | None) -> float | None:
    """An image's rendered size: CSS wins over the attribute, as in browsers."""
    if style_px is not None:
        return style_px
    if attr is None:
        return None
    parsed = _length(attr)
    if parsed is None or parsed[1] not in ("", "px"):
        return None
    return parsed[0]


def _suspicious_zero_width(text: str) -> list[str]:
    """The zero-width characters in ``text`` that are tricks, not typography."""
    if _ZERO_WIDTH.isdisjoint(text) and _SOFT_HYPHEN not in text:
        return []
    found: list[str] = []
    last = len(text) - 1
    for index, char in enumerate(text):
        if char not in _ZERO_WIDTH:
            continue
        if char in _JOINERS and 0 < index < last:
            before, after = text[index - 1], text[index + 1]
            if ord(before) > 127 and ord(after) > 127 and not before.isspace():
                continue  # emoji ZWJ sequence, Persian/Indic ZWNJ
        found.append(char)
    if _SOFT_HYPHEN in text:
        for word in text.split():
            pieces = word.split(_SOFT_HYPHEN)
            if len(pieces) - 1 >= _SOFT_HYPHENS_MIN and (
                sum(len(p) for p in pieces) / len(pieces) < _SOFT_HYPHEN_PIECE
            ):
                found.extend(_SOFT_HYPHEN * (len(pieces) - 1))
    return found


def _mark_zero_width(text: str) -> str:
    """``text`` with its zero-width characters made visible, cut around the first of them."""
    marked = "".join(
        f"[U+{ord(c):04X}]" if c in _ZERO_WIDTH or c == _SOFT_HYPHEN else c for c in text
    )
    marked = " ".join(marked.split())
    first = marked.find("[U+")
    if first > QUOTE_CHARS // 2:
        marked = "…" + marked[first - QUOTE_CHARS // 3 :]
    return _short(marked, QUOTE_CHARS)


def _clean_zero_width(text: str, found: Collection[str]) -> str:
    if _SOFT_HYPHEN in found:
        text = text.replace(_SOFT_HYPHEN, "")
    out: list[str] = []
    last = len(text) - 1
    for index, char in enumerate(text):
        if char in _ZERO_WIDTH:
            if char in _JOINERS and 0 < index < last:
                before, after = text[index - 1], text[index + 1]
                if ord(before) > 127 and ord(after) > 127 and not before.isspace():
                    out.append(char)
            continue
        out.append(char)
    return "".join(out)


def _is_document(html: str) -> bool:
    """Whether ``html`` is a whole document (kept whole) rather than a fragment (kept a fragment).

    A lexical look for the four document-level start tags, not a parse: lexbor's fragment and
    document modes differ in exactly this (a document moves <style> and <title> into <head>).
    """
    lowered = html.lower()
    for marker in ("<html", "<body", "<head", "<!doctype"):
        start = lowered.find(marker)
        while start >= 0:
            after = lowered[start + len(marker) : start + len(marker) + 1]
            if after in ("", ">", "/", " ", "\t", "\n", "\r", "\f"):
                return True
            start = lowered.find(marker, start + 1)
    return False


# --- The scan -----------------------------------------------------------------------------------


class _State:
    """What an element passes down to its subtree; never changed once handed down.

    A plain class rather than a dataclass: one is made for every element that changes anything,
    and dataclasses.replace() costs several times a hand copy.
    """

    __slots__ = (
        "bg",
        "display_none",
        "doomed",
        "faint",
        "fg",
        "form",
        "hard",
        "invisible",
        "media",
        "picture",
        "render",
        "soft",
        "svg",
        "tiny",
    )

    def __init__(self) -> None:
        self.render = True  # its text is rendered at all (False in <head>, <script>, ...)
        self.hard = False  # inside an element hidden outright (display:none, ...)
        self.display_none = False  # inside display:none or [hidden]: images here are unseen
        self.soft = -1  # index of the _Soft origin this text belongs to; -1 when visible
        self.tiny = False
        self.invisible = False
        self.faint = False  # fg is too close to bg to read
        self.fg: RGBA = _BLACK
        self.bg: RGB | None = _WHITE  # None: over a background image, contrast unknown
        self.svg = False
        self.media = False  # inside <video>/<audio>
        self.picture = False
        self.form = False  # inside a <form> that strip_html unwraps
        self.doomed = False  # inside an element that strip_html removes

    def copy(self) -> _State:
        new = _State.__new__(_State)
        new.render = self.render
        new.hard = self.hard
        new.display_none = self.display_none
        new.soft = self.soft
        new.tiny = self.tiny
        new.invisible = self.invisible
        new.faint = self.faint
        new.fg = self.fg
        new.bg = self.bg
        new.svg = self.svg
        new.media = self.media
        new.picture = self.picture
        new.form = self.form
        new.doomed = self.doomed
        return new


@dataclass(slots=True)
class _Found:
    hit: HtmlHit
    doomed: bool = False  # itself or inside an element that strip_html removes


@dataclass(slots=True)
class _Soft:
    """Text hidden by what a descendant can undo (colour, size, visibility): one hit for the
    outermost such element, filled in as its text nodes are met."""

    slot: int
    what: str
    doomed: bool = False
    texts: list[str] = field(default_factory=list)
    nodes: list[tuple[int, LexborNode]] = field(default_factory=list)


@dataclass(slots=True)
class _ZeroWidth:
    slot: int
    tag: str
    doomed: bool
    chars: list[str] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)


# strip_html's edits. They are applied in reverse document order, so a descendant is always
# edited before an ancestor that may be removed: a removed node must never be touched again.
_REMOVE, _UNWRAP, _DROP_ATTR, _SET_STYLE, _SET_SHEET, _SET_TEXT = range(6)
_ENDING = (_REMOVE, _UNWRAP)  # edits after which the node is gone


@dataclass(slots=True)
class _Action:
    order: int
    kind: int
    node: LexborNode
    arg: str = ""
    slot: int = -1  # the hit a text-node edit belongs to (elements: _Scan.spans)


class _Scan:
    """One parse and one depth-first walk; given classes to strip, it also plans the edits."""

    def __init__(self, html: str, strip: frozenset[str]) -> None:
        self.strip = strip
        self.document = _is_document(html)
        self.tree = LexborHTMLParser(html, is_fragment=not self.document)
        self.slots: list[_Found | None] = []  # hits in document order; None: not known yet
        self.softs: list[_Soft] = []
        self.zero_width: dict[int, _ZeroWidth] = {}
        self.actions: list[_Action] = []
        self.sheet_decls: dict[int, dict[str, tuple[str, bool]]] = {}
        self.sheet_selector: dict[int, str] = {}
        self.reshown: set[int] = set()
        self.sheet_hits: dict[int, list[tuple[str, str, str]]] = {}
        self.sheets_apply = False  # whether any node needs its mem_id looked up
        # Element order -> the range of slots its own hits took, for elements strip_html edits
        # (mark_html labels each edit with the hits that caused it).
        self.spans: dict[int, tuple[int, int]] = {}
        self.labelled: set[int] = set()  # mark_html: hidden passages already labelled

    # -- results --

    def run(self) -> list[_Found]:
        self._read_sheets()
        self._walk()
        for soft in self.softs:
            text = _quote("".join(soft.texts))
            if not text:
                continue  # spacers: colour or size "hides" only whitespace
            self.slots[soft.slot] = _Found(HtmlHit("hidden_text", soft.what, text), soft.doomed)
            if "hidden_text" in self.strip:
                # Node by node: what a descendant made visible again stays.
                for order, node in soft.nodes:
                    self.actions.append(_Action(order, _REMOVE, node, slot=soft.slot))
        for zw in self.zero_width.values():
            counts: dict[str, int] = {}
            for char in zw.chars:
                counts[char] = counts.get(char, 0) + 1
            listed = ", ".join(f"U+{ord(c):04X} ×{n}" for c, n in counts.items())
            hit = HtmlHit(
                "hidden_text",
                f"zero-width characters ({listed}) in <{zw.tag}>",
                _mark_zero_width("".join(zw.texts)),
            )
            self.slots[zw.slot] = _Found(hit, zw.doomed)
        return [found for found in self.slots if found is not None]

    def apply(self) -> None:
        # Later nodes first; on one node, attribute edits before the unwrap or removal ends it.
        self.actions.sort(key=lambda a: (a.order, a.kind not in _ENDING), reverse=True)
        root = self.tree.root if self.document else None
        for action in self.actions:
            node = action.node
            if action.kind == _REMOVE:
                if root is not None and node.mem_id == root.mem_id:
                    # <html hidden> (also what an <html hidden> tag later in the body makes, as
                    # its attributes move onto the root: WHATWG HTML, the "in body" insertion
                    # mode, parsing.html#parsing-main-inbody): the document element itself
                    # cannot go, everything inside it does.
                    _empty(node)
                    continue
                node.decompose()
            elif action.kind == _UNWRAP:
                node.unwrap(delete_empty=True)  # without it, lexbor leaves an empty form be
            elif action.kind == _DROP_ATTR:
                if action.arg in node.attrs:
                    del node.attrs[action.arg]
            elif action.kind == _SET_STYLE:
                if action.arg:
                    node.attrs["style"] = action.arg
                elif "style" in node.attrs:
                    del node.attrs["style"]
            elif action.kind == _SET_SHEET:
                text = node.first_child
                if text is not None:
                    text.replace_with(action.arg)
            elif action.kind == _SET_TEXT:
                node.replace_with(action.arg)  # a str becomes a text node, escaped on output

    def serialize(self) -> str:
        return self.tree.html or ""

    # -- <style> blocks --

    def _read_sheets(self) -> None:
        for style_node in self.tree.css("style"):
            css = _text_of(style_node)
            if not css.strip():
                continue
            found: list[tuple[str, str, str]] = []
            for rule in _sheet_rules(css):
                selector = _short(rule.selector, 40)
                for decl in rule.images:
                    what = f"{_short(decl)} in <style> rule {rule.selector!r}"
                    label = f"background image in <style> rule {selector!r}"
                    found.append(("images", what, label + _origin(_css_url(decl))))
                for decl in rule.scripts:
                    what = f"script in CSS {_short(decl)} in <style> rule {rule.selector!r}"
                    found.append(("active_script", what, f"script in <style> rule {selector!r}"))
                if rule.decls:
                    self._apply_rule(rule)
            if found:
                self.sheet_hits[style_node.mem_id] = found
        self.sheets_apply = bool(self.sheet_decls or self.reshown or self.sheet_hits)

    def _apply_rule(self, rule: _Rule) -> None:
        selectors = [rule.selector]
        if any(p in rule.selector for p in _DYNAMIC_PSEUDO):
            selectors = [
                s for s in rule.selector.split(",") if not any(p in s for p in _DYNAMIC_PSEUDO)
            ]
        decls = {prop: (value, important) for prop, value, important in rule.decls}
        if rule.media:
            # Responsive rules are not applied, but one that shows an element again on some
            # screens (a "mobile-only" block) makes its hiding layout, not a hidden message.
            if _reshows(decls):
                for node in self._select(selectors):
                    self.reshown.add(node.mem_id)
            return
        hides = _analyze(decls).hard is not None
        # No specificity: rules apply in source order, !important wins, then inline styles.
        for node in self._select(selectors):
            key = node.mem_id
            mine = self.sheet_decls.setdefault(key, {})
            for prop, (value, important) in decls.items():
                old = mine.get(prop)
                if old is None or important or not old[1]:
                    mine[prop] = (value, important)
            if hides:
                self.sheet_selector[key] = rule.selector

    def _select(self, selectors: list[str]) -> list[LexborNode]:
        if len(selectors) == 1:
            try:
                return self.tree.css(selectors[0])
            except SelectolaxError:
                selectors = selectors[0].split(",")  # one unsupported part must not void the rest
        nodes: list[LexborNode] = []
        for selector in selectors:
            try:
                nodes.extend(self.tree.css(selector))
            except SelectolaxError:
                continue  # what lexbor cannot parse, we cannot judge: it matches nothing
        return nodes

    # -- the walk --

    def _walk(self) -> None:
        tree = self.tree
        top: list[LexborNode] = []
        if self.document:
            if tree.root is not None:
                top.append(tree.root)
        else:
            node = tree.root  # a fragment's first top-level node
            while node is not None:
                top.append(node)
                node = node.next
        all_text = tree.text()
        zw_possible = not _ZERO_WIDTH.isdisjoint(all_text) or _SOFT_HYPHEN in all_text
        root_state = _State()
        # An explicit stack, not recursion: hostile mail nests elements thousands deep.
        stack: list[tuple[LexborNode, _State, str]] = [(n, root_state, "") for n in reversed(top)]
        order = 0
        while stack:
            node, state, parent_tag = stack.pop()
            order += 1
            tag = node.tag or ""
            if tag == "-text":
                if not state.render or state.hard:
                    continue
                if state.soft >= 0:
                    self._soft_text(node, state, order)
                elif zw_possible:
                    text = node.text_content
                    if text and not (_ZERO_WIDTH.isdisjoint(text) and _SOFT_HYPHEN not in text):
                        self._zero_width_text(node, text, state, order, parent_tag)
                continue
            if tag.startswith(("-", "!")):
                continue  # comments, doctype
            child_state = self._element(node, tag, state, order)
            child = node.last_child
            while child is not None:
                stack.append((child, child_state, tag))
                child = child.prev

    def _soft_text(self, node: LexborNode, state: _State, order: int) -> None:
        text = node.text_content or ""
        if text.translate(_DROP_INVISIBLE).strip():
            soft = self.softs[state.soft]
            soft.texts.append(text)
            if not state.doomed:
                soft.nodes.append((order, node))

    def _zero_width_text(
        self, node: LexborNode, text: str, state: _State, order: int, parent_tag: str
    ) -> None:
        found = _suspicious_zero_width(text)
        if not found:
            return
        parent = node.parent
        key = parent.mem_id if parent is not None else 0
        zw = self.zero_width.get(key)
        if zw is None:
            zw = _ZeroWidth(len(self.slots), parent_tag or "#fragment", state.doomed)
            self.slots.append(None)
            self.zero_width[key] = zw
        zw.chars.extend(found)
        zw.texts.append(text)
        if "hidden_text" in self.strip and not state.doomed:
            cleaned = _clean_zero_width(text, found)
            self.actions.append(_Action(order, _SET_TEXT, node, cleaned, slot=zw.slot))

    def _hit(self, cls: str, what: str, remote: bool = False, label: str = "") -> None:
        self.slots.append(_Found(HtmlHit(cls, what, remote=remote, label=label or what)))

    def _element(self, node: LexborNode, tag: str, state: _State, order: int) -> _State:
        attrs = node.attributes
        style_text = attrs.get("style")
        inline = _inline_style(style_text) if style_text else _NO_STYLE
        style = inline
        key = 0
        reshown = False
        if self.sheets_apply:
            key = node.mem_id
            sheet = self.sheet_decls.get(key)
            if sheet is not None:
                style = _cascade(tuple(sheet.items()), style_text)
            reshown = key in self.reshown

        first = len(self.slots)
        planned = len(self.actions)
        strip = _NOTHING if state.doomed else self.strip  # nothing to edit inside a doomed node
        edits: list[tuple[int, str]] = []
        drop_props: list[str] = []
        # Whether strip_html removes this element, and so every hit inside it.
        removes = tag in _SPECIAL_TAGS and self._special(tag, attrs, style, state, reshown, strip)
        if tag == "style" and key in self.sheet_hits:
            self._style_hits(node, order, strip)
        if tag == "form" and "active_script" in strip:
            edits.append((_UNWRAP, ""))
        if inline.image_props or inline.script_props:
            self._style_attribute_hits(tag, inline, strip, drop_props)
        for name in attrs:
            # One test per attribute name first: almost all are neither events nor URLs.
            if name[:2] == "on" or name in _URL_ATTRS or name in _SVG_ANIMATION_ATTRS:
                self._attribute_hits(tag, name, attrs[name], state, strip, edits)
        # <base href> only resolves relative links; it runs nothing and is deliberately skipped.

        # hidden text
        child = self._child_state(tag, attrs, style, state, reshown)
        if child.hard and not state.hard and state.render:
            removes = self._hard_hit(node, tag, attrs, style, state, inline, key) or removes

        doomed = state.doomed or removes
        if removes and not state.doomed:
            self.actions.append(_Action(order, _REMOVE, node))
        elif not doomed:
            for kind, arg in edits:
                self.actions.append(_Action(order, kind, node, arg))
            if drop_props and style_text is not None:
                restyled = _restyle(style_text, drop_props)
                self.actions.append(_Action(order, _SET_STYLE, node, restyled))
        if doomed:
            for index in range(first, len(self.slots)):
                found = self.slots[index]
                if found is not None:
                    found.doomed = True
            if child.soft >= 0 and child.soft != state.soft:
                self.softs[child.soft].doomed = True
        if len(self.actions) > planned:
            self.spans[order] = (first, len(self.slots))

        if removes or tag in _CONTEXT_TAGS:
            if child is state:
                child = state.copy()
            child.doomed = doomed
            child.svg = child.svg or tag == "svg"
            child.form = child.form or (tag == "form" and "active_script" in strip)
            child.media = child.media or tag in ("video", "audio")
            child.picture = child.picture or tag == "picture"
        return child

    def _style_attribute_hits(
        self, tag: str, inline: _Style, strip: frozenset[str], drop_props: list[str]
    ) -> None:
        if inline.image_props:
            props = "/".join(inline.image_props)
            url = _short(inline.image_url or "")
            where = _origin(_css_url(inline.image_url or ""))
            self._hit(
                "images",
                f"{props} in style attribute on <{tag}>: {url}",
                label=f"background image on <{tag}>{where}",
            )
            if "images" in strip:
                drop_props.extend(inline.image_props)
        if inline.script_props:
            decl = _short(inline.script_decl or "")
            self._hit(
                "active_script",
                f"script in CSS {decl} in style attribute on <{tag}>",
                label=f"script in the style of <{tag}>",
            )
            if "active_script" in strip:
                drop_props.extend(inline.script_props)

    def _attribute_hits(
        self,
        tag: str,
        name: str,
        value: str | None,
        state: _State,
        strip: frozenset[str],
        edits: list[tuple[int, str]],
    ) -> None:
        """Hits of one attribute: an event handler, a script URL or a background image."""
        where = " inside <svg>" if state.svg else ""
        if name.startswith("on") and len(name) > 2:
            self._hit(
                "active_script",
                f"{name} attribute on <{tag}>{where}",
                label=f"{_short(name, 30)} handler on <{tag}>{where}",
            )
            if "active_script" in strip:
                edits.append((_DROP_ATTR, name))
            return
        if not value or (name in _SVG_ANIMATION_ATTRS and not state.svg):
            return
        if name == "background" and value.strip():
            self._hit(
                "images",
                f"background attribute on <{tag}>: {_short(value)}",
                label=f"background image on <{tag}>{_origin(value)}",
            )
            if "images" in strip:
                edits.append((_DROP_ATTR, "background"))
        scheme = _script_url(value)
        if scheme is None and name == "values":
            scheme = next(filter(None, map(_script_url, value.split(";"))), None)
        if scheme is not None:
            self._hit(
                "active_script",
                f"{scheme} URL in <{tag} {name}>{where}",
                label=f"{scheme} link in <{tag}>{where}",
            )
            if "active_script" in strip:
                edits.append((_DROP_ATTR, name))

    def _special(
        self,
        tag: str,
        attrs: Mapping[str, str | None],
        style: _Style,
        state: _State,
        reshown: bool,
        strip: frozenset[str],
    ) -> bool:
        """Hits of the elements that are forbidden as such; whether strip_html removes it."""
        removes = False
        # images and tracking pixels
        if tag == "img":
            removes = self._img(attrs, style, state, reshown, strip)
        elif tag == "input" and (attrs.get("type") or "").strip().lower() == "image":
            src = attrs.get("src") or ""
            remote = src.strip().lower().startswith(_REMOTE)
            self._hit(
                "images",
                f"{_tag(tag, attrs, 'type', 'src')} {_source_kind(src)}",
                remote,
                label=f"image button <input>{_origin(src)}",
            )
            removes = "images" in strip
        elif tag == "source" and state.picture and attrs.get("srcset"):
            first = (attrs.get("srcset") or "").split(",")[0].split()
            self._hit(
                "images",
                f"{_tag(tag, attrs, 'srcset')} in <picture>",
                label=f"<source> in <picture>{_origin(first[0] if first else '')}",
            )
            removes = "images" in strip
        elif tag == "image" and state.svg:
            href = attrs.get("href") or attrs.get("xlink:href") or ""
            self._hit(
                "images",
                f"{_tag(tag, attrs, 'href', 'xlink:href')} in <svg>",
                label=f"<image> in <svg>{_origin(href)}",
            )
            removes = "images" in strip
        elif tag == "picture":
            removes = "images" in strip

        # multimedia
        if tag in _MULTIMEDIA_ELEMENTS:
            flash = " (Flash)" if _is_flash(attrs) else ""
            source = attrs.get("src") or attrs.get("data") or ""
            self._hit(
                "multimedia",
                _tag(tag, attrs, "src", "data", "type") + flash,
                label=f"<{tag}>{flash}{_origin(source)}",
            )
            removes = removes or "multimedia" in strip
        elif tag == "source" and state.media:
            self._hit(
                "multimedia",
                f"{_tag(tag, attrs, 'src', 'type')} in a media element",
                label=f"<source> in a media element{_origin(attrs.get('src') or '')}",
            )
            removes = removes or "multimedia" in strip

        # active script
        if tag == "script":
            script_type = (attrs.get("type") or "").split(";")[0].strip().lower()
            # JSON-LD is data (schema.org markup that Gmail reads for actions): it never runs.
            if script_type != "application/ld+json":
                script_src = attrs.get("src")
                body = f'src="{_short(script_src)}"' if script_src else "inline"
                where = " inside <svg>" if state.svg else ""
                label = f"<script>{_origin(script_src)}" if script_src else "inline <script>"
                self._hit("active_script", f"<script> ({body}){where}", label=label + where)
                removes = removes or "active_script" in strip
        elif tag in _ACTIVE_ELEMENTS:
            flash = " (Flash)" if tag in ("object", "embed") and _is_flash(attrs) else ""
            source = attrs.get("src") or attrs.get("data") or ""
            code = attrs.get("code")
            origin = f' code="{_short(code, 40)}"' if code and not source else _origin(source)
            self._hit(
                "active_script",
                _tag(tag, attrs, "src", "data", "code") + flash,
                label=f"<{tag}>{flash}{origin}",
            )
            removes = removes or "active_script" in strip
        elif tag == "form":
            action = (attrs.get("action") or "").strip()
            target = _host(action) or (f'"{_short(action, 40)}"' if action else "")
            self._hit(
                "active_script",
                _tag(tag, attrs, "action", "method"),
                label=f"<form> sending to {target}" if target else "<form>",
            )
            # strip_html unwraps it (see _CONTEXT_TAGS and _UNWRAP) rather than removing it:
            # the words around the fields are what a reader sees.
        elif tag == "meta" and (attrs.get("http-equiv") or "").strip().lower() == "refresh":
            target = (attrs.get("content") or "").partition("=")[2].strip(" '\"")
            self._hit(
                "active_script",
                _tag(tag, attrs, "http-equiv", "content"),
                label=f"<meta> refresh to {_host(target) or _short(target, 40)}"
                if target
                else "<meta> refresh",
            )
            removes = removes or "active_script" in strip
        if tag in _FORM_CONTROLS and state.form:
            removes = True  # a field of a form being unwrapped; not a hit of its own
        return removes

    def _img(
        self,
        attrs: Mapping[str, str | None],
        style: _Style,
        state: _State,
        reshown: bool,
        strip: frozenset[str],
    ) -> bool:
        """Hit an <img> (and a tracking pixel); whether strip_html removes it."""
        src = attrs.get("src") or ""
        if src:
            shown = _tag("img", attrs, "src")
        else:
            candidates = (attrs.get("srcset") or "").split(",")[0].split()
            src = candidates[0] if candidates else ""
            shown = _tag("img", attrs, "srcset")
        remote = src.strip().lower().startswith(_REMOTE)
        self._hit("images", f"{shown} {_source_kind(src)}", remote, label=f"<img>{_origin(src)}")
        # Only a fetched image can report an open: a 1x1 cid: or data: image is just a spacer.
        pixel = False
        if remote:
            width = _dimension(style.width, attrs.get("width"))
            height = _dimension(style.height, attrs.get("height"))
            if width is not None and height is not None and width <= 1 and height <= 1:
                self._hit(
                    "tracking_pixels",
                    f"{shown} {width:g}x{height:g}",
                    label=f"{width:g}x{height:g} <img>{_origin(src)}",
                )
                pixel = True
            elif state.display_none or (not reshown and (style.display_none or "hidden" in attrs)):
                # Never shown, yet fetched (a mobile-only image is reshown by @media instead).
                self._hit(
                    "tracking_pixels",
                    f"{shown} display:none",
                    label=f"hidden <img>{_origin(src)}",
                )
                pixel = True
        return "images" in strip or (pixel and "tracking_pixels" in strip)

    def _style_hits(self, node: LexborNode, order: int, strip: frozenset[str]) -> None:
        found = self.sheet_hits[node.mem_id]
        for cls, what, label in found:
            self._hit(cls, what, label=label)
        drop_images = "images" in strip and any(hit[0] == "images" for hit in found)
        drop_scripts = "active_script" in strip and any(hit[0] == "active_script" for hit in found)
        if drop_images or drop_scripts:
            css = _rewrite_sheet(_text_of(node), drop_images, drop_scripts)
            # "</" could end the <style> element; "<\/" is the same CSS (an escaped "/").
            self.actions.append(_Action(order, _SET_SHEET, node, css.replace("</", "<\\/")))

    def _child_state(
        self,
        tag: str,
        attrs: Mapping[str, str | None],
        style: _Style,
        state: _State,
        reshown: bool,
    ) -> _State:
        """The state ``tag`` hands to its children: the hidden-text half of the walk."""
        if tag in _UNRENDERED:
            if not state.render:
                return state
            child = state.copy()
            child.render = False
            return child
        hidden_attr = "hidden" in attrs
        if (
            (not style.inherited or (style.colour_only and style.fg == state.fg))
            and not hidden_attr
            and not reshown
            and tag not in _COLOUR_TAGS
            and "bgcolor" not in attrs
            and "background" not in attrs
        ):
            return state  # the common case: nothing here changes what children inherit
        display_none = state.display_none or (not reshown and (style.display_none or hidden_attr))
        if not state.render or state.hard:
            if display_none == state.display_none:
                return state
            child = state.copy()
            child.display_none = display_none
            return child
        if not reshown and (style.hard is not None or hidden_attr):
            child = state.copy()
            child.hard = True
            child.display_none = display_none
            return child

        fg = state.fg
        own = style.fg
        if own is None and tag == "font" and attrs.get("color"):
            own = _colour((attrs.get("color") or "")[:_CACHE_CHARS], True)
        elif own is None and tag == "body" and attrs.get("text"):
            own = _colour((attrs.get("text") or "")[:_CACHE_CHARS], True)
        if own is not None:
            fg = own
        elif tag == "a" and "href" in attrs and not style.color:
            fg = _LINK_BLUE  # links do not inherit the text colour

        bg = state.bg
        background_attr = attrs.get("background")
        if style.bg_image or (background_attr and background_attr.strip()):
            bg = None  # text over an image: colours alone cannot tell its contrast
        else:
            colour = style.bg
            if colour is None and attrs.get("bgcolor"):
                colour = _colour((attrs.get("bgcolor") or "")[:_CACHE_CHARS], True)
            if colour is not None and colour[3] > 0:
                bg = colour[:3] if colour[3] >= 1 or bg is None else _over(colour, bg)

        tiny = state.tiny if style.font_tiny is None else style.font_tiny
        invisible = state.invisible if style.invisible is None else style.invisible
        if reshown:
            tiny = invisible = False
        if fg == state.fg and bg == state.bg:
            faint = state.faint
        else:
            faint = bg is not None and _near(fg, bg)
        soft = state.soft
        if not (tiny or invisible or faint):
            soft = -1
        elif soft < 0:
            soft = self._soft_origin(tag, attrs, tiny, invisible, fg, bg if faint else None)
        if (
            fg == state.fg
            and bg == state.bg
            and tiny == state.tiny
            and invisible == state.invisible
            and soft == state.soft
        ):
            return state
        child = state.copy()
        child.fg = fg
        child.bg = bg
        child.tiny = tiny
        child.invisible = invisible
        child.faint = faint
        child.soft = soft
        return child

    def _soft_origin(
        self,
        tag: str,
        attrs: Mapping[str, str | None],
        tiny: bool,
        invisible: bool,
        fg: RGBA,
        faint_on: RGB | None,
    ) -> int:
        reasons: list[str] = []
        if tiny:
            reasons.append("tiny font")
        if invisible:
            reasons.append("visibility:hidden")
        if faint_on is not None:
            reasons.append(f"text colour {_hex(fg)} on background {_hex(faint_on)}")
        shown = _tag(tag, attrs, "class", "style", "color", "bgcolor", "text")
        self.softs.append(_Soft(len(self.slots), f"{shown} ({', '.join(reasons)})"))
        self.slots.append(None)
        return len(self.softs) - 1

    def _hard_hit(
        self,
        node: LexborNode,
        tag: str,
        attrs: Mapping[str, str | None],
        style: _Style,
        state: _State,
        inline: _Style,
        key: int,
    ) -> bool:
        """Hit an element hidden outright (its subtree with it); whether strip_html removes it."""
        text = _text_of(node)
        if not text.translate(_DROP_INVISIBLE).strip():
            return False  # hidden but without text (spacers, hidden images): not hidden *text*
        if state.soft >= 0:
            # Inside text already hidden by colour or size: the outermost element owns it all.
            self.softs[state.soft].texts.append(text)
        else:
            if inline.hard is not None:
                what = _tag(tag, attrs, "style")
            elif "hidden" in attrs:
                what = _tag(tag, attrs, "hidden")
            else:
                rule = self.sheet_selector.get(key, "?")
                what = f"{_tag(tag, attrs, 'class', 'id')} hidden by <style> rule {rule!r}"
                what += f" ({style.hard})"
            self.slots.append(_Found(HtmlHit("hidden_text", what, _quote(text))))
        return "hidden_text" in self.strip


def _empty(node: LexborNode) -> None:
    """Remove every child of ``node``."""
    child = node.last_child
    while child is not None:
        before = child.prev
        child.decompose()
        child = before


def _text_of(node: LexborNode) -> str:
    """All text under ``node``."""
    if node.parent is not None:
        return node.text(deep=True)
    # A fragment's top-level nodes have no parent, and lexbor's text() then walks on into their
    # following siblings: collect by hand.
    parts: list[str] = []
    stack: list[LexborNode] = []
    child = node.last_child
    while child is not None:
        stack.append(child)
        child = child.prev
    while stack:
        current = stack.pop()
        if current.is_text_node:
            parts.append(current.text_content or "")
            continue
        child = current.last_child
        while child is not None:
            stack.append(child)
            child = child.prev
    return "".join(parts)


def _cascade(sheet: tuple[tuple[str, tuple[str, bool]], ...], style_text: str | None) -> _Style:
    """The element's style from <style> rules and its attribute, in CSS order of precedence."""
    if style_text is not None and len(style_text) > _CACHE_CHARS:
        return _cascade_uncached(sheet, style_text)
    return _cascade_cached(sheet, style_text)


@lru_cache(maxsize=1024)
def _cascade_cached(
    sheet: tuple[tuple[str, tuple[str, bool]], ...], style_text: str | None
) -> _Style:
    # The same few rules meet the same few style attributes all over a newsletter.
    return _cascade_uncached(sheet, style_text)


def _cascade_uncached(
    sheet: tuple[tuple[str, tuple[str, bool]], ...], style_text: str | None
) -> _Style:
    inline = _declarations(style_text) if style_text else {}
    merged = {prop: entry for prop, entry in sheet if not entry[1]}
    merged.update((prop, entry) for prop, entry in inline.items() if not entry[1])
    merged.update((prop, entry) for prop, entry in sheet if entry[1])
    merged.update((prop, entry) for prop, entry in inline.items() if entry[1])
    return _analyze(merged)


def _is_flash(attrs: Mapping[str, str | None]) -> bool:
    kind = (attrs.get("type") or "").lower()
    if "shockwave-flash" in kind or "futuresplash" in kind:
        return True
    for name in ("src", "data", "movie"):
        if (attrs.get(name) or "").lower().split("?")[0].endswith(".swf"):
            return True
    return False


def _restyle(style_text: str, drop: Collection[str]) -> str:
    """The style attribute without the ``drop`` properties; a ``background`` shorthand that had an
    image keeps its colour as ``background-color``."""
    kept: list[str] = []
    for piece in _split_style(style_text):
        parsed = _declaration(piece)
        if parsed is None or parsed[0] not in drop:
            if piece.strip():
                kept.append(piece.strip())
            continue
        prop, value, important = parsed
        if prop == "background":
            colour, _image = _background(value[:_CACHE_CHARS])
            if colour is not None:
                kept.append(f"background-color: {colour}" + (" !important" if important else ""))
    return "; ".join(kept)
