"""Postfix lookup tables: their profile schema and their lookups, as Postfix performs them.

Owns ``TableSpec``/``TableEntry`` (a table as an imported profile writes it: its type and its
entries in file order, each with the ``source`` line it came from), ``compile_table`` and the
compiled ``Table`` whose ``lookup`` answers one key the way Postfix's dictionary code does:

* indexed types (hash, btree, lmdb, texthash, inline): exact key, folded to lower case (postmap
  folds keys unless ``-f``; smtpd folds the query, postmap(1)); a duplicate key keeps the FIRST
  value, as ``postmap`` does without ``-r`` (observed with Postfix 3.7: "duplicate entry"
  warning, ``postmap -q`` answers the first); static: one value for every key;
* cidr (cidr_table(5)): first matching network in file order, ``!pattern``, ``if``/``endif``;
* regexp (regexp_table(5), POSIX ERE) and pcre (pcre_table(5)): first matching pattern in file
  order, ``!/re/``, ``if``/``endif`` (an entry's ``conditions``), flags, ``$1``..``$9``.

Patterns are translated to Python ``re``; a construct with no faithful translation is a
``CompileError`` at the entry, which importers catch and report as untranslated. This module
only looks keys up: which keys smtpd or cleanup try, and what a value means, belongs to the
filters (``sinkd.core.filters.postfix_smtpd``, ``postfix_cleanup``). No disk, no postmap.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from sinkd.core.schema import CompileError, Spec

TableType = Literal[
    "hash", "btree", "texthash", "lmdb", "regexp", "pcre", "cidr", "inline", "static"
]

# Fixed-string types: smtpd tries partial keys (domain parents, user@, network prefixes)
# against these only (access(5) "EMAIL ADDRESS PATTERNS"/"HOST NAME/ADDRESS PATTERNS").
INDEXED_TYPES = frozenset({"hash", "btree", "texthash", "lmdb", "inline", "static"})


class TableEntry(Spec):
    """One rule of a table: its key (a fixed string, a ``/pattern/flags``, a cidr network,
    each optionally ``!``-negated for pattern types), its result value, and for pattern types
    the enclosing ``if`` patterns, outermost first."""

    key: str
    value: str
    conditions: tuple[str, ...] = ()


class TableSpec(Spec):
    """A lookup table as a profile holds it: its Postfix type and its entries in file order."""

    type: TableType
    entries: tuple[TableEntry, ...] = ()


@dataclass(frozen=True, slots=True)
class TableMatch:
    """A lookup's answer: the result value (``$n`` already substituted) and the entry's source."""

    value: str
    source: str | None


class Table:
    """A compiled table. ``indexed``: fixed-string lookups (smtpd tries partial keys);
    ``cidr``: keys are IP addresses (smtpd queries the client address only)."""

    indexed: bool = False
    cidr: bool = False

    def __init__(self, type_: str) -> None:
        self.type = type_

    def lookup(self, key: str) -> TableMatch | None:
        """The value for ``key``, or None when no entry matches."""
        raise NotImplementedError


class _IndexedTable(Table):
    indexed = True

    def __init__(self, type_: str, entries: dict[str, TableMatch]) -> None:
        super().__init__(type_)
        self._entries = entries

    def lookup(self, key: str) -> TableMatch | None:
        return self._entries.get(key.lower())


class _StaticTable(Table):
    indexed = True

    def __init__(self, match: TableMatch) -> None:
        super().__init__("static")
        self._match = match

    def lookup(self, key: str) -> TableMatch | None:
        return self._match


class _Test:
    """One compiled pattern (or network) with its negation."""

    def __init__(self, negated: bool) -> None:
        self.negated = negated

    def search(self, key: str) -> re.Match[str] | bool | None:
        raise NotImplementedError

    def holds(self, key: str) -> bool:
        found = self.search(key)
        return (not found) if self.negated else bool(found)


class _RegexTest(_Test):
    def __init__(self, compiled: re.Pattern[str], negated: bool, anchored: bool) -> None:
        super().__init__(negated)
        self.compiled = compiled
        self.anchored = anchored

    def search(self, key: str) -> re.Match[str] | None:
        return self.compiled.match(key) if self.anchored else self.compiled.search(key)


class _CidrTest(_Test):
    def __init__(
        self, network: ipaddress.IPv4Network | ipaddress.IPv6Network, negated: bool
    ) -> None:
        super().__init__(negated)
        self.network = network

    def search(self, key: str) -> bool:
        try:
            address = ipaddress.ip_address(key.strip("[]"))
        except ValueError:
            return False  # not an address: no cidr pattern matches it
        return address.version == self.network.version and address in self.network


@dataclass(frozen=True, slots=True)
class _Rule:
    test: _Test
    conditions: tuple[_Test, ...]
    value: str
    source: str | None
    substitutes: bool


class _OrderedTable(Table):
    """regexp, pcre and cidr: the first entry (in file order) whose conditions and pattern
    hold answers (regexp_table(5), pcre_table(5), cidr_table(5) "TABLE SEARCH ORDER")."""

    def __init__(self, type_: str, rules: list[_Rule]) -> None:
        super().__init__(type_)
        self.cidr = type_ == "cidr"
        self._rules = rules

    def lookup(self, key: str) -> TableMatch | None:
        for rule in self._rules:
            if not all(condition.holds(key) for condition in rule.conditions):
                continue
            found = rule.test.search(key)
            if rule.test.negated:
                if not found:
                    return TableMatch(rule.value, rule.source)
                continue
            if not found:
                continue
            if rule.substitutes and isinstance(found, re.Match):
                return TableMatch(_substitute(rule.value, found), rule.source)
            return TableMatch(rule.value, rule.source)
        return None


def compile_table(spec: TableSpec, loc: Sequence[str | int]) -> Table:
    """Compile ``spec``; a bad key or pattern is a ``CompileError`` at ``loc.entries[i]``."""
    at = tuple(loc)
    if spec.type == "static":
        if len(spec.entries) != 1:
            raise CompileError(
                (*at, "entries"),
                "a static table has exactly one entry: its value answers every key "
                "(postconf(5) static:)",
            )
        entry = spec.entries[0]
        return _StaticTable(TableMatch(entry.value, entry.source))
    if spec.type in INDEXED_TYPES:
        values: dict[str, TableMatch] = {}
        for entry in spec.entries:
            # postmap keeps the first of duplicate keys (it warns "duplicate entry").
            values.setdefault(entry.key.lower(), TableMatch(entry.value, entry.source))
        return _IndexedTable(spec.type, values)
    rules: list[_Rule] = []
    for index, entry in enumerate(spec.entries):
        where = (*at, "entries", index)
        test = _compile_test(spec.type, entry.key, (*where, "key"))
        conditions = tuple(
            _compile_test(spec.type, condition, (*where, "conditions", number))
            for number, condition in enumerate(entry.conditions)
        )
        substitutes = False
        if isinstance(test, _RegexTest):
            substitutes = _check_substitutions(
                entry.value, test.compiled.groups, test.negated, (*where, "value")
            )
        rules.append(_Rule(test, conditions, entry.value, entry.source, substitutes))
    return _OrderedTable(spec.type, rules)


def split_pattern(text: str) -> tuple[str, str]:
    """Split a regexp/pcre table line into its ``[!]/pattern/flags`` and the rest (the value),
    as dict_regexp.c reads it: the pattern ends at the first unescaped delimiter, the flags at
    the first whitespace. Raises ``ValueError`` when there is no closing delimiter."""
    position = 0
    if text.startswith("!"):
        position = 1
        while position < len(text) and text[position].isspace():
            position += 1
    if position >= len(text) or text[position].isalnum() or text[position].isspace():
        raise ValueError("a pattern starts with a delimiter such as '/'")
    delimiter = text[position]
    cursor = position + 1
    while cursor < len(text):
        if text[cursor] == "\\" and cursor + 1 < len(text):
            cursor += 2
            continue
        if text[cursor] == delimiter:
            break
        cursor += 1
    else:
        raise ValueError(f"no closing delimiter {delimiter!r}")
    end = cursor + 1
    while end < len(text) and not text[end].isspace():
        end += 1
    return text[:end], text[end:].strip()


def _compile_test(type_: str, key: str, loc: tuple[str | int, ...]) -> _Test:
    if type_ == "cidr":
        return _compile_cidr(key, loc)
    negated = False
    text = key.strip()
    if text.startswith("!"):
        negated = True
        text = text[1:].lstrip()
    try:
        pattern_text, rest = split_pattern(text)
    except ValueError as exc:
        raise CompileError(loc, f"{key!r}: {exc}") from None
    if rest:
        raise CompileError(loc, f"{key!r}: text after the pattern's flags")
    delimiter = pattern_text[0]
    closing = pattern_text.rindex(delimiter)
    body, flags = pattern_text[1:closing], pattern_text[closing + 1 :]
    try:
        if type_ == "regexp":
            compiled, anchored = _compile_regexp(body, flags), False
        else:
            compiled, anchored = _compile_pcre(body, flags)
    except _Untranslatable as exc:
        raise CompileError(loc, f"{key!r}: {exc}") from None
    except re.error as exc:
        raise CompileError(loc, f"{key!r}: bad pattern: {exc}") from None
    return _RegexTest(compiled, negated, anchored)


def _compile_cidr(key: str, loc: tuple[str | int, ...]) -> _CidrTest:
    text = key.strip()
    negated = text.startswith("!")
    if negated:
        text = text[1:].strip()
    address, slash, length = text.partition("/")
    address = address.removeprefix("[").removesuffix("]")
    try:
        if slash:
            network = ipaddress.ip_network(f"{address}/{length}", strict=True)
        else:
            network = ipaddress.ip_network(address, strict=True)
    except ValueError as exc:
        # cidr_table(5): "the other bits in the network_address part must be zero"; Postfix
        # skips such a rule with a warning, so it cannot take part in lookups.
        raise CompileError(loc, f"{key!r}: not a cidr pattern: {exc}") from None
    return _CidrTest(network, negated)


class _Untranslatable(Exception):
    """A pattern construct with no faithful Python ``re`` translation."""


# POSIX character classes in the C locale (regex(7); Postfix does not set a locale).
_POSIX_CLASSES = {
    "alpha": "a-zA-Z",
    "digit": "0-9",
    "alnum": "a-zA-Z0-9",
    "upper": "A-Z",
    "lower": "a-z",
    "space": " \\t\\n\\r\\f\\v",
    "blank": " \\t",
    "punct": "".join("\\" + c for c in "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"),
    "print": " -~",
    "graph": "!-~",
    "cntrl": "\\x00-\\x1f\\x7f",
    "xdigit": "0-9A-Fa-f",
    "word": "a-zA-Z0-9_",
}


def _class_char(char: str) -> str:
    """A literal character inside a Python character class."""
    return "\\" + char if not char.isalnum() else char


def _bracket(pattern: str, start: int, *, escapes: bool, newline_excluded: bool) -> tuple[str, int]:
    """Translate the bracket expression at ``pattern[start] == '['``; returns it and the index
    after it. ``escapes``: backslash escapes inside (PCRE), else a literal backslash (POSIX)."""
    index = start + 1
    negated = index < len(pattern) and pattern[index] == "^"
    if negated:
        index += 1
    items: list[str] = []
    first = True
    while True:
        if index >= len(pattern):
            raise _Untranslatable("unmatched '[' in a bracket expression")
        char = pattern[index]
        if char == "]" and not first:
            index += 1
            break
        first = False
        if char == "[" and index + 1 < len(pattern) and pattern[index + 1] in ":.=":
            kind = pattern[index + 1]
            end = pattern.find(kind + "]", index + 2)
            if end < 0:
                raise _Untranslatable(f"unterminated '[{kind}' in a bracket expression")
            name = pattern[index + 2 : end]
            index = end + 2
            if kind == ":":
                if name not in _POSIX_CLASSES:
                    raise _Untranslatable(f"unknown character class [:{name}:]")
                items.append(_POSIX_CLASSES[name])
            elif len(name) == 1:
                items.append(_class_char(name))
            else:
                raise _Untranslatable(f"collating element [{kind}{name}{kind}]")
            continue
        if escapes and char == "\\":
            if index + 1 >= len(pattern):
                raise _Untranslatable("a trailing backslash")
            escaped = pattern[index + 1]
            items.append(_pcre_escape(escaped, in_class=True))
            index += 2
            continue
        if (
            index + 2 < len(pattern)
            and pattern[index + 1] == "-"
            and pattern[index + 2] != "]"
            and not (escapes and pattern[index + 2] == "\\")
            and pattern[index + 2] != "["
        ):
            items.append(_class_char(char) + "-" + _class_char(pattern[index + 2]))
            index += 3
            continue
        items.append(_class_char(char))
        index += 1
    if negated and newline_excluded:
        items.append("\\n")  # REG_NEWLINE: a non-matching list does not match a newline
    return "[" + ("^" if negated else "") + "".join(items) + "]", index


def _compile_regexp(body: str, flags: str) -> re.Pattern[str]:
    """A regexp_table(5) pattern: POSIX ERE as glibc's regcomp reads it. Flags toggle
    ``i`` (case-insensitive, on), ``m`` (REG_NEWLINE, off), ``x`` (extended syntax, on)."""
    ignore_case, multiline, extended = True, False, True
    for flag in flags:
        if flag == "i":
            ignore_case = not ignore_case
        elif flag == "m":
            multiline = not multiline
        elif flag == "x":
            extended = not extended
        else:
            raise _Untranslatable(f"unknown regexp flag {flag!r} (regexp_table(5): i, m, x)")
    if not extended:
        raise _Untranslatable("POSIX basic regular expressions (flag x off) are not translated")
    out: list[str] = []
    index = 0
    while index < len(body):
        char = body[index]
        if char == "\\":
            if index + 1 >= len(body):
                raise _Untranslatable("a trailing backslash")
            escaped = body[index + 1]
            index += 2
            if escaped in "wWsSbB":
                out.append("\\" + escaped)  # GNU extensions glibc's regcomp supports
            elif escaped == "<":
                out.append(r"\b(?=\w)")
            elif escaped == ">":
                out.append(r"\b(?<=\w)")
            elif escaped == "`":
                out.append(r"\A")
            elif escaped == "'":
                out.append(r"\Z")
            elif escaped in "123456789":
                out.append("\\" + escaped)  # a back-reference
            elif escaped.isalnum():
                raise _Untranslatable(f"the escape \\{escaped} has no POSIX meaning")
            else:
                out.append(re.escape(escaped))
        elif char == "[":
            translated, index = _bracket(body, index, escapes=False, newline_excluded=multiline)
            out.append(translated)
        elif char == "$":
            # POSIX: '$' matches at the end only (or before a newline with REG_NEWLINE);
            # Python's '$' also matches before a final newline.
            out.append("$" if multiline else r"\Z")
            index += 1
        elif char == "(" and body.startswith("(?", index):
            raise _Untranslatable("'(?' is not POSIX extended syntax")
        else:
            out.append(char)
            index += 1
    python_flags = re.ASCII
    if ignore_case:
        python_flags |= re.IGNORECASE
    # Without REG_NEWLINE, '.' matches a newline and '^'/'$' only the ends (regex(3)).
    python_flags |= re.MULTILINE if multiline else re.DOTALL
    return re.compile("".join(out), python_flags)


_PCRE_PASS = set("dDwWsSbBA") | set("nrtf")
_PCRE_UNSUPPORTED = set("GKRXphPHvVNgkQEcCxuoL")


def _pcre_escape(escaped: str, *, in_class: bool) -> str:
    if escaped in _PCRE_PASS and not (in_class and escaped in "bBA"):
        return "\\" + escaped
    if in_class and escaped == "b":
        return "\\x08"
    if escaped == "e":
        return "\\x1b"
    if escaped == "a":
        return "\\x07"
    if not in_class and escaped == "z":
        return r"\Z"  # PCRE \z: the very end; Python's \Z is that
    if not in_class and escaped == "Z":
        return r"(?=\n?\Z)"  # PCRE \Z: the end or before a final newline
    if escaped.isdigit():
        if in_class:
            raise _Untranslatable(f"the escape \\{escaped} in a character class")
        return "\\" + escaped
    if escaped.isalnum() or escaped in _PCRE_UNSUPPORTED:
        raise _Untranslatable(f"the PCRE escape \\{escaped} is not translated")
    return re.escape(escaped)


def _compile_pcre(body: str, flags: str) -> tuple[re.Pattern[str], bool]:
    """A pcre_table(5) pattern. Flags toggle ``i`` (on), ``m`` (off), ``s`` (on), ``x``
    (off), ``A`` (anchored, off), ``E`` (dollar end only, off), ``U`` (ungreedy: not
    translated), ``X`` (PCRE_EXTRA: unknown escapes are errors, which they are here anyway)."""
    ignore_case, multiline, dotall, extended, anchored, dollar_end = (
        True,
        False,
        True,
        False,
        False,
        False,
    )
    for flag in flags:
        if flag == "i":
            ignore_case = not ignore_case
        elif flag == "m":
            multiline = not multiline
        elif flag == "s":
            dotall = not dotall
        elif flag == "x":
            extended = not extended
        elif flag == "A":
            anchored = not anchored
        elif flag == "E":
            dollar_end = not dollar_end
        elif flag == "U":
            raise _Untranslatable("the U (ungreedy) flag is not translated")
        elif flag == "X":
            continue
        else:
            raise _Untranslatable(f"unknown pcre flag {flag!r} (pcre_table(5): i m s x A E U X)")
    out: list[str] = []
    index = 0
    while index < len(body):
        char = body[index]
        if char == "\\":
            if index + 1 >= len(body):
                raise _Untranslatable("a trailing backslash")
            out.append(_pcre_escape(body[index + 1], in_class=False))
            index += 2
        elif char == "[":
            translated, index = _bracket(body, index, escapes=True, newline_excluded=False)
            out.append(translated)
        elif char == "$" and dollar_end and not multiline:
            out.append(r"\Z")
            index += 1
        elif char == "(" and body.startswith("(?", index):
            rest = body[index + 2 :]
            if rest.startswith("<") and not rest.startswith(("<=", "<!")):
                out.append("(?P<")  # PCRE named group (?<name>...) is Python's (?P<name>...)
                index += 3
            elif rest[:1] in (":", "=", "!", "#", ">", "P") or rest.startswith(("<=", "<!")):
                out.append("(?")
                index += 2
            else:
                raise _Untranslatable(f"the PCRE group '(?{rest[:1]}' is not translated")
        else:
            out.append(char)
            index += 1
    python_flags = re.ASCII
    if ignore_case:
        python_flags |= re.IGNORECASE
    if multiline:
        python_flags |= re.MULTILINE
    if dotall:
        python_flags |= re.DOTALL
    if extended:
        python_flags |= re.VERBOSE
    return re.compile("".join(out), python_flags), anchored


# mac_parse(3) syntax: "$$", "${name}", "$(name)" or "$name" (letters, digits, underscores).
_SUBSTITUTION = re.compile(r"\$(?:\$|\{([^}]*)\}|\(([^)]*)\)|(\w*))", re.ASCII)


def _check_substitutions(
    value: str, groups: int, negated: bool, loc: tuple[str | int, ...]
) -> bool:
    """Whether ``value`` substitutes groups; refuses what dict_regexp.c/dict_pcre.c refuse:
    a non-numeric or out-of-range index, or any ``$n`` in a negated rule."""
    uses = False
    for match in _SUBSTITUTION.finditer(value):
        if match.group(0) == "$$":
            uses = True
            continue
        name = next(group for group in match.groups() if group is not None)
        if not name:
            raise CompileError(loc, f"empty macro name in {value!r} (write $$ for a '$')")
        if not name.isdigit():
            raise CompileError(loc, f"non-numeric replacement index {name!r} in {value!r}")
        if negated:
            raise CompileError(loc, f"$number found in negative match replacement text {value!r}")
        if int(name) > groups:
            raise CompileError(loc, f"out of range replacement index {name!r} in {value!r}")
        uses = True
    return uses


def _substitute(value: str, found: re.Match[str]) -> str:
    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = next(group for group in match.groups() if group is not None)
        return found.group(int(name)) or ""

    return _SUBSTITUTION.sub(replace, value)
