"""``sinkd profiles diff A B [--corpus DIR]``: what two profiles would judge differently, rule
by rule and on a corpus, so IT can show the effect of a policy change before making it.

Owns the diff options, the text and JSON printouts and the exit code, which follows diff(1):
0 nothing differs, 1 something differs, 2 bad input (an unknown profile id, a missing or
invalid YAML file, a corpus directory without messages). The rule-by-rule comparison is
``sinkd.core.profile_diff``; the corpus is judged by the ``Judge`` ``sinkd check`` uses
(``sinkd.cli.judging``: files read as an SMTP client sends them, the same envelope and client
options, offline DNS unless ``--dns``/``--dns-zone`` say otherwise) and compared by
``sinkd.reports.profile_diff``. Must not import the server, the web app or the store.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import textwrap
from pathlib import Path
from typing import Any, TextIO

from sinkd.cli.base import EXIT_OK
from sinkd.cli.judging import (
    add_client_options,
    add_sender_option,
    check_message,
    command_judge,
    file_envelope,
    option_identity,
    read_message,
    recipient,
)
from sinkd.core.message import parse
from sinkd.core.profile_diff import Change, ProfileDiff, diff_profiles
from sinkd.core.profiles import LoadedProfile, ProfileSet
from sinkd.errors import InputError, ProfileError
from sinkd.reports.profile_diff import MessageDiff, compare_verdicts, summary
from sinkd.services.settings import add_options

EXIT_DIFFERENT = 1  # as diff(1): the inputs differ (not an error)


def add_arguments(diff: argparse.ArgumentParser) -> None:
    diff.add_argument("a", metavar="A", help="the profile as it is: profile id or YAML path")
    diff.add_argument("b", metavar="B", help="the profile as it would be: profile id or YAML path")
    add_options(diff, "profiles", "profiles_dirs")
    diff.add_argument(
        "--corpus",
        type=Path,
        metavar="DIR",
        help="also judge every *.eml file in DIR with A and with B and list the messages whose "
        "verdict, disposition, stage, reply, deciding codes or stripped parts differ",
    )
    diff.add_argument("--json", action="store_true", help="print the differences as JSON")
    # The DNS and spamd options as sinkd check takes them (offline DNS by default).
    add_options(diff, "check", "dns", "dns_server", "dns_zones", "dns_timeout", "spamd")
    add_sender_option(diff)
    diff.add_argument(
        "--rcpt",
        action="append",
        type=recipient,
        default=[],
        help="envelope recipient (repeatable; default: the header To/Cc addresses)",
    )
    add_client_options(diff)
    diff.epilog = (
        "Compares the merged profiles (after extends:) filter by filter: filters in one and not "
        "the other, and the settings, thresholds, actions, stages, replies and list entries "
        "that differ; what only documents a profile (title, description, models, survey, "
        "source/assumption/describe) is not compared. Exit codes, as diff(1): 0 nothing "
        "differs, 1 something differs, 2 bad input."
    )


def _load(profiles: ProfileSet, which: str, name: str) -> LoadedProfile:
    """Profile A or B, as ``profiles show`` and ``check --profile`` resolve it; an error names
    the argument."""
    try:
        return profiles.resolve(name)
    except ProfileError as exc:
        raise ProfileError(f"{which} {name!r}: {exc}", path=exc.path) from None


def _corpus_files(directory: Path) -> list[Path]:
    if not directory.is_dir():
        raise InputError(f"--corpus {directory}: not a directory")
    found = sorted(p for p in directory.iterdir() if p.suffix.lower() == ".eml" and p.is_file())
    if not found:
        raise InputError(f"--corpus {directory}: a directory with no *.eml files in it")
    return found


def _judge_corpus(
    args: argparse.Namespace, profiles: ProfileSet, a: LoadedProfile, b: LoadedProfile
) -> tuple[int, list[MessageDiff], list[str]]:
    """Every corpus file judged with A and with B: the number of files, the messages judged
    differently, and the files whose verdicts are incomplete (a check could not answer)."""
    files = _corpus_files(args.corpus)
    judge = command_judge(args, profiles, profile=args.a, routes={})
    identity = option_identity(args.client_ip, args.helo)
    raws = [(path, read_message(path)) for path in files]  # unreadable files: exit 2 first
    diffs: list[MessageDiff] = []
    incomplete: list[str] = []
    for path, raw in raws:
        envelope = file_envelope(parse(raw), args.mail_from, args.rcpt)
        verdict_a = asyncio.run(check_message(judge, raw, envelope, identity, profile=a))
        verdict_b = asyncio.run(check_message(judge, raw, envelope, identity, profile=b))
        # One profile judges the whole transaction: one verdict each.
        found = compare_verdicts(str(path), verdict_a[0], verdict_b[0])
        if found is not None:
            diffs.append(found)
        if verdict_a[0].incomplete or verdict_b[0].incomplete:
            incomplete.append(str(path))
    return len(files), diffs, incomplete


def run(args: argparse.Namespace, out: TextIO) -> int:
    profiles = ProfileSet(args.profiles_dir)
    a = _load(profiles, "A", args.a)
    b = _load(profiles, "B", args.b)
    rules = diff_profiles(a.profile, b.profile)
    corpus: tuple[int, list[MessageDiff], list[str]] | None = None
    if args.corpus is not None:
        corpus = _judge_corpus(args, profiles, a, b)
    if args.json:
        print(
            json.dumps(_as_json(a, b, rules, args.corpus, corpus), indent=2, ensure_ascii=False),
            file=out,
        )
    else:
        out.write(_text(a, b, rules, args.corpus, corpus))
    if corpus is not None and corpus[2]:
        print(
            f"sinkd profiles diff: {len(corpus[2])} file(s) not fully judged (a check the "
            f"profile needs could not answer): {', '.join(corpus[2])}",
            file=sys.stderr,
        )
    differs = bool(rules.changes) or (corpus is not None and bool(corpus[1]))
    return EXIT_DIFFERENT if differs else EXIT_OK


def _as_json(
    a: LoadedProfile,
    b: LoadedProfile,
    rules: ProfileDiff,
    directory: Path | None,
    corpus: tuple[int, list[MessageDiff], list[str]] | None,
) -> dict[str, Any]:
    data: dict[str, Any] = {
        "a": {"id": a.profile.id, "path": str(a.path)},
        "b": {"id": b.profile.id, "path": str(b.path)},
        "rules": [change.to_json() for change in rules.changes],
        "corpus": None,
    }
    if corpus is not None:
        total, diffs, incomplete = corpus
        data["corpus"] = {
            "dir": str(directory),
            "messages": total,
            "different": len(diffs),
            "summary": summary(diffs, total),
            "messages_judged_differently": [d.to_json() for d in diffs],
            "not_fully_judged": incomplete,
        }
    data["differs"] = bool(rules.changes) or bool(corpus and corpus[1])
    return data


def _value(value: Any) -> str:
    if value is None:
        return "(unset)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False, separators=(", ", ": "))
    return str(value)


def _wrap(text: str, indent: int) -> list[str]:
    return textwrap.wrap(
        text,
        100,
        initial_indent=" " * indent,
        subsequent_indent=" " * (indent + 4),
        break_long_words=False,
        break_on_hyphens=False,
    )


_NAMING = ("id", "name", "zone")  # the key a list item is named by in a setting's path


def _settings(value: Any, path: str = "", skip: tuple[str, ...] = ()) -> list[tuple[str, Any]]:
    """A node as its leaf settings (``rules.BEC_SUBJECT.score``, 2.0), unset ones and the
    ``skip`` keys (already in the path or heading) left out; a list of nodes by their id or
    name, a list of plain values as one setting."""
    if isinstance(value, dict):
        found: list[tuple[str, Any]] = []
        for key, item in value.items():
            if key not in skip:
                found += _settings(item, f"{path}.{key}" if path else str(key))
        return found
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        found = []
        for index, item in enumerate(value):
            naming = next((k for k in _NAMING if isinstance(item.get(k), str)), None)
            ident = str(item[naming]) if naming else str(index)
            found += _settings(item, f"{path}.{ident}" if path else ident, (naming or "",))
        return found
    return [] if value is None else [(path, value)]


def _change_lines(change: Change) -> list[str]:
    name = change.setting or "(whole)"
    if change.added or change.removed:
        lines = [f"  {name}:"]
        lines += [line for v in change.added for line in _wrap(f"+ {_value(v)}", 4)]
        lines += [line for v in change.removed for line in _wrap(f"- {_value(v)}", 4)]
        return lines
    shown = change.after if change.only_in == "B" else change.before
    if change.only_in is not None and isinstance(shown, dict):
        if not change.setting:  # the group's heading names it and says "only in"
            named = ("kind", "name") if change.group.startswith("filter ") else ()
            leaves = _settings(shown, skip=named)
            return [ln for k, v in leaves for ln in _wrap(f"{k}: {_value(v)}", 2)]
        lines = [f"  {name}: only in {change.only_in}"]
        for key, value in _settings(shown, skip=_NAMING):
            lines += _wrap(f"{key}: {_value(value)}", 4)
        return lines
    return _wrap(f"{name}: {_value(change.before)} → {_value(change.after)}", 2)


def _text(
    a: LoadedProfile,
    b: LoadedProfile,
    rules: ProfileDiff,
    directory: Path | None,
    corpus: tuple[int, list[MessageDiff], list[str]] | None,
) -> str:
    lines = [f"--- A: {a.profile.id} ({a.path})", f"+++ B: {b.profile.id} ({b.path})", ""]
    groups = rules.groups()
    if not groups:
        lines.append("Rules: no differences")
    else:
        lines.append(f"Rules: {len(rules.changes)} setting(s) differ in {len(groups)} group(s)")
        for group, changes in groups.items():
            whole = changes[0] if len(changes) == 1 and not changes[0].setting else None
            if whole is not None and whole.only_in is not None:
                lines.append(f"{group}: only in {whole.only_in}")
            else:
                lines.append(f"{group}:")
            for change in changes:
                lines += _change_lines(change)
    if corpus is not None:
        total, diffs, _ = corpus
        lines += ["", f"Corpus {directory}: {summary(diffs, total)}"]
        for found in diffs:
            lines.append(f"{found.file}: {found.transition}; differs: {', '.join(found.differs)}")
            for label, outcome in (("A", found.a), ("B", found.b)):
                deciding = ", ".join(outcome.deciding) or "-"
                lines += _wrap(
                    f"{label}: {outcome.verdict.upper()} ({outcome.disposition}) "
                    f"stage={outcome.stage} score={outcome.score:g} deciding={deciding} "
                    f"reply: {outcome.reply}",
                    2,
                )
                lines += [ln for item in outcome.stripped for ln in _wrap(f"stripped: {item}", 4)]
    return "\n".join(lines) + "\n"
