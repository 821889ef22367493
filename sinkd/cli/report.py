"""``sinkd report``: a deliverability report of message files, every profile's verdict and the
survey population estimate, as text, JSON or one HTML page.

Owns the report options and writing the report; the judging (every profile's verdict and the
population estimate) is the ``Judge`` the server uses too, the rendering ``sinkd.reports``.
Must not import the server, the web app or the store.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from sinkd.cli.base import EXIT_OK
from sinkd.cli.judging import (
    add_client_options,
    add_sender_option,
    check_message,
    file_envelope,
    option_identity,
    read_message,
)
from sinkd.core.message import parse
from sinkd.core.model import Verdict
from sinkd.core.population import load_population
from sinkd.core.profiles import LoadedProfile, ProfileSet, dns_zones_of
from sinkd.errors import InputError
from sinkd.lookups.dns import build_resolver
from sinkd.reports.deliverability import MessageReport, render_html, write_text
from sinkd.services.judge import Judge, MailEnvelope
from sinkd.services.settings import add_options


def _names(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise argparse.ArgumentTypeError("expected profile ids separated by commas")
    return names


def add_arguments(report: argparse.ArgumentParser) -> None:
    report.add_argument("files", nargs="+", type=Path, metavar="FILE.eml", help="message files")
    report.add_argument(
        "--profiles",
        type=_names,
        default=None,
        metavar="A,B,...",
        help="profiles for the per-profile table (default: every built-in profile)",
    )
    add_options(report, "report", "profiles_dirs")
    add_sender_option(report)
    add_client_options(report)
    add_options(report, "report", "dns", "dns_server", "dns_zones", "dns_timeout", "spamd")
    report.add_argument("--json", action="store_true", help="print the report as JSON")
    report.add_argument(
        "--html", type=Path, metavar="OUT.html", help="also write one self-contained HTML page"
    )


def run(args: argparse.Namespace, out: TextIO) -> int:
    """Every chosen profile's verdict plus the population estimate, per message. Exit 0 once
    the report is written (it describes outcomes, it is not one); 2 for bad input."""
    profiles = ProfileSet(args.profiles_dir)
    names = args.profiles or profiles.names()
    chosen = [profiles.resolve(name) for name in names]  # unknown ids stop it before any file
    population = load_population(profiles)
    # One resolver over every zone file the chosen profiles and the population's name, then
    # --dns-zone's: built before any file, so a bad zone file stops the command first.
    zones = dns_zones_of([*chosen, *(profiles.resolve(n) for n in population.profile_ids)])
    resolver = build_resolver(args.dns, args.dns_server, [*zones, *args.dns_zone], args.dns_timeout)
    judge = Judge(
        profiles, profile=names[0], resolver=resolver, population=population, spamd=args.spamd
    )
    raws = [(path, read_message(path)) for path in args.files]  # missing files: exit 2 first
    reports: list[MessageReport] = []
    for path, raw in raws:
        reports.append(asyncio.run(_report_one(args, path, raw, judge, chosen)))
    if args.html is not None:
        try:
            args.html.write_text(render_html(reports), encoding="utf-8")
        except OSError as exc:
            raise InputError(f"--html {args.html}: cannot write: {exc.strerror}") from None
    if args.json:
        data: Any = [r.to_json() for r in reports]
        print(
            json.dumps(data[0] if len(data) == 1 else data, indent=2, ensure_ascii=False), file=out
        )
    else:
        for report in reports:
            write_text(report, out)
        if args.html is not None:
            print(f"HTML report: {args.html}", file=out)
    return EXIT_OK


async def _report_one(
    args: argparse.Namespace,
    path: Path,
    raw: bytes,
    judge: Judge,
    chosen: Sequence[LoadedProfile],
) -> MessageReport:
    parsed = parse(raw)  # the header addresses and the subject, read once
    found = file_envelope(parsed, args.mail_from, ())
    envelope = MailEnvelope(found.mail_from, found.rcpt_to[:1])  # the report's one recipient
    identity = option_identity(args.client_ip, args.helo)
    verdicts: list[Verdict] = []
    for loaded in chosen:
        verdicts.extend(await check_message(judge, raw, envelope, identity, profile=loaded))
    estimate = await judge.estimate(raw, envelope, identity)
    return MessageReport(str(path), parsed.subject, verdicts, estimate)
