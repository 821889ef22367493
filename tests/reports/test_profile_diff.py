"""One message's verdicts under two profiles compared, and the corpus summary line
(``sinkd.reports.profile_diff``)."""

from __future__ import annotations

from dataclasses import replace

from sinkd.core.model import (
    Action,
    Category,
    ClientIdentity,
    Disposition,
    Envelope,
    Finding,
    Reply,
    Stage,
    Verdict,
    VerdictAction,
)
from sinkd.reports.profile_diff import Outcome, compare_verdicts, summary

ACCEPTED = Verdict(
    profile="a",
    verdict=VerdictAction.ACCEPT,
    disposition=Disposition.INBOX,
    score=1.0,
    stage=Stage.DATA,
    reply=Reply(250, "2.0.0", "Ok: queued as check-1"),
    findings=(),
    envelope=Envelope(ClientIdentity("127.0.0.1"), "alice@sender.example", ("b@c.example",)),
)
QUARANTINED = replace(
    ACCEPTED,
    profile="b",
    verdict=VerdictAction.QUARANTINE,
    disposition=Disposition.QUARANTINED,
    score=6.0,
)


def finding(code: str) -> Finding:
    """A refusing MIME finding that decided the verdict."""
    return Finding(code, "attachments", Category.CONTENT, Action.REJECT, "refused", decided=True)


def test_the_same_outcome_under_two_profiles_is_no_difference() -> None:
    # The profile's name and the score are not what a sender sees.
    assert compare_verdicts("m.eml", ACCEPTED, replace(ACCEPTED, profile="b", score=4.0)) is None


def test_a_verdict_that_moves_to_quarantine_names_what_differs() -> None:
    found = compare_verdicts("m.eml", ACCEPTED, QUARANTINED)
    assert found is not None
    assert found.differs == ("verdict", "disposition")
    assert found.transition == "accept→quarantine"
    assert found.to_json()["b"]["verdict"] == "quarantine"


def test_the_same_verdict_with_another_deciding_rule_or_reply_is_a_difference() -> None:
    rejected = replace(
        ACCEPTED,
        verdict=VerdictAction.REJECT,
        disposition=Disposition.REJECTED,
        reply=Reply(550, "5.7.1", "Delivery not authorized, message refused"),
        findings=(finding("MIME_EXECUTABLE_ATTACHMENT"),),
    )
    other = replace(
        rejected,
        reply=Reply(554, "5.7.1", "Access denied"),
        findings=(finding("MIME_MACRO_DOCUMENTS"),),
    )
    found = compare_verdicts("m.eml", rejected, other)
    assert found is not None
    assert found.differs == ("reply", "deciding")
    assert found.transition == "reject (other reply/deciding)"
    assert Outcome.of(other).deciding == ("MIME_MACRO_DOCUMENTS",)


def test_the_summary_counts_each_change_most_frequent_first() -> None:
    moved = compare_verdicts("m.eml", ACCEPTED, QUARANTINED)
    refused = compare_verdicts(
        "n.eml",
        ACCEPTED,
        replace(ACCEPTED, verdict=VerdictAction.REJECT, disposition=Disposition.REJECTED),
    )
    assert moved is not None and refused is not None
    assert summary([refused, moved, moved], 240) == (
        "3 of 240 messages judged differently: 2 accept→quarantine, 1 accept→reject"
    )
    assert summary([], 12) == "0 of 12 messages judged differently"
