"""What two profiles judged differently on a corpus (``sinkd profiles diff A B --corpus DIR``).

Owns comparing one message's verdict under profile A with its verdict under profile B (the
verdict and where it ends up, the stage, the SMTP reply, the deciding finding codes, the parts
a strip action removed) and the summary line ("12 of 240 messages judged differently: 9
accept→quarantine, 3 accept→reject"). It judges no mail (the CLI runs the ``Judge`` and hands
the verdicts in) and prints nothing.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sinkd.core.model import Verdict

# What makes two verdicts of one message differ, in the order a difference is named.
COMPARED = ("verdict", "disposition", "stage", "reply", "deciding", "stripped")


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a sender sees of one verdict: the compared fields, plus the score for reading."""

    verdict: str
    disposition: str
    stage: str
    reply: str
    deciding: tuple[str, ...]
    stripped: tuple[str, ...]
    score: float

    @classmethod
    def of(cls, verdict: Verdict) -> Outcome:
        reply = verdict.reply
        return cls(
            verdict=verdict.verdict.value,
            disposition=verdict.disposition.value,
            stage=verdict.stage.value,
            reply=f"{reply.code} {reply.enhanced} {reply.text}",
            deciding=tuple(f.code for f in verdict.findings if f.decided),
            stripped=verdict.stripped,
            score=verdict.score,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "disposition": self.disposition,
            "stage": self.stage,
            "reply": self.reply,
            "deciding": list(self.deciding),
            "stripped": list(self.stripped),
            "score": self.score,
        }


@dataclass(frozen=True, slots=True)
class MessageDiff:
    """One message that A and B judged differently, and which compared fields differ."""

    file: str
    a: Outcome
    b: Outcome
    differs: tuple[str, ...]

    @property
    def transition(self) -> str:
        """ "accept→quarantine"; with the same verdict, where it ends up ("inbox→junk"), else
        the verdict and what else differs ("accept (other stripped)")."""
        if self.a.verdict != self.b.verdict:
            return f"{self.a.verdict}→{self.b.verdict}"
        if self.a.disposition != self.b.disposition:
            return f"{self.a.disposition}→{self.b.disposition}"
        return f"{self.a.verdict} (other {'/'.join(self.differs)})"

    def to_json(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "differs": list(self.differs),
            "a": self.a.to_json(),
            "b": self.b.to_json(),
        }


def compare_verdicts(file: str, a: Verdict, b: Verdict) -> MessageDiff | None:
    """How B's verdict on ``file`` differs from A's; None when nothing compared differs."""
    outcome_a, outcome_b = Outcome.of(a), Outcome.of(b)
    differs = tuple(
        name for name in COMPARED if getattr(outcome_a, name) != getattr(outcome_b, name)
    )
    return MessageDiff(file, outcome_a, outcome_b, differs) if differs else None


def summary(diffs: Sequence[MessageDiff], total: int) -> str:
    """ "N of M messages judged differently: 9 accept→quarantine, 3 accept→reject" (the most
    frequent transition first), or that none was."""
    if not diffs:
        return f"0 of {total} messages judged differently"
    counts = Counter(d.transition for d in diffs)
    parts = ", ".join(f"{n} {t}" for t, n in sorted(counts.items(), key=lambda i: (-i[1], i[0])))
    return f"{len(diffs)} of {total} messages judged differently: {parts}"
