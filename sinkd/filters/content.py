"""Content rules: trigger words, phrases and regular expressions, and GTUBE.

Owns the ``content`` filter kind: words and phrases (whole-word, case-insensitive, Unicode-aware)
and regular expressions over the subject, the text body, the HTML body rendered to text and
headers, with per-match scores and caps, as SpamAssassin body rules and Google's "objectionable
content" do. All word rules of one filter share one index and one pass per part. Pure.

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
from typing import Annotated, Literal

from pydantic import StringConstraints, model_validator

from sinkd.filters import Filter, MessageContext, reply_variables
from sinkd.matching import RegexSet, WordMatcher, has_gtube, tokenize
from sinkd.message import ParsedMessage
from sinkd.model import Action, Category, Finding, Stage
from sinkd.schema import (
    CompileContext,
    CompileError,
    FilterName,
    ReplyRef,
    ReplyTemplate,
    RuleId,
    Score,
    Spec,
)

Part = Annotated[
    str, StringConstraints(pattern=r"^(subject|body|text|html|headers|header:[!-9;-~]+)$")
]
_HARD = (Action.REJECT, Action.TEMPFAIL)


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


class ContentSpec(Spec):
    kind: Literal["content"]
    name: FilterName
    gtube: GtubeSpec | None = None
    rules: list[ContentRule] = []


def part_text(message: ParsedMessage, part: str) -> str:
    """The text of one named part of the message, as content rules see it."""
    if part == "subject":
        return message.subject or ""
    if part == "body":
        return message.body_text
    if part == "text":
        return message.text_body
    if part == "html":
        return message.html_text
    if part == "headers":
        return "\n".join(f"{k}: {v}" for k, v in message.message.items())
    name = part.partition(":")[2]
    return "\n".join(str(v) for v in message.message.get_all(name, []))


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


def _quote(items: list[str], limit: int = 5) -> str:
    shown = ", ".join(f"'{item}'" for item in items[:limit])
    more = len(items) - limit
    return shown + (f" and {more} more" if more > 0 else "")


class ContentFilter(Filter):
    kind = "content"
    Spec = ContentSpec
    category = Category.CONTENT

    def __init__(self, spec: ContentSpec, ctx: CompileContext) -> None:
        super().__init__(spec, ctx)
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
        self.word_parts = sorted({p for r in word_rules for p in r.rule.parts})

    async def check_message(self, ctx: MessageContext) -> list[Finding]:
        message = ctx.message
        findings: list[Finding] = []
        if self.gtube is not None and has_gtube(message.raw):
            findings.append(self._gtube_finding(ctx))
        texts: dict[str, str] = {}
        hits: dict[str, Mapping[str, int]] = {}
        if self.matcher is not None:
            for part in self.word_parts:
                texts[part] = part_text(message, part)
                hits[part] = self.matcher.find(texts[part]) if texts[part] else {}
        for rule in self.rules:
            finding = self._check_rule(rule, message, texts, hits, ctx)
            if finding is not None:
                findings.append(finding)
        return findings

    def _gtube_finding(self, ctx: MessageContext) -> Finding:
        assert self.gtube is not None and self.gtube_reply is not None
        reason = "The message contains GTUBE, the standard test string every spam filter flags."
        return Finding(
            code="CONTENT_GTUBE",
            filter=self.name,
            category=Category.CONTENT,
            action=self.gtube.action,
            score=self.gtube.score,
            reason=reason,
            stage=Stage.DATA,
            detail={"source": "SpamAssassin GTUBE (rules/20_body_tests.cf)"},
            reply=self.gtube_reply.render(reply_variables(ctx.envelope, text=reason)),
        )

    def _check_rule(
        self,
        rule: _Rule,
        message: ParsedMessage,
        texts: dict[str, str],
        hits: dict[str, Mapping[str, int]],
        ctx: MessageContext,
    ) -> Finding | None:
        found: dict[str, int] = {}
        where: list[str] = []
        for part in rule.rule.parts:
            if rule.regexes is not None:
                if part not in texts:
                    texts[part] = part_text(message, part)
                matched = rule.regexes.find(texts[part]) if texts[part] else {}
                part_hits = {text: 1 for text in matched.values()}
            else:
                part_hits = {w: n for w, n in hits.get(part, {}).items() if w in rule.words}
            if part_hits:
                where.append(part)
                for key, count in part_hits.items():
                    found[key] = found.get(key, 0) + count
        if not found:
            return None
        spec = rule.rule
        names = sorted(found)
        if spec.describe:
            reason = spec.describe
        else:
            plural = len(where) > 1
            subject = f"The {' and '.join(where)}"
            if rule.regexes is not None:
                verb = "match" if plural else "matches"
                reason = f"{subject} {verb} a pattern the filter looks for: {_quote(names)}."
            else:
                verb = "contain" if plural else "contains"
                noun = "wording" if len(names) == 1 else "words and phrases"
                reason = f"{subject} {verb} {noun} the filter looks for: {_quote(names)}."
        reply = None
        if spec.action in _HARD:
            reply = rule.reply.render(reply_variables(ctx.envelope, text=reason))
        detail: dict[str, object] = {"rule": spec.id, "matches": found, "parts": where}
        if spec.source:
            detail["source"] = spec.source
        return Finding(
            code=rule.code,
            filter=self.name,
            category=Category.CONTENT,
            action=spec.action,
            score=rule.score_for(len(found)),
            reason=reason,
            stage=Stage.DATA,
            detail=detail,
            reply=reply,
        )
