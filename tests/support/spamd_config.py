"""A private spamd loaded with a SpamAssassin configuration under test, and its scores.

Owns laying out a configuration directory the way spamd reads it and starting Debian's spamd on
it (through ``tests/conftest.py``'s ``start_spamd``, which adds the ``CI=true`` skip-or-fail
rule, a free loopback port and the clean stop), then asking it for a REPORT per message. Four
layouts, after spamd(1) and Mail::SpamAssassin(3) on where rules come from, and after the notes
``sinkd profiles import spamassassin`` writes into a profile:

``site``  ``--siteconfigpath DIR``: the stock rules (/usr/share/spamassassin) plus DIR, a copy
          of Debian's /etc/spamassassin (its ``*.pre`` plugin loaders, ``65_debian.cf`` and
          ``local.cf``) with the configuration's files laid over it, ``local.cf`` replaced: the
          site an admin runs after copying the files into /etc/spamassassin, the reference.
          Without the ``.pre`` files no plugin loads and every ``ifplugin`` block (most stock
          rules) is skipped.
``stock`` the same copy of /etc/spamassassin without the configuration's files: the stock-rules
          spamd a profile that evaluates the files' rules itself adds its score from (the
          importer's note: "a copy of /etc/spamassassin without these files").
``files`` ``--siteconfigpath DIR`` holding the ``*.pre`` files and the configuration's files
          only: the spamd the note of a profile that leaves everything to spamd describes
          ("DIR holding these files … with Debian's /etc/spamassassin/*.pre beside them").
``only``  ``--configpath DIR``: DIR replaces the stock rules, so only the configuration's
          rules score, plus the stock files named in ``stock_files`` (by default
          ``ONLY_STOCK``: defaults and report template, the TLD list, and the USER_IN_* rules
          that give ``welcomelist_from`` its points); the site directory holds the ``.pre``
          files only, so plugins load but Debian's ``local.cf`` adds nothing.

spamd runs ``--local`` (``start_spamd``): no network tests, so score set 0 applies
(Mail::SpamAssassin::Conf "score": the first of four scores is used without Bayes and network
tests). The directories are private copies readable by ``nobody`` (spamd started as root drops
to it), removed when spamd stops. It never writes into the repository.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from sinkd.core.ports import SpamdTarget, SpamReport
from sinkd.lookups.spamd import SpamdService
from tests.conftest import SpamdProcess, start_spamd

SITE_CONFIG = Path("/etc/spamassassin")  # Debian's site directory (spamd(1) --siteconfigpath)
STOCK_RULES = Path("/usr/share/spamassassin")  # Debian's default rules (spamd(1) --configpath)
# What a test waits for one REPORT, queueing behind the other requests included: spamd with the
# stock rules takes 0.1-3 s per message on a loaded 2-core machine.
REPORT_TIMEOUT = 300.0
# Stock files the ``only`` layout keeps. 10_default_prefs.cf holds no rule, only the defaults
# (required_score 5, report_safe 1) and the report template whose rule table spamd's REPORT
# answer carries (without it: "(no report template found)"). 20_aux_tlds.cf holds the list of
# top-level domains (util_rb_tld): without it SpamAssassin recognises no domain in text, so
# its uri rules would see fewer URIs ("registryboundaries: no tlds defined"). 60_welcomelist.cf
# holds USER_IN_WELCOMELIST/USER_IN_BLOCKLIST, without which welcomelist_from and
# blocklist_from score nothing; sinkd reproduces both with SpamAssassin's scores.
ONLY_STOCK = ("10_default_prefs.cf", "20_aux_tlds.cf", "60_welcomelist.cf")
CONCURRENCY = 4  # start_spamd's --max-children: one request per child

Layout = Literal["site", "stock", "files", "only"]


def _readable(path: Path) -> None:
    """World-readable (spamd runs as ``nobody`` when started as root)."""
    path.chmod(0o755 if path.is_dir() else 0o644)


def _copy(source: Path, directory: Path) -> None:
    target = directory / source.name
    shutil.copyfile(source, target)
    _readable(target)


def config_files(config: Path) -> list[Path]:
    """The configuration's own files, as spamd reads a directory: ``*.pre`` and ``*.cf``."""
    return sorted(p for p in config.iterdir() if p.suffix in (".cf", ".pre") and p.is_file())


def lay_out(
    config: Path, layout: Layout, root: Path, stock_files: Sequence[str] = ONLY_STOCK
) -> list[str]:
    """Fill ``root`` for ``layout``; return spamd's extra arguments pointing at it."""
    _readable(root)
    site = root / "site"
    site.mkdir()
    _readable(site)
    if layout in ("site", "stock"):
        for path in sorted(SITE_CONFIG.iterdir()):
            if path.is_file() and path.suffix in (".pre", ".cf"):
                _copy(path, site)
    else:
        for path in sorted(SITE_CONFIG.glob("*.pre")):
            _copy(path, site)
    if layout in ("site", "files"):
        for path in config_files(config):
            _copy(path, site)  # over Debian's file of the same name (local.cf)
    if layout != "only":
        return ["--siteconfigpath", str(site)]
    rules = root / "rules"
    rules.mkdir()
    _readable(rules)
    for name in stock_files:
        _copy(STOCK_RULES / name, rules)
    for path in config_files(config):
        _copy(path, rules)
    return ["--siteconfigpath", str(site), "--configpath", str(rules)]


@contextlib.contextmanager
def configured_spamd(
    config: Path, layout: Layout, stock_files: Sequence[str] = ONLY_STOCK
) -> Iterator[SpamdProcess]:
    """A private spamd loaded with ``config`` in ``layout``; stopped (and its copies removed)
    when the block ends."""
    root = Path(tempfile.mkdtemp(prefix=f"sinkd-sa-{config.name}-{layout}-"))
    try:
        spamd = start_spamd(args=lay_out(config, layout, root, stock_files))
        try:
            problems = [line for line in spamd.lines if "config: " in line and "warn" in line]
            assert not problems, f"spamd rejected parts of {config}:\n" + "\n".join(problems)
            yield spamd
        finally:
            spamd.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)


@dataclass(frozen=True)
class Scored:
    """spamd's answer for one message: the score as spamd prints it, the verdict, the rules."""

    score: str  # "12.3": spamd's "Spam:" header value, one decimal
    required: str
    is_spam: bool
    rules: tuple[str, ...]  # rule names that hit, as the REPORT lists them

    @classmethod
    def of(cls, report: SpamReport) -> Scored:
        return cls(
            score=f"{report.score:.1f}",
            required=f"{report.required:.1f}",
            is_spam=report.is_spam,
            rules=tuple(sorted(rule.name for rule in report.rules)),
        )


def spamd_printed(score: float, required: float, is_spam: bool) -> str:
    """The score as spamd prints it in its "Spam:" header for a total of ``score``.

    Mail::SpamAssassin::PerMsgStatus::check rounds the total to three decimals; spamd then
    prints it with ``sprintf("%2.1f")`` and, for a message that is not spam but would print
    at or above required_score, prints required_score - 0.1 instead
    (Mail::SpamAssassin::Util::get_tag_value_for_score).
    """
    # Python's "%.1f" rounds the binary double as C's printf does, which Perl's sprintf calls.
    total = float(f"{score:.3f}")
    printed, need = f"{total:.1f}", f"{required:.1f}"
    if is_spam or float(printed) < float(need):
        return printed
    return f"{float(need) - 0.1:.1f}"


def score_all(
    spamd: SpamdProcess, messages: Mapping[str, bytes], concurrency: int = CONCURRENCY
) -> dict[str, Scored]:
    """Every message scored by ``spamd`` (REPORT), ``concurrency`` at a time: name -> answer."""
    service = SpamdService()
    target = SpamdTarget(spamd.host, spamd.port, REPORT_TIMEOUT, concurrency)

    async def run() -> dict[str, Scored]:
        async def one(name: str, raw: bytes) -> tuple[str, Scored]:
            return name, Scored.of(await service.report(raw, target))

        pairs = await asyncio.gather(*(one(n, raw) for n, raw in messages.items()))
        return dict(pairs)

    return asyncio.run(run())
