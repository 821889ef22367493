"""Match word and phrase lists, a few regexes and GTUBE against message text.

Owns the tokenizer and the one-pass word index the content rules share. Pure functions of their
input: no I/O, no logging, no knowledge of profiles or messages beyond text and bytes.
"""

from __future__ import annotations

import re
import sys
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from functools import cache
from itertools import compress

__all__ = [
    "GTUBE",
    "GTUBE_TEXT",
    "RegexSet",
    "WordMatcher",
    "excerpt",
    "has_gtube",
    "normalize",
    "tokenize",
]

# SpamAssassin's Generic Test for Unsolicited Bulk Email (rules/20_body_tests.cf: a body rule,
# unanchored, so it matches anywhere in the decoded, rendered text of a paragraph).
GTUBE = b"XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"
GTUBE_TEXT = GTUBE.decode("ascii")

# Invisible format characters (soft hyphen, zero-width space/joiners, direction marks, word
# joiner, BOM) are removed before tokenizing: they do not separate words on screen, and
# spammers put them inside trigger words ("ca\u200bsh").
_INVISIBLE = re.compile("[\u00ad\u200b-\u200f\u2060-\u2064\ufeff]")

MATCH_EXCERPT_CHARS = 80


_ASCII_WORD = re.compile(r"\w+", re.ASCII)


@cache
def _unicode_word() -> re.Pattern[str]:
    r"""``\w`` runs joined by combining marks, so that e.g. Devanagari "हिन्दी" stays one token.

    Python's ``\w`` leaves out marks (categories Mn/Mc/Me) that NFKC cannot compose away. The
    class is built from unicodedata once per process, on the first non-ASCII text (planes 0, 1
    and 14 hold every mark); marks are tested once per token, not per character, which keeps
    the scan close to plain ``\w+`` speed.
    """
    codes: list[int] = []
    for start, stop in ((0x300, 0x20000), (0xE0000, min(0xE1000, sys.maxunicode + 1))):
        span = range(start, stop)
        codes += compress(span, [c[0] == "M" for c in map(unicodedata.category, map(chr, span))])
    ranges: list[tuple[int, int]] = []
    for code in codes:
        if ranges and ranges[-1][1] == code - 1:
            ranges[-1] = (ranges[-1][0], code)
        else:
            ranges.append((code, code))
    marks = "".join(
        re.escape(chr(a)) if a == b else f"{re.escape(chr(a))}-{re.escape(chr(b))}"
        for a, b in ranges
    )
    return re.compile(rf"\w+(?:[{marks}]+\w*)*")


def normalize(text: str) -> str:
    """NFKC (fold compatibility forms: "ﬁ" → "fi", full-width → ASCII) then casefold."""
    if text.isascii():
        return text.lower()  # same result, much cheaper
    text = _INVISIBLE.sub("", text)
    return unicodedata.normalize("NFKC", text).casefold()


def tokenize(text: str) -> list[str]:
    """The normalized word tokens of ``text``, in order."""
    text = normalize(text)
    if text.isascii():
        return _ASCII_WORD.findall(text)
    return _unicode_word().findall(text)


class WordMatcher:
    """Whole-word, case-insensitive matching of many words and phrases in one pass over a text.

    Every entry is tokenized like the text; an entry of several tokens ("wire transfer",
    "e-mail") is a phrase and matches those tokens in sequence whatever punctuation or white
    space separates them in the text. Occurrences may overlap ("ha ha" occurs twice in
    "ha ha ha"). Entries that tokenize alike are merged under the first spelling given.
    """

    def __init__(self, entries: Iterable[str]) -> None:
        self._names: list[str] = []  # entry id -> the entry as given
        self._single: dict[str, int] = {}  # token -> entry id
        self._phrases: dict[str, list[tuple[tuple[str, ...], int]]] = {}  # first token -> rest
        seen: set[tuple[str, ...]] = set()
        for entry in entries:
            tokens = tuple(tokenize(entry))
            if not tokens or tokens in seen:
                continue  # blank or punctuation-only entry, or a duplicate
            seen.add(tokens)
            entry_id = len(self._names)
            self._names.append(entry)
            if len(tokens) == 1:
                self._single[tokens[0]] = entry_id
            else:
                self._phrases.setdefault(tokens[0], []).append((tokens[1:], entry_id))

    def __len__(self) -> int:
        return len(self._names)

    def __repr__(self) -> str:
        return f"<WordMatcher {len(self)} entries>"

    def find(self, text: str) -> dict[str, int]:
        """Matched entries (spelled as given) and how often each occurs in ``text``."""
        if not self._names:
            return {}
        tokens = tokenize(text)
        counts: dict[str, int] = {}
        # Single words: count every token once in C, then one dict lookup per distinct token.
        distinct = Counter(tokens)
        for token, n in distinct.items():
            entry_id = self._single.get(token)
            if entry_id is not None:
                counts[self._names[entry_id]] = n
        # Phrases: visit only the positions of tokens that start some phrase.
        starts = self._phrases.keys() & distinct.keys()
        if starts:
            for i, token in enumerate(tokens):
                if token not in starts:
                    continue
                for rest, entry_id in self._phrases[token]:
                    if tuple(tokens[i + 1 : i + 1 + len(rest)]) == rest:
                        name = self._names[entry_id]
                        counts[name] = counts.get(name, 0) + 1
        return counts


class RegexSet:
    """A handful of user regexes, compiled once; ``find`` reports each one that matches.

    Text is read as body rules read it (sinkd.core.message.BodyPart): one paragraph per line. As
    SpamAssassin matches each of those lines on its own (Conf.pm, ``body``), a match never spans
    two lines and ``^``/``$`` anchor at each line. An invalid pattern raises ``re.error`` from
    the constructor.
    """

    def __init__(self, patterns: Sequence[str], *, ignore_case: bool = True) -> None:
        flags = re.MULTILINE | (re.IGNORECASE if ignore_case else 0)
        self._compiled: dict[str, re.Pattern[str]] = {}
        for pattern in patterns:
            if pattern not in self._compiled:
                self._compiled[pattern] = re.compile(pattern, flags)

    def __len__(self) -> int:
        return len(self._compiled)

    def __repr__(self) -> str:
        return f"<RegexSet {len(self)} patterns>"

    def find(self, text: str) -> dict[str, str]:
        """Each matching pattern -> an excerpt of its first match (see ``excerpt``)."""
        found: dict[str, str] = {}
        for pattern, compiled in self._compiled.items():
            match = compiled.search(text)
            if match is not None and "\n" in match.group(0):
                # One search over the whole text is the fast path; a match that crosses a line
                # is not one SpamAssassin would see, so look again line by line.
                match = next(filter(None, map(compiled.search, text.split("\n"))), None)
            if match is not None:
                found[pattern] = excerpt(match.group(0))
        return found


def excerpt(text: str, limit: int = MATCH_EXCERPT_CHARS) -> str:
    """``text`` on one line, cut to ``limit`` characters with an ellipsis when longer."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def has_gtube(text: str) -> bool:
    """True if ``text`` (one part as body rules read it) contains the GTUBE string."""
    return GTUBE_TEXT in text
