"""Postfix's configuration syntax, read as Postfix reads it: main.cf, master.cf and table files.

Owns the parsers behind ``sinkd profiles import postfix``: main.cf's logical lines and
``name = value`` settings (postconf(5) "SYNTAX"), ``$name`` expansion with Postfix 3.7's
defaults for what main.cf leaves unset, list splitting with ``{ … }`` grouping, master.cf's
service lines with their ``-o`` overrides (master(5)), and the text sources of lookup tables:
``key value`` files as postmap(1) reads them, regexp_table(5)/pcre_table(5) patterns with
``if``/``endif``, cidr_table(5) networks, ``inline:{…}`` and ``static:``. Every setting and
table entry keeps the file and line it came from. It decides nothing about what a restriction
means (``sinkd.importers.postfix`` does) and never compiles a pattern (the profile's table
module does, when the profile loads).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from sinkd.core.postfix_tables import split_pattern
from sinkd.errors import PolicyImportError
from sinkd.importers.base import located

# --- logical lines ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Line:
    """One logical line: continuation lines joined with a space, the number of its first line,
    and where in ``text`` each physical line starts (offset, line number)."""

    number: int
    text: str
    starts: tuple[tuple[int, int], ...] = ()

    def line_at(self, offset: int) -> int:
        """The physical line holding the character at ``offset`` of ``text``."""
        found = self.number
        for start, number in self.starts:
            if start <= offset:
                found = number
        return found


def logical_lines(text: str) -> list[Line]:
    """postconf(5), postmap(1), regexp_table(5): "A logical line starts with non-whitespace
    text. A line that starts with whitespace continues a logical line." Empty lines,
    whitespace-only lines and lines whose first non-whitespace character is ``#`` are ignored
    (also in the middle of a continued line, as Postfix's readlline does)."""
    found: list[Line] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if raw[0].isspace():
            if found:
                last = found[-1]
                offset = len(last.text) + 1
                found[-1] = Line(
                    last.number, f"{last.text} {stripped}", (*last.starts, (offset, number))
                )
                continue
            # Postfix: "logical line must not start with whitespace" (a warning, line ignored).
            found.append(Line(number, stripped, ((0, number),)))
            continue
        found.append(Line(number, raw.rstrip(), ((0, number),)))
    return found


# --- main.cf ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Setting:
    """``name = value`` as written (not expanded), where it was set."""

    name: str
    value: str
    origin: str  # "main.cf:12" or "master.cf:17 (-o of smtp inet)"
    # The origin of each word of the value as written, in order (a list continued over
    # several lines names each restriction's own line).
    word_origins: tuple[str, ...] = ()


_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


def parse_main_cf(text: str, path: Path, display: str) -> dict[str, Setting]:
    """The settings of a main.cf: later definitions override earlier ones (postconf(5): "When
    the same parameter is defined multiple times, only the last instance is remembered").
    A logical line that is not ``name = value`` is an error naming the file and line, as
    Postfix's own "missing '=' after attribute name"."""
    settings: dict[str, Setting] = {}
    for line in logical_lines(text):
        name, equals, value = line.text.partition("=")
        name = name.strip()
        if not equals or not _NAME.match(name):
            raise PolicyImportError(
                f"{located(display, line.number)}: expected 'name = value', found "
                f"{line.text.strip()[:60]!r}",
                path=str(path),
                line=line.number,
            )
        start = len(line.text) - len(value.lstrip())
        words = split_words_at(value, " \t\r\n,")
        origins = tuple(located(display, line.line_at(start + at)) for at, _ in words)
        settings[name] = Setting(name, value.strip(), located(display, line.number), origins)
    return settings


# --- master.cf ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Service:
    """One master.cf service line (master(5)): name, type, the command and its arguments,
    and the ``-o name=value`` overrides it gives its daemon."""

    name: str
    type: str
    command: str
    arguments: tuple[str, ...]
    overrides: tuple[Setting, ...]
    line: int


def parse_master_cf(text: str, path: Path, display: str) -> list[Service]:
    """master(5): eight fields then the command's arguments; ``-o name=value`` and (Postfix
    3.0 and later) ``-o { name = value }`` give the daemon its own parameter values."""
    services: list[Service] = []
    for line in logical_lines(text):
        words = split_words(line.text)
        if len(words) < 8:
            raise PolicyImportError(
                f"{located(display, line.number)}: a master.cf service needs 8 fields "
                f"(service type private unpriv chroot wakeup maxproc command), found "
                f"{len(words)}",
                path=str(path),
                line=line.number,
            )
        command, rest = words[7], words[8:]
        overrides: list[Setting] = []
        arguments: list[str] = []
        index = 0
        origin = f"{located(display, line.number)} (-o of {words[0]} {words[1]})"
        while index < len(rest):
            word = rest[index]
            if word == "-o" and index + 1 < len(rest):
                assignment = strip_braces(rest[index + 1])
                name, equals, value = assignment.partition("=")
                if not equals:
                    raise PolicyImportError(
                        f"{located(display, line.number)}: -o {rest[index + 1]!r}: expected "
                        "name=value",
                        path=str(path),
                        line=line.number,
                    )
                overrides.append(Setting(name.strip(), value.strip(), origin))
                index += 2
                continue
            if word.startswith("-o") and len(word) > 2 and "=" in word:
                name, _, value = word[2:].partition("=")
                overrides.append(Setting(name.strip(), value.strip(), origin))
            else:
                arguments.append(word)
            index += 1
        services.append(
            Service(words[0], words[1], command, tuple(arguments), tuple(overrides), line.number)
        )
    return services


# --- lists and braces ---------------------------------------------------------------------------


def split_words(text: str, separators: str = " \t\r\n") -> list[str]:
    """Postfix's mystrtokq: separator characters end a token except inside ``{ … }``, which
    (Postfix 3.0 and later) groups text containing separators into one token."""
    return [word for _, word in split_words_at(text, separators)]


def split_words_at(text: str, separators: str = " \t\r\n") -> list[tuple[int, str]]:
    """``split_words`` with each word's offset in ``text``."""
    words: list[tuple[int, str]] = []
    current: list[str] = []
    start = 0
    depth = 0
    for index, char in enumerate(text):
        if char == "{":
            depth += 1
        elif char == "}" and depth > 0:
            depth -= 1
        if depth == 0 and char in separators:
            if current:
                words.append((start, "".join(current)))
                current = []
            continue
        if not current:
            start = index
        current.append(char)
    if current:
        words.append((start, "".join(current)))
    return words


def split_list(text: str) -> list[str]:
    """A parameter's list value: "separated by comma and/or whitespace" (postconf(5)), a
    ``{ … }`` token kept whole."""
    return split_words(text, " \t\r\n,")


def strip_braces(token: str) -> str:
    """``{ text }`` → ``text`` (postconf(5): "the outer braces are removed and leading and
    trailing whitespace are stripped"); anything else unchanged."""
    stripped = token.strip()
    if stripped.startswith("{") and stripped.endswith("}"):
        return stripped[1:-1].strip()
    return token


# --- $name expansion ----------------------------------------------------------------------------

# Postfix 3.7.11's compiled-in defaults (`postconf -d NAME` on Debian 12's postfix 3.7.11) for
# the parameters the importer reads or that other parameters' defaults refer to. Three defaults
# depend on compatibility_level through Postfix 3.6's ``${{$compatibility_level} <level {N} ? …}``
# expressions; ``_compatibility_default`` evaluates them. Values here are unexpanded, as
# `postconf -d` prints them.
DEFAULTS_SOURCE = "postconf -d (Postfix 3.7.11)"
POSTFIX_DEFAULTS: dict[str, str] = {
    "compatibility_level": "0",
    "config_directory": "/etc/postfix",
    "myhostname": "localhost.localdomain",
    "mydomain": "localdomain",
    "myorigin": "$myhostname",
    "mydestination": "$myhostname, localhost.$mydomain, localhost",
    "smtpd_delay_reject": "yes",
    "smtpd_client_restrictions": "",
    "smtpd_helo_restrictions": "",
    "smtpd_sender_restrictions": "",
    "smtpd_recipient_restrictions": "",
    "smtpd_data_restrictions": "",
    "smtpd_end_of_data_restrictions": "",
    "access_map_reject_code": "554",
    "access_map_defer_code": "450",
    "reject_code": "554",
    "defer_code": "450",
    "maps_rbl_reject_code": "554",
    "default_rbl_reply": (
        "$rbl_code Service unavailable; $rbl_class [$rbl_what] blocked using "
        "$rbl_domain${rbl_reason?; $rbl_reason}"
    ),
    "rbl_reply_maps": "",
    "relay_domains_reject_code": "554",
    "unknown_address_reject_code": "450",
    "reject_tempfail_action": "defer_if_permit",
    "unknown_address_tempfail_action": "$reject_tempfail_action",
    "unknown_helo_hostname_tempfail_action": "$reject_tempfail_action",
    "unknown_client_reject_code": "450",
    "unknown_hostname_reject_code": "450",
    "invalid_hostname_reject_code": "501",
    "non_fqdn_reject_code": "504",
    "smtpd_null_access_lookup_key": "<>",
    "parent_domain_matches_subdomains": (
        "debug_peer_list,fast_flush_domains,mynetworks,permit_mx_backup_networks,"
        "qmqpd_authorized_clients,relay_domains,smtpd_access_maps"
    ),
    "message_size_limit": "10240000",
    "header_size_limit": "102400",
    "body_checks_size_limit": "51200",
    "smtpd_reject_footer": "",
    "header_checks": "",
    "mime_header_checks": "$header_checks",
    "nested_header_checks": "$header_checks",
    "body_checks": "",
    "disable_mime_input_processing": "no",
    "smtpd_restriction_classes": "",
    "smtpd_policy_service_default_action": "451 4.3.5 Server configuration problem",
    "soft_bounce": "no",
}

# Parameters whose values are reply templates, expanded by smtpd when it replies with the
# request's own variables ($rbl_code, $client_address …, postconf(5) default_rbl_reply and
# smtpd_reject_footer), never when main.cf is read.
TEMPLATES = frozenset({"default_rbl_reply", "smtpd_reject_footer"})


def compatibility_default(name: str, level: str) -> str | None:
    """The three 3.7 defaults written as ``${{$compatibility_level} <level {N} ? {A} : {B}}``
    (`postconf -d`), for the configuration's compatibility_level."""
    major = _level(level)
    if name == "relay_domains":  # <level 2 ? $mydestination : empty
        return "$mydestination" if major < 2 else ""
    if name == "mynetworks_style":  # <level 2 ? subnet : host
        return "subnet" if major < 2 else "host"
    if name == "smtpd_relay_restrictions":  # <level 1 ? empty : the three
        return (
            ""
            if major < 1
            else "permit_mynetworks, permit_sasl_authenticated, defer_unauth_destination"
        )
    return None


def _level(level: str) -> float:
    match = re.match(r"^\s*(\d+)(?:\.(\d+))?", level)
    if not match:
        return 0.0
    return float(f"{match.group(1)}.{match.group(2) or 0}")


_REFERENCE = re.compile(r"\$(?:\$|([A-Za-z0-9_]+)|\{|\()")


@dataclass
class Parameters:
    """main.cf's settings (with a service's ``-o`` overrides laid over them) and Postfix's
    defaults, expanded on demand as Postfix expands them (postconf(5) "$name", "${name}",
    "$(name)", "${name?value}", "${name:value}", "${name?{value}}", "${name:{value}}")."""

    settings: dict[str, Setting]
    # Every name expanded so far, directly or through another's value: a setting that only
    # feeds another (a user's own ``$name``) is used, not untranslated.
    referenced: set[str] = field(default_factory=set)
    _cache: dict[str, str] = field(default_factory=dict)

    def is_set(self, name: str) -> bool:
        return name in self.settings

    def raw(self, name: str) -> str | None:
        if name in self.settings:
            return self.settings[name].value
        level = self.raw("compatibility_level") if name != "compatibility_level" else None
        computed = compatibility_default(name, level or "0")
        if computed is not None:
            return computed
        return POSTFIX_DEFAULTS.get(name)

    def origin(self, name: str) -> str:
        """Where a parameter's value comes from: its main.cf/master.cf line, else the default."""
        if name in self.settings:
            return self.settings[name].origin
        return f"{DEFAULTS_SOURCE} {name}"

    def word_origins(self, name: str, count: int) -> list[str]:
        """The origin of each of the ``count`` words of a list parameter's expanded value: each
        word's own line when the value as written has as many words (no ``$name`` that
        expands to several), else the parameter's line for all."""
        setting = self.settings.get(name)
        if setting is not None and len(setting.word_origins) == count:
            return list(setting.word_origins)
        return [self.origin(name)] * count

    def value(self, name: str) -> str:
        """The parameter's value with every ``$name`` expanded; an unknown name is empty, as
        Postfix expands it (with a warning). Reply templates are left as written."""
        if name in TEMPLATES:
            self.referenced.add(name)
            return self.raw(name) or ""
        return self._expand_name(name, ())

    def expand(self, text: str) -> str:
        return self._expand(text, ())

    def _expand_name(self, name: str, chain: tuple[str, ...]) -> str:
        self.referenced.add(name)
        if name in self._cache:
            return self._cache[name]
        if name in chain:
            cycle = " -> ".join((*chain, name))
            raise PolicyImportError(
                f"{self.origin(chain[0])}: ${name} refers to itself ({cycle})",
            )
        raw = self.raw(name)
        value = self._expand(raw, (*chain, name)) if raw is not None else ""
        self._cache[name] = value
        return value

    def _expand(self, text: str, chain: tuple[str, ...]) -> str:
        out: list[str] = []
        index = 0
        while index < len(text):
            match = _REFERENCE.search(text, index)
            if not match:
                out.append(text[index:])
                break
            out.append(text[index : match.start()])
            token = match.group(0)
            if token == "$$":
                out.append("$")
                index = match.end()
            elif match.group(1):
                out.append(self._expand_name(match.group(1), chain))
                index = match.end()
            else:
                closing = "}" if token.endswith("{") else ")"
                end = _matching(text, match.end() - 1)
                if end < 0:
                    where = self.origin(chain[-1]) if chain else "main.cf"
                    raise PolicyImportError(
                        f"{where}: unbalanced {token!r} in {text!r} (expected {closing!r})"
                    )
                out.append(self._conditional(text[match.end() : end], chain))
                index = end + 1
        return "".join(out)

    def _conditional(self, inner: str, chain: tuple[str, ...]) -> str:
        name_match = re.match(r"^\s*([A-Za-z0-9_]+)\s*", inner)
        if not name_match:
            return ""
        name = name_match.group(1)
        rest = inner[name_match.end() :]
        value = self._expand_name(name, chain)
        if not rest:
            return value
        operator, argument = rest[0], strip_braces(rest[1:])
        if operator == "?":  # the argument when the parameter is not empty
            return self._expand(argument, chain) if value else ""
        if operator == ":":  # the argument when the parameter is empty
            return "" if value else self._expand(argument, chain)
        return value


def _matching(text: str, opening: int) -> int:
    """The index of the bracket closing the one at ``opening``, or -1."""
    pairs = {"{": "}", "(": ")"}
    open_char = text[opening]
    close_char = pairs[open_char]
    depth = 0
    for index in range(opening, len(text)):
        if text[index] == open_char:
            depth += 1
        elif text[index] == close_char:
            depth -= 1
            if depth == 0:
                return index
    return -1


# --- table sources -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Entry:
    """One table entry as written: ``key`` (a fixed string, ``/re/flags``, ``!/re/``, a CIDR
    pattern), ``value``, the enclosing ``if`` patterns outermost first, its origin."""

    key: str
    value: str
    origin: str
    conditions: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Skipped:
    """A line Postfix itself ignores (with a warning), said so rather than dropped."""

    origin: str
    text: str
    reason: str


@dataclass
class TableText:
    entries: list[Entry] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)


def parse_indexed(text: str, display: str) -> TableText:
    """A postmap(1) source (hash:, btree:, lmdb:, texthash:): ``key whitespace value``. Keys are
    folded to lower case (postmap without -f); a duplicate key keeps the first entry, as
    postmap does (observed here: "warning: duplicate entry", the first value answers); a line
    without a value is ignored, as postmap does ("expected format: key whitespace value")."""
    table = TableText()
    seen: dict[str, str] = {}
    for line in logical_lines(text):
        parts = line.text.strip().split(None, 1)
        origin = located(display, line.number)
        if len(parts) < 2:
            table.skipped.append(
                Skipped(
                    origin,
                    line.text.strip(),
                    "postmap ignores it too: 'expected format: key whitespace value'",
                )
            )
            continue
        key = parts[0].lower()
        if key in seen:
            table.skipped.append(
                Skipped(
                    origin,
                    line.text.strip(),
                    f"duplicate key: postmap keeps the first entry ({seen[key]}) and warns "
                    "'duplicate entry'",
                )
            )
            continue
        seen[key] = origin
        table.entries.append(Entry(key, parts[1].strip(), origin))
    return table


def _split_pattern(text: str) -> tuple[str, str] | None:
    """``[!]<d>pattern<d>flags rest`` → (the pattern with delimiters and flags, the rest), as
    the table module splits it (dict_regexp.c); None when the text is no delimited pattern."""
    try:
        return split_pattern(text)
    except ValueError:
        return None


def parse_patterns(text: str, display: str, *, cidr: bool = False) -> TableText:
    """regexp_table(5)/pcre_table(5) (``/pattern/flags result``) or cidr_table(5)
    (``network/len result``) with ``!`` negation and nested ``if``/``endif``, in file order.
    A line that is not a pattern, an ``endif`` without ``if`` or a missing ``endif`` is an
    error naming the line: Postfix refuses such a table (regexp/pcre: "fatal: …"; an extra
    endif is a warning, said here as an error too so that the rules around it are reviewed)."""
    table = TableText()
    stack: list[tuple[str, int]] = []
    for line in logical_lines(text):
        origin = located(display, line.number)
        body = line.text.strip()
        word = body.split(None, 1)[0]
        if word.lower() == "endif":
            if not stack:
                raise PolicyImportError(
                    f"{origin}: 'endif' without 'if'", path=display, line=line.number
                )
            stack.pop()
            continue
        if word.lower() == "if":
            condition = body[2:].strip()
            if not condition or (not cidr and _split_pattern(condition) is None):
                raise PolicyImportError(
                    f"{origin}: 'if' needs a pattern", path=display, line=line.number
                )
            pattern = condition.split(None, 1)[0] if cidr else _pattern_only(condition)
            stack.append((pattern, line.number))
            continue
        if cidr:
            parts = body.split(None, 1)
            if len(parts) < 2:
                raise PolicyImportError(
                    f"{origin}: expected 'network/prefix result', found {body[:60]!r}",
                    path=display,
                    line=line.number,
                )
            key, value = parts[0], parts[1].strip()
        else:
            split = _split_pattern(body)
            if split is None:
                raise PolicyImportError(
                    f"{origin}: expected '/pattern/flags result', found {body[:60]!r}",
                    path=display,
                    line=line.number,
                )
            key, value = split
            if not value:
                raise PolicyImportError(
                    f"{origin}: the pattern {key!r} has no result", path=display, line=line.number
                )
        table.entries.append(Entry(key, value, origin, tuple(p for p, _ in stack)))
    if stack:
        pattern, number = stack[-1]
        raise PolicyImportError(
            f"{located(display, number)}: 'if {pattern}' has no 'endif'", path=display, line=number
        )
    return table


def _pattern_only(condition: str) -> str:
    split = _split_pattern(condition)
    return split[0] if split else condition


def parse_inline(body: str, origin: str) -> TableText:
    """``inline:{ key=value, { key = text with spaces } }`` (postconf(5) "inline", Postfix 3.0):
    entries separated by commas or whitespace, each ``key=value``."""
    table = TableText()
    for item in split_list(body):
        key, equals, value = strip_braces(item).partition("=")
        if not equals or not key.strip():
            raise PolicyImportError(f"{origin}: inline table entry {item!r}: expected key=value")
        table.entries.append(Entry(key.strip().lower(), value.strip(), origin))
    return table
