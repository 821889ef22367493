"""One parse and one walk of an HTML body: the scan that finds hits and plans their removal.

Owns the lexbor parse (a document stays a document, a fragment a fragment), reading the
``<style>`` sheets onto the elements they match (lexbor's selector engine; each distinct sheet
planned once), and the depth-first walk that hands elements, attributes and text nodes to the
detectors (``detectors``), one per HTML class. The walk passes by what no detector can read
(an element of no special tag, with no attribute a detector reads, an inert style and no
<style> rule; text where no hidden text or zero-width character can be), which changes no hit.
Given classes to strip, the same walk plans the edits (``edits``) that ``apply`` makes. Pure:
no I/O, no logging, and no HTML makes it raise.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from selectolax.lexbor import LexborHTMLParser, LexborNode, SelectolaxError

from sinkd.core.html.css import (
    DYNAMIC_PSEUDO,
    NO_STYLE,
    SHEET_CACHE_CHARS,
    analyze,
    cascade,
    inline_style,
    reshows,
    restyle,
    rewrite_sheet,
    sheet_rules,
)
from sinkd.core.html.depth import is_document
from sinkd.core.html.describe import SOFT_HYPHEN, ZERO_WIDTH, css_url, origin, short
from sinkd.core.html.detectors import (
    ACTIVE_ELEMENTS,
    FORM_CONTROLS,
    MULTIMEDIA_ELEMENTS,
    READ_ATTRS,
    STATE_TAGS,
    SVG_ANIMATION_ATTRS,
    URL_ATTRS,
    ActiveScript,
    Edits,
    HiddenText,
    Images,
    Multimedia,
    TrackingPixels,
    WalkState,
    img_source,
    text_of,
)
from sinkd.core.html.edits import REMOVE, SET_SHEET, SET_STYLE, Action, Found, Plan, apply_actions

__all__ = ["Scan", "attribute_values"]

# Elements that change the walk's context for their subtree.
_CONTEXT_TAGS = frozenset({"svg", "form", "video", "audio", "picture"})
# Elements forbidden as such (or inside something forbidden); the rest need no tag checks.
_SPECIAL_TAGS = (
    frozenset({"img", "input", "source", "image", "picture", "script", "form", "meta"})
    | MULTIMEDIA_ELEMENTS
    | ACTIVE_ELEMENTS
    | FORM_CONTROLS
)
# Elements the walk always hands to the detectors, whatever their attributes.
_READ_TAGS = _SPECIAL_TAGS | _CONTEXT_TAGS | STATE_TAGS | {"style"}
_NOTHING: frozenset[str] = frozenset()


class Scan:
    """One parse and one depth-first walk; given classes to strip, it also plans the edits."""

    def __init__(self, html: str) -> None:
        self.document = is_document(html)
        self.tree = LexborHTMLParser(html, is_fragment=not self.document)
        self.strip: frozenset[str] = _NOTHING
        self.plan = Plan(_NOTHING)
        self.sheet_decls: dict[int, dict[str, tuple[str, bool]]] = {}
        self.sheet_selector: dict[int, str] = {}
        self.reshown: set[int] = set()
        self.sheet_hits: dict[int, list[tuple[str, str, str]]] = {}
        self.sheets_apply = False  # whether any node needs its mem_id looked up
        self.sheet_keys: frozenset[int] = frozenset()  # the elements some <style> rule reaches
        self.sheet_styles: dict[int, tuple[tuple[str, tuple[str, bool]], ...]] = {}
        self.ran = False
        self.applied = False

    # -- results --

    @property
    def actions(self) -> list[Action]:
        return self.plan.actions

    def run(self, strip: frozenset[str]) -> list[Found]:
        """Every hit, in document order; the edits that remove ``strip`` are planned too."""
        assert not self.ran, "a scan walks its tree once"
        self.ran = True
        self.strip = strip
        self.plan = Plan(strip)
        self.images = Images(self.plan)
        self.pixels = TrackingPixels(self.plan)
        self.multimedia = Multimedia(self.plan)
        self.script = ActiveScript(self.plan)
        self.hidden = HiddenText(self.plan, self.sheet_selector)
        self._read_sheets()
        self._walk()
        self.hidden.finish()
        return self.plan.found()

    def apply(self) -> None:
        """Make the planned edits; the tree is the stripped body from now on."""
        self.applied = True
        apply_actions(self.plan.actions, self.tree.root if self.document else None)

    def attribute_values(self, names: tuple[str, ...]) -> list[str]:
        """``attribute_values`` of this scan's tree (read before the strip edits it)."""
        assert not self.applied, "the tree is the stripped body now"
        return attribute_values(self.tree, names)

    def serialize(self) -> str:
        return self.tree.html or ""

    # -- <style> blocks --

    def _read_sheets(self) -> None:
        for style_node in self.tree.css("style"):
            css = text_of(style_node)
            if not css.strip():
                continue
            found: list[tuple[str, str, str]] = []
            for rule in _sheet_plan(css):
                found.extend(rule.hits)
                if rule.decls:
                    self._apply_rule(rule)
            if found:
                self.sheet_hits[style_node.mem_id] = found
        self.sheets_apply = bool(self.sheet_decls or self.reshown or self.sheet_hits)
        self.sheet_keys = frozenset(self.sheet_decls).union(self.reshown, self.sheet_hits)
        # Frozen once, as cascade() caches by them: an element's rules do not change on the walk.
        self.sheet_styles = {key: tuple(decls.items()) for key, decls in self.sheet_decls.items()}

    def _apply_rule(self, rule: _RulePlan) -> None:
        if rule.media:
            # Responsive rules are not applied, but one that shows an element again on some
            # screens (a "mobile-only" block) makes its hiding layout, not a hidden message.
            if rule.effect:
                for node in self._select(rule.selectors):
                    self.reshown.add(node.mem_id)
            return
        # No specificity: rules apply in source order, !important wins, then inline styles.
        for node in self._select(rule.selectors):
            key = node.mem_id
            mine = self.sheet_decls.setdefault(key, {})
            for prop, (value, important) in rule.decls:
                old = mine.get(prop)
                if old is None or important or not old[1]:
                    mine[prop] = (value, important)
            if rule.effect:
                self.sheet_selector[key] = rule.selector

    def _select(self, selectors: tuple[str, ...]) -> list[LexborNode]:
        if len(selectors) == 1:
            try:
                return self.tree.css(selectors[0])
            except SelectolaxError:
                selectors = tuple(selectors[0].split(","))  # one bad part must not void the rest
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
        hidden = self.hidden
        top: list[LexborNode] = []
        if self.document:
            if tree.root is not None:
                top.append(tree.root)
        else:
            node = tree.root  # a fragment's first top-level node
            while node is not None:
                top.append(node)
                node = node.next
        sheets_apply, sheet_keys = self.sheets_apply, self.sheet_keys
        all_text = tree.text()
        zw_possible = not ZERO_WIDTH.isdisjoint(all_text) or SOFT_HYPHEN in all_text
        root_state = WalkState()
        # An explicit stack, not recursion: hostile mail nests elements thousands deep.
        stack: list[tuple[LexborNode, WalkState, str]] = [
            (n, root_state, "") for n in reversed(top)
        ]
        order = 0
        while stack:
            node, state, parent_tag = stack.pop()
            order += 1
            tag = node.tag or ""
            if tag == "-text":
                if not state.render or state.hard:
                    continue
                if state.soft >= 0:
                    hidden.soft_text(node, state, order)
                elif zw_possible:
                    text = node.text_content
                    if text and not (ZERO_WIDTH.isdisjoint(text) and SOFT_HYPHEN not in text):
                        hidden.zero_width_text(node, text, state, order, parent_tag)
                continue
            if tag.startswith(("-", "!")):
                continue  # comments, doctype
            attrs = node.attributes
            if (
                tag not in _READ_TAGS
                and (not attrs or _inert(attrs, state))
                and (not sheets_apply or node.mem_id not in sheet_keys)
            ):
                child_state = state  # no hit, no edit, nothing its subtree inherits differs
            else:
                child_state = self._element(node, tag, attrs, state, order)
            child = node.last_child
            if (
                child_state.render
                and not child_state.hard
                and (zw_possible or child_state.soft >= 0)
            ):
                while child is not None:
                    stack.append((child, child_state, tag))
                    child = child.prev
            else:
                # Text here is read by no detector (unrendered, hidden outright with its
                # element, or visible without zero-width characters): only elements go on.
                while child is not None:
                    if not child.is_text_node:
                        stack.append((child, child_state, tag))
                    child = child.prev

    def _element(
        self,
        node: LexborNode,
        tag: str,
        attrs: dict[str, str | None],
        state: WalkState,
        order: int,
    ) -> WalkState:
        style_text = attrs.get("style")
        inline = inline_style(style_text) if style_text else NO_STYLE
        style = inline
        key = 0
        reshown = False
        if self.sheets_apply:
            key = node.mem_id
            sheet = self.sheet_styles.get(key)
            if sheet is not None:
                style = cascade(sheet, style_text)
            reshown = key in self.reshown

        plan = self.plan
        first = len(plan.slots)
        planned = len(plan.actions)
        strip = _NOTHING if state.doomed else self.strip  # nothing to edit inside a doomed node
        edits: Edits = []
        drop_props: list[str] = []
        # Whether strip_html removes this element, and so every hit inside it. The detectors
        # run in class order, so that one element's hits keep their order.
        removes = False
        if tag in _SPECIAL_TAGS:
            img = img_source(attrs) if tag == "img" else ("", "")
            if self.images.element(tag, attrs, state, strip, img):
                removes = True
            if tag == "img" and self.pixels.element(attrs, style, state, reshown, strip, img):
                removes = True
            if self.multimedia.element(tag, attrs, state, strip):
                removes = True
            if self.script.element(tag, attrs, state, strip, edits):
                removes = True
        if tag == "style" and key in self.sheet_hits:
            self._style_hits(node, order, strip)
        if inline.image_props:
            self.images.style_attribute(tag, inline, strip, drop_props)
        if inline.script_props:
            self.script.style_attribute(tag, inline, strip, drop_props)
        for name in attrs:
            # One test per attribute name first: almost all are neither events nor URLs.
            if name[:2] == "on" or name in URL_ATTRS or name in SVG_ANIMATION_ATTRS:
                value = attrs[name]
                self.images.attribute(tag, name, value, strip, edits)
                self.script.attribute(tag, name, value, state, strip, edits)
        # <base href> only resolves relative links; it runs nothing and is deliberately skipped.

        child = self.hidden.child_state(tag, attrs, style, state, reshown)
        if child.hard and not state.hard and state.render:
            removes = self.hidden.hard_hit(node, tag, attrs, style, state, inline, key) or removes

        doomed = state.doomed or removes
        if removes and not state.doomed:
            plan.actions.append(Action(order, REMOVE, node))
        elif not doomed:
            for kind, arg in edits:
                plan.actions.append(Action(order, kind, node, arg))
            if drop_props and style_text is not None:
                restyled = restyle(style_text, drop_props)
                plan.actions.append(Action(order, SET_STYLE, node, restyled))
        if doomed:
            for index in range(first, len(plan.slots)):
                found = plan.slots[index]
                if found is not None:
                    found.doomed = True
            if child.soft >= 0 and child.soft != state.soft:
                self.hidden.doom(child.soft)
        if len(plan.actions) > planned:
            plan.spans[order] = (first, len(plan.slots))

        if removes or tag in _CONTEXT_TAGS:
            # A copy even of a fresh state: child_state may share it with this element's
            # siblings, and a state handed down is never changed.
            child = child.copy()
            child.doomed = doomed
            child.svg = child.svg or tag == "svg"
            child.form = child.form or (tag == "form" and "active_script" in strip)
            child.media = child.media or tag in ("video", "audio")
            child.picture = child.picture or tag == "picture"
        return child

    def _style_hits(self, node: LexborNode, order: int, strip: frozenset[str]) -> None:
        # The sheet's hits stay in the sheet's order (rule by rule), whatever their class, so
        # they are recorded here rather than by the image and script detectors.
        found = self.sheet_hits[node.mem_id]
        for cls, what, label in found:
            self.plan.hit(cls, what, label=label)
        drop_images = "images" in strip and any(hit[0] == "images" for hit in found)
        drop_scripts = "active_script" in strip and any(hit[0] == "active_script" for hit in found)
        if drop_images or drop_scripts:
            css = rewrite_sheet(text_of(node), drop_images, drop_scripts)
            # "</" could end the <style> element; "<\/" is the same CSS (an escaped "/").
            self.plan.actions.append(Action(order, SET_SHEET, node, css.replace("</", "<\\/")))


@dataclass(frozen=True, slots=True)
class _RulePlan:
    """What a scan does with one <style> rule, worked out once per distinct sheet."""

    selector: str  # as written, for the hit that names it
    selectors: tuple[str, ...]  # what is queried: the selector without its dynamic parts
    media: bool
    decls: tuple[tuple[str, tuple[str, bool]], ...]  # prop -> (value, !important), last wins
    effect: bool  # in @media: it shows an element again; otherwise: it hides outright
    hits: tuple[tuple[str, str, str], ...]  # (class, what, label) of its images and scripts


def _sheet_plan(css: str) -> tuple[_RulePlan, ...]:
    if len(css) <= SHEET_CACHE_CHARS:
        return _cached_sheet_plan(css)
    return _plan_sheet(css)


@lru_cache(maxsize=256)
def _cached_sheet_plan(css: str) -> tuple[_RulePlan, ...]:
    # The same template's sheet arrives again and again: its selectors, its declarations and
    # whether they hide (analyze) or show again (reshows) are the same every time.
    return _plan_sheet(css)


def _plan_sheet(css: str) -> tuple[_RulePlan, ...]:
    plans: list[_RulePlan] = []
    for rule in sheet_rules(css):
        selector = short(rule.selector, 40)
        hits: list[tuple[str, str, str]] = []
        for decl in rule.images:
            what = f"{short(decl)} in <style> rule {rule.selector!r}"
            label = f"background image in <style> rule {selector!r}"
            hits.append(("images", what, label + origin(css_url(decl))))
        for decl in rule.scripts:
            what = f"script in CSS {short(decl)} in <style> rule {rule.selector!r}"
            hits.append(("active_script", what, f"script in <style> rule {selector!r}"))
        selectors: tuple[str, ...] = (rule.selector,)
        if any(p in rule.selector for p in DYNAMIC_PSEUDO):
            selectors = tuple(
                s for s in rule.selector.split(",") if not any(p in s for p in DYNAMIC_PSEUDO)
            )
        decls = {prop: (value, important) for prop, value, important in rule.decls}
        effect = False
        if decls:
            effect = reshows(decls) if rule.media else analyze(decls).hard is not None
        plans.append(
            _RulePlan(
                rule.selector, selectors, rule.media, tuple(decls.items()), effect, tuple(hits)
            )
        )
    return tuple(plans)


def _inert(attrs: dict[str, str | None], state: WalkState) -> bool:
    """Whether an element of a tag no detector reads, reached by no <style> rule, is invisible
    to every detector: ``Scan._element`` would record nothing, plan nothing and hand its
    children ``state`` itself (``HiddenText.child_state``'s common case)."""
    if not READ_ATTRS.isdisjoint(attrs):
        return False
    for name in attrs:
        if name[:2] == "on":
            return False  # an event handler ("on" alone is read as a URL attribute)
    style_text = attrs.get("style")
    if not style_text:
        return True
    style = inline_style(style_text)
    if style.image_props or style.script_props:
        return False
    return not style.inherited or (style.colour_only and style.fg == state.fg)


def attribute_values(tree: LexborHTMLParser, names: tuple[str, ...]) -> list[str]:
    """The values of the attributes ``names`` (non-empty ones), element by element in document
    order, each element's in the order of ``names``."""
    selector = ", ".join(f"[{name}]" for name in names)
    values: list[str] = []
    for node in tree.css(selector):
        attributes = node.attributes
        values.extend(v for name in names if (v := attributes.get(name)))
    return values
