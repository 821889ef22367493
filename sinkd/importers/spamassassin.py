"""``sinkd profiles import spamassassin local.cf [more.cf …]``: a SpamAssassin site configuration
as a sinkd profile.

Owns reading SpamAssassin's configuration syntax (perldoc Mail::SpamAssassin::Conf; one
directive per line, ``#`` comments unless escaped, ``if``/``ifplugin`` blocks) and choosing how
the profile scores, so that its score and verdict equal those of spamd loaded with the same
files, with no rule counted twice:

- **native + stock spamd** (the default when every rule of the files can be evaluated by
  sinkd): the files' own rules, ``welcomelist_from``/``blocklist_from`` included, become one
  ``spamassassin_rules`` filter (each rule with ``source: FILE:LINE`` and its ``describe``), and
  a ``spamassassin`` filter in ``add`` mode asks a spamd with SpamAssassin's *stock* rules only
  for the ~1000 rules sinkd does not have. The two scores add up in the profile's total, and
  ``scoring.thresholds`` holds required_score. This equals spamd with the files because the
  files neither change nor read a stock rule (that is what "can be evaluated by sinkd" checks)
  and a SpamAssassin score is the sum of its rules' scores (PerMsgStatus.pm got_hit). The spamd
  must not load the files: it would count their rules a second time.
- **spamd with the files** (the default when anything needs SpamAssassin itself: a score or
  ``tflags`` of a stock rule, a meta over a stock rule, ``eval:`` tests, ``loadplugin``,
  ``if``/``ifplugin`` blocks, network or Bayes settings, a pattern Python cannot run the same
  way…): one ``spamassassin`` filter in ``own`` mode, its threshold required_score, and a note
  naming the files to give spamd with ``--siteconfigpath``. No native rule is added. Every
  construct that forced this is listed among the untranslated items.
- ``--native-only``: the native filter alone, no spamd: SpamAssassin's stock rules are missing
  (the description says so) and what needs spamd is listed untranslated. Its score equals spamd
  started with ``--configpath`` holding only these files (and 60_welcomelist.cf for the lists).
- ``--spamd-only``: the second form, whatever the files hold.

Which sinkd action "spam" becomes is an assumption the profile states (SpamAssassin only marks
mail; the MTA in front decides): quarantine unless ``--spam-action`` says tag or reject. The
score set is 0 (no Bayes, no network tests: spamd ``--local`` without a trained Bayes database)
unless ``--score-set`` says otherwise. The importer copies no file and never runs SpamAssassin;
it must not judge mail.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sinkd.core.filters.spamassassin_rules import (
    BLOCKLIST_RULE,
    BLOCKLIST_SCORE,
    WELCOMELIST_RULE,
    WELCOMELIST_SCORE,
    check_header_request,
    compile_meta,
    meta_names,
)
from sinkd.core.perl_regex import split_delimited, translate
from sinkd.errors import PolicyImportError
from sinkd.importers import register
from sinkd.importers.base import Imported, Untranslated, located, read_text

__all__ = ["SpamAssassinImporter"]

# Debian's stock rules (spamassassin package); sa-update installs newer ones under
# /var/lib/spamassassin/<version>/updates_spamassassin_org, which --stock-rules can name.
STOCK_RULES = Path("/usr/share/spamassassin")
_RULE_NAME = re.compile(r"[_a-zA-Z][_a-zA-Z0-9]{0,127}\Z")  # Constants.pm RULENAME_RE
_COMMENT = re.compile(r"(?<!\\)#.*")  # Conf/Parser.pm: "#" starts a comment unless escaped
_RULE_TYPES = ("header", "body", "rawbody", "full", "uri", "meta")
_STOCK_DEFINITION = re.compile(
    r"^\s*(?:header|body|rawbody|full|uri|meta|mimeheader|uri_detail|askdns|urirhssub|"
    r"urirhsbl|uridnsbl|uridnssub)\s+([_a-zA-Z]\w*)",
    re.MULTILINE,
)
_IF_UNSET = re.compile(r"\s+\[if-unset:\s+(.+)\]\s*\Z")  # Conf/Parser.pm add_test
_HEADER_TEST = re.compile(r"(\S+)\s+([=!]~)\s+(.*)\Z", re.DOTALL)
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)\Z")

# Directives that only shape the delivered copy, the report or the daemon: the score and the
# verdict do not depend on them, so they are listed as not translated without needing spamd.
_COSMETIC = {
    "rewrite_header": "changes the Subject/From/To of the delivered copy of spam only",
    "add_header": "adds X-Spam-* headers to the delivered copy only",
    "remove_header": "removes X-Spam-* headers from the delivered copy only",
    "clear_headers": "clears the X-Spam-* headers of the delivered copy only",
    "fold_headers": "folds the delivered copy's X-Spam-* headers only",
    "report_safe_copy_headers": "copies headers into the report_safe wrapper only",
    "report": "the text of the spam report only",
    "clear_report_template": "the text of the spam report only",
    "unsafe_report": "the text of the spam report only",
    "clear_unsafe_report_template": "the text of the spam report only",
    "report_contact": "the text of the spam report only",
    "report_hostname": "the text of the spam report only",
    "report_charset": "the text of the spam report only",
    "report_wrap_width": "the text of the spam report only",
    "spamtrap": "the text of the spam report only",
    "lock_method": "how SpamAssassin locks its database files",
    "allow_user_rules": "whether per-user files may add rules (user_prefs are not imported)",
    "user_scores_dsn": "where per-user settings are stored (user_prefs are not imported)",
    "test": "a rule's self-test for spamassassin --lint only",
    "priority": "evaluation order only, which changes no score without shortcircuit",
    "lang": "a translation of a description or report",
    "use_bayes": "",  # handled below: 0 is the scoring here, 1 needs spamd
    "bayes_auto_learn": "learning only: it changes later messages, not this score",
    "skip_rbl_checks": "network tests: spamd runs --local, so they do not score",
    "dns_available": "network tests: spamd runs --local, so they do not score",
    "use_razor2": "network tests: spamd runs --local, so they do not score",
    "use_pyzor": "network tests: spamd runs --local, so they do not score",
    "use_dcc": "network tests: spamd runs --local, so they do not score",
}
# Settings that change how stock rules or the message are read: spamd must have them.
_NEEDS_SPAMD = {
    "loadplugin": "loads a plugin, whose rules sinkd does not have",
    "tryplugin": "loads a plugin, whose rules sinkd does not have",
    "include": "includes another file that was not given",
    "trusted_networks": "changes which relays stock rules trust",
    "internal_networks": "changes which relays stock rules trust",
    "clear_trusted_networks": "changes which relays stock rules trust",
    "clear_internal_networks": "changes which relays stock rules trust",
    "msa_networks": "changes which relays stock rules trust",
    "envelope_sender_header": "changes the envelope sender welcomelist_from and rules read",
    "normalize_charset": "changes the text body rules read",
    "redirector_pattern": "changes the URIs uri rules read",
    "util_rb_tld": "changes the URIs uri rules read",
    "util_rb_2tld": "changes the URIs uri rules read",
    "util_rb_3tld": "changes the URIs uri rules read",
    "use_auto_whitelist": "the auto-welcomelist changes scores from message to message",
    "use_auto_welcomelist": "the auto-welcomelist changes scores from message to message",
    "shortcircuit": "stops scoring early, changing the total",
    "welcomelist_from_rcvd": "needs the trusted Received header, which sinkd does not parse",
    "whitelist_from_rcvd": "needs the trusted Received header, which sinkd does not parse",
    "def_welcomelist_from_rcvd": "needs the trusted Received header, which sinkd does not parse",
    "def_whitelist_from_rcvd": "needs the trusted Received header, which sinkd does not parse",
    "welcomelist_allows_relays": "needs the trusted Received header, which sinkd does not parse",
    "whitelist_allows_relays": "needs the trusted Received header, which sinkd does not parse",
    "welcomelist_auth": "needs SPF/DKIM results (stock rules USER_IN_SPF_WELCOMELIST…)",
    "whitelist_auth": "needs SPF/DKIM results (stock rules USER_IN_SPF_WELCOMELIST…)",
    "def_welcomelist_auth": "needs SPF/DKIM results (stock rules USER_IN_DEF_SPF_WL…)",
    "def_whitelist_auth": "needs SPF/DKIM results (stock rules USER_IN_DEF_SPF_WL…)",
    "welcomelist_to": "a stock rule (USER_IN_WELCOMELIST_TO) sinkd does not have",
    "whitelist_to": "a stock rule (USER_IN_WELCOMELIST_TO) sinkd does not have",
    "more_spam_to": "a stock rule (USER_IN_MORESPAM) sinkd does not have",
    "all_spam_to": "a stock rule (USER_IN_ALL_SPAM_TO) sinkd does not have",
    "blocklist_to": "a stock rule (USER_IN_BLOCKLIST_TO) sinkd does not have",
    "blacklist_to": "a stock rule (USER_IN_BLOCKLIST_TO) sinkd does not have",
    "welcomelist_uri_host": "a stock rule (URI_HOST_IN_WELCOMELIST) sinkd does not have",
    "blocklist_uri_host": "a stock rule (URI_HOST_IN_BLOCKLIST) sinkd does not have",
    "mimeheader": "a MIME part header rule (MIMEHeader plugin)",
    "uri_detail": "a URI detail rule (URIDetail plugin)",
    "uridnsbl": "a URI DNS blocklist (network test)",
    "urirhsbl": "a URI DNS blocklist (network test)",
    "urirhssub": "a URI DNS blocklist (network test)",
    "uridnssub": "a URI DNS blocklist (network test)",
    "askdns": "a DNS query rule (network test)",
}
_WELCOME = {"welcomelist_from", "whitelist_from"}
_BLOCK = {"blocklist_from", "blacklist_from"}
_UNWELCOME = {"unwelcomelist_from", "unwhitelist_from"}
_UNBLOCK = {"unblocklist_from", "unblacklist_from"}
_SCAN_SIZES = {"body_part_scan_size": 50_000, "rawbody_part_scan_size": 500_000}


@dataclass
class _Rule:
    name: str
    type: str
    origin: str
    spec: dict[str, Any]
    problem: str | None = None  # why sinkd cannot evaluate it (then spamd must)


@dataclass
class _Config:
    """Everything read from the files, in order, last definition winning as in Conf.pm."""

    rules: dict[str, _Rule] = field(default_factory=dict)
    scores: dict[str, tuple[list[float], str]] = field(default_factory=dict)
    describes: dict[str, tuple[str, str]] = field(default_factory=dict)
    tflags: dict[str, tuple[list[str], str]] = field(default_factory=dict)
    welcome: dict[str, str] = field(default_factory=dict)  # entry -> origin
    block: dict[str, str] = field(default_factory=dict)
    required: tuple[float, str] | None = None
    report_safe: tuple[int, str] | None = None
    scan_sizes: dict[str, tuple[int, str]] = field(default_factory=dict)
    use_bayes: tuple[bool, str] | None = None
    # (origin, item, reason): needs SpamAssassin itself / changes nothing scored
    needs_spamd: list[Untranslated] = field(default_factory=list)
    cosmetic: list[Untranslated] = field(default_factory=list)


def _lines(text: str) -> Iterator[tuple[int, str]]:
    for number, line in enumerate(text.splitlines(), start=1):
        # Conf/Parser.pm parse: comments removed, then "\#" unescaped to "#".
        line = _COMMENT.sub("", line).replace("\\#", "#").strip()
        if line:
            yield number, line


def _split(text: str) -> tuple[str, str, str]:
    """``text`` cut at its first run of white space: (first word, separator, the rest)."""
    parts = re.split(r"(\s+)", text.strip(), maxsplit=1)
    return (parts[0], parts[1], parts[2]) if len(parts) == 3 else (parts[0], "", "")


def _score_values(words: Sequence[str], where: str, path: str, line: int) -> list[float]:
    values: list[float] = []
    for word in words:
        plain = word.strip("()")
        if not _NUMBER.match(plain):
            raise PolicyImportError(f"{where}: {word!r} is not a score", path=path, line=line)
        values.append(float(plain))
    if len(values) not in (1, 4):
        raise PolicyImportError(
            f"{where}: a score line gives 1 or 4 scores, not {len(values)}", path=path, line=line
        )
    return values


class _Reader:
    """Reads the files into a ``_Config``; malformed lines are PolicyImportErrors."""

    def __init__(self) -> None:
        self.config = _Config()

    def read(self, path: Path, name: str) -> None:
        depth, block_start = 0, ""
        for number, line in _lines(read_text(path)):
            origin = located(name, number)
            # Conf/Parser.pm: the key is the first word (any white space after it), lower-cased,
            # dashes read as underscores.
            directive, _, rest = _split(line)
            directive = directive.lower().replace("-", "_")
            if directive in ("if", "ifplugin"):
                if depth == 0:
                    block_start = origin
                depth += 1
                self._spamd(
                    origin,
                    line,
                    "an if/ifplugin block: SpamAssassin decides at load "
                    "time whether its lines apply (a plugin loaded, a feature present)",
                )
                continue
            if directive == "else":
                if depth == 0:
                    raise PolicyImportError(
                        f"{origin}: else without if", path=str(path), line=number
                    )
                continue
            if directive == "endif":
                if depth == 0:
                    raise PolicyImportError(
                        f"{origin}: endif without if", path=str(path), line=number
                    )
                depth -= 1
                continue
            if depth:
                self._spamd(origin, line, f"inside the if/ifplugin block at {block_start}")
                continue
            self._directive(directive, rest, line, origin, str(path), number)
        if depth:
            raise PolicyImportError(
                f"{name}: the block opened at {block_start} has no endif", path=str(path)
            )

    def _spamd(self, origin: str, item: str, reason: str) -> None:
        self.config.needs_spamd.append(Untranslated(origin, item, reason))

    def _directive(
        self, directive: str, rest: str, line: str, origin: str, path: str, number: int
    ) -> None:
        config = self.config
        words = rest.split()
        if directive in _RULE_TYPES:
            self._rule(directive, rest, line, origin, path, number)
        elif directive == "score":
            if len(words) < 2:
                raise PolicyImportError(
                    f"{origin}: score needs a rule name and a score", path=path, line=number
                )
            values = _score_values(words[1:], origin, path, number)
            if words[1].startswith("("):
                # Conf.pm "score": parenthesised scores are relative to the score set so far.
                base = config.scores.get(words[0], ([0.0] * 4, origin))[0]
                base = base * 4 if len(base) == 1 else base
                values = [
                    b + v
                    for b, v in zip(base, values * 4 if len(values) == 1 else values, strict=True)
                ]
            config.scores[words[0]] = (values, origin)
        elif directive == "describe":
            if not words:
                raise PolicyImportError(
                    f"{origin}: describe needs a rule name", path=path, line=number
                )
            config.describes[words[0]] = (rest[len(words[0]) :].strip(), origin)
        elif directive == "tflags":
            if not words:
                raise PolicyImportError(
                    f"{origin}: tflags needs a rule name", path=path, line=number
                )
            config.tflags[words[0]] = (words[1:], origin)
        elif directive in ("required_score", "required_hits"):
            if len(words) != 1 or not _NUMBER.match(words[0]):
                raise PolicyImportError(
                    f"{origin}: {directive} needs one number", path=path, line=number
                )
            config.required = (float(words[0]), origin)
        elif directive in _WELCOME | _BLOCK:
            target = config.welcome if directive in _WELCOME else config.block
            for entry in words:
                target[entry.lower()] = origin
        elif directive in _UNWELCOME | _UNBLOCK:
            # Conf.pm unwelcomelist_from: removes an entry written exactly so (case aside).
            target = config.welcome if directive in _UNWELCOME else config.block
            for entry in words:
                target.pop(entry.lower(), None)
        elif directive == "report_safe":
            if words not in (["0"], ["1"], ["2"]):
                raise PolicyImportError(
                    f"{origin}: report_safe is 0, 1 or 2", path=path, line=number
                )
            config.report_safe = (int(words[0]), origin)
        elif directive in _SCAN_SIZES:
            if len(words) != 1 or not words[0].isdigit():
                raise PolicyImportError(
                    f"{origin}: {directive} needs a number of bytes", path=path, line=number
                )
            config.scan_sizes[directive] = (int(words[0]), origin)
        elif directive == "use_bayes":
            config.use_bayes = (words[:1] != ["0"], origin)
        elif directive in _NEEDS_SPAMD:
            self._spamd(origin, line, _NEEDS_SPAMD[directive])
        elif directive in _COSMETIC:
            config.cosmetic.append(Untranslated(origin, line, _COSMETIC[directive]))
        else:
            self._spamd(origin, line, "a directive sinkd does not model")

    def _rule(self, kind: str, rest: str, line: str, origin: str, path: str, number: int) -> None:
        name, _, body = _split(rest)
        if not body:
            raise PolicyImportError(
                f"{origin}: a {kind} rule needs a name and a test", path=path, line=number
            )
        if not _RULE_NAME.match(name):
            raise PolicyImportError(
                f"{origin}: {name!r} is not a rule name (a letter or _, then letters, digits "
                "and _; Mail::SpamAssassin::Conf)",
                path=path,
                line=number,
            )
        spec: dict[str, Any] = {"id": name, "type": kind}
        rule = _Rule(name, kind, origin, spec)
        self.config.rules[name] = rule
        if body.startswith("eval:"):
            rule.problem = "an eval: test runs SpamAssassin's Perl code, which sinkd does not have"
            return
        try:
            if kind == "meta":
                if "rules_matching(" in body:
                    raise ValueError("rules_matching() may name stock rules")
                compile_meta(body)
                spec["expression"] = body
            elif kind == "header":
                self._header(body, spec)
            else:
                pattern, flags, tail = split_delimited(body)
                if tail.strip():
                    raise PolicyImportError(
                        f"{origin}: unexpected text after the pattern: {tail.strip()!r}",
                        path=path,
                        line=number,
                    )
                spec["pattern"] = f"{body[: len(body) - len(tail)]}".strip()
                translate(spec["pattern"])
                del pattern, flags
        except PolicyImportError:
            raise
        except ValueError as exc:
            rule.problem = str(exc)

    def _header(self, body: str, spec: dict[str, Any]) -> None:
        if body.startswith("exists:"):
            spec["exists"] = body[len("exists:") :].strip()
            return
        unset = _IF_UNSET.search(body)
        if unset:
            spec["if_unset"] = unset.group(1)
            body = body[: unset.start()]
        test = _HEADER_TEST.match(body)
        if test is None:
            raise ValueError("not a header test SpamAssassin reads (NAME =~ /…/ or exists:)")
        request, op, operator = test.groups()
        check_header_request(request)
        translate(operator)
        spec.update(header=request, pattern=operator.strip())
        if op == "!~":
            spec["op"] = "!~"


def stock_rule_names(directory: Path) -> frozenset[str] | None:
    """The names SpamAssassin's stock rule files define, or None when there are none here."""
    if not directory.is_dir():
        return None
    names: set[str] = set()
    for path in sorted(directory.glob("*.cf")):
        names.update(_STOCK_DEFINITION.findall(read_text(path)))
    return frozenset(names)


class SpamAssassinImporter:
    product = "spamassassin"
    help = "a SpamAssassin site configuration (local.cf and other .cf files)"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "files",
            nargs="+",
            type=Path,
            metavar="FILE.cf",
            help="the configuration files, in the order SpamAssassin reads them "
            "(/etc/spamassassin/*.cf sorted by name; local.cf among them)",
        )
        parser.add_argument(
            "--spam-action",
            choices=("quarantine", "reject", "tag"),
            default="quarantine",
            help="what the MTA does with mail at or above required_score (default: quarantine)",
        )
        how = parser.add_mutually_exclusive_group()
        how.add_argument(
            "--native-only",
            action="store_true",
            help="only the rules sinkd evaluates itself, no spamd (stock rules missing)",
        )
        how.add_argument(
            "--spamd-only",
            action="store_true",
            help="score with a spamd loaded with the files, even if sinkd could evaluate them",
        )
        parser.add_argument(
            "--spamd",
            default="127.0.0.1:783",
            metavar="HOST:PORT",
            help="the spamd the profile asks (default 127.0.0.1:783; sinkd serve --spamd "
            "overrides it)",
        )
        parser.add_argument(
            "--score-set",
            type=int,
            choices=(0, 1, 2, 3),
            default=0,
            help="which of a rule's four scores applies: 0 no Bayes and no network tests "
            "(spamd --local, the default), 1 network, 2 Bayes, 3 both",
        )
        parser.add_argument(
            "--stock-rules",
            type=Path,
            default=STOCK_RULES,
            metavar="DIR",
            help="SpamAssassin's stock rules, to tell custom rules from them "
            f"(default {STOCK_RULES})",
        )

    def run(self, args: argparse.Namespace, profile_id: str) -> Imported:
        reader = _Reader()
        names = [str(p) for p in args.files]
        for path, name in zip(args.files, names, strict=True):
            reader.read(path, name)
        host, _, port_text = str(args.spamd).rpartition(":")
        if not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise PolicyImportError(f"--spamd {args.spamd}: give HOST:PORT")
        return _Builder(
            reader.config,
            names,
            profile_id,
            spam_action=args.spam_action,
            mode="native" if args.native_only else "spamd" if args.spamd_only else "auto",
            spamd=(host, int(port_text)),
            score_set=args.score_set,
            stock=stock_rule_names(args.stock_rules),
            stock_dir=args.stock_rules,
        ).build()


class _Builder:
    def __init__(
        self,
        config: _Config,
        files: list[str],
        profile_id: str,
        *,
        spam_action: str,
        mode: str,
        spamd: tuple[str, int],
        score_set: int,
        stock: frozenset[str] | None,
        stock_dir: Path,
    ) -> None:
        self.config = config
        self.files = files
        self.profile_id = profile_id
        self.spam_action = spam_action
        self.mode = mode
        self.spamd = spamd
        self.score_set = score_set
        self.stock = stock
        self.stock_dir = stock_dir
        self.notes: list[str] = []

    # --- what sinkd cannot evaluate ----------------------------------------------------------

    def _needs_spamd(self) -> list[Untranslated]:
        config, found = self.config, list(self.config.needs_spamd)
        listed = {WELCOMELIST_RULE, BLOCKLIST_RULE}
        for rule in config.rules.values():
            if rule.problem is not None:
                found.append(Untranslated(rule.origin, f"{rule.type} {rule.name}", rule.problem))
            elif self.stock is not None and rule.name in self.stock:
                found.append(
                    Untranslated(
                        rule.origin,
                        f"{rule.type} {rule.name}",
                        "redefines a stock rule of the same name, which a spamd with the stock "
                        "rules would also run",
                    )
                )
            if rule.type == "meta" and rule.problem is None:
                for name in meta_names(rule.spec["expression"]):
                    if name not in config.rules and name not in listed:
                        found.append(
                            Untranslated(
                                rule.origin,
                                f"meta {rule.name}",
                                f"reads {name}, which is no rule of these files (a stock "
                                "rule, a rule of a file not given, or SpamAssassin's "
                                "local_tests_only)",
                            )
                        )
        for name, (_, origin) in config.scores.items():
            if name not in config.rules and name not in listed:
                found.append(
                    Untranslated(
                        origin,
                        f"score {name}",
                        "the score of a stock rule (or of a rule defined in a file not given)",
                    )
                )
        for name, (_, origin) in config.tflags.items():
            if name not in config.rules:
                found.append(Untranslated(origin, f"tflags {name}", "the tflags of a stock rule"))
        if config.use_bayes is not None and config.use_bayes[0]:
            found.append(
                Untranslated(
                    config.use_bayes[1],
                    "use_bayes 1",
                    "Bayes scores from a trained database, which sinkd does not have",
                )
            )
        return sorted(found, key=lambda u: _order(u.origin, self.files))

    def _cosmetic(self) -> list[Untranslated]:
        found = list(self.config.cosmetic)
        for name, (_, origin) in self.config.describes.items():
            if name not in self.config.rules and name not in (WELCOMELIST_RULE, BLOCKLIST_RULE):
                found.append(
                    Untranslated(
                        origin,
                        f"describe {name}",
                        "the description of a rule not defined in these files (changes no score)",
                    )
                )
        return found

    # --- the profile -------------------------------------------------------------------------

    def build(self) -> Imported:
        needs = self._needs_spamd()
        native = not (self.mode == "spamd" or (self.mode == "auto" and needs))
        if not native:
            filters = [self._spamd_filter("own")]
            untranslated = needs + self._cosmetic()
            how = (
                "SpamAssassin scores every message through a spamd loaded with "
                + ", ".join(self.files)
                + (
                    " (asked for by --spamd-only)."
                    if self.mode == "spamd"
                    else " because they hold what sinkd cannot evaluate itself (listed as not "
                    "translated)."
                )
            )
            self.notes.append(
                "start spamd with --siteconfigpath DIR holding these files: "
                + ", ".join(self.files)
                + " (with Debian's /etc/spamassassin/*.pre beside them, which load the "
                "plugins), e.g. `spamd --local --siteconfigpath DIR`, and point sinkd at it "
                "with `sinkd serve --spamd HOST:PORT`"
            )
            scoring: dict[str, Any] = {}
        else:
            filters = [self._native_filter()]
            untranslated = (needs if self.mode == "native" else []) + self._cosmetic()
            if self.mode == "native":
                how = (
                    "sinkd evaluates the rules of " + ", ".join(self.files) + " itself, without "
                    "spamd: SpamAssassin's ~1000 stock rules are missing, so its score is that "
                    "of spamd started with --configpath holding only these files (and "
                    "60_welcomelist.cf, which scores the sender lists)."
                )
            else:
                filters.append(self._spamd_filter("add"))
                how = (
                    "sinkd evaluates the rules of " + ", ".join(self.files) + " itself and adds "
                    "the score of a spamd with SpamAssassin's stock rules only, so that the total "
                    "is spamd's with these files."
                )
                self.notes.append(
                    "start a spamd with SpamAssassin's stock rules but WITHOUT these files (their "
                    "rules are evaluated by sinkd and would count twice): e.g. `spamd --local "
                    "--siteconfigpath DIR` where DIR is a copy of /etc/spamassassin without these "
                    "files (its *.pre plugin loaders kept); "
                    "point sinkd at it with `sinkd serve --spamd HOST:PORT`"
                )
            scoring = {"thresholds": {self._threshold_key(): self._required()[0]}}
        profile: dict[str, Any] = {
            "schema": "sinkd.profile/v1",
            "id": self.profile_id,
            "title": "SpamAssassin policy imported from " + ", ".join(self.files),
            "description": self._description(how),
            "models": self._models(native=native),
        }
        scanning = self._scanning()
        if scanning:
            profile["scanning"] = scanning
        if scoring:
            profile["scoring"] = scoring
        profile["filters"] = filters
        return Imported(
            product="spamassassin",
            inputs=tuple(self.files),
            profile=profile,
            untranslated=untranslated,
            notes=self.notes,
        )

    def _required(self) -> tuple[float, str]:
        if self.config.required is not None:
            value, origin = self.config.required
            return value, f"{origin} required_score"
        return 5.0, "/usr/share/spamassassin/10_default_prefs.cf required_score 5 (not set)"

    def _threshold_key(self) -> str:
        return self.spam_action

    def _description(self, how: str) -> str:
        required = self._required()[0]
        action = {
            "quarantine": "held in quarantine",
            "reject": "refused",
            "tag": "delivered marked as spam",
        }[self.spam_action]
        return (
            f"{how} Mail at or above required_score {required:g} is {action} (an assumption: "
            "SpamAssassin only marks mail; the MTA in front of it decides)."
            + "".join(f" {note[0].upper()}{note[1:]}." for note in self.notes)
        )

    def _models(self, *, native: bool) -> list[dict[str, str]]:
        """What the profile models; the score set only where sinkd picks scores itself (in the
        spamd form spamd picks them)."""
        required, source = self._required()
        models = [
            {"what": f"required_score {required:g}", "source": source},
            {
                "what": "spam at or above required_score is "
                + {"quarantine": "quarantined", "reject": "rejected", "tag": "tagged"}[
                    self.spam_action
                ],
                "assumption": "SpamAssassin only scores and marks; what the MTA does with spam "
                "is not in its configuration (sinkd profiles import spamassassin --spam-action)",
            },
        ]
        if native:
            models.append(
                {
                    "what": f"score set {self.score_set}: the {_ordinal(self.score_set)} of a "
                    "rule's four scores",
                    "assumption": "Mail::SpamAssassin::Conf 'score': set 0 applies without Bayes "
                    "and network tests, as spamd --local without a trained Bayes database "
                    "scores (--score-set)",
                }
            )
        if self.config.use_bayes is not None and not self.config.use_bayes[0]:
            models.append(
                {"what": "use_bayes 0: no Bayes scores", "source": self.config.use_bayes[1]}
            )
        if self.config.report_safe is not None:
            value, origin = self.config.report_safe
            models.append(
                {
                    "what": f"report_safe {value}: only how the delivered copy of spam is "
                    "marked (wrapped as an attachment, or headers only); the score and the "
                    "verdict do not depend on it, and sinkd's tag action marks nothing",
                    "source": origin,
                }
            )
        return models

    def _scanning(self) -> dict[str, Any]:
        scanning: dict[str, Any] = {}
        for directive in _SCAN_SIZES:
            if directive in self.config.scan_sizes:
                size, origin = self.config.scan_sizes[directive]
                scanning[directive] = {"size": size, "source": f"{origin} {directive}"}
        return scanning

    def _score(self, name: str) -> tuple[float, str | None]:
        """Conf/Parser.pm fix_tests: the score set's value, else 1 (0.01 for T_ rules),
        negated for a ``nice`` rule."""
        given = self.config.scores.get(name)
        if given is not None:
            values, origin = given
            return values[self.score_set if len(values) == 4 else 0], origin
        default = 0.01 if name.startswith("T_") else 1.0
        flags = self.config.tflags.get(name, ([], ""))[0]
        return (-default if "nice" in flags else default), None

    def _native_filter(self) -> dict[str, Any]:
        rules: list[dict[str, Any]] = []
        for rule in self.config.rules.values():
            if rule.problem is not None:
                continue
            spec = dict(rule.spec)
            score, score_origin = self._score(rule.name)
            spec["score"] = score
            described = self.config.describes.get(rule.name)
            if described is not None and described[0]:
                spec["describe"] = described[0]
            flags = self.config.tflags.get(rule.name)
            if flags is not None and flags[0]:
                spec["tflags"] = flags[0]
            sources = [rule.origin]
            if score_origin is not None and score_origin != rule.origin:
                sources.append(f"score {score_origin}")
            spec["source"] = "; ".join(sources)
            rules.append(spec)
        native: dict[str, Any] = {
            "kind": "spamassassin_rules",
            "name": "local-rules",
            "source": ", ".join(self.files),
            "rules": rules,
        }
        if self.config.welcome:
            native["welcomelist_from"] = list(self.config.welcome)
        if self.config.block:
            native["blocklist_from"] = list(self.config.block)
        for listed, key, default in (
            (WELCOMELIST_RULE, "welcomelist_score", WELCOMELIST_SCORE),
            (BLOCKLIST_RULE, "blocklist_score", BLOCKLIST_SCORE),
        ):
            given = self.config.scores.get(listed)
            if given is not None:
                native[key] = given[0][self.score_set if len(given[0]) == 4 else 0]
            elif self.config.welcome if listed == WELCOMELIST_RULE else self.config.block:
                native[key] = default
        return native

    def _spamd_filter(self, mode: str) -> dict[str, Any]:
        host, port = self.spamd
        spec: dict[str, Any] = {
            "kind": "spamassassin",
            "name": "spamd",
            "host": host,
            "port": port,
            "timeout": 30,
            "max_size": 512000,
            "mode": mode,
        }
        if mode == "own":
            required = self._required()[0]
            thresholds: dict[str, float | None] = {"tag": None, "quarantine": None, "reject": None}
            thresholds[self.spam_action] = required
            spec["thresholds"] = thresholds
            spec["source"] = (
                "spamd(1) with --siteconfigpath holding "
                + ", ".join(self.files)
                + "; spamc(1) -s 512000 and -t 30 (max size and timeout)"
            )
        else:
            spec["source"] = (
                "spamd(1) with SpamAssassin's stock rules only; spamc(1) -s 512000 and -t 30"
            )
        spec["on_error"] = {
            "action": "none",
            "assumption": "spamd unreachable: the message is delivered unscored, as "
            "spamass-milter and amavisd-new do",
        }
        return spec


def _order(origin: str, files: Sequence[str]) -> tuple[int, int]:
    name, _, line = origin.rpartition(":")
    index = files.index(name) if name in files else len(files)
    return index, int(line) if line.isdigit() else 0


def _ordinal(index: int) -> str:
    return ("first", "second", "third", "fourth")[index]


register(SpamAssassinImporter())
