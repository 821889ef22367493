"""The rate_limit filter: messages per minute per client IP at MAIL FROM, recipients per
message at RCPT TO; counts and time injected."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from sinkd.core.delivery_state import DeliveryState
from sinkd.core.engine import Pipeline, Router
from sinkd.core.model import Action, Category, Disposition, Reply, Stage, Unjudged, Verdict
from sinkd.core.ports import Lookups
from sinkd.errors import ProfileError
from tests.support import judging
from tests.support.judging import compile_yaml
from tests.support.shared_state import OUTAGE, UnreachableMemory

T0 = 1_700_000_000.0
MESSAGE = b"From: alice@sender.example\r\nTo: bob@corp.example\r\nSubject: hi\r\n\r\nHello.\r\n"
ALLOW_PARTNER = (
    "  - kind: envelope\n    name: access\n    rules:\n"
    "      - {match: mail_from, entries: ['*@partner.example'], action: allow, skip: [delivery]}\n"
)


@dataclass
class FakeClock:
    t: float = T0

    def now(self) -> float:
        return self.t


def limits(
    tmp_path: Path, keys: str, *, before: str = "", profile_id: str = "test", smtp: str = ""
) -> Pipeline:
    """A profile with one rate_limit filter (``keys``: its settings, one per line)."""
    lines = "".join(f"    {line.strip()}\n" for line in keys.splitlines())
    body = f"{smtp}filters:\n{before}  - kind: rate_limit\n    name: anvil\n{lines}"
    return compile_yaml(tmp_path, body, profile_id)


@dataclass
class World:
    clock: FakeClock
    state: DeliveryState

    @property
    def lookups(self) -> Lookups:
        return Lookups(clock=self.clock, state=self.state)


@pytest.fixture
def world() -> World:
    return World(FakeClock(), DeliveryState())


async def deliver(target: Pipeline | Router, lookups: Lookups, **kwargs: Any) -> list[Verdict]:
    """Every verdict of one transaction carrying ``MESSAGE``."""
    return await judging.deliver(target, MESSAGE, lookups=lookups, **kwargs)


async def judge(target: Pipeline | Router, lookups: Lookups, **kwargs: Any) -> Verdict:
    return await judging.judge(target, MESSAGE, lookups=lookups, **kwargs)


# --- messages per minute -------------------------------------------------------------------------


async def test_the_message_over_the_per_minute_limit_is_refused_at_mail_with_postfixs_450(
    tmp_path: Path, world: World
) -> None:
    pipeline = limits(tmp_path, "messages_per_minute: 3")
    assert pipeline.profile.smtp.envelope_reply_stage == "rcpt"
    for second in range(3):
        world.clock.t = T0 + second
        assert (await judge(pipeline, world.lookups)).stage is Stage.DATA
    world.clock.t = T0 + 3
    verdict = await judge(pipeline, world.lookups)
    assert verdict.stage is Stage.MAIL  # answered at MAIL FROM although replies wait for RCPT
    assert verdict.disposition is Disposition.DEFERRED
    assert verdict.reply == Reply(450, "4.7.1", "Error: too much mail from 203.0.113.5")
    assert verdict.codes == ["RATE_LIMIT_MESSAGES"]
    finding = verdict.findings[0]
    assert finding.decided
    assert finding.action is Action.TEMPFAIL
    assert finding.category is Category.DELIVERY
    assert finding.detail == {"client_ip": "203.0.113.5", "count": 4, "limit": 3, "window": 60}
    assert "4 messages within a minute, over the limit of 3" in finding.reason


async def test_the_window_slides_refused_attempts_count_and_other_clients_are_separate(
    tmp_path: Path, world: World
) -> None:
    pipeline = limits(tmp_path, "messages_per_minute: 2")
    for second in (0, 30, 40):  # the third is refused, and counts (as Postfix's anvil counts it)
        world.clock.t = T0 + second
        verdict = await judge(pipeline, world.lookups)
    assert verdict.codes == ["RATE_LIMIT_MESSAGES"]
    assert (await judge(pipeline, world.lookups, client_ip="198.51.100.9")).stage is Stage.DATA
    world.clock.t = T0 + 61  # T0's message left the window; 30 and 40 are still in it
    assert (await judge(pipeline, world.lookups)).codes == ["RATE_LIMIT_MESSAGES"]
    world.clock.t = T0 + 101  # only 61 is left in the window
    assert (await judge(pipeline, world.lookups)).stage is Stage.DATA


async def test_an_allowlisted_sender_is_neither_limited_nor_counted(
    tmp_path: Path, world: World
) -> None:
    pipeline = limits(tmp_path, "messages_per_minute: 1", before=ALLOW_PARTNER)
    for _ in range(3):
        verdict = await judge(pipeline, world.lookups, mail_from="ann@partner.example")
        assert verdict.stage is Stage.DATA
        assert verdict.codes == ["ENVELOPE_MAIL_FROM_ALLOWED"]
    assert (await judge(pipeline, world.lookups)).stage is Stage.DATA  # the first one counted
    assert (await judge(pipeline, world.lookups)).codes == ["RATE_LIMIT_MESSAGES"]


async def test_without_a_memory_a_client_has_sent_only_this_message(tmp_path: Path) -> None:
    pipeline = limits(tmp_path, "messages_per_minute: 1")
    for _ in range(3):
        assert (await judge(pipeline, Lookups())).stage is Stage.DATA


async def test_two_profiles_count_on_their_own_even_with_the_same_filter_name(
    tmp_path: Path, world: World
) -> None:
    default = limits(tmp_path, "messages_per_minute: 1", profile_id="default")
    finance = limits(tmp_path, "messages_per_minute: 1", profile_id="finance")
    router = Router(default, {"finance.example": finance})
    verdicts = await deliver(router, world.lookups, rcpts=["a@corp.example", "b@finance.example"])
    assert [v.profile for v in verdicts] == ["default", "finance"]
    assert all(v.stage is Stage.DATA for v in verdicts)
    refused = await judge(router, world.lookups)
    assert refused.codes == ["RATE_LIMIT_MESSAGES"]
    assert refused.findings[0].detail["count"] == 2


async def test_one_profile_compiled_twice_counts_on_one_counter_as_instances_sharing_a_store(
    tmp_path: Path, world: World
) -> None:
    # Two processes (or two instances on one PostgreSQL store) compile the same profile each:
    # their counters for a client must be the same one.
    here = limits(tmp_path, "messages_per_minute: 1", profile_id="shared")
    there = limits(tmp_path, "messages_per_minute: 1", profile_id="shared")
    assert (await judge(here, world.lookups)).stage is Stage.DATA
    refused = await judge(there, world.lookups)
    assert refused.codes == ["RATE_LIMIT_MESSAGES"]
    assert refused.findings[0].detail["count"] == 2


async def test_a_custom_message_reply_is_used(tmp_path: Path, world: World) -> None:
    pipeline = limits(
        tmp_path,
        "messages_per_minute: 1\n"
        "message_reply: '450 4.7.1 Too many messages from ${client_ip}; slow down'",
    )
    await judge(pipeline, world.lookups)
    verdict = await judge(pipeline, world.lookups, client_ip="203.0.113.5")
    assert verdict.reply == Reply(450, "4.7.1", "Too many messages from 203.0.113.5; slow down")


# --- recipients per message ----------------------------------------------------------------------


async def test_recipients_after_the_limit_get_452_4_5_3_and_the_first_ones_are_delivered(
    tmp_path: Path, world: World
) -> None:
    pipeline = limits(tmp_path, "max_recipients: 2")
    rcpts = [f"user{n}@corp.example" for n in range(4)]
    verdicts = await deliver(pipeline, world.lookups, rcpts=rcpts)
    *refused, accepted = verdicts
    assert [v.envelope.rcpt_to for v in refused] == [(rcpts[2],), (rcpts[3],)]
    for verdict in refused:
        assert verdict.stage is Stage.RCPT
        assert verdict.disposition is Disposition.DEFERRED
        assert verdict.reply == Reply(452, "4.5.3", "Error: too many recipients")
        assert verdict.codes == ["RATE_LIMIT_RECIPIENTS"]
        assert verdict.findings[0].detail == {"accepted": 2, "limit": 2}
        assert verdict.findings[0].category is Category.DELIVERY
    assert accepted.stage is Stage.DATA
    assert accepted.envelope.rcpt_to == tuple(rcpts[:2])


async def test_recipients_refused_for_other_reasons_do_not_count_towards_the_limit(
    tmp_path: Path, world: World
) -> None:
    block = (
        "  - kind: envelope\n    name: access\n    rules:\n"
        "      - {match: rcpt_to, entries: ['gone@corp.example'], action: reject}\n"
    )
    pipeline = limits(tmp_path, "max_recipients: 1", before=block)
    verdicts = await deliver(
        pipeline, world.lookups, rcpts=["gone@corp.example", "bob@corp.example"]
    )
    assert [v.stage for v in verdicts] == [Stage.RCPT, Stage.DATA]
    assert verdicts[0].codes == ["ENVELOPE_RCPT_TO_BLOCKED"]
    assert verdicts[1].envelope.rcpt_to == ("bob@corp.example",)


async def test_an_allowlisted_recipient_skips_the_recipient_limit(
    tmp_path: Path, world: World
) -> None:
    allow = (
        "  - kind: envelope\n    name: access\n    rules:\n"
        "      - {match: rcpt_to, entries: ['postmaster@'], action: allow, skip: [delivery]}\n"
    )
    pipeline = limits(tmp_path, "max_recipients: 1", before=allow)
    verdicts = await deliver(
        pipeline, world.lookups, rcpts=["bob@corp.example", "postmaster@corp.example"]
    )
    assert [v.stage for v in verdicts] == [Stage.DATA]
    assert verdicts[0].envelope.rcpt_to == ("bob@corp.example", "postmaster@corp.example")


# --- the spec ----------------------------------------------------------------------------------


def test_a_rate_limit_without_any_limit_is_a_located_profile_error(tmp_path: Path) -> None:
    with pytest.raises(ProfileError) as info:
        limits(tmp_path, "message_reply: postfix.message_rate")
    assert "filters[0]" in str(info.value)
    assert "set messages_per_minute, max_recipients or both" in str(info.value)


@pytest.mark.parametrize("keys", ["messages_per_minute: 0", "max_recipients: -1"])
def test_limits_must_be_positive(tmp_path: Path, keys: str) -> None:
    with pytest.raises(ProfileError, match="greater than 0"):
        limits(tmp_path, keys)


# --- shared counters that cannot be reached ------------------------------------------------------


async def test_unreachable_shared_counters_defer_the_message_at_mail_with_451_4_3_5(
    tmp_path: Path,
) -> None:
    memory = UnreachableMemory()
    pipeline = limits(tmp_path, "messages_per_minute: 3")
    verdict = await judge(pipeline, Lookups(clock=FakeClock(), state=memory))
    assert memory.calls == 1
    assert verdict.stage is Stage.MAIL
    assert verdict.disposition is Disposition.DEFERRED
    assert verdict.reply == Reply(451, "4.3.5", "Server configuration problem")
    assert verdict.codes == ["RATE_LIMIT_UNAVAILABLE"]
    finding = verdict.findings[0]
    assert finding.action is Action.TEMPFAIL
    assert finding.unjudged is Unjudged.UNAVAILABLE
    assert finding.detail == {"client_ip": "203.0.113.5", "limit": 3, "error": OUTAGE}
