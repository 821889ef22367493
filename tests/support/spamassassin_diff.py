"""SpamAssassin configurations imported into sinkd and judged side by side with a private spamd.

Owns the message set (the golden corpus with its envelopes, plus the SpamAssassin public corpus
or a seeded sample of it), importing a configuration with the real command
``sinkd profiles import spamassassin FILE… -o OUT``, judging the messages with the imported
profile as ``sinkd check`` does (``tests.support.corpus.ProfileJudge``), and comparing each
message's score as spamd prints it and its verdict with spamd's answer. Shared by
``tests/e2e/test_spamassassin_import_diff.py`` (a sample, KNOWN differences) and
``bench/spamassassin_import_diff.py`` (the whole corpus, figures). Starting spamd is
``tests/support/spamd_config.py``'s; this module only compares, and writes only the imported
profile into the directory it is given.

Two comparisons, after the design of the importer (``sinkd/importers/spamassassin.py``):

``only``  the profile ``--native-only`` writes (sinkd evaluates the configuration's rules and
          lists itself, no spamd) against spamd with ``--configpath`` holding only the
          configuration: nothing of the stock rules on either side, so the totals must be equal.
``site``  the profile the importer writes by default against spamd with ``--siteconfigpath``
          holding Debian's /etc/spamassassin with the configuration laid over it (spamd
          "loaded with the configuration"). sinkd asks the spamd the profile's note says to
          start: the same site without the files when the profile evaluates their rules itself
          and adds spamd's score (``stock`` layout), the ``.pre`` files and the configuration
          when the profile leaves everything to spamd (``files``).

The verdict: SpamAssassin calls a message spam at score >= required_score
(Mail::SpamAssassin::PerMsgStatus::is_spam); sinkd's verdict must be the profile's stated
mapping of "spam" (``SPAM_ACTION``, passed to the importer as ``--spam-action``) exactly then.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from sinkd.core.as_sent import as_sent
from sinkd.core.model import Disposition, Verdict, VerdictAction
from tests.support.corpus import Envelope, ProfileJudge, envelopes, message_names, read_message
from tests.support.paths import ROOT
from tests.support.public_corpus import corpus_files, sample
from tests.support.servers import clean_env
from tests.support.spamd_config import Layout, Scored, configured_spamd, score_all, spamd_printed

FIXTURES = ROOT / "tests" / "fixtures" / "spamassassin"
CONFIGS = ("custom-rules", "welcomelist", "debian-local", "stock-tuning", "corp-gateway")
# What the imported profiles make of "spam": SpamAssassin only marks, the MTA decides; the
# importer's default (its --spam-action) is to quarantine.
SPAM_ACTION: Literal["quarantine", "reject", "tag"] = "quarantine"
SEED = 20  # the public-corpus sample: the same messages on every run (issue 20)
SPAMD_KIND = "spamassassin"
NATIVE_KIND = "spamassassin_rules"

Comparison = Literal["only", "site"]


@dataclass(frozen=True)
class Message:
    """One message both sides judge: ``golden/NAME`` or ``DIR/FILE`` of the public corpus."""

    name: str
    raw: bytes
    envelope: Envelope | None  # the golden corpus's arrival; None: From as sender (public)


def messages(public_per_kind: int | None) -> list[Message]:
    """The golden corpus, then the public corpus: all of it (None) or a seeded sample of
    ``public_per_kind`` ham and as many spam."""
    arrivals = envelopes()
    found = [Message(f"golden/{n}", read_message(n), arrivals[n]) for n in message_names()]
    files = corpus_files()
    chosen = {k: files[k] for k in ("ham", "spam")}
    if public_per_kind is not None:
        chosen = sample(files, public_per_kind, seed=SEED)
    for kind in ("ham", "spam"):
        for path in chosen.get(kind, []):
            found.append(
                Message(f"{path.parent.name}/{path.name}", as_sent(path.read_bytes()), None)
            )
    return found


def config_files(config: Path) -> list[Path]:
    """The files of a configuration, as an admin would name them to the importer."""
    return sorted(p for p in config.iterdir() if p.suffix == ".cf" and p.is_file())


@dataclass(frozen=True)
class ImportedProfile:
    """What ``sinkd profiles import spamassassin`` wrote for one configuration."""

    path: Path
    profile: dict[str, Any]
    stderr: str  # the untranslated items and notes the command printed

    @property
    def kinds(self) -> set[str]:
        return {str(f.get("kind")) for f in self.profile.get("filters", [])}

    @property
    def asks_spamd(self) -> bool:
        return SPAMD_KIND in self.kinds

    @property
    def native(self) -> bool:
        return NATIVE_KIND in self.kinds

    @property
    def spamd_layout(self) -> Layout | None:
        """How the spamd this profile asks must be started (its note says): none, the stock
        rules only (beside native rules), or loaded with the configuration."""
        if not self.asks_spamd:
            return None
        return "stock" if self.native else "files"


def import_config(config: Path, out_dir: Path, *, native_only: bool = False) -> ImportedProfile:
    """Run the real command on the configuration's files (``--native-only`` if asked);
    AssertionError (with its output) unless it exits 0."""
    out = out_dir / f"sa-{config.name}{'-native' if native_only else ''}.yaml"
    command = [
        sys.executable,
        "-m",
        "sinkd",
        "profiles",
        "import",
        "spamassassin",
        *(str(p) for p in config_files(config)),
        *(["--native-only"] if native_only else []),
        "--spam-action",
        SPAM_ACTION,
        "-o",
        str(out),
        "--id",
        f"sa-{config.name}",
    ]
    done = subprocess.run(
        command, capture_output=True, text=True, env=clean_env(), cwd=out_dir, check=False
    )
    assert done.returncode == 0, (
        f"importing {config.name} exited {done.returncode}:\n{done.stderr}{done.stdout}"
    )
    return ImportedProfile(out, yaml.safe_load(out.read_text(encoding="utf-8")), done.stderr)


@dataclass(frozen=True)
class Judged:
    """sinkd's answer for one message, in spamd's terms."""

    score: float  # the verdict's score
    verdict: Verdict
    rules: tuple[str, ...]  # SpamAssassin rule names among the findings


def rule_names(verdict: Verdict) -> tuple[str, ...]:
    """The SpamAssassin rules a verdict names: each finding's ``detail.rule`` (the spamd kind's
    and the native kind's findings carry it), one entry per hit."""
    names = [f.detail.get("rule") for f in verdict.findings]
    return tuple(sorted(str(n) for n in names if isinstance(n, str) and n))


def judge_sinkd(
    profile: Path,
    batch: Sequence[Message],
    spamd: tuple[str, int] | None,
    concurrency: int = 4,
) -> dict[str, Judged]:
    """Every message judged by the imported profile as ``sinkd check`` judges it, offline DNS
    (no zone: SpamAssassin runs --local), ``spamd`` the one the profile's filter asks."""
    judge = ProfileJudge(str(profile), zones=(), spamd=spamd)

    async def run() -> dict[str, Judged]:
        gate = asyncio.Semaphore(concurrency)

        async def one(message: Message) -> tuple[str, Judged]:
            async with gate:
                verdict = await judge.verdict(message.raw, message.envelope)
            return message.name, Judged(verdict.score, verdict, rule_names(verdict))

        return dict(await asyncio.gather(*(one(m) for m in batch)))

    return asyncio.run(run())


def is_spam_action(verdict: Verdict, action: str = SPAM_ACTION) -> bool:
    """Whether sinkd did with the message what the profile says "spam" becomes."""
    if action == "quarantine":
        return verdict.verdict is VerdictAction.QUARANTINE
    if action == "reject":
        return verdict.verdict is VerdictAction.REJECT
    return verdict.disposition in (Disposition.TAGGED, Disposition.JUNK)


@dataclass(frozen=True)
class Difference:
    """One message on which the two sides disagree on one thing (``what``)."""

    config: str
    comparison: Comparison
    message: str
    what: Literal["score", "verdict"]
    spamd: str
    sinkd: str
    only_spamd: tuple[str, ...]  # rules that hit in spamd only
    only_sinkd: tuple[str, ...]

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.config, self.comparison, self.message, self.what)

    def line(self) -> str:
        return (
            f"{self.config} [{self.comparison}] {self.message}: {self.what} spamd {self.spamd}"
            f" / sinkd {self.sinkd}; rules only in spamd {list(self.only_spamd)},"
            f" only in sinkd {list(self.only_sinkd)}"
        )


@dataclass
class Figures:
    """One configuration's comparison, in numbers."""

    config: str
    comparison: Comparison
    compared: int = 0
    same_score: int = 0
    same_verdict: int = 0
    differences: list[Difference] = field(default_factory=list)
    rule_causes: Counter[str] = field(default_factory=Counter)  # "spamd only: RULE" -> messages

    def row(self, known: int | None = None) -> str:
        cells = [
            self.config,
            self.comparison,
            str(self.compared),
            str(self.same_score),
            str(self.same_verdict),
        ]
        if known is not None:
            cells.append(str(known))
        return "| " + " | ".join(cells) + " |"


def _multiset_minus(a: Iterable[str], b: Iterable[str]) -> tuple[str, ...]:
    left = Counter(a)
    left.subtract(Counter(b))
    return tuple(sorted(left.elements()))


def compare(
    config: str,
    comparison: Comparison,
    spamd: Mapping[str, Scored],
    sinkd: Mapping[str, Judged],
) -> Figures:
    """Message by message: the score as spamd prints it, and the verdict (spamd's is_spam
    against sinkd's verdict being the profile's "spam" action)."""
    figures = Figures(config, comparison)
    for name in sorted(spamd):
        theirs, ours = spamd[name], sinkd[name]
        figures.compared += 1
        required = float(theirs.required)
        ours_spam = float(f"{ours.score:.3f}") >= required
        printed = spamd_printed(ours.score, required, ours_spam)
        only_spamd = _multiset_minus(theirs.rules, ours.rules)
        only_sinkd = _multiset_minus(ours.rules, theirs.rules)
        found: list[Difference] = []
        if printed == theirs.score:
            figures.same_score += 1
        else:
            found.append(
                Difference(
                    config, comparison, name, "score", theirs.score, printed, only_spamd, only_sinkd
                )
            )
        acted = is_spam_action(ours.verdict)
        if acted == theirs.is_spam:
            figures.same_verdict += 1
        else:
            found.append(
                Difference(
                    config,
                    comparison,
                    name,
                    "verdict",
                    "spam" if theirs.is_spam else "ham",
                    f"{ours.verdict.verdict.value}/{ours.verdict.disposition.value}",
                    only_spamd,
                    only_sinkd,
                )
            )
        if found:
            figures.rule_causes.update(f"spamd only: {r}" for r in set(only_spamd))
            figures.rule_causes.update(f"sinkd only: {r}" for r in set(only_sinkd))
        figures.differences.extend(found)
    return figures


Answers = Callable[[str, Layout], dict[str, Scored]]


def spamd_answers(batch: Sequence[Message]) -> Answers:
    """``answers(config, layout)``: spamd's REPORT for every message of ``batch``, from a
    private spamd started for that configuration and layout and stopped again; each pair is
    scored once."""
    cache: dict[tuple[str, Layout], dict[str, Scored]] = {}

    def answers(config: str, layout: Layout) -> dict[str, Scored]:
        if (config, layout) not in cache:
            with configured_spamd(FIXTURES / config, layout) as spamd:
                cache[config, layout] = score_all(spamd, {m.name: m.raw for m in batch})
        return cache[config, layout]

    return answers


def run_comparison(
    config: str,
    comparison: Comparison,
    batch: Sequence[Message],
    work: Path,
    answers: Answers,
) -> tuple[ImportedProfile, Figures]:
    """Import ``config`` for ``comparison``, judge ``batch`` with the profile (asking the spamd
    its note names, if any) and compare with spamd's ``answers`` in the comparison's layout."""
    imported = import_config(FIXTURES / config, work, native_only=comparison == "only")
    theirs = answers(config, comparison)
    layout = imported.spamd_layout
    if layout is None:
        ours = judge_sinkd(imported.path, batch, spamd=None)
    else:
        with configured_spamd(FIXTURES / config, layout) as spamd:
            ours = judge_sinkd(imported.path, batch, spamd=spamd.address)
    return imported, compare(config, comparison, theirs, ours)


def table(rows: Iterable[Figures], known: Mapping[str, int] | None = None) -> str:
    """The figures as a Markdown table (for the report and the docs' "Differential results")."""
    head = "| configuration | compared against | messages | identical scores | identical verdicts |"
    rule = "|---|---|---:|---:|---:|"
    if known is not None:
        head += " known differences |"
        rule += "---:|"
    lines = [head, rule]
    for figures in rows:
        lines.append(figures.row(None if known is None else known.get(figures.config, 0)))
    return "\n".join(lines)
