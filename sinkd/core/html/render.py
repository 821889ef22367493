"""HTML rendered to the text SpamAssassin's body rules read, one paragraph per line.

Owns the rendering (block tags break lines or paragraphs as Mail::SpamAssassin::HTML does,
scripts, styles and templates dropped) and SpamAssassin's body_part_scan_size cut, which the
parsed message also applies to plain text; the sizes are the profile's (``scanning:``), these
constants their defaults, and ``render_html`` says what it cut so that a finding can. Its parse
is of a copy with line-break marks put before block tags, so it cannot share the scan's parse
(the marks are text to the parser and move with foster parenting). Pure and never raises;
selectolax loads only when HTML is rendered.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sinkd.core.html.depth import too_deep

__all__ = [
    "BODY_PART_SCAN_SIZE",
    "HTML_SOURCE_SCAN_SIZE",
    "Rendered",
    "cut",
    "render_html",
    "render_text",
]

_WHITESPACE = re.compile(r"\s+")
# SpamAssassin's body_part_scan_size (Conf.pm, default 50000): each part's rendered text is cut
# to about this many characters before body rules run, which keeps the work on a huge part
# bounded (tokenizing and matching cost grows with the text). The cut prefers a line break, then
# a space, within 1024 characters after the limit, as Message.pm get_body_text_array_common does.
BODY_PART_SCAN_SIZE = 50_000
_SCAN_SLACK = 1024
# An HTML source is parsed up to SpamAssassin's rawbody_part_scan_size (Conf.pm, default 500000)
# characters: markup is most of an HTML body, so a 50,000-character cut of the source would lose
# text SpamAssassin sees, while the parse of a multi-megabyte body must stay bounded. (sinkd's
# choice; SpamAssassin renders the whole part and cuts the rendered text only.)
HTML_SOURCE_SCAN_SIZE = 500_000

# Mail::SpamAssassin::HTML html_whitespace (lib/Mail/SpamAssassin/HTML.pm), at opening and
# closing tags alike (SpamAssassin bug 5009): <p>, <hr>, <blockquote>, <pre>, <listing>,
# <plaintext>, <xmp> and <title> put two line breaks, <br> and <div> one, and <li>, <td>, <th>,
# <dt>, <dd>, <embed> and <h1>-<h6> a space; two line breaks in a row (only white space
# between) end a paragraph (Message.pm), so "</div><div>" does and a lone "<br>" does not.
# sinkd also puts a space at the HTML5 block elements SpamAssassin's older list does not know
# (<section>, <table>, <tr>, ...), as a mail client shows them on lines of their own. Inline
# markup (<b>, <span>, <a>, ...) puts nothing, so "via<b>gra</b>" reads "viagra" there as on
# screen. Line breaks are marked with a noncharacter (removed from the input first): a line
# break inside text is a space in HTML.pm display_text and never counts. The pattern runs on a
# lower-cased copy, faster than an IGNORECASE alternation tried at every "<".
_HTML_BREAK_TAG = re.compile(
    r"<(?=/?(?:(blockquote|hr|listing|p|plaintext|pre|title|xmp)|(br|div)|address|article"
    r"|aside|center|dd|dl|dt|embed|fieldset|figcaption|figure|footer|form|h[1-6]|header|li"
    r"|main|nav|ol|option|section|table|tbody|td|tfoot|th|thead|tr|ul)\b)"
)
# The same three kinds of tag as three patterns, each put in by one substitution with a constant
# replacement (no Python call per match, 3-4 times faster than finditer over a lower-cased
# copy). The tag names fold case in ASCII only, as lexbor's tokenizer does (WHATWG HTML
# §13.2.5.8); the "\b" after them stays Unicode, as in _HTML_BREAK_TAG. Lower-casing differs in
# two characters only: U+212A KELVIN SIGN becomes an ASCII "k", and U+0130 becomes two
# characters (so _mark_breaks_lowered reads "?" for it, which ends a tag name). A text holding
# either takes _mark_breaks_lowered, so that the marks stay exactly where they always were.
_PARAGRAPH_TAG = re.compile(r"<(?=/?(?ai:blockquote|hr|listing|p(?:|laintext|re)|title|xmp)\b)")
_LINE_TAG = re.compile(r"<(?=/?(?ai:br|div)\b)")
# Factored by first letters (the regex engine tries alternatives one by one): the same names.
_SPACE_TAG = re.compile(
    r"<(?=/?(?ai:a(?:ddress|rticle|side)|center|d[dlt]|embed"
    r"|f(?:i(?:eldset|gcaption|gure)|o(?:oter|rm))|h(?:[1-6]|eader)|li|main|nav|o(?:l|ption)"
    r"|section|t(?:able|body|d|foot|h|head|r)|ul)\b)"
)
_LOWER_DIFFERS = ("\u212a", "\u0130")
_LINE_MARK = "\ufdd0"
_PARAGRAPH_BREAK = re.compile("(?: ?\ufdd0){2,} ?")
_LINE_BREAK_MARK = re.compile(" ?\ufdd0 ?")
# Not rendered: scripts and styles (HTML.pm html_text skips their text) and templates (inert).
# The <title> stays, as SpamAssassin renders it.
_HTML_HIDDEN_TAGS = ["script", "style", "template"]
_HTML_TAG = re.compile(r"<[^>]*>")


@dataclass(frozen=True, slots=True)
class Rendered:
    """The text body rules read, and the full sizes of what was cut to make it (else None)."""

    text: str
    text_size: int | None = None  # characters of rendered text before the body_part cut
    source_size: int | None = None  # characters of HTML source before the source cut


def render_text(html: str) -> str:
    """HTML to the text SpamAssassin's body rules see, one paragraph per line, at the default
    sizes (``render_html`` with a profile's)."""
    return render_html(html).text


def render_html(
    html: str,
    body_part_scan_size: int = BODY_PART_SCAN_SIZE,
    source_scan_size: int = HTML_SOURCE_SCAN_SIZE,
) -> Rendered:
    """HTML to the text SpamAssassin's body rules see, one paragraph per line.

    Scripts, styles and templates dropped; text hidden by styling is kept, as in
    SpamAssassin's "rendered" text (its "visible_rendered" is for Bayes only). A size of 0
    does not cut (Conf.pm: "Disabled with 0").
    """
    html = html.replace(_LINE_MARK, "")
    source = html[:source_scan_size] if source_scan_size else html
    source_size = len(html) if len(source) < len(html) else None
    if too_deep(source) is not None:
        # Hostile nesting would stall the parser: strip the tags instead, over the whole part
        # (one C-speed pass; the text is all we need, and padding must not hide it).
        text = _HTML_TAG.sub(" ", html)
        source_size = None  # the whole part was read
    else:
        marked = _mark_breaks(source)
        try:
            # Imported here: messages without HTML must not pay for (or even load) selectolax.
            from selectolax.lexbor import LexborHTMLParser

            tree = LexborHTMLParser(marked)
            tree.strip_tags(_HTML_HIDDEN_TAGS, recursive=True)
            root = tree.root
            text = root.text(separator="") if root is not None else ""
        except Exception:
            text = _HTML_TAG.sub(" ", marked)  # last resort; selectolax is not known to fail
    # HTML.pm display_text: white space inside text (line breaks too) is one space; only the
    # paragraph tags above end a paragraph.
    text = _WHITESPACE.sub(" ", text)
    if _LINE_MARK in text:
        text = _LINE_BREAK_MARK.sub(" ", _PARAGRAPH_BREAK.sub("\n", text))
    # Cut after the breaks are collapsed (SpamAssassin counts every line break of the rendered
    # text): padding of empty elements cannot push the text out of the scanned part.
    text = text.strip()
    kept = cut(text, body_part_scan_size)
    text_size = len(text) if len(kept) < len(text) else None
    return Rendered(kept.rstrip(), text_size, source_size)


def _mark_breaks(html: str) -> str:
    """Put line marks or a space before each tag that breaks the text (_HTML_BREAK_TAG)."""
    if any(char in html for char in _LOWER_DIFFERS):
        return _mark_breaks_lowered(html)
    if "<" not in html:
        return html
    html = _PARAGRAPH_TAG.sub(_LINE_MARK * 2 + "<", html)
    html = _LINE_TAG.sub(_LINE_MARK + "<", html)
    return _SPACE_TAG.sub(" <", html)


def _mark_breaks_lowered(html: str) -> str:
    """``_mark_breaks`` by one pattern over a lower-cased copy (the reference form)."""
    lowered = html.lower()
    if len(lowered) != len(html):  # a few characters lower-case to two: keep offsets exact
        lowered = "".join(c if len(c) == 1 else "?" for c in map(str.lower, html))
    pieces: list[str] = []
    pos = 0
    for match in _HTML_BREAK_TAG.finditer(lowered):
        start = match.start()
        mark = _LINE_MARK * 2 if match.group(1) else _LINE_MARK if match.group(2) else " "
        pieces += (html[pos:start], mark)
        pos = start
    pieces.append(html[pos:])
    return "".join(pieces)


def cut(text: str, size: int) -> str:
    """Cut ``text`` near ``size`` characters as Message.pm does for body_part_scan_size; a
    size of 0 keeps it whole."""
    if not size or len(text) <= size:
        return text
    for stop in ("\n", " "):
        end = text.find(stop, size, size + _SCAN_SLACK + 1)
        if end >= 0:
            return text[: end + 1]
    return text[:size]
