"""The size filter: the SIZE parameter at MAIL FROM (RFC 1870) and the real size after DATA."""

from __future__ import annotations

from pathlib import Path

from sinkd.core.engine import Pipeline
from sinkd.core.model import Action, Disposition, Reply, Stage, VerdictAction
from tests.support.judging import compile_yaml, transaction


def size_profile(tmp_path: Path, extra: str = "", *, reply_stage: str = "rcpt") -> Pipeline:
    return compile_yaml(
        tmp_path,
        f"""\
        smtp: {{envelope_reply_stage: {reply_stage}}}
        filters:
          - kind: size
            name: message-size
            max_bytes: 1000
            {extra}
        """,
    )


def message_of(size: int) -> bytes:
    head = b"From: a@sender.example\r\nTo: b@corp.example\r\nSubject: size\r\n\r\n"
    return head + b"x" * (size - len(head))


async def test_declared_size_over_the_limit_is_refused_at_mail_even_when_replies_wait_for_rcpt(
    tmp_path: Path,
) -> None:
    pipeline = size_profile(tmp_path)
    assert pipeline.profile.smtp.envelope_reply_stage == "rcpt"
    verdict = await transaction(pipeline).mail("a@sender.example", size=1001)
    assert verdict is not None
    assert verdict.stage is Stage.MAIL
    assert verdict.verdict is VerdictAction.REJECT
    assert verdict.reply == Reply(552, "5.3.4", "Message size exceeds fixed limit")
    assert verdict.codes == ["SIZE_DECLARED_TOO_BIG"]
    finding = verdict.findings[0]
    assert finding.decided
    assert finding.stage is Stage.MAIL
    assert finding.detail == {"size": 1001, "limit": 1000, "declared": True}
    assert (
        finding.reason
        == "The message declares 1,001 bytes, over this server's limit of 1,000 bytes."
    )


async def test_declared_size_at_the_limit_or_absent_is_accepted_at_mail(tmp_path: Path) -> None:
    pipeline = size_profile(tmp_path)
    assert await transaction(pipeline).mail("a@sender.example", size=1000) is None
    assert await transaction(pipeline).mail("a@sender.example", size=None) is None


async def test_real_size_over_the_limit_is_refused_after_data_with_552_5_3_4(
    tmp_path: Path,
) -> None:
    tx = transaction(size_profile(tmp_path))
    assert await tx.mail("a@sender.example") is None  # no SIZE= given
    assert await tx.rcpt("b@corp.example") is None
    [verdict] = await tx.data(message_of(1001))
    assert verdict.stage is Stage.DATA
    assert verdict.disposition is Disposition.REJECTED
    assert verdict.reply == Reply(552, "5.3.4", "Message size exceeds fixed limit")
    assert verdict.codes == ["SIZE_TOO_BIG"]
    assert verdict.findings[0].detail == {"size": 1001, "limit": 1000, "declared": False}


async def test_real_size_exactly_at_the_limit_is_accepted(tmp_path: Path) -> None:
    tx = transaction(size_profile(tmp_path))
    await tx.mail("a@sender.example", size=1000)
    await tx.rcpt("b@corp.example")
    [verdict] = await tx.data(message_of(1000))
    assert verdict.verdict is VerdictAction.ACCEPT
    assert verdict.codes == []


async def test_a_lying_size_parameter_does_not_save_an_oversized_message(tmp_path: Path) -> None:
    tx = transaction(size_profile(tmp_path))
    assert await tx.mail("a@sender.example", size=10) is None
    assert await tx.rcpt("b@corp.example") is None
    [verdict] = await tx.data(message_of(5000))
    assert verdict.codes == ["SIZE_TOO_BIG"]
    assert verdict.reply.code == 552


async def test_size_filter_may_quarantine_instead_of_rejecting(tmp_path: Path) -> None:
    tx = transaction(size_profile(tmp_path, "action: quarantine"))
    await tx.mail("a@sender.example")
    await tx.rcpt("b@corp.example")
    [verdict] = await tx.data(message_of(2000))
    assert verdict.verdict is VerdictAction.QUARANTINE
    assert verdict.findings[0].action is Action.QUARANTINE
    assert verdict.reply == Reply(250, "2.0.0", "Ok: queued as id1")


async def test_size_reply_may_name_another_catalogue_entry(tmp_path: Path) -> None:
    pipeline = size_profile(tmp_path, "reply: gmail.size")
    verdict = await transaction(pipeline).mail("a@sender.example", size=4096)
    assert verdict is not None
    assert verdict.reply == Reply(
        552, "5.3.4", "Your message exceeded Google's message size limits."
    )
