"""One detector per HTML class: images, tracking pixels, multimedia, active script, hidden text.

Owns what makes an element, attribute or text a hit of its class, and which edit strips it. The
walk itself (``scan``) calls every detector at the same points, in class order, so that one
element's hits keep the order they always had. Detectors record into the scan's ``Plan``;
they never parse HTML or CSS themselves and never apply an edit.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

from selectolax.lexbor import LexborNode

from sinkd.core.html.css import (
    BLACK,
    CACHE_CHARS,
    LINK_BLUE,
    RGB,
    RGBA,
    WHITE,
    Style,
    css_colour,
    css_length,
    hex_colour,
    paint_over,
    too_near,
)
from sinkd.core.html.describe import (
    DROP_INVISIBLE,
    JOINERS,
    REMOTE,
    SOFT_HYPHEN,
    URL_LEADING,
    ZERO_WIDTH,
    css_url,
    host_of,
    mark_zero_width,
    origin,
    quote,
    short,
    source_kind,
    tag_text,
)
from sinkd.core.html.edits import DROP_ATTR, REMOVE, SET_TEXT, UNWRAP, Action, Found, Plan
from sinkd.core.html.report import HtmlHit

__all__ = [
    "ACTIVE_ELEMENTS",
    "FORM_CONTROLS",
    "MULTIMEDIA_ELEMENTS",
    "READ_ATTRS",
    "STATE_TAGS",
    "ActiveScript",
    "HiddenText",
    "Images",
    "Multimedia",
    "TrackingPixels",
    "WalkState",
    "img_source",
    "text_of",
]

# Attributes whose value a browser navigates to or loads, hence where javascript: executes.
URL_ATTRS = frozenset(
    {"href", "src", "action", "formaction", "data", "xlink:href", "background", "lowsrc", "dynsrc"}
)
# SVG animation elements can write a javascript: URL into an href at run time.
SVG_ANIMATION_ATTRS = ("to", "from", "values")
_SCRIPT_SCHEMES = ("javascript:", "vbscript:")
# Elements that run code or load another document; <object> and <embed> are also multimedia.
ACTIVE_ELEMENTS = frozenset({"iframe", "frame", "object", "embed", "applet"})
MULTIMEDIA_ELEMENTS = frozenset({"video", "audio", "embed", "object", "bgsound"})
FORM_CONTROLS = frozenset({"input", "button", "select", "textarea", "keygen"})
# Elements whose attributes (or defaults) set the text colour.
_COLOUR_TAGS = frozenset({"a", "font", "body"})
# Text in these is never rendered, so it can be neither hidden nor carry zero-width tricks.
_UNRENDERED = frozenset({"head", "title", "script", "style", "template", "xml"})
# Elements whose tag alone can change what their subtree inherits: the walk never skips them.
STATE_TAGS = _COLOUR_TAGS | _UNRENDERED
# Attributes any detector reads, besides "style" and event handlers ("on..."): an element with
# none of them, an inert style and no stylesheet rule can be no hit and change nothing.
READ_ATTRS = frozenset({"hidden", "bgcolor", "background"}) | URL_ATTRS | set(SVG_ANIMATION_ATTRS)
# A word with this many soft hyphens whose pieces average under this many characters is
# obfuscated ("V­i­a­g­r­a"), not hyphenated ("Donau­dampf­schiff­fahrt").
_SOFT_HYPHENS_MIN = 3
_SOFT_HYPHEN_PIECE = 3.0

Edits = list[tuple[int, str]]  # (edit kind, argument) planned for the current element


class WalkState:
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
        self.fg: RGBA = BLACK
        self.bg: RGB | None = WHITE  # None: over a background image, contrast unknown
        self.svg = False
        self.media = False  # inside <video>/<audio>
        self.picture = False
        self.form = False  # inside a <form> that strip_html unwraps
        self.doomed = False  # inside an element that strip_html removes

    def copy(self) -> WalkState:
        new = WalkState.__new__(WalkState)
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


# --- images -------------------------------------------------------------------------------------


class Images:
    """``<img>``, image buttons, ``<picture>`` sources, SVG ``<image>``, background images."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan

    def element(
        self,
        tag: str,
        attrs: Mapping[str, str | None],
        state: WalkState,
        strip: frozenset[str],
        img: tuple[str, str] = ("", ""),
    ) -> bool:
        """Hit an image element; whether strip_html removes it. ``img`` is an ``<img>``'s
        ``img_source``, which the walk reads once for this detector and the pixel one."""
        plan = self.plan
        if tag == "img":
            src, shown = img
            plan.hit(
                "images", f"{shown} {source_kind(src)}", _remote(src), label=f"<img>{origin(src)}"
            )
            return "images" in strip
        if tag == "input" and (attrs.get("type") or "").strip().lower() == "image":
            src = attrs.get("src") or ""
            plan.hit(
                "images",
                f"{tag_text(tag, attrs, 'type', 'src')} {source_kind(src)}",
                _remote(src),
                label=f"image button <input>{origin(src)}",
            )
            return "images" in strip
        if tag == "source" and state.picture and attrs.get("srcset"):
            first = (attrs.get("srcset") or "").split(",")[0].split()
            plan.hit(
                "images",
                f"{tag_text(tag, attrs, 'srcset')} in <picture>",
                label=f"<source> in <picture>{origin(first[0] if first else '')}",
            )
            return "images" in strip
        if tag == "image" and state.svg:
            href = attrs.get("href") or attrs.get("xlink:href") or ""
            plan.hit(
                "images",
                f"{tag_text(tag, attrs, 'href', 'xlink:href')} in <svg>",
                label=f"<image> in <svg>{origin(href)}",
            )
            return "images" in strip
        if tag == "picture":
            return "images" in strip
        return False

    def style_attribute(
        self, tag: str, inline: Style, strip: frozenset[str], drop_props: list[str]
    ) -> None:
        if inline.image_props:
            props = "/".join(inline.image_props)
            url = short(inline.image_url or "")
            where = origin(css_url(inline.image_url or ""))
            self.plan.hit(
                "images",
                f"{props} in style attribute on <{tag}>: {url}",
                label=f"background image on <{tag}>{where}",
            )
            if "images" in strip:
                drop_props.extend(inline.image_props)

    def attribute(
        self, tag: str, name: str, value: str | None, strip: frozenset[str], edits: Edits
    ) -> None:
        if name == "background" and value and value.strip():
            self.plan.hit(
                "images",
                f"background attribute on <{tag}>: {short(value)}",
                label=f"background image on <{tag}>{origin(value)}",
            )
            if "images" in strip:
                edits.append((DROP_ATTR, "background"))


class TrackingPixels:
    """Remote images that only report an open: 1x1, or never shown."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan

    def element(
        self,
        attrs: Mapping[str, str | None],
        style: Style,
        state: WalkState,
        reshown: bool,
        strip: frozenset[str],
        img: tuple[str, str],
    ) -> bool:
        """Hit an ``<img>`` that is a tracking pixel; whether strip_html removes it as one.
        ``img`` is its ``img_source``."""
        src, shown = img
        # Only a fetched image can report an open: a 1x1 cid: or data: image is just a spacer.
        if not _remote(src):
            return False
        width = _dimension(style.width, attrs.get("width"))
        height = _dimension(style.height, attrs.get("height"))
        if width is not None and height is not None and width <= 1 and height <= 1:
            self.plan.hit(
                "tracking_pixels",
                f"{shown} {width:g}x{height:g}",
                label=f"{width:g}x{height:g} <img>{origin(src)}",
            )
        elif state.display_none or (not reshown and (style.display_none or "hidden" in attrs)):
            # Never shown, yet fetched (a mobile-only image is reshown by @media instead).
            self.plan.hit(
                "tracking_pixels", f"{shown} display:none", label=f"hidden <img>{origin(src)}"
            )
        else:
            return False
        return "tracking_pixels" in strip


# --- multimedia ---------------------------------------------------------------------------------


class Multimedia:
    """Audio, video, Flash and other plug-in media, and the sources of a media element."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan

    def element(
        self, tag: str, attrs: Mapping[str, str | None], state: WalkState, strip: frozenset[str]
    ) -> bool:
        if tag in MULTIMEDIA_ELEMENTS:
            flash = " (Flash)" if _is_flash(attrs) else ""
            source = attrs.get("src") or attrs.get("data") or ""
            self.plan.hit(
                "multimedia",
                tag_text(tag, attrs, "src", "data", "type") + flash,
                label=f"<{tag}>{flash}{origin(source)}",
            )
            return "multimedia" in strip
        if tag == "source" and state.media:
            self.plan.hit(
                "multimedia",
                f"{tag_text(tag, attrs, 'src', 'type')} in a media element",
                label=f"<source> in a media element{origin(attrs.get('src') or '')}",
            )
            return "multimedia" in strip
        return False


# --- active script ------------------------------------------------------------------------------


class ActiveScript:
    """Scripts, frames, plug-ins, forms, refreshes, event handlers, script URLs and CSS."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan

    def element(
        self,
        tag: str,
        attrs: Mapping[str, str | None],
        state: WalkState,
        strip: frozenset[str],
        edits: Edits,
    ) -> bool:
        plan = self.plan
        removes = False
        if tag == "script":
            script_type = (attrs.get("type") or "").split(";")[0].strip().lower()
            # JSON-LD is data (schema.org markup that Gmail reads for actions): it never runs.
            if script_type != "application/ld+json":
                script_src = attrs.get("src")
                body = f'src="{short(script_src)}"' if script_src else "inline"
                where = " inside <svg>" if state.svg else ""
                label = f"<script>{origin(script_src)}" if script_src else "inline <script>"
                plan.hit("active_script", f"<script> ({body}){where}", label=label + where)
                removes = "active_script" in strip
        elif tag in ACTIVE_ELEMENTS:
            flash = " (Flash)" if tag in ("object", "embed") and _is_flash(attrs) else ""
            source = attrs.get("src") or attrs.get("data") or ""
            code = attrs.get("code")
            where = f' code="{short(code, 40)}"' if code and not source else origin(source)
            plan.hit(
                "active_script",
                tag_text(tag, attrs, "src", "data", "code") + flash,
                label=f"<{tag}>{flash}{where}",
            )
            removes = "active_script" in strip
        elif tag == "form":
            action = (attrs.get("action") or "").strip()
            target = host_of(action) or (f'"{short(action, 40)}"' if action else "")
            plan.hit(
                "active_script",
                tag_text(tag, attrs, "action", "method"),
                label=f"<form> sending to {target}" if target else "<form>",
            )
            # strip_html unwraps it (the scan marks its subtree ``form``) rather than removing
            # it: the words around the fields are what a reader sees.
            if "active_script" in strip:
                edits.append((UNWRAP, ""))
        elif tag == "meta" and (attrs.get("http-equiv") or "").strip().lower() == "refresh":
            target = (attrs.get("content") or "").partition("=")[2].strip(" '\"")
            plan.hit(
                "active_script",
                tag_text(tag, attrs, "http-equiv", "content"),
                label=f"<meta> refresh to {host_of(target) or short(target, 40)}"
                if target
                else "<meta> refresh",
            )
            removes = "active_script" in strip
        if tag in FORM_CONTROLS and state.form:
            removes = True  # a field of a form being unwrapped; not a hit of its own
        return removes

    def style_attribute(
        self, tag: str, inline: Style, strip: frozenset[str], drop_props: list[str]
    ) -> None:
        if inline.script_props:
            decl = short(inline.script_decl or "")
            self.plan.hit(
                "active_script",
                f"script in CSS {decl} in style attribute on <{tag}>",
                label=f"script in the style of <{tag}>",
            )
            if "active_script" in strip:
                drop_props.extend(inline.script_props)

    def attribute(
        self,
        tag: str,
        name: str,
        value: str | None,
        state: WalkState,
        strip: frozenset[str],
        edits: Edits,
    ) -> None:
        """Hits of one attribute: an event handler or a script URL."""
        where = " inside <svg>" if state.svg else ""
        if name.startswith("on") and len(name) > 2:
            self.plan.hit(
                "active_script",
                f"{name} attribute on <{tag}>{where}",
                label=f"{short(name, 30)} handler on <{tag}>{where}",
            )
            if "active_script" in strip:
                edits.append((DROP_ATTR, name))
            return
        if not value or (name in SVG_ANIMATION_ATTRS and not state.svg):
            return
        scheme = _script_url(value)
        if scheme is None and name == "values":
            scheme = next(filter(None, map(_script_url, value.split(";"))), None)
        if scheme is not None:
            self.plan.hit(
                "active_script",
                f"{scheme} URL in <{tag} {name}>{where}",
                label=f"{scheme} link in <{tag}>{where}",
            )
            if "active_script" in strip:
                edits.append((DROP_ATTR, name))


# --- hidden text --------------------------------------------------------------------------------


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


class HiddenText:
    """Text hidden outright (display:none, off-screen, ...), by colour, size or visibility, and
    zero-width characters inside visible text.

    Unlike the others it follows the walk's inherited state: ``child_state`` is what an element
    hands its children, and text nodes are reported to it one by one.
    """

    def __init__(self, plan: Plan, sheet_selector: Mapping[int, str]) -> None:
        self.plan = plan
        self.sheet_selector = sheet_selector  # element -> the <style> rule that hides it
        self.softs: list[_Soft] = []
        self.zero_width: dict[int, _ZeroWidth] = {}
        # child_state's results, shared by siblings; a state handed down is never changed.
        self._handed_down: dict[tuple[object, ...], tuple[Style, WalkState]] = {}

    def finish(self) -> None:
        """Fill in the hits whose text was collected along the walk."""
        plan = self.plan
        for soft in self.softs:
            text = quote("".join(soft.texts))
            if not text:
                continue  # spacers: colour or size "hides" only whitespace
            plan.slots[soft.slot] = Found(HtmlHit("hidden_text", soft.what, text), soft.doomed)
            if "hidden_text" in plan.strip:
                # Node by node: what a descendant made visible again stays.
                for order, node in soft.nodes:
                    plan.actions.append(Action(order, REMOVE, node, slot=soft.slot))
        for zw in self.zero_width.values():
            counts: dict[str, int] = {}
            for char in zw.chars:
                counts[char] = counts.get(char, 0) + 1
            listed = ", ".join(f"U+{ord(c):04X} ×{n}" for c, n in counts.items())
            hit = HtmlHit(
                "hidden_text",
                f"zero-width characters ({listed}) in <{zw.tag}>",
                mark_zero_width("".join(zw.texts)),
            )
            plan.slots[zw.slot] = Found(hit, zw.doomed)

    def doom(self, soft: int) -> None:
        self.softs[soft].doomed = True

    def soft_text(self, node: LexborNode, state: WalkState, order: int) -> None:
        text = node.text_content or ""
        if text.translate(DROP_INVISIBLE).strip():
            soft = self.softs[state.soft]
            soft.texts.append(text)
            if not state.doomed:
                soft.nodes.append((order, node))

    def zero_width_text(
        self, node: LexborNode, text: str, state: WalkState, order: int, parent_tag: str
    ) -> None:
        found = _suspicious_zero_width(text)
        if not found:
            return
        parent = node.parent
        key = parent.mem_id if parent is not None else 0
        zw = self.zero_width.get(key)
        if zw is None:
            zw = _ZeroWidth(self.plan.reserve(), parent_tag or "#fragment", state.doomed)
            self.zero_width[key] = zw
        zw.chars.extend(found)
        zw.texts.append(text)
        if "hidden_text" in self.plan.strip and not state.doomed:
            cleaned = _clean_zero_width(text, found)
            self.plan.actions.append(Action(order, SET_TEXT, node, cleaned, slot=zw.slot))

    def child_state(
        self,
        tag: str,
        attrs: Mapping[str, str | None],
        style: Style,
        state: WalkState,
        reshown: bool,
    ) -> WalkState:
        """The state ``tag`` hands to its children."""
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
        # Table cells repeat the same few styles under one shared state: what one of them
        # hands down, its siblings hand down too. Everything the computation below reads is in
        # the key (the style by identity, kept alive by the entry, so its id is never reused),
        # and a result that opened a new hidden passage is never reused: it names its element.
        key = (
            state,
            id(style),
            tag if tag in _COLOUR_TAGS else "",
            reshown,
            hidden_attr,
            attrs.get("bgcolor"),
            attrs.get("background"),
            attrs.get("color") if tag == "font" else None,
            attrs.get("text") if tag == "body" else None,
            tag == "a" and "href" in attrs,
        )
        known = self._handed_down.get(key)
        if known is not None and known[0] is style:
            return known[1]
        child = self._child_state(tag, attrs, style, state, reshown, hidden_attr)
        if child.soft == state.soft or child.soft < 0:
            self._handed_down[key] = (style, child)
        return child

    def _child_state(
        self,
        tag: str,
        attrs: Mapping[str, str | None],
        style: Style,
        state: WalkState,
        reshown: bool,
        hidden_attr: bool,
    ) -> WalkState:
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
            own = css_colour((attrs.get("color") or "")[:CACHE_CHARS], True)
        elif own is None and tag == "body" and attrs.get("text"):
            own = css_colour((attrs.get("text") or "")[:CACHE_CHARS], True)
        if own is not None:
            fg = own
        elif tag == "a" and "href" in attrs and not style.color:
            fg = LINK_BLUE  # links do not inherit the text colour

        bg = state.bg
        background_attr = attrs.get("background")
        if style.bg_image or (background_attr and background_attr.strip()):
            bg = None  # text over an image: colours alone cannot tell its contrast
        else:
            colour = style.bg
            if colour is None and attrs.get("bgcolor"):
                colour = css_colour((attrs.get("bgcolor") or "")[:CACHE_CHARS], True)
            if colour is not None and colour[3] > 0:
                bg = colour[:3] if colour[3] >= 1 or bg is None else paint_over(colour, bg)

        tiny = state.tiny if style.font_tiny is None else style.font_tiny
        invisible = state.invisible if style.invisible is None else style.invisible
        if reshown:
            tiny = invisible = False
        if fg == state.fg and bg == state.bg:
            faint = state.faint
        else:
            faint = bg is not None and too_near(fg, bg)
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
            reasons.append(f"text colour {hex_colour(fg)} on background {hex_colour(faint_on)}")
        shown = tag_text(tag, attrs, "class", "style", "color", "bgcolor", "text")
        self.softs.append(_Soft(self.plan.reserve(), f"{shown} ({', '.join(reasons)})"))
        return len(self.softs) - 1

    def hard_hit(
        self,
        node: LexborNode,
        tag: str,
        attrs: Mapping[str, str | None],
        style: Style,
        state: WalkState,
        inline: Style,
        key: int,
    ) -> bool:
        """Hit an element hidden outright (its subtree with it); whether strip_html removes it."""
        text = text_of(node)
        if not text.translate(DROP_INVISIBLE).strip():
            return False  # hidden but without text (spacers, hidden images): not hidden *text*
        if state.soft >= 0:
            # Inside text already hidden by colour or size: the outermost element owns it all.
            self.softs[state.soft].texts.append(text)
        else:
            if inline.hard is not None:
                what = tag_text(tag, attrs, "style")
            elif "hidden" in attrs:
                what = tag_text(tag, attrs, "hidden")
            else:
                rule = self.sheet_selector.get(key, "?")
                what = f"{tag_text(tag, attrs, 'class', 'id')} hidden by <style> rule {rule!r}"
                what += f" ({style.hard})"
            self.plan.slots.append(Found(HtmlHit("hidden_text", what, quote(text))))
        return "hidden_text" in self.plan.strip


# --- helpers ------------------------------------------------------------------------------------


def text_of(node: LexborNode) -> str:
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


def img_source(attrs: Mapping[str, str | None]) -> tuple[str, str]:
    """An ``<img>``'s source (``src``, else the first ``srcset`` candidate) and how it is shown."""
    src = attrs.get("src") or ""
    if src:
        return src, tag_text("img", attrs, "src")
    candidates = (attrs.get("srcset") or "").split(",")[0].split()
    return (candidates[0] if candidates else ""), tag_text("img", attrs, "srcset")


def _remote(src: str) -> bool:
    # Only the first characters can start a scheme: lower-casing a long data: URI is waste.
    return src.strip()[:8].lower().startswith(REMOTE)


def _is_flash(attrs: Mapping[str, str | None]) -> bool:
    kind = (attrs.get("type") or "").lower()
    if "shockwave-flash" in kind or "futuresplash" in kind:
        return True
    for name in ("src", "data", "movie"):
        if (attrs.get(name) or "").lower().split("?")[0].endswith(".swf"):
            return True
    return False


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
        head = head.lstrip(URL_LEADING).replace("\t", "").replace("\n", "").replace("\r", "")
    scheme = head.lower() + ":"
    return scheme if scheme in _SCRIPT_SCHEMES else None


def _dimension(style_px: float | None, attr: str | None) -> float | None:
    """An image's rendered size: CSS wins over the attribute, as in browsers."""
    if style_px is not None:
        return style_px
    if attr is None:
        return None
    parsed = css_length(attr)
    if parsed is None or parsed[1] not in ("", "px"):
        return None
    return parsed[0]


def _suspicious_zero_width(text: str) -> list[str]:
    """The zero-width characters in ``text`` that are tricks, not typography."""
    if ZERO_WIDTH.isdisjoint(text) and SOFT_HYPHEN not in text:
        return []
    found: list[str] = []
    last = len(text) - 1
    for index, char in enumerate(text):
        if char not in ZERO_WIDTH:
            continue
        if char in JOINERS and 0 < index < last:
            before, after = text[index - 1], text[index + 1]
            if ord(before) > 127 and ord(after) > 127 and not before.isspace():
                continue  # emoji ZWJ sequence, Persian/Indic ZWNJ
        found.append(char)
    if SOFT_HYPHEN in text:
        for word in text.split():
            pieces = word.split(SOFT_HYPHEN)
            if len(pieces) - 1 >= _SOFT_HYPHENS_MIN and (
                sum(len(p) for p in pieces) / len(pieces) < _SOFT_HYPHEN_PIECE
            ):
                found.extend(SOFT_HYPHEN * (len(pieces) - 1))
    return found


def _clean_zero_width(text: str, found: Collection[str]) -> str:
    if SOFT_HYPHEN in found:
        text = text.replace(SOFT_HYPHEN, "")
    out: list[str] = []
    last = len(text) - 1
    for index, char in enumerate(text):
        if char in ZERO_WIDTH:
            if char in JOINERS and 0 < index < last:
                before, after = text[index - 1], text[index + 1]
                if ord(before) > 127 and ord(after) > 127 and not before.isspace():
                    out.append(char)
            continue
        out.append(char)
    return "".join(out)
