"""The small CSS engine of the HTML scan: inline styles, ``<style>`` sheets and colours.

Owns what declarations mean to the policy (hidden outright, tiny, invisible, colours, image and
script properties), the cascade of sheet rules and style attributes, and rewriting CSS without
image or script declarations. It knows nothing of HTML elements or hits (``scan`` does); pure,
cached by text, and no CSS makes it raise.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import tinycss2  # type: ignore[import-untyped]
from tinycss2.color3 import parse_color  # type: ignore[import-untyped]

__all__ = [
    "BLACK",
    "CACHE_CHARS",
    "DYNAMIC_PSEUDO",
    "LINK_BLUE",
    "NO_STYLE",
    "RGB",
    "RGBA",
    "SHEET_CACHE_CHARS",
    "WHITE",
    "SheetRule",
    "Style",
    "analyze",
    "cascade",
    "css_colour",
    "css_length",
    "hex_colour",
    "inline_style",
    "paint_over",
    "reshows",
    "restyle",
    "rewrite_sheet",
    "sheet_rules",
    "too_near",
]

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

CACHE_CHARS = 4096  # longer style or colour strings (data: URIs) are analysed, not cached

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
DYNAMIC_PSEUDO = (":hover", ":focus", ":active", ":visited", ":target", "::", ":before", ":after")
# Unconditional @media preludes: their rules apply like top-level ones.
_ALWAYS_MEDIA = frozenset({"", "all", "screen", "only screen"})
SHEET_CACHE_CHARS = 256 * 1024  # cache parsed <style> text up to this size

WHITE = (255.0, 255.0, 255.0)
BLACK = (0.0, 0.0, 0.0, 1.0)
LINK_BLUE = (0.0, 0.0, 238.0, 1.0)  # the HTML default for <a href> without a colour

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
class Style:
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


NO_STYLE = Style()


def inline_style(style: str) -> Style:
    if len(style) > CACHE_CHARS:
        return analyze(_declarations(style))
    return _cached_inline_style(style)


@lru_cache(maxsize=4096)
def _cached_inline_style(style: str) -> Style:
    # Cached by text: a newsletter repeats the same few dozen style strings hundreds of times.
    return analyze(_declarations(style))


def analyze(decls: Decls) -> Style:
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
        bg_color, bg_image = _background(decls["background"][0][:CACHE_CHARS])
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
    fg = css_colour(color[:CACHE_CHARS]) if color else None
    bg = css_colour(bg_color[:CACHE_CHARS]) if bg_color else None
    hard = "; ".join(reasons) or None
    others = bool(hard or font_tiny is not None or invisible is not None or bg_color or bg_image)
    inherited = others or bool(color)
    return Style(
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


def reshows(decls: Decls) -> bool:
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


def css_length(text: str) -> tuple[float, str] | None:
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
    parsed = css_length(text)
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
    parsed = css_length(text)
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
            parsed = css_length(size)
            if parsed is not None and (parsed[1] or parsed[0] == 0):
                return _font_tiny(size)
    return None


# --- Colours (tinycss2, cached) -----------------------------------------------------------------


@lru_cache(maxsize=1024)
def css_colour(text: str, legacy: bool = False) -> RGBA | None:
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


def hex_colour(colour: RGB | RGBA) -> str:
    return "#" + "".join(f"{round(c):02x}" for c in colour[:3])


def paint_over(colour: RGBA, under: RGB) -> RGB:
    """``colour`` as it looks painted over ``under``."""
    alpha = colour[3]
    return (
        colour[0] * alpha + under[0] * (1 - alpha),
        colour[1] * alpha + under[1] * (1 - alpha),
        colour[2] * alpha + under[2] * (1 - alpha),
    )


def too_near(text: RGBA, background: RGB) -> bool:
    red, green, blue = paint_over(text, background)
    distance2 = (red - background[0]) ** 2 + (green - background[1]) ** 2
    distance2 += (blue - background[2]) ** 2
    return distance2 < COLOUR_DISTANCE**2


# --- <style> blocks (tinycss2, cached) ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SheetRule:
    selector: str
    media: bool  # inside a conditional @media/@supports: responsive, not always applied
    decls: tuple[tuple[str, str, bool], ...]  # the declarations in _SHEET_PROPS
    images: tuple[str, ...]  # image declarations as written
    scripts: tuple[str, ...]  # script declarations as written


def sheet_rules(css: str) -> tuple[SheetRule, ...]:
    if len(css) <= SHEET_CACHE_CHARS:
        return _cached_sheet_rules(css)
    return _parse_sheet(css)


@lru_cache(maxsize=256)
def _cached_sheet_rules(css: str) -> tuple[SheetRule, ...]:
    # tinycss2 is pure Python: a 2 KB newsletter stylesheet costs about a millisecond, and the
    # same template arrives again and again.
    return _parse_sheet(css)


def _parse_sheet(css: str) -> tuple[SheetRule, ...]:
    rules: list[SheetRule] = []
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


def _collect_rules(nodes: Iterable[Any], media: bool, depth: int, rules: list[SheetRule]) -> None:
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


def _rule(node: Any, media: bool) -> SheetRule | None:
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
    return SheetRule(selector, media, tuple(decls), tuple(images), tuple(scripts))


def rewrite_sheet(css: str, drop_images: bool, drop_scripts: bool) -> str:
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


def cascade(sheet: tuple[tuple[str, tuple[str, bool]], ...], style_text: str | None) -> Style:
    """The element's style from <style> rules and its attribute, in CSS order of precedence."""
    if style_text is not None and len(style_text) > CACHE_CHARS:
        return _cascade_uncached(sheet, style_text)
    return _cascade_cached(sheet, style_text)


@lru_cache(maxsize=1024)
def _cascade_cached(
    sheet: tuple[tuple[str, tuple[str, bool]], ...], style_text: str | None
) -> Style:
    # The same few rules meet the same few style attributes all over a newsletter.
    return _cascade_uncached(sheet, style_text)


def _cascade_uncached(
    sheet: tuple[tuple[str, tuple[str, bool]], ...], style_text: str | None
) -> Style:
    inline = _declarations(style_text) if style_text else {}
    merged = {prop: entry for prop, entry in sheet if not entry[1]}
    merged.update((prop, entry) for prop, entry in inline.items() if not entry[1])
    merged.update((prop, entry) for prop, entry in sheet if entry[1])
    merged.update((prop, entry) for prop, entry in inline.items() if entry[1])
    return analyze(merged)


def restyle(style_text: str, drop: Collection[str]) -> str:
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
            colour, _image = _background(value[:CACHE_CHARS])
            if colour is not None:
                kept.append(f"background-color: {colour}" + (" !important" if important else ""))
    return "; ".join(kept)
