"""Perl regular expressions, as SpamAssassin rules write them, translated to Python's ``re``.

Owns ``translate``: a rule's ``/pattern/flags`` (or ``m{pattern}flags``, ``m!pattern!flags``…)
turned into a compiled Python pattern with the same meaning, or a ``ValueError`` naming the Perl
construct Python cannot express (``\\K``, ``\\G``, code blocks, branch reset, ``\\p{…}``, case
changes such as ``\\U``…). It never approximates: a pattern it returns matches what Perl
matches on the same string, so a rule either runs natively with SpamAssassin's meaning or is
left to spamd. Pure: no I/O, no logging.

SpamAssassin matches rules against byte strings (perldoc Mail::SpamAssassin::Conf, "body":
"Body is processed as a raw byte string, which means Unicode-specific regex features like \\p{}
can NOT be used"). The patterns here are therefore matched against *byte views*: text whose
every character is one octet (``sinkd.core.sa_text.octets``), and are compiled with ``re.ASCII``
so that ``\\w``, ``\\d``, ``\\s``, ``\\b`` and ``/i`` case folding use ASCII rules, as Perl's do
on a byte string without ``use locale`` or the ``unicode_strings`` feature. A pattern's own
non-ASCII characters are read as their UTF-8 octets, as Perl reads a configuration file
without ``use utf8``.
"""

from __future__ import annotations

import re
from functools import cache

__all__ = ["split_delimited", "translate"]

# Delimiter pairs Perl accepts for m// with brackets (perlop "Quote and Quote-like Operators").
_PAIRS = {"{": "}", "(": ")", "[": "]", "<": ">"}
# Modifiers: i m s x change the match; o g (and p, n's capture-only effect, a/u/l charset
# modes on byte strings) do not change what a single test matches.
_FLAGS = {"i": re.IGNORECASE, "m": re.MULTILINE, "s": re.DOTALL, "x": re.VERBOSE}
_IGNORED_FLAGS = frozenset("ogpnadlu")
# POSIX classes inside brackets (perlrecharclass "POSIX Character Classes"), ASCII meanings.
_POSIX = {
    "alpha": "A-Za-z",
    "digit": "0-9",
    "alnum": "A-Za-z0-9",
    "upper": "A-Z",
    "lower": "a-z",
    "space": r" \t\n\r\f\v",
    "blank": r" \t",
    "punct": r"!-/:-@\[-`{-~",
    "print": r" -~",
    "graph": r"!-~",
    "cntrl": r"\x00-\x1f\x7f",
    "xdigit": "0-9A-Fa-f",
    "word": "A-Za-z0-9_",
    "ascii": r"\x00-\x7f",
}
# Escapes that mean the same in both (perlrebackslash; Python's re module documentation).
_SAME = frozenset("dDwWsSbBAntrfa0123456789")
_UNSUPPORTED = {
    "K": "\\K (keep the left part out of the match)",
    "G": "\\G (the end of the previous match)",
    "p": "\\p{…} (Unicode properties; SpamAssassin matches byte strings)",
    "P": "\\P{…} (Unicode properties; SpamAssassin matches byte strings)",
    "X": "\\X (extended grapheme cluster)",
    "C": "\\C (one octet)",
    "l": "\\l (lower-case the next character)",
    "u": "\\u (upper-case the next character)",
    "L": "\\L (lower-case until \\E)",
    "U": "\\U (upper-case until \\E)",
    "F": "\\F (fold case until \\E)",
    "g": "\\g (relative or named back-reference)",
    "k": "\\k (named back-reference)",
    "c": "\\c (control character)",
    "o": "\\o{…} (octal escape)",
    "E": "\\E without \\Q",
    "Q": "\\Q (quoted section)",
}


def split_delimited(text: str) -> tuple[str, str, str]:
    """``(pattern, flags, rest)`` of a Perl match operator at the start of ``text``:
    ``/…/flags``, ``m/…/flags`` or ``m`` with any other delimiter (brackets paired). A
    backslash-escaped delimiter inside stays escaped in the pattern. Raises ValueError."""
    if text.startswith("/"):
        start, close, body_at = "/", "/", 1
    elif text.startswith("m") and len(text) > 1 and not text[1].isalnum() and text[1] != "_":
        start = text[1]
        if start.isspace():
            raise ValueError("white space after m is not a delimiter SpamAssassin accepts")
        close, body_at = _PAIRS.get(start, start), 2
    else:
        raise ValueError(f"a pattern must be /…/ or m{{…}}, not {text[:20]!r}")
    depth, i = 0, body_at
    while i < len(text):
        char = text[i]
        if char == "\\":
            i += 2
            continue
        if char == start and close != start:
            depth += 1
        elif char == close:
            if depth == 0:
                end = i + 1
                while end < len(text) and text[end].isalpha():
                    end += 1
                return text[body_at:i], text[i + 1 : end], text[end:]
            depth -= 1
        i += 1
    raise ValueError(f"the pattern is not closed by {close!r}")


@cache
def translate(operator: str) -> re.Pattern[str]:
    """The compiled Python pattern of a whole Perl match operator (``/viagra/i``)."""
    body, flags, rest = split_delimited(operator.strip())
    if rest.strip():
        raise ValueError(f"unexpected text after the pattern: {rest.strip()!r}")
    return compile_perl(body, flags)


def compile_perl(body: str, flags: str = "") -> re.Pattern[str]:
    """A Perl pattern body with its modifiers, compiled for byte views. Raises ValueError."""
    value = re.ASCII
    for flag in flags:
        if flag in _FLAGS:
            value |= _FLAGS[flag]
        elif flag not in _IGNORED_FLAGS:
            raise ValueError(f"unknown regular expression modifier {flag!r}")
    octets = body.encode("utf-8", "surrogateescape").decode("latin-1")
    python = _convert(octets, verbose="x" in flags)
    try:
        return re.compile(python, value)
    except re.error as exc:
        raise ValueError(f"not a regular expression Python can run the same way: {exc}") from None


def _convert(body: str, *, verbose: bool) -> str:
    out: list[str] = []
    i, n = 0, len(body)
    in_class = False
    while i < n:
        char = body[i]
        if char == "\\":
            if i + 1 >= n:
                raise ValueError("the pattern ends with a lone backslash")
            i, text = _escape(body, i + 1, in_class)
            out.append(text)
            continue
        if in_class:
            if char == "[" and body.startswith("[:", i):
                end = body.find(":]", i + 2)
                if end < 0:
                    out.append(r"\[")
                    i += 1
                    continue
                name = body[i + 2 : end]
                negated = name.startswith("^")
                if negated or name not in _POSIX:
                    raise ValueError(f"POSIX class [:{name}:] has no translation")
                out.append(_POSIX[name])
                i = end + 2
                continue
            if char == "[":
                out.append(r"\[")  # literal in Perl; Python warns of nested sets
                i += 1
                continue
            if char == "]":
                in_class = False
            # Doubled &, ~ and | are set operations Python reserves (FutureWarning): literal
            # members in Perl, so escaped.
            out.append("\\" + char if char in "&~|" else char)
            i += 1
            continue
        if char == "[":
            in_class = True
            out.append(char)
            i += 1
            # A ']' right after '[' or '[^' is a literal member in both languages.
            if body.startswith("^", i):
                out.append("^")
                i += 1
            if body.startswith("]", i):
                out.append(r"\]")
                i += 1
            continue
        if char == "(" and body.startswith("(?", i):
            i = _group(body, i, out)
            continue
        if char == "#" and verbose:
            # A comment up to the end of the line in both; copied as is.
            end = body.find("\n", i)
            end = n if end < 0 else end
            out.append(body[i:end])
            i = end
            continue
        out.append(char)
        i += 1
    if in_class:
        raise ValueError("a character class is not closed")
    return "".join(out)


def _group(body: str, i: int, out: list[str]) -> int:
    """The opening of an extended group at ``body[i]`` ("(?"), appended translated."""
    rest = body[i + 2 :]
    if rest.startswith(("<=", "<!", ":", "=", "!", ">", "#")):
        out.append("(?")
        return i + 2
    if rest.startswith("<") or rest.startswith("P<"):
        out.append("(?P<")
        return i + 2 + (1 if rest.startswith("<") else 2)
    if rest.startswith("'"):
        end = rest.find("'", 1)
        if end < 0:
            raise ValueError("a named group is not closed")
        out.append(f"(?P<{rest[1:end]}>")
        return i + 2 + end + 1
    if rest.startswith(("P=", "P>")):
        out.append("(?" + rest[:2])
        return i + 4
    if rest.startswith("("):
        out.append("(?(")
        return i + 3
    flags = re.match(r"([imsxn]*)(?:-([imsx]*))?([:)])", rest)
    if flags is None:
        construct = rest[:3]
        raise ValueError(f"the group (?{construct}… has no Python equivalent")
    on, off, closing = flags.group(1).replace("n", ""), flags.group(2) or "", flags.group(3)
    if closing == ")":
        if i != 0 and "".join(out).strip("^"):
            raise ValueError("inline modifiers (?…) after the start of the pattern")
        if off:
            raise ValueError("(?-…) turning modifiers off for the whole pattern")
        out.append(f"(?{on})" if on else "")
        return i + 2 + flags.end()
    out.append(f"(?{on}{'-' + off if off else ''}:" if (on or off) else "(?:")
    return i + 2 + flags.end()


def _escape(body: str, i: int, in_class: bool) -> tuple[int, str]:
    """The escape whose letter is at ``body[i]`` (after the backslash): (next index, text)."""
    char = body[i]
    if char in _UNSUPPORTED:
        raise ValueError(f"{_UNSUPPORTED[char]} has no Python equivalent")
    if char == "z":
        return i + 1, r"\Z"
    if char == "e":
        return i + 1, r"\x1b"
    if char == "Z":
        # Perl's \Z also matches before a final newline; Python's \Z is Perl's \z.
        return i + 1, r"(?=\n?\Z)"
    if char == "h":
        return i + 1, "[ \\t]" if not in_class else " \\t"
    if char == "H":
        if in_class:
            raise ValueError("\\H inside a character class")
        return i + 1, "[^ \\t]"
    if char == "v":
        return i + 1, "[\\n\\x0b\\f\\r\\x85]" if not in_class else "\\n\\x0b\\f\\r\\x85"
    if char == "V":
        if in_class:
            raise ValueError("\\V inside a character class")
        return i + 1, "[^\\n\\x0b\\f\\r\\x85]"
    if char == "R":
        if in_class:
            raise ValueError("\\R inside a character class")
        return i + 1, "(?:\\r\\n|[\\n\\x0b\\f\\r\\x85])"
    if char == "N":
        if body.startswith("{", i + 1):
            raise ValueError("\\N{…} (a named character)")
        return i + 1, "[^\\n]"
    if char == "x":
        if body.startswith("{", i + 1):
            end = body.find("}", i + 2)
            if end < 0:
                raise ValueError("\\x{ is not closed")
            digits = body[i + 2 : end].strip() or "0"
            code = int(digits, 16)
            if code > 0xFF:
                raise ValueError(f"\\x{{{digits}}} is no octet: SpamAssassin matches bytes")
            return end + 1, f"\\x{code:02x}"
        hex_digits = re.match(r"[0-9A-Fa-f]{0,2}", body[i + 1 :])
        value = hex_digits.group(0) if hex_digits else ""
        return i + 1 + len(value), f"\\x{int(value or '0', 16):02x}"
    if char in _SAME:
        if char == "b" and in_class:
            return i + 1, "\\x08"
        if char in "123456789" and in_class:
            raise ValueError("a back-reference inside a character class")
        return i + 1, "\\" + char
    if char.isalpha():
        raise ValueError(f"the escape \\{char} has no Python equivalent")
    # A backslash before any other character makes it literal in both languages.
    return i + 1, "\\" + char
