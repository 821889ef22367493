"""SpamAssassin rules evaluated by sinkd itself: an administrator's own ``local.cf`` rules.

Owns the ``spamassassin_rules`` filter kind: ``header``, ``body``, ``rawbody``, ``full``,
``uri`` and ``meta`` rules written as SpamAssassin writes them (Perl patterns, meta
expressions), with their scores, descriptions and the ``tflags`` that change a score
(``multiple``, ``maxhits=N``, ``nosubject``; ``nice`` only changes the default score, which the
importer resolves), and ``welcomelist_from``/``blocklist_from`` as SpamAssassin's stock rules
USER_IN_WELCOMELIST / USER_IN_BLOCKLIST apply them. It scores like Mail::SpamAssassin 4.0:

- a rule whose score is 0 does not run (perldoc Mail::SpamAssassin::Conf, "score": "Setting a
  rule's score to 0 will disable that rule from running"), and a meta reads it as 0;
- a rule hits once, unless ``tflags multiple``: then every match counts, each adding the score
  again (PerMsgStatus.pm got_hit), up to ``maxhits=N`` (Plugin/Check.pm);
- a meta's value is its expression's (Perl semantics: ``&&``/``||`` give an operand, ``!``
  gives 1 or 0, comparisons 1 or 0), reading each rule as its hit count, 0 when it did not hit
  (Conf.pm "meta"); a true value is a hit, scored once;
- rules whose names begin with ``__`` are never scored or listed (Conf.pm "describe");
- the total is rounded to three decimals before it is compared (PerMsgStatus.pm check).

The filter gives one ``SA_SCORE`` finding (action ``score``) carrying that total, which joins the
profile's total and meets ``scoring.thresholds`` (an imported profile puts required_score
there), and one record-only ``SA_<RULE>`` finding per rule hit, so that no point is counted
twice. It does not run SpamAssassin's ~1000 stock rules: an imported profile that needs them
adds the spamd-backed ``spamassassin`` kind in ``add`` mode, asked of a spamd that has the stock
rules but not these (docs/import-spamassassin.md). The message views are
``sinkd.core.sa_text``'s, the regular expressions ``sinkd.core.perl_regex``'s. Pure.

```yaml
- kind: spamassassin_rules
  name: local-cf
  rules:
    - {id: LOCAL_SUBJ_CASH, type: header, header: Subject, pattern: '/\\bcash\\b/i',
       score: 2.5, describe: "Subject talks about cash", source: "local.cf:12"}
    - {id: LOCAL_NO_LIST, type: header, exists: List-Id, score: -0.5, source: "local.cf:14"}
    - {id: __LOCAL_PRICE, type: body, pattern: '/\\$\\d+/', tflags: [multiple, maxhits=5]}
    - {id: LOCAL_PRICES, type: meta, expression: "__LOCAL_PRICE >= 3", score: 1.5}
  welcomelist_from: ["*@partner.example"]        # USER_IN_WELCOMELIST, -100
  blocklist_from: ["spammer@bad.example"]        # USER_IN_BLOCKLIST, 100
```
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Literal

from pydantic import StringConstraints, model_validator

from sinkd.core.filters.base import Filter, MessageContext
from sinkd.core.model import Action, Category, Finding, FindingCode
from sinkd.core.perl_regex import translate
from sinkd.core.sa_text import SUPPORTED_MODIFIERS, UNSUPPORTED_PSEUDO_HEADERS, SaMessage
from sinkd.core.schema import CompileContext, CompileError, FilterSpecBase, Spec

# Constants.pm RULENAME_RE: a letter or underscore, then up to 127 word characters.
SaRuleName = Annotated[str, StringConstraints(pattern=r"^[_a-zA-Z][_a-zA-Z0-9]{0,127}$")]
RuleType = Literal["header", "body", "rawbody", "full", "uri", "meta"]
# The stock rules that apply welcomelist_from / blocklist_from, with the scores Debian's
# SpamAssassin 4.0.1 gives them: /usr/share/spamassassin/60_welcomelist.cf (its
# "enable_compat welcomelist_blocklist" branch, enabled by /etc/spamassassin/init.pre).
WELCOMELIST_RULE = "USER_IN_WELCOMELIST"
BLOCKLIST_RULE = "USER_IN_BLOCKLIST"
WELCOMELIST_SCORE = -100.0
BLOCKLIST_SCORE = 100.0


class SaRule(Spec):
    """One SpamAssassin rule: its type, what it tests and its score (score set 0 of a
    four-score line: no Bayes, no network tests)."""

    id: SaRuleName
    type: RuleType
    header: str | None = None  # header rules: "Subject", "From:addr", "ALL", "ToCc"…
    op: Literal["=~", "!~"] = "=~"
    pattern: str | None = None  # as local.cf writes it: /…/flags or m{…}flags
    if_unset: str | None = None  # header rules: "[if-unset: STRING]"
    exists: str | None = None  # header rules: "exists:Name"
    expression: str | None = None  # meta rules
    score: float = 1.0
    describe: str | None = None
    tflags: list[str] = []

    @model_validator(mode="after")
    def _complete(self) -> SaRule:
        if self.type == "meta":
            if self.expression is None or self.pattern is not None or self.header is not None:
                raise ValueError("a meta rule has an expression: and no pattern: or header:")
        elif self.type == "header":
            if (self.exists is None) == (self.header is None):
                raise ValueError("a header rule has either header: (with pattern:) or exists:")
            if self.header is not None and self.pattern is None:
                raise ValueError("a header rule with header: needs a pattern:")
            if self.exists is not None and (self.pattern is not None or self.if_unset):
                raise ValueError("an exists: rule has no pattern: or if_unset:")
        else:
            if self.pattern is None or self.header is not None or self.exists is not None:
                raise ValueError(f"a {self.type} rule has a pattern: and no header: or exists:")
            if self.expression is not None:
                raise ValueError(f"a {self.type} rule has no expression:")
        if self.type != "header" and (self.if_unset is not None or self.op != "=~"):
            raise ValueError("op: and if_unset: belong to header rules")
        return self


class SpamAssassinRulesSpec(FilterSpecBase):
    kind: Literal["spamassassin_rules"]
    rules: list[SaRule] = []
    welcomelist_from: list[str] = []
    blocklist_from: list[str] = []
    welcomelist_score: float = WELCOMELIST_SCORE
    blocklist_score: float = BLOCKLIST_SCORE


# --- meta expressions ------------------------------------------------------------------------

# Conf/Parser.pm compile_meta_rules lexes with Constants.pm ARITH_EXPRESSION_LEXER.
_TOKEN = re.compile(r"\s*(\d+(?:\.\d+)?|[_a-zA-Z]\w*|\|\||&&|[!<>=]=|[()!<>+\-*/^])")
Value = float
Evaluator = Callable[[Mapping[str, float]], Value]
# Binary operators by Perl precedence (perlop "Operator Precedence and Associativity"): higher
# binds tighter. Comparisons give 1 or 0 (Perl's "" is 0 in the arithmetic that follows).
_BINARY: dict[str, tuple[int, Callable[[Value, Value], Value]]] = {
    "||": (1, lambda a, b: a or b),
    "&&": (2, lambda a, b: a and b),
    "^": (3, lambda a, b: float(int(a) ^ int(b))),
    "==": (4, lambda a, b: float(a == b)),
    "!=": (4, lambda a, b: float(a != b)),
    "<": (5, lambda a, b: float(a < b)),
    ">": (5, lambda a, b: float(a > b)),
    "<=": (5, lambda a, b: float(a <= b)),
    ">=": (5, lambda a, b: float(a >= b)),
    "+": (6, lambda a, b: a + b),
    "-": (6, lambda a, b: a - b),
    "*": (7, lambda a, b: a * b),
    "/": (7, lambda a, b: a / b if b else 0.0),
}


def meta_names(expression: str) -> list[str]:
    """The rule names a meta expression reads, in order of appearance."""
    return [t for t in _tokens(expression) if t[0].isalpha() or t[0] == "_"]


def _tokens(expression: str) -> list[str]:
    tokens: list[str] = []
    at = 0
    expression = expression.rstrip()
    while at < len(expression):
        match = _TOKEN.match(expression, at)
        if match is None:
            raise ValueError(f"cannot read the meta expression at {expression[at : at + 20]!r}")
        tokens.append(match.group(1))
        at = match.end()
    return tokens


def compile_meta(expression: str) -> Evaluator:
    """A meta expression as a function of the rules' values. Raises ValueError for what
    SpamAssassin's lexer would not read or sinkd does not evaluate (``? :``)."""
    tokens = _tokens(expression)
    if not tokens:
        raise ValueError("the meta expression is empty")
    position = 0

    def peek() -> str | None:
        return tokens[position] if position < len(tokens) else None

    def take() -> str:
        nonlocal position
        token = peek()
        if token is None:
            raise ValueError("the meta expression ends too early")
        position += 1
        return token

    def unary() -> Evaluator:
        token = take()
        if token == "!":
            inner = unary()
            return lambda hits: 0.0 if inner(hits) else 1.0
        if token == "-":
            inner = unary()
            return lambda hits: -inner(hits)
        if token == "+":
            return unary()
        if token == "(":
            inner = binary(0)
            if take() != ")":
                raise ValueError("a parenthesis is not closed")
            return inner
        if token[0].isdigit():
            number = float(token)
            return lambda hits: number
        if token[0].isalpha() or token[0] == "_":
            return lambda hits: hits.get(token, 0.0)
        raise ValueError(f"unexpected {token!r} in the meta expression")

    def binary(floor: int) -> Evaluator:
        left = unary()
        while (token := peek()) in _BINARY and _BINARY[token][0] > floor:
            take()
            level, apply = _BINARY[token]
            right = binary(level)
            left = _combine(apply, left, right)
        return left

    result = binary(0)
    if peek() is not None:
        raise ValueError(f"unexpected {peek()!r} in the meta expression")
    return result


def _combine(
    apply: Callable[[Value, Value], Value], left: Evaluator, right: Evaluator
) -> Evaluator:
    return lambda hits: apply(left(hits), right(hits))


# --- rules -----------------------------------------------------------------------------------


def check_header_request(request: str) -> None:
    """Refuse (ValueError) a header request ``sinkd.core.sa_text`` does not model."""
    name, *modifiers = request.split(":")
    unknown = [m for m in modifiers if m not in SUPPORTED_MODIFIERS]
    if unknown:
        raise ValueError(f"the header modifier :{unknown[0]} is not modelled")
    if name in UNSUPPORTED_PSEUDO_HEADERS or name.lower() in UNSUPPORTED_PSEUDO_HEADERS:
        raise ValueError(f"the pseudo-header {name} needs SpamAssassin's relay analysis")
    if not name:
        raise ValueError("the header name is empty")


class _Compiled:
    """One rule ready to run: its pattern compiled, its hit limit read from its tflags."""

    def __init__(self, rule: SaRule) -> None:
        self.rule = rule
        self.multiple = "multiple" in rule.tflags
        maxhits = next((f for f in rule.tflags if f.startswith("maxhits=")), None)
        self.maxhits = int(maxhits.split("=", 1)[1]) if maxhits else 0
        self.pattern = translate(rule.pattern) if rule.pattern is not None else None
        self.meta = compile_meta(rule.expression) if rule.expression is not None else None
        if rule.header is not None:
            check_header_request(rule.header)

    def count(self, texts: Sequence[str]) -> int:
        """Hits of the pattern over ``texts``: 0 or 1, or with ``multiple`` every match up to
        ``maxhits`` (Plugin/Check.pm: ``while (/…/g)``, leaving the loop at maxhits)."""
        assert self.pattern is not None
        if not self.multiple:
            return int(any(self.pattern.search(text) for text in texts))
        hits = 0
        for text in texts:
            for _ in self.pattern.finditer(text):
                hits += 1
                if self.maxhits and hits >= self.maxhits:
                    return hits
        return hits


def _meta_order(rules: Sequence[SaRule]) -> list[SaRule]:
    """Meta rules, each after the metas it reads; a cycle is a ValueError (SpamAssassin lints
    it and never lets such a meta hit)."""
    metas = {r.id: r for r in rules if r.type == "meta"}
    ordered: list[SaRule] = []
    state: dict[str, int] = {}

    def visit(name: str, chain: tuple[str, ...]) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            raise ValueError("meta rules depend on each other in a cycle: " + " -> ".join(chain))
        state[name] = 1
        expression = metas[name].expression or ""
        for dependency in meta_names(expression):
            if dependency in metas:
                visit(dependency, (*chain, dependency))
        state[name] = 2
        ordered.append(metas[name])

    for name in metas:
        visit(name, (name,))
    return ordered


def _glob(entries: Sequence[str]) -> list[re.Pattern[str]]:
    """Conf/Parser.pm add_to_addrlist: case-insensitive file globs where only ``*`` and ``?``
    are special, matched against the whole address."""
    patterns = []
    for entry in entries:
        glob = re.sub(r"\*+", "*", entry.lower())
        escaped = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in glob)
        patterns.append(re.compile(escaped + r"\Z", re.DOTALL))
    return patterns


class SpamAssassinRulesFilter(Filter):
    kind = "spamassassin_rules"
    Spec = SpamAssassinRulesSpec
    category = Category.SCORE
    codes = (
        FindingCode("SA_SCORE", "the SpamAssassin rules' total, added to the message's score"),
        FindingCode("SA_<RULE>", "a SpamAssassin rule hit, with its points (recorded only)"),
    )

    def __init__(self, spec: SpamAssassinRulesSpec, ctx: CompileContext) -> None:
        super().__init__(spec, ctx)
        self.spec = spec
        self.limits = ctx.limits  # the profile's scanning: sizes (body_part_scan_size…)
        names = [r.id for r in spec.rules]
        duplicate = next((n for n in names if names.count(n) > 1), None)
        if duplicate is not None:
            raise CompileError((*ctx.loc, "rules"), f"two rules are named {duplicate}")
        self.rules: list[_Compiled] = []
        for index, rule in enumerate(spec.rules):
            try:
                compiled = _Compiled(rule)
            except ValueError as exc:
                raise CompileError((*ctx.loc, "rules", index), f"{rule.id}: {exc}") from None
            # Conf.pm "score": a rule scored 0 does not run.
            if rule.score != 0:
                self.rules.append(compiled)
        try:
            ordered = _meta_order([c.rule for c in self.rules])
        except ValueError as exc:
            raise CompileError((*ctx.loc, "rules"), str(exc)) from None
        by_id = {c.rule.id: c for c in self.rules}
        self.metas = [by_id[r.id] for r in ordered]
        self.tests = [c for c in self.rules if c.meta is None]
        self.welcomelist = _glob(spec.welcomelist_from)
        self.blocklist = _glob(spec.blocklist_from)

    async def check_message(self, ctx: MessageContext) -> list[Finding]:
        message = SaMessage(ctx.parsed.within(self.limits))
        hits: dict[str, float] = {}
        for test in self.tests:
            count = self._run(test, message)
            if count:
                hits[test.rule.id] = float(count)
        listed: dict[str, float] = {}
        if self.welcomelist or self.blocklist:
            addresses = message.from_addresses
            for rule, patterns, score in (
                (WELCOMELIST_RULE, self.welcomelist, self.spec.welcomelist_score),
                (BLOCKLIST_RULE, self.blocklist, self.spec.blocklist_score),
            ):
                if score and any(p.match(a) for p in patterns for a in addresses):
                    hits[rule] = 1.0
                    listed[rule] = score
        for meta in self.metas:
            assert meta.meta is not None
            value = meta.meta(hits)
            if value:
                # PerMsgStatus.pm got_hit: a meta's value counts as at least 1.
                hits[meta.rule.id] = value if value > 0 else 1.0
        return self._findings(hits, listed)

    def _run(self, test: _Compiled, message: SaMessage) -> int:
        rule = test.rule
        if rule.type == "header":
            if rule.exists is not None:
                return int(message.header(rule.exists) is not None)
            assert rule.header is not None
            values = message.header(rule.header)
            if values is None:
                # Plugin/Check.pm: the [if-unset:] string, else undef, which matches as "".
                text = rule.if_unset if rule.if_unset is not None else ""
            else:
                # Plugin/Check.pm do_head_tests: values joined, each already ending in "\n".
                text = "".join(values) if values[0].endswith("\n") else "\n".join(values)
            if rule.op == "!~":
                assert test.pattern is not None
                return int(test.pattern.search(text) is None)
            return test.count([text])
        if rule.type == "body":
            lines = message.body_lines
            return test.count(lines[1:] if "nosubject" in rule.tflags else lines)
        if rule.type == "rawbody":
            return test.count(message.rawbody_chunks)
        if rule.type == "full":
            return test.count([message.full])
        return test.count(message.uris)  # uri

    def _findings(self, hits: Mapping[str, float], listed: Mapping[str, float]) -> list[Finding]:
        scores = {c.rule.id: c for c in self.rules}
        scored: list[tuple[str, float, int, str]] = []
        for name, value in hits.items():
            if name.startswith("__"):
                continue  # Conf.pm "describe": sub-rules are never scored or listed
            if name in listed:
                rule_points, times = listed[name], 1
                describe = (
                    "User is listed in 'welcomelist_from'"
                    if name == WELCOMELIST_RULE
                    else "From: user is listed in the block-list"
                )
            else:
                compiled = scores[name]
                # PerMsgStatus.pm got_hit adds the score at every hit of a "multiple" rule; a
                # meta is hit once whatever its value.
                times = int(value) if compiled.multiple and compiled.meta is None else 1
                rule_points = compiled.rule.score
                describe = compiled.rule.describe or "No description available."
            scored.append((name, rule_points, times, describe))
        if not scored:
            return []
        total = round(sum(points * times for _, points, times, _ in scored), 3)
        hit_list = ", ".join(
            f"{name} ({points * times:+g})" for name, points, times, _ in sorted(scored)
        )
        findings = [
            self.finding(
                code="SA_SCORE",
                action=Action.SCORE,
                score=total,
                reason=f"SpamAssassin rules scored the message {total:g} points: {hit_list}.",
                detail={
                    "score": total,
                    "tests": sorted(name for name, _, _, _ in scored),
                },
            )
        ]
        for name, points, times, describe in sorted(scored):
            findings.append(
                self.finding(
                    code=f"SA_{name}",
                    action=Action.NONE,
                    reason=f"SpamAssassin rule {name} ({points * times:+g}): {describe}",
                    detail={"rule": name, "points": points * times, "hits": times},
                )
            )
        return findings
