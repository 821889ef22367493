"""``sinkd check``: judge message files without a server, for a terminal or a CI gate.

Owns the check options, the verdict printout, ``--write-filtered``, the ``--fail-on`` gate
table, the JUnit report and the exit code (``sinkd.cli``). The judging is the ``Judge`` the
server uses too (``sinkd.services.judge``), built once per run. Must not import the
server, the web app or the store (start-up time: ``bench/startup.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from sinkd.cli.base import EXIT_GATE_FAILED, EXIT_INCOMPLETE, EXIT_OK, EXIT_QUARANTINE, EXIT_REJECT
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
from sinkd.core.model import Verdict, VerdictAction
from sinkd.core.profiles import ProfileSet
from sinkd.errors import InputError
from sinkd.reports.gate import (
    FAIL_ON_CHOICES,
    INCOMPLETE,
    Checked,
    Level,
    junit_xml,
    unjudged_notes,
    write_table,
)
from sinkd.services.settings import add_options

_EXIT_OF = {
    VerdictAction.ACCEPT: EXIT_OK,
    VerdictAction.QUARANTINE: EXIT_QUARANTINE,
    VerdictAction.REJECT: EXIT_REJECT,
}


def add_arguments(check: argparse.ArgumentParser) -> None:
    check.add_argument(
        "files",
        nargs="+",
        type=Path,
        metavar="FILE.eml",
        help="message files ('-' reads standard input); a directory stands for every *.eml "
        "file in it, in name order",
    )
    add_options(check, "check")
    add_sender_option(check)
    check.add_argument(
        "--rcpt",
        action="append",
        type=recipient,
        default=[],
        help="envelope recipient (repeatable; default: the header To/Cc addresses)",
    )
    add_client_options(check)
    check.add_argument("--json", action="store_true", help="print the verdicts as JSON")
    check.add_argument(
        "--write-filtered",
        type=Path,
        metavar="PATH",
        help="write the message as delivered, after strip actions (a directory for several "
        "files: <name>.filtered.eml in it)",
    )
    check.add_argument(
        "--fail-on",
        choices=FAIL_ON_CHOICES,
        metavar="{" + ",".join(FAIL_ON_CHOICES) + "}",
        help="CI gate: print a summary table and exit 1 if any file's verdict is at or above "
        "this level, else 0. Levels, by how much of the message its reader sees: intact < "
        "tagged (inbox, marked as spam) < stripped (inbox, parts removed) < junk (junk "
        "folder) < quarantine (held, or discarded) < reject (refused or deferred)",
    )
    check.add_argument(
        "--junit-xml",
        type=Path,
        metavar="PATH",
        help="write a JUnit XML report: one testsuite per profile, one testcase per file, a "
        "failure for each at or above --fail-on (default quarantine) or not fully judged",
    )
    check.epilog = (
        "Files are judged as an SMTP client sends them: a file with LF line endings "
        "throughout is judged as the CRLF message, a leading mbox 'From ' line is dropped; "
        "mixed line endings are kept. Exit codes: 0 accepted (with --fail-on: no file at or "
        "above the level); 1 with --fail-on: a file at or above the level; 3 quarantined; 4 "
        "refused or deferred; 5 not fully judged: a check the profile needs could not answer "
        "(spamd down, a live DNS timeout, a filter error) - wins over 0/3/4, while a failed "
        "gate (1) wins over it; 2 bad options or input (empty, headerless or binary file)."
    )


_MARK = {"reject": "x", "tempfail": "x", "quarantine": "!", "discard": "!", "junk": "~", "tag": "~"}


def _print_verdict(name: str, verdict: Verdict, out: TextIO) -> None:
    reply = verdict.reply
    print(
        f"{name}: {verdict.verdict.value.upper()} ({verdict.disposition.value}) "
        f"profile={verdict.profile} stage={verdict.stage.value} score={verdict.score:g}",
        file=out,
    )
    print(f"  reply: {reply.code} {reply.enhanced} {reply.text}", file=out)
    env = verdict.envelope
    print(
        f"  envelope: from=<{env.mail_from or ''}> to={', '.join(env.rcpt_to) or '-'} "
        f"client={env.client.ip}",
        file=out,
    )
    for item in verdict.stripped:
        print(f"  stripped: {item}", file=out)
    if not verdict.findings:
        print("  findings: none", file=out)
    for finding in verdict.findings:
        mark = "*" if finding.decided else _MARK.get(finding.action.value, "-")
        if finding.unjudged is not None and not finding.decided:
            mark = "?"  # the check could not reach its own answer
        score = f"{finding.score:+g}" if finding.score else ""
        print(
            f"  {mark} {finding.code:<28} {finding.action.value:<10} {score:>6}  {finding.reason}",
            file=out,
        )
    for note in unjudged_notes(verdict):
        print(f"  {note}", file=out)


def _write_filtered(
    target: Path, source: Path, raw: bytes, verdicts: list[Verdict], *, many: bool
) -> None:
    """Write what each accepting profile would deliver (the original when nothing was stripped)."""
    if many:
        if not target.is_dir():
            raise InputError(
                f"--write-filtered {target}: with several files this must be a directory"
            )
        stem = "stdin" if str(source) == "-" else source.stem
        target = target / f"{stem}.filtered.eml"
    delivered = [v for v in verdicts if v.verdict is not VerdictAction.REJECT]
    if not delivered:
        print(f"sinkd check: {source}: refused by every profile; nothing to write", file=sys.stderr)
        return
    for verdict in delivered:
        path = target
        if len(delivered) > 1:
            path = target.with_name(f"{target.stem}.{verdict.profile}{target.suffix}")
        try:
            path.write_bytes(verdict.filtered if verdict.filtered is not None else raw)
        except OSError as exc:
            raise InputError(f"--write-filtered {path}: cannot write: {exc.strerror}") from None


def _message_files(paths: Sequence[Path]) -> list[Path]:
    """The files to check: each path as given, a directory as its *.eml files in name order."""
    files: list[Path] = []
    for path in paths:
        if str(path) != "-" and path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix.lower() == ".eml" and p.is_file())
            if not found:
                raise InputError(f"{path}: a directory with no *.eml files in it")
            files.extend(found)
        else:
            files.append(path)
    return files


def run(args: argparse.Namespace, out: TextIO) -> int:
    """Exit codes: without --fail-on the strictest verdict (0 accept, 3 quarantine, 4 reject);
    with --fail-on, 1 if any file is at or above that level, else 0; 5 when a verdict is
    incomplete, unless the gate failed (see the module docstring); 2 for bad input."""
    profiles = ProfileSet(args.profiles_dir)
    judge = command_judge(args, profiles, profile=args.profile, routes=dict(args.route))
    identity = option_identity(args.client_ip, args.helo)
    files = _message_files(args.files)
    # A directory argument counts as several files, even holding one: --write-filtered PATH is
    # then a directory too.
    many = len(files) > 1 or any(str(p) != "-" and p.is_dir() for p in args.files)
    raws = [(path, read_message(path)) for path in files]  # unreadable files: exit 2 first
    worst = EXIT_OK
    results: list[dict[str, Any]] = []
    checked: list[Checked] = []
    for path, raw in raws:
        started = time.perf_counter()
        envelope = file_envelope(parse(raw), args.mail_from, args.rcpt)
        verdicts = asyncio.run(check_message(judge, raw, envelope, identity))
        checked.append(Checked(str(path), verdicts, time.perf_counter() - started))
        for verdict in verdicts:
            worst = max(worst, _EXIT_OF[verdict.verdict])
        if args.write_filtered is not None:
            _write_filtered(args.write_filtered, path, raw, verdicts, many=many)
        if args.json:
            results.extend({"file": str(path)} | v.to_json() for v in verdicts)
        elif args.fail_on is None:
            for verdict in verdicts:
                _print_verdict(str(path), verdict, out)
    # Without --fail-on the XML marks what makes the exit code non-zero: quarantine and worse.
    fail_on = Level(args.fail_on or Level.QUARANTINE.value)
    if args.junit_xml is not None:
        command = " ".join(["sinkd", "check", *map(str, args.files), "--profile", args.profile])
        xml = junit_xml(checked, fail_on, timestamp=datetime.now(UTC), command=command)
        try:
            args.junit_xml.write_bytes(xml)
        except OSError as exc:
            raise InputError(
                f"--junit-xml {args.junit_xml}: cannot write: {exc.strerror}"
            ) from None
    if args.json:
        print(json.dumps(results, indent=2, ensure_ascii=False), file=out)
    elif args.fail_on is not None:
        write_table(checked, fail_on, out)
    unjudged = [c.file for c in checked if c.incomplete]
    if unjudged:
        print(
            f"sinkd check: {len(unjudged)} of {len(checked)} file(s) not fully judged ("
            f"{INCOMPLETE}, exit {EXIT_INCOMPLETE} unless the gate failed): {', '.join(unjudged)}",
            file=sys.stderr,
        )
    if args.fail_on is not None and any(c.fails(fail_on) for c in checked):
        return EXIT_GATE_FAILED  # the build fails either way; 1 names a message to fix
    if unjudged:
        return EXIT_INCOMPLETE
    return EXIT_OK if args.fail_on is not None else worst
