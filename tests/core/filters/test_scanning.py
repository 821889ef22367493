"""The refusal of a header block over a profile's header size limit (Exchange's MaxHeaderSize,
Gmail's 500 KB), and the profiles whose product truncates instead."""

from __future__ import annotations

from pathlib import Path

import pytest

from sinkd.core.engine import compile_profile
from sinkd.core.model import Action, Reply, Stage, VerdictAction
from sinkd.core.profiles import ProfileSet
from tests.support.judging import compile_yaml, judge

SHIPPED = ProfileSet()
HEAD = "From: Alice <alice@sender.example>\r\nTo: bob@corp.example\r\nSubject: Hello\r\n"
HEAD += "Date: Mon, 1 Jan 2024 10:00:00 +0000\r\nMessage-ID: <1@sender.example>\r\n"


def with_header_of(size: int) -> bytes:
    """A plain message whose header block is ``size`` octets (lines of 100)."""
    head = HEAD.encode()
    lines = b""
    index = 0
    while len(head) + len(lines) + 100 <= size:
        lines += b"X-Pad-%05d: " % index + b"p" * 84 + b"\r\n"
        index += 1
    last = size - len(head) - len(lines)
    if last:
        lines += b"X-Last: " + b"q" * (last - 10) + b"\r\n"
    raw = head + lines
    assert len(raw) == size
    return raw + b"\r\nHello.\r\n"


@pytest.mark.parametrize(
    ("profile", "limit", "reply"),
    [
        (
            "m365-default-like",
            262_144,
            Reply(552, "5.3.4", "Header size exceeds fixed maximum size"),
        ),
        (
            "legacy-sender-id",
            262_144,
            Reply(552, "5.3.4", "Header size exceeds fixed maximum size"),
        ),
        (
            "google-workspace-like",
            512_000,
            Reply(
                552,
                "5.3.4",
                "Your message exceeded Google's message header size limits. To view our header "
                "size guidelines, go to https://support.google.com/a?p=header-limits",
            ),
        ),
    ],
)
async def test_a_header_block_over_the_products_limit_is_refused_with_its_reply_at_data(
    profile: str, limit: int, reply: Reply
) -> None:
    pipeline = compile_profile(SHIPPED.resolve(profile))
    taken = await judge(pipeline, with_header_of(limit))
    assert "SCAN_HEADER_TOO_LARGE" not in taken.codes
    refused = await judge(pipeline, with_header_of(limit + 1))
    assert refused.verdict is VerdictAction.REJECT
    assert refused.stage is Stage.DATA
    assert refused.reply == reply
    [finding] = [f for f in refused.findings if f.code == "SCAN_HEADER_TOO_LARGE"]
    assert finding.decided
    assert finding.detail["size"] == limit + 1
    assert finding.detail["limit"] == limit
    assert finding.detail["applies_to"] == "block"
    assert finding.detail["source"]  # where the figure comes from, or why sinkd assumes it


@pytest.mark.parametrize(
    "profile", ["typical-corporate", "strict-finance", "deferring-gateway", "no-filter"]
)
async def test_a_postfix_gateway_takes_a_header_block_of_any_size(profile: str) -> None:
    """postconf(5) header_size_limit bounds one header field, and its excess is discarded: the
    message is never refused for it."""
    verdict = await judge(compile_profile(SHIPPED.resolve(profile)), with_header_of(600_000))
    assert "SCAN_HEADER_TOO_LARGE" not in verdict.codes


async def test_the_header_refusal_comes_first_whatever_else_refuses(tmp_path: Path) -> None:
    pipeline = compile_yaml(
        tmp_path,
        """\
        scanning:
          header_size_limit: {size: 300, applies_to: block, action: reject,
                              reply: "552 5.3.4 Header too big", source: a test}
        filters:
          - kind: content
            name: words
            gtube: {action: reject}
        """,
    )
    assert [f.name for f in pipeline.filters] == ["header-size-limit", "words"]
    gtube = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"
    raw = with_header_of(400).replace(b"Hello.", gtube.encode())
    verdict = await judge(pipeline, raw)
    assert verdict.reply == Reply(552, "5.3.4", "Header too big")
    first = verdict.findings[0]
    assert (first.code, first.action, first.decided) == (
        "SCAN_HEADER_TOO_LARGE",
        Action.REJECT,
        True,
    )


async def test_no_filter_reads_a_message_whose_header_block_is_refused(tmp_path: Path) -> None:
    """Exchange and Gmail refuse the header block as it arrives: their content filters never
    see the message, so a 20 MiB header block costs only its measuring."""
    pipeline = compile_yaml(
        tmp_path,
        """\
        scanning:
          header_size_limit: {size: 300, applies_to: block, action: reject,
                              reply: "552 5.3.4 Header too big", source: a test}
        filters:
          - kind: content
            name: words
            gtube: {action: reject}
        """,
    )
    gtube = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"
    raw = with_header_of(400).replace(b"Hello.", gtube.encode())
    verdict = await judge(pipeline, raw)
    assert [f.code for f in verdict.findings] == ["SCAN_HEADER_TOO_LARGE"]


async def test_a_field_scope_refusal_names_the_field_over_the_limit(tmp_path: Path) -> None:
    pipeline = compile_yaml(
        tmp_path,
        """\
        scanning:
          header_size_limit: {size: 50, applies_to: value, action: reject,
                              reply: "552 5.3.4 A header is too big", source: a test}
        """,
    )
    raw = HEAD.encode() + b"X-Long: " + b"x" * 60 + b"\r\n\r\nHello.\r\n"
    verdict = await judge(pipeline, raw)
    assert verdict.codes == ["SCAN_HEADER_TOO_LARGE"]
    assert "X-Long header field" in verdict.findings[0].reason
