"""MIME content policy: images, multimedia, active script, hidden text and attachments.

Owns the ``mime`` filter kind: it finds the survey's "rich content" (64% of IT departments
block images, multimedia, active script or hidden text) and dangerous attachments (by
extension, declared type, true type from magic bytes, inside archives, macro documents,
encrypted archives), and gives each class the profile's outcome: strip (MIMEDefang's
drop-with-warning, Exchange's attachment filter "Strip"), quarantine, reject, score or ignore.
Two HTML classes are recorded or scored, never stripped, because no gateway strips them: remote
images (the reader's client withholds them) and SpamAssassin's image-only HTML. With
``true_type: false`` rules see names and declared types only, as Exchange's Attachment
Filtering agent does. Pure: it reads the parsed message and returns findings with strip plans;
``strip.py`` rewrites.

```yaml
- kind: mime
  name: rich-content
  strip_notice: "[${filename} (${content_type}) was removed by the corporate mail policy]"
  true_type: true                 # match extensions on the true type too (a renamed .exe)
  archives: {inspect: true, max_depth: 3, max_members: 1000}
  classes:
    images: {action: strip}
    remote_images: {action: none}       # record only: what Outlook withholds until allowed
    image_only: {action: score, score: 0.9}   # SpamAssassin HTML_IMAGE_ONLY_*
    tracking_pixels: {action: score, score: 0.5}
    multimedia: {action: strip}
    active_script: {action: strip}
    hidden_text: {action: strip}
    macro_documents: {action: quarantine}
    encrypted_archives: {action: quarantine}
    unscannable: {action: quarantine}   # zip bombs, too deep nesting, corrupt archives
  attachments:
    - {id: EXECUTABLE, extensions: [exe, scr, js], double_extension: true, action: reject}
    - {id: NOT_BUSINESS_TYPE, not_extensions: [pdf, docx, xlsx], action: quarantine}
```
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from pydantic import Field, model_validator

from sinkd.core.attachments import FileInfo, Inspection, Limits, inspect_file
from sinkd.core.filters.base import Filter, MessageContext, reply_variables
from sinkd.core.html import HtmlReport
from sinkd.core.mimetree import MimeNode, MimeTree
from sinkd.core.model import Action, Category, Finding, FindingCode, StripPlan
from sinkd.core.schema import (
    CompileContext,
    CompileError,
    FilterSpecBase,
    ReplyRef,
    ReplyTemplate,
    RuleId,
    RuleOutcome,
    Score,
    Spec,
)

TrueKind = Literal[
    "executable", "script", "archive", "office", "pdf", "image", "audio", "video", "text"
]
# Classes found in HTML and removed from it by strip_html, and the MIME parts of each class.
_HTML_CLASSES = ("images", "tracking_pixels", "multimedia", "active_script", "hidden_text")
# Classes found in HTML that are only recorded or scored, never stripped: what the reader's mail
# client does with remote images, and SpamAssassin's HTML_IMAGE_ONLY_* (little HTML, images).
_RECORD_CLASSES = ("remote_images", "image_only")
# SpamAssassin's HTML_IMAGE_ONLY_04 .. _32 fire when an HTML part with an <img> is at most this
# many characters long, markup included (Mail::SpamAssassin::HTML adds length($text) of the
# whole part to {length}; Plugin/HTMLEval.pm html_image_only; rules/20_html_tests.cf).
IMAGE_ONLY_MAX_CHARS = 3200
_PART_CLASSES = ("images", "multimedia", "active_script")
_FILE_CLASSES = ("macro_documents", "encrypted_archives", "unscannable")
_CLASS_TEXT = {
    "images": "images",
    "tracking_pixels": "tracking pixels (1x1 images that report when the mail is opened)",
    "multimedia": "audio, video or Flash content",
    "active_script": "active content (scripts, event handlers, frames, forms or plug-ins)",
    "hidden_text": "text hidden from the reader",
    "remote_images": "remote images",
    "image_only": "little text next to its images",
    "macro_documents": "Office documents with macros",
    "encrypted_archives": "password-protected archives the filter cannot inspect",
    "unscannable": "content the filter could not fully inspect",
}
# Extensions a true type stands for, so that "renamed" files match extension lists
# (Exchange Online's common attachments filter and Gmail both match on the true type).
_TRUE_TYPE_EXTENSIONS: dict[str, tuple[str, ...]] = {
    "application/x-dosexec": ("exe", "dll", "scr", "com", "sys", "pif"),
    "application/vnd.microsoft.portable-executable": ("exe", "dll", "scr", "com", "sys", "pif"),
    "application/x-executable": ("elf",),
    "application/x-elf": ("elf",),
    "application/x-sharedlib": ("elf",),
    "application/x-mach-binary": ("macho",),
    "application/x-msi": ("msi",),
    "application/x-ms-shortcut": ("lnk",),
    "application/java-archive": ("jar",),
    "application/vnd.android.package-archive": ("apk",),
    "application/x-iso9660-image": ("iso",),
    "application/x-xz": ("xz",),
    "application/x-7z-compressed": ("7z",),
    "application/vnd.rar": ("rar",),
    "application/x-rar-compressed": ("rar",),
    "application/zip": ("zip",),
    "application/gzip": ("gz",),
}
_KIND_EXTENSIONS: dict[str, tuple[str, ...]] = {
    "executable": ("exe",),
    "script": ("sh",),
}


class Archives(Spec):
    inspect: bool = True
    max_depth: int = Field(default=3, ge=0, le=10)
    max_members: int = Field(default=1000, ge=1, le=100_000)
    max_total_bytes: int = Field(default=100 * 1024 * 1024, ge=1)
    max_ratio: int = Field(default=200, ge=2)


class Classes(Spec):
    """One outcome per class. A class left out is ignored: not even looked for (so a profile
    that names no HTML class never parses HTML); ``{action: none}`` records it, nothing more."""

    images: RuleOutcome | None = None
    remote_images: RuleOutcome | None = None  # record or score only: mail clients withhold them
    image_only: RuleOutcome | None = None  # record or score only: SpamAssassin's HTML_IMAGE_ONLY_*
    tracking_pixels: RuleOutcome | None = None
    multimedia: RuleOutcome | None = None
    active_script: RuleOutcome | None = None
    hidden_text: RuleOutcome | None = None
    macro_documents: RuleOutcome | None = None
    encrypted_archives: RuleOutcome | None = None
    unscannable: RuleOutcome | None = None

    @model_validator(mode="after")
    def _record_only(self) -> Classes:
        for name in _RECORD_CLASSES:
            outcome: RuleOutcome | None = getattr(self, name)
            if outcome is not None and outcome.action is Action.STRIP:
                raise ValueError(
                    f"{name} can be recorded, scored or act on the whole message, not stripped"
                    " (strip 'images' to remove images)"
                )
        return self


class AttachmentRule(Spec):
    id: RuleId
    extensions: list[str] | str | None = None
    not_extensions: list[str] | str | None = None
    mime_types: list[str] | str | None = None
    true_kinds: list[TrueKind] = []
    filename_regex: str | None = None
    double_extension: bool = False  # check every extension of the name, not only the last
    in_archives: bool = True
    action: Action = Action.REJECT
    score: Score = 0.0
    reply: ReplyRef | None = None
    describe: str | None = None
    source: str | None = None

    @model_validator(mode="after")
    def _matches_something(self) -> AttachmentRule:
        given = [self.extensions, self.not_extensions, self.mime_types, self.filename_regex]
        if all(g is None for g in given) and not self.true_kinds:
            raise ValueError(
                "an attachment rule needs extensions, not_extensions, mime_types, "
                "true_kinds or filename_regex"
            )
        return self


class MimeSpec(FilterSpecBase):
    kind: Literal["mime"]
    true_type: bool = True
    strip_notice: str = "[${filename} (${content_type}) was removed by the mail policy]"
    archives: Archives = Archives()
    classes: Classes = Classes()
    attachments: list[AttachmentRule] = []


@dataclass
class _Hits:
    """Everything one class or rule found in one message."""

    items: list[str] = field(default_factory=list)  # human lines, "part 2: <img src=...>"
    quotes: list[str] = field(default_factory=list)  # hidden text quoted
    html_paths: dict[str, None] = field(
        default_factory=dict
    )  # HTML parts to strip the class from, in MIME order (a set would order them by the hash seed)
    parts: dict[str, MimeNode] = field(default_factory=dict)  # whole parts to remove
    # What a reason names, each thing once: "'statement.zip/invoice.exe'" for files and archive
    # members (quoted), "<iframe> from www.youtube.com" for HTML elements.
    names: list[str] = field(default_factory=list)
    whys: dict[str, str] = field(default_factory=dict)  # attachment rules: name -> "a .exe file"

    def add_part(self, node: MimeNode, what: str, name: str | None = None) -> None:
        self.parts[node.path] = node
        self.items.append(f"part {node.path or 'body'}: {what}")
        self.names.append(name or _part_name(node))

    def distinct(self) -> list[str]:
        return list(dict.fromkeys(self.names))


HitsFor = Callable[[str], _Hits]


def _part_name(node: MimeNode) -> str:
    """A MIME part as a reason names it: its file name, else its type and place."""
    if node.filename:
        return repr(node.filename)
    return f"an inline {node.content_type} (part {node.path or 'body'})"


def _listed(names: list[str], limit: int = 3) -> str:
    """ "a", "a and b", "a, b and c", "a, b, c and 2 more"."""
    if len(names) > limit:
        return f"{', '.join(names[:limit])} and {len(names) - limit} more"
    if len(names) > 1:
        return f"{', '.join(names[:-1])} and {names[-1]}"
    return names[0] if names else ""


def _consequence(action: Action, plural: bool) -> str:
    """The end of a reason sentence, after its evidence."""
    them = "them" if plural else "it"
    return {
        Action.NONE: "; this policy allows that",
        Action.ALLOW: "; this policy allows that",
        Action.SCORE: ", which counts against the message",
        Action.TAG: ", so the message is marked as spam",
        Action.JUNK: ", so the message goes to the junk folder",
        Action.STRIP: f"; the policy removes {them} before delivery",
        Action.QUARANTINE: ", so the message is held in quarantine",
        Action.DISCARD: ", so the message is silently dropped",
        Action.TEMPFAIL: ", so the server asks the sender to try again later",
        Action.REJECT: ", so the message is refused",
    }[action]


class _Rule:
    def __init__(self, rule: AttachmentRule, index: int, ctx: CompileContext) -> None:
        here = ctx.at("attachments", index)
        self.rule = rule
        self.code = f"MIME_{rule.id}"

        def values(field_name: str, kinds: Sequence[str]) -> frozenset[str] | None:
            given = getattr(rule, field_name)
            if given is None:
                return None
            entries = here.entries(given, field_name, kinds=kinds)
            return frozenset(e.strip().lower().lstrip(".") for e in entries if e.strip())

        self.extensions = values("extensions", ("extension",))
        self.not_extensions = values("not_extensions", ("extension",))
        self.mime_types = values("mime_types", ("mime_type",))
        self.true_kinds = frozenset(rule.true_kinds)
        self.filename_regex = None
        if rule.filename_regex is not None:
            try:
                self.filename_regex = re.compile(rule.filename_regex)
            except re.error as exc:
                raise CompileError(
                    (*here.loc, "filename_regex"), f"invalid regular expression: {exc}"
                ) from None
        self.reply: ReplyTemplate = here.outcome_reply(rule.action, rule.reply)

    def matches(
        self, info: FileInfo, true_extensions: tuple[str, ...], true_type: str | None
    ) -> str | None:
        """Why this file matches the rule (a short phrase), or None.

        ``true_type`` is None when the filter matches declared types and names only (as
        Exchange's Attachment Filtering agent does: by file name and MIME content type)."""
        if info.depth > 0 and not self.rule.in_archives:
            return None
        named = info.extensions
        last = named[-1] if named else None
        if self.extensions is not None:
            candidates = list(named) if self.rule.double_extension else ([last] if last else [])
            for ext in candidates:
                if ext in self.extensions:
                    deceptive = " behind a double extension" if ext != last else ""
                    return f"a .{ext} file{deceptive}"
            for ext in true_extensions:
                if ext in self.extensions and ext not in named:
                    return f"really a .{ext} file ({info.true_type}) whatever its name says"
        if self.not_extensions is not None and (info.name or info.depth == 0):
            if last is None or last not in self.not_extensions:
                kind = f"a .{last} file" if last else "a file without an extension"
                return f"{kind}, not on the list of accepted types"
            # Renamed to an accepted extension: its true type must be accepted too.
            if true_extensions and not self.not_extensions.intersection(true_extensions):
                ext = true_extensions[0]
                return f"really a .{ext} file ({info.true_type}) whatever its name says"
        if self.mime_types is not None:
            for mime_type in (info.declared_type, true_type):
                if mime_type and mime_type.lower() in self.mime_types:
                    return f"of type {mime_type}"
        if self.true_kinds and info.true_kind in self.true_kinds:
            return f"really {'an' if info.true_kind[0] in 'aeio' else 'a'} {info.true_kind} file"
        if self.filename_regex is not None and info.name and self.filename_regex.search(info.name):
            return "named like a dangerous file"
        return None


def _provenance(node: RuleOutcome | AttachmentRule) -> dict[str, object]:
    """``{"source": ...}`` or ``{"assumption": ...}`` of a profile node, for a finding's detail."""
    origin = node.provenance
    return {origin[0]: origin[1]} if origin else {}


# Classes whose reason, when they are delivered rather than stripped, says what the reader's
# mail client does with them.
_CLIENT_CLASSES = ("tracking_pixels", "hidden_text")


def _record_reason(name: str, hits: _Hits, action: Action) -> str:
    """What the reader's mailbox does with a delivered class, in words marketing can use."""
    count = len(hits.items)
    then = _consequence(action, count != 1)
    first = hits.names[0] if hits.names else hits.items[0].split(": ", 1)[-1]
    if name == "hidden_text":
        # The inbox preview line is the first text of the body, hidden or not: that is what
        # the preheader of an ESP template is for (SpamAssassin scores it only with other
        # signs or when long: 72_active.cf HTML_TEXT_INVISIBLE_STYLE, LONG_INVISIBLE_TEXT).
        quoted = "; ".join(f"'{q}'" for q in hits.quotes[:3]) or first
        return (
            f"The message contains text hidden from the reader ({quoted}); mail clients show"
            " hidden text at the top of a message as its inbox preview line (the preheader of"
            f" ESP templates){then}."
        )
    if name == "tracking_pixels":
        them = f"{count} tracking pixels" if count != 1 else "tracking pixel"
        return (
            f"Outlook does not load the {them} (such as {first}) until the reader allows"
            f" pictures to download, so no open is counted before that{then}."
        )
    if name == "remote_images":
        # Outlook for Windows does not download pictures from the Internet until the reader
        # clicks "Download pictures" (or the sender is a Safe Sender): Microsoft support,
        # "Block or unblock automatic picture downloads in email messages". Gmail shows remote
        # images through its image proxy unless the reader chose "Ask before displaying
        # external images" or the message looks suspicious (support.google.com/mail/answer/145919).
        first = first.removesuffix(" remote http(s):")
        them = f"{count} remote images" if count != 1 else "remote image"
        return (
            f"Outlook does not show the {them} (such as {first}) until the reader clicks to"
            " download pictures; Gmail loads them through its image proxy unless the reader"
            f" has chosen to be asked first{then}."
        )
    return (
        f"The HTML has little text around its images ({first}): SpamAssassin's HTML_IMAGE_ONLY"
        f" rules fire on up to {IMAGE_ONLY_MAX_CHARS} characters of HTML with an image{then}."
    )


# RFC 1847 §2.1: the second part of a multipart/signed is the signature over the first, control
# information of the signing protocol (OpenPGP, RFC 3156 §5; S/MIME, RFC 8551 §3.5.3), not a
# file the sender attached. Attachment rules skip it: counting it as a file put every signed
# message of the SpamAssassin corpus in a business-types quarantine (sinkd's reading of the
# RFCs; no gateway documents treating a signature part as an attachment).
_SIGNATURE_TYPES = frozenset(
    {"application/pgp-signature", "application/pkcs7-signature", "application/x-pkcs7-signature"}
)


def _signature_parts(tree: MimeTree) -> frozenset[str]:
    """Paths of the signature parts of every multipart/signed in the message."""
    return frozenset(
        node.children[1].path
        for node in tree.root.walk()
        if node.content_type == "multipart/signed"
        and len(node.children) == 2
        and node.children[1].content_type in _SIGNATURE_TYPES
    )


def _is_attachment(node: MimeNode) -> bool:
    if node.filename or node.disposition == "attachment":
        return True
    maintype = node.content_type.partition("/")[0]
    return maintype not in ("text", "image", "audio", "video", "multipart", "message")


class MimeFilter(Filter):
    kind = "mime"
    Spec = MimeSpec
    category = Category.CONTENT
    categories = (Category.CONTENT, Category.ATTACHMENTS)
    codes = (
        FindingCode("MIME_IMAGES", "images (parts, `<img>`, CSS backgrounds)"),
        FindingCode("MIME_REMOTE_IMAGES", "images fetched from the network (recorded or scored)"),
        FindingCode(
            "MIME_IMAGE_ONLY", "an image in little HTML (SpamAssassin's `HTML_IMAGE_ONLY_*`)"
        ),
        FindingCode("MIME_TRACKING_PIXELS", "remote 1x1 or hidden images"),
        FindingCode("MIME_MULTIMEDIA", "audio, video, Flash"),
        FindingCode("MIME_ACTIVE_SCRIPT", "scripts, event handlers, frames, forms, plug-ins"),
        FindingCode("MIME_HIDDEN_TEXT", "text hidden from the reader"),
        FindingCode("MIME_MACRO_DOCUMENTS", "Office documents with macros"),
        FindingCode("MIME_ENCRYPTED_ARCHIVES", "password-protected archives"),
        FindingCode("MIME_UNSCANNABLE", "zip bombs, nesting too deep: content not fully inspected"),
        FindingCode("MIME_<ID>", "the attachment rule with this id matched"),
    )

    def __init__(self, spec: MimeSpec, ctx: CompileContext) -> None:
        super().__init__(spec, ctx)
        self.spec = spec
        self.rules = [_Rule(rule, i, ctx) for i, rule in enumerate(spec.attachments)]
        self.replies: dict[str, ReplyTemplate] = {}
        self.outcomes: dict[str, RuleOutcome] = {}
        for name in (*_HTML_CLASSES, *_RECORD_CLASSES, *_FILE_CLASSES):
            outcome: RuleOutcome | None = getattr(spec.classes, name)
            if outcome is None:
                continue
            self.outcomes[name] = outcome
            self.replies[name] = ctx.at("classes", name).outcome_reply(
                outcome.action, outcome.reply
            )
        self.inspects_html = any(
            name in self.outcomes for name in (*_HTML_CLASSES, *_RECORD_CLASSES)
        )
        archives = spec.archives
        self.limits = Limits(
            max_depth=archives.max_depth if archives.inspect else 0,
            max_members=archives.max_members,
            max_total_bytes=archives.max_total_bytes,
            max_ratio=archives.max_ratio,
        )
        self.notice = string.Template(spec.strip_notice)
        # HTML classes this filter strips: the inspection prepares those edits in the same pass.
        self.html_strips = frozenset(
            name
            for name in _HTML_CLASSES
            if name in self.outcomes and self.outcomes[name].action is Action.STRIP
        )

    async def check_message(self, ctx: MessageContext) -> list[Finding]:
        message = ctx.parsed
        tree = message.tree
        raw = message.raw
        found: dict[str, _Hits] = {}

        def hits(key: str) -> _Hits:
            return found.setdefault(key, _Hits())

        # Only what left content unread: a boundary never closed is a defect of form that every
        # part is read in spite of (FORMAT_MIME_DEFECTS reports it), not uninspected content.
        for problem in tree.unread:
            entry = hits("unscannable")
            entry.items.append(problem)
            entry.names.append(problem)
        signatures = _signature_parts(tree)
        for node in tree.leaves():
            ctype = node.content_type
            if ctype == "text/html":
                if self.inspects_html:
                    # The message's one parse of this body, which the strip reuses: the walk
                    # plans the edits of the classes this filter strips.
                    html = node.text(raw)
                    self._html(node, html, message.html_body(html).inspect(self.html_strips), hits)
            elif ctype == "image/svg+xml":
                hits("images").add_part(node, f"SVG image {node.filename or ''}".strip())
                if "active_script" in self.outcomes and message.html_body(
                    node.text(raw)
                ).inspect().of("active_script"):
                    hits("active_script").add_part(node, "SVG image carrying script")
            elif ctype.startswith("image/"):
                hits("images").add_part(node, f"{ctype} {node.filename or 'inline'}")
            elif ctype.startswith(("audio/", "video/")) or ctype == "application/x-shockwave-flash":
                hits("multimedia").add_part(node, f"{ctype} {node.filename or 'inline'}")
            if _is_attachment(node) and node.path not in signatures:
                inspection = inspect_file(node.filename, ctype, node.payload(raw), self.limits)
                self._file(node, inspection, hits)
        return self._findings(ctx, found)

    def _html(self, node: MimeNode, html: str, report: HtmlReport, hits: HitsFor) -> None:
        if report.problem is not None:
            entry = hits("unscannable")
            entry.items.append(f"part {node.path or 'body'}: {report.problem}")
            entry.names.append(f"the HTML of part {node.path or 'body'}")
        images = 0
        for hit in report.hits:
            entry = hits(hit.cls)
            entry.html_paths[node.path] = None
            entry.items.append(f"part {node.path or 'body'}: {hit.what}")
            entry.names.append(hit.label or hit.what)
            if hit.text:
                entry.quotes.append(hit.text)
            if hit.cls == "images":
                images += 1
                if hit.remote:
                    hits("remote_images").items.append(f"part {node.path or 'body'}: {hit.what}")
        if images and len(html) <= IMAGE_ONLY_MAX_CHARS:
            hits("image_only").items.append(
                f"part {node.path or 'body'}: {images} image{'s' if images != 1 else ''}"
                f" in {len(html)} characters of HTML"
            )

    def _file(self, node: MimeNode, inspection: Inspection, hits: HitsFor) -> None:
        for problem in inspection.problems:
            entry = hits("unscannable")
            entry.add_part(node, problem)
        default = node.filename or f"part {node.path or 'body'}"
        for shown, info in inspection.named(default):
            label = repr(shown)
            if info.macros:
                hits("macro_documents").add_part(node, f"{label} contains macros", label)
            if info.encrypted:
                # Named by the archive that locks it: one locked zip is one thing, however many
                # of its members the encryption covers.
                archive = shown if info.depth == 0 else shown.rpartition("/")[0]
                entry = hits("encrypted_archives")
                entry.add_part(node, f"{label} is password-protected", repr(archive))
            true_extensions = self._true_extensions(info)
            true_type = info.true_type if self.spec.true_type else None
            for rule in self.rules:
                why = rule.matches(info, true_extensions, true_type)
                if why is not None:
                    entry = hits(rule.code)
                    entry.add_part(node, f"{label} is {why}", label)
                    entry.whys.setdefault(label, why)

    def _true_extensions(self, info: FileInfo) -> tuple[str, ...]:
        if not self.spec.true_type or info.true_type is None:
            return ()
        known = _TRUE_TYPE_EXTENSIONS.get(info.true_type)
        if known is not None:
            return known
        return _KIND_EXTENSIONS.get(info.true_kind or "", ())

    def _findings(self, ctx: MessageContext, found: dict[str, _Hits]) -> list[Finding]:
        findings: list[Finding] = []
        for name in (*_HTML_CLASSES, *_RECORD_CLASSES, *_FILE_CLASSES):
            outcome = self.outcomes.get(name)
            if name in found and outcome is not None:
                findings.append(
                    self._finding(
                        ctx,
                        code=f"MIME_{name.upper()}",
                        category=Category.ATTACHMENTS
                        if name in _FILE_CLASSES
                        else Category.CONTENT,
                        action=outcome.action,
                        score=outcome.score,
                        reply=self.replies[name],
                        hits=found[name],
                        what=_CLASS_TEXT[name],
                        detail={"class": name} | _provenance(outcome),
                        html_class=name if name in _HTML_CLASSES else None,
                        describe=_record_reason(name, found[name], outcome.action)
                        if name in _RECORD_CLASSES
                        or (name in _CLIENT_CLASSES and outcome.action is not Action.STRIP)
                        else None,
                    )
                )
        for rule in self.rules:
            if rule.code in found:
                spec = rule.rule
                detail: dict[str, object] = {"rule": spec.id} | _provenance(spec)
                findings.append(
                    self._finding(
                        ctx,
                        code=rule.code,
                        category=Category.ATTACHMENTS,
                        action=spec.action,
                        score=spec.score,
                        reply=rule.reply,
                        hits=found[rule.code],
                        what="attachments this policy does not accept",
                        detail=detail,
                        html_class=None,
                        describe=spec.describe,
                    )
                )
        return findings

    def _finding(
        self,
        ctx: MessageContext,
        *,
        code: str,
        category: Category,
        action: Action,
        score: float,
        reply: ReplyTemplate,
        hits: _Hits,
        what: str,
        detail: dict[str, object],
        html_class: str | None,
        describe: str | None = None,
    ) -> Finding:
        # Counted as distinct things: one archive is one file however many rules it matches.
        names = hits.distinct()
        count = len(names) or len(hits.items)
        plural = count != 1
        then = _consequence(action, plural)
        if describe:
            reason = describe
        elif len(hits.whys) == 1:
            [(name, why)] = hits.whys.items()
            reason = f"The attachment {name} is {why}: a type this policy does not accept{then}."
        elif hits.whys:
            each = [f"{name} ({why})" for name, why in hits.whys.items()]
            reason = f"The attachments {_listed(each)} are types this policy does not accept{then}."
        elif hits.quotes:
            quotes = list(dict.fromkeys(hits.quotes))
            more = f" and {len(quotes) - 3} more" if len(quotes) > 3 else ""
            quoted = "; ".join(f"'{q}'" for q in quotes[:3])
            reason = f"The message contains {what}: {quoted}{more}{then}."
        elif names:
            reason = f"The message contains {what}: {_listed(names)}{then}."
        else:
            reason = f"The message contains {what} ({count} found){then}."
        strip = None
        if action is Action.STRIP:
            notices = {
                path: self.notice.safe_substitute(
                    filename=node.filename or "an inline part",
                    content_type=node.content_type,
                    ext=(node.filename or "").rpartition(".")[2],
                    rule=code,
                )
                for path, node in hits.parts.items()
            }
            html = {path: frozenset({html_class}) for path in hits.html_paths} if html_class else {}
            strip = StripPlan(notices, html)
        rendered = None
        if action.refuses:
            rendered = reply.render(reply_variables(ctx.envelope, text=reason))
        return self.finding(
            code=code,
            category=category,
            action=action,
            score=score,
            reason=reason,
            detail=detail | {"items": hits.items[:50], "count": count},
            reply=rendered,
            strip=strip,
        )
