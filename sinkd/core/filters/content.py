"""Content rules: trigger words, phrases and regular expressions, and GTUBE.

Owns the ``content`` filter kind: words and phrases (whole-word, case-insensitive, Unicode-aware)
and regular expressions over the subject, the text parts, the HTML parts rendered to text and
headers, with per-match scores and caps, as SpamAssassin body rules and Google's "objectionable
content" do. Body text comes from the message's one shared decode (ParsedMessage.body_parts:
transfer encoding and charset undone, HTML rendered, one paragraph per line); this module never
decodes or parses anything itself. All word rules of one filter share one index and one pass per
part of the message. Findings quote what matched and say where. Pure.

The rules read the message within the profile's scanning limits (``scanning:``, compiled into
``CompileContext.limits``; ``ParsedMessage.within`` makes the cut): each part up to its scan
sizes and, where the product truncates long header fields, the header as it keeps it. When a
part the rules read was cut, a record-only finding (``SCAN_PARTIAL_BODY`` per part,
``SCAN_PARTIAL_HEADER`` per header block) says what was cut, where, and the limit with its
source, so that a rule that did not match is not read as "not there".

```yaml
- kind: content
  name: trigger-words
  gtube: {action: reject}                 # SpamAssassin's GTUBE test string
  rules:
    - id: TRIGGER_WORD
      words: "@trigger_words"             # or an inline list; entries may be phrases
      parts: [subject, body]              # subject | body | text | html | headers | header:Name
      score: 3.0
      per_match: true                     # each distinct word found adds the score...
      max_score: 9.0                      # ...up to this cap
    - {id: ALL_CAPS, regex: '^[^a-z]{20,}$', parts: [subject], score: 1.0, ignore_case: false}
```
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import StringConstraints, model_validator

from sinkd.core.filters.base import Filter, MessageContext, reply_variables
from sinkd.core.limits import HeaderCut, ScanLimits
from sinkd.core.matching import RegexSet, WordMatcher, has_gtube, tokenize
from sinkd.core.message import BodyPart, ParsedMessage
from sinkd.core.model import Action, Category, Finding, FindingCode
from sinkd.core.schema import (
    CompileContext,
    CompileError,
    FilterSpecBase,
    ReplyRef,
    ReplyTemplate,
    RuleId,
    Score,
    Spec,
)

Part = Annotated[
    str, StringConstraints(pattern=r"^(subject|body|text|html|headers|header:[!-9;-~]+)$")
]


class ContentRule(Spec):
    id: RuleId
    words: list[str] | str | None = None
    regex: list[str] | str | None = None
    ignore_case: bool = True
    parts: list[Part] = ["subject", "body"]
    action: Action = Action.SCORE
    score: Score = 1.0
    per_match: bool = False
    max_score: Score | None = None
    reply: ReplyRef | None = None
    describe: str | None = None
    source: str | None = None

    @model_validator(mode="after")
    def _one_matcher(self) -> ContentRule:
        if (self.words is None) == (self.regex is None):
            raise ValueError("a content rule needs exactly one of 'words' or 'regex'")
        return self


class GtubeSpec(Spec):
    action: Action = Action.REJECT
    score: Score = 1000.0
    reply: ReplyRef = "gtube.reject"


class ContentSpec(FilterSpecBase):
    kind: Literal["content"]
    gtube: GtubeSpec | None = None
    rules: list[ContentRule] = []


@dataclass(frozen=True, slots=True)
class _Segment:
    """One stretch of text a rule reads, with the words a reader needs to find it."""

    key: str  # unique per message: "subject", "part:3", "headers", "header:X-Mailer"
    label: str  # "subject", "text body", "HTML body", "attachment 'notes.txt'", "headers", ...
    mime_part: int | None  # the BodyPart index, for body text
    text: str


class _Segments:
    """The segments each part name stands for, built on first use from the shared decode."""

    def __init__(self, parsed: ParsedMessage) -> None:
        self.parsed = parsed
        self._by_part: dict[str, list[_Segment]] = {}
        # What the rules read, for the partial-scan findings: body parts by index, and header
        # fields by lower-cased name ("" for the whole header block).
        self.read_parts: dict[int, BodyPart] = {}
        self.read_headers: set[str] = set()

    def __call__(self, part: str) -> list[_Segment]:
        segments = self._by_part.get(part)
        if segments is None:
            segments = self._by_part[part] = self._build(part)
        return segments

    def _build(self, part: str) -> list[_Segment]:
        parsed = self.parsed
        if part == "subject":
            # SpamAssassin's body rules read the Subject as the first line of the body (Conf.pm,
            # "body"); sinkd keeps it a part of its own so that a rule can say where it matched.
            self.read_headers.add("subject")
            subject = " ".join((parsed.subject or "").split())
            return [_Segment("subject", "subject", None, subject)] if subject else []
        if part in ("body", "text", "html"):
            read = [
                p
                for p in parsed.body_parts
                if p.text and (part == "body" or p.html == (part == "html"))
            ]
            self.read_parts.update((p.index, p) for p in read)
            return [_Segment(f"part:{p.index}", p.label, p.index, p.text) for p in read]
        if part == "headers":
            self.read_headers.add("")
            text = "\n".join(f"{k}: {v}" for k, v in parsed.message.items())
            return [_Segment("headers", "headers", None, text)]
        name = part.partition(":")[2]
        self.read_headers.add(name.lower())
        values = "\n".join(str(v) for v in parsed.message.get_all(name, []))
        return (
            [_Segment(f"header:{name.lower()}", f"{name} header", None, values)] if values else []
        )


class _Rule:
    def __init__(self, rule: ContentRule, index: int, ctx: CompileContext) -> None:
        here = ctx.at("rules", index)
        self.rule = rule
        self.code = f"CONTENT_{rule.id}"
        self.words: frozenset[str] = frozenset()
        self.regexes: RegexSet | None = None
        if rule.words is not None:
            self.words = frozenset(here.entries(rule.words, "words", kinds=("word", "phrase")))
        else:
            assert rule.regex is not None
            patterns = [rule.regex] if isinstance(rule.regex, str) else rule.regex
            for i, pattern in enumerate(patterns):
                try:
                    re.compile(pattern)
                except re.error as exc:
                    where = "regex" if isinstance(rule.regex, str) else ("regex", i)
                    loc = ("regex",) if isinstance(where, str) else where
                    raise CompileError(
                        (*here.loc, *loc), f"invalid regular expression: {exc}"
                    ) from None
            self.regexes = RegexSet(patterns, ignore_case=rule.ignore_case)
        default = "generic.tempfail" if rule.action is Action.TEMPFAIL else "postfix.content_text"
        self.reply: ReplyTemplate = here.reply(rule.reply or default)

    def score_for(self, distinct: int) -> float:
        rule = self.rule
        score = rule.score * distinct if rule.per_match else rule.score
        if rule.max_score is not None:
            score = min(score, rule.max_score) if score >= 0 else max(score, rule.max_score)
        return score


def _cut(name: str, limit: int, size: int, limits: ScanLimits) -> dict[str, object]:
    source = limits.body_source if name == "body_part_scan_size" else limits.rawbody_source
    return {"limit": name, "size": limit, "of": size, "source": source}


def _read_header_cuts(cuts: tuple[HeaderCut, ...], read: set[str]) -> list[HeaderCut]:
    """The cuts of fields the rules read ("" in ``read``: the whole header block)."""
    if "" in read:
        return list(cuts)
    return [c for c in cuts if c.name is None or c.name.lower() in read]


def _quote(items: list[str], limit: int = 5) -> str:
    shown = ", ".join(f"'{item}'" for item in items[:limit])
    more = len(items) - limit
    return shown + (f" and {more} more" if more > 0 else "")


def _where(groups: dict[str, list[str]]) -> str:
    """ "'a', 'b' in the subject; 'c' in the HTML body"."""
    return "; ".join(f"{_quote(names)} in the {label}" for label, names in groups.items())


class ContentFilter(Filter):
    kind = "content"
    Spec = ContentSpec
    category = Category.CONTENT
    codes = (
        FindingCode("CONTENT_<ID>", "the content rule with this id matched"),
        FindingCode("CONTENT_GTUBE", "SpamAssassin's GTUBE test string"),
        FindingCode(
            "SCAN_PARTIAL_BODY",
            "the content rules read only the first part of this body part (the profile's "
            "body_part_scan_size or rawbody_part_scan_size); record only",
        ),
        FindingCode(
            "SCAN_PARTIAL_HEADER",
            "the content rules read header fields cut to the profile's header size limit, as "
            "the product keeps them; record only",
        ),
    )

    def __init__(self, spec: ContentSpec, ctx: CompileContext) -> None:
        super().__init__(spec, ctx)
        self.limits = ctx.limits
        self.gtube = spec.gtube
        self.gtube_reply = ctx.at("gtube").reply(spec.gtube.reply) if spec.gtube else None
        self.rules = [_Rule(rule, i, ctx) for i, rule in enumerate(spec.rules)]
        word_rules = [r for r in self.rules if r.words]
        # One index over every word and phrase of every rule: one pass per part, whatever the
        # number of rules and entries.
        # The index keeps one spelling per word ("Casino" and "casino" are one entry): give
        # every rule that spelling, or a rule spelling it differently would never see its hits.
        canonical: dict[tuple[str, ...], str] = {}
        for r in word_rules:
            r.words = frozenset(canonical.setdefault(tuple(tokenize(w)), w) for w in r.words)
        self.matcher = WordMatcher(canonical.values()) if word_rules else None

    async def check_message(self, ctx: MessageContext) -> list[Finding]:
        segments = _Segments(ctx.parsed.within(self.limits))
        findings: list[Finding] = []
        if self.gtube is not None:
            # GTUBE is a SpamAssassin body rule: the subject and every text part, decoded.
            hit = next(
                (s for p in ("subject", "body") for s in segments(p) if has_gtube(s.text)), None
            )
            if hit is not None:
                findings.append(self._gtube_finding(ctx, hit))
        hits: dict[str, Mapping[str, int]] = {}  # segment key -> word hits, shared by rules
        for rule in self.rules:
            finding = self._check_rule(rule, segments, hits, ctx)
            if finding is not None:
                findings.append(finding)
        findings.extend(self._partial_findings(segments))
        return findings

    def _partial_findings(self, segments: _Segments) -> list[Finding]:
        """One record-only finding per part the rules read only in part, and one for the
        header block when a field they read was cut."""
        limits = self.limits
        findings: list[Finding] = []
        for index in sorted(segments.read_parts):
            part = segments.read_parts[index]
            cuts: list[dict[str, object]] = []
            said: list[str] = []
            if part.source_size is not None:
                size = limits.rawbody_part_scan_size
                cuts.append(_cut("rawbody_part_scan_size", size, part.source_size, limits))
                said.append(
                    f"its HTML source was parsed up to {size:,} of {part.source_size:,} characters"
                )
            if part.text_size is not None:
                size = limits.body_part_scan_size
                cuts.append(_cut("body_part_scan_size", size, part.text_size, limits))
                said.append(f"its text was read up to about {size:,} of {part.text_size:,}")
            if not cuts:
                continue
            findings.append(
                self.finding(
                    code="SCAN_PARTIAL_BODY",
                    action=Action.NONE,
                    reason=(
                        f"The content rules read the {part.label} only in part: "
                        f"{' and '.join(said)} (the profile's scanning limits), so a rule that "
                        "did not match may have words past the cut."
                    ),
                    detail={"part": part.label, "mime_part": part.index, "cuts": cuts},
                )
            )
        header_cuts = _read_header_cuts(segments.parsed.header_cuts, segments.read_headers)
        if header_cuts:
            limit = limits.header_size_limit
            names = ", ".join(c.name or "header block" for c in header_cuts)
            detail: dict[str, object] = {
                "limit": limit,
                "applies_to": limits.header_scope,
                "fields": [{"name": c.name, "size": c.size, "kept": c.kept} for c in header_cuts],
            }
            if limits.header_source:
                detail["source"] = limits.header_source
            findings.append(
                self.finding(
                    code="SCAN_PARTIAL_HEADER",
                    action=Action.NONE,
                    reason=(
                        f"The content rules read {names} cut to the header size limit of "
                        f"{limit:,} bytes, as the modelled product keeps it, so a rule that did "
                        "not match may have words past the cut."
                    ),
                    detail=detail,
                )
            )
        return findings

    def _gtube_finding(self, ctx: MessageContext, segment: _Segment) -> Finding:
        assert self.gtube is not None and self.gtube_reply is not None
        reason = (
            f"The {segment.label} contains GTUBE, the standard test string every spam filter flags."
        )
        return self.finding(
            code="CONTENT_GTUBE",
            action=self.gtube.action,
            score=self.gtube.score,
            reason=reason,
            detail={
                "source": "SpamAssassin GTUBE (rules/20_body_tests.cf)",
                "part": segment.label,
                "mime_part": segment.mime_part,
            },
            reply=self.gtube_reply.render(reply_variables(ctx.envelope, text=reason)),
        )

    def _check_rule(
        self,
        rule: _Rule,
        segments: _Segments,
        hits: dict[str, Mapping[str, int]],
        ctx: MessageContext,
    ) -> Finding | None:
        found: dict[str, int] = {}
        where: list[str] = []  # the rule's part names that matched
        found_in: list[dict[str, object]] = []
        groups: dict[str, list[str]] = {}  # label -> what matched there, for the reason
        seen: set[str] = set()
        for part in rule.rule.parts:
            matched_part = False
            for segment in segments(part):
                if segment.key in seen:
                    continue  # e.g. parts [body, html]: an HTML part is read once
                seen.add(segment.key)
                part_hits = self._segment_hits(rule, segment, hits)
                if not part_hits:
                    continue
                matched_part = True
                for key, count in part_hits.items():
                    found[key] = found.get(key, 0) + count
                found_in.append(
                    {"part": segment.label, "mime_part": segment.mime_part, "matches": part_hits}
                )
                names = groups.setdefault(segment.label, [])
                names.extend(k for k in sorted(part_hits) if k not in names)
            if matched_part:
                where.append(part)
        if not found:
            return None
        spec = rule.rule
        reason = self._reason(rule, groups)
        reply = None
        if spec.action.refuses:
            reply = rule.reply.render(reply_variables(ctx.envelope, text=reason))
        detail: dict[str, object] = {
            "rule": spec.id,
            "matches": found,
            "parts": where,
            "found_in": found_in,
        }
        if spec.source:
            detail["source"] = spec.source
        return self.finding(
            code=rule.code,
            action=spec.action,
            score=rule.score_for(len(found)),
            reason=reason,
            detail=detail,
            reply=reply,
        )

    def _segment_hits(
        self, rule: _Rule, segment: _Segment, hits: dict[str, Mapping[str, int]]
    ) -> dict[str, int]:
        """What ``rule`` matched in ``segment``: entry or matched text -> occurrences."""
        if not segment.text:
            return {}
        if rule.regexes is not None:
            return {text: 1 for text in rule.regexes.find(segment.text).values()}
        if self.matcher is None or not rule.words:
            return {}  # a word rule whose list is empty matches nothing
        segment_hits = hits.get(segment.key)
        if segment_hits is None:
            segment_hits = hits[segment.key] = self.matcher.find(segment.text)
        return {w: n for w, n in segment_hits.items() if w in rule.words}

    @staticmethod
    def _reason(rule: _Rule, groups: dict[str, list[str]]) -> str:
        """One sentence that quotes what matched and says where (issue 15, point 8)."""
        if rule.rule.describe:
            return f"{rule.rule.describe.rstrip()} Found: {_where(groups)}."
        names = list(dict.fromkeys(n for names in groups.values() for n in names))
        if rule.regexes is not None:
            what = "text matching a pattern the filter looks for"
        elif len(names) == 1:
            what = "wording the filter looks for"
        else:
            what = "words and phrases the filter looks for"
        if len(groups) == 1:
            [(label, names)] = groups.items()
            return f"The {label} contains {what}: {_quote(names)}."
        return f"The message contains {what}: {_where(groups)}."
