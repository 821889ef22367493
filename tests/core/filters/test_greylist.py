"""The greylist filter: triplets deferred at RCPT TO, retries passing, memory and time injected."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from sinkd.core.delivery_state import DeliveryState
from sinkd.core.engine import Pipeline, Router
from sinkd.core.filters.greylist import client_network, normalise_sender
from sinkd.core.model import Action, Category, Disposition, Reply, Stage, Unjudged, Verdict
from sinkd.core.ports import Lookups
from sinkd.errors import ProfileError
from tests.support import judging
from tests.support.judging import compile_yaml
from tests.support.shared_state import OUTAGE, UnreachableMemory

T0 = 1_700_000_000.0
MESSAGE = b"From: alice@sender.example\r\nTo: bob@corp.example\r\nSubject: hi\r\n\r\nHello.\r\n"


@dataclass
class FakeClock:
    t: float = T0

    def now(self) -> float:
        return self.t


def greylisting(tmp_path: Path, extra: str = "", rules: str = "") -> Pipeline:
    """A profile with a greylist filter (``extra``: more of its keys), after an envelope
    filter with one rule when ``rules`` is given."""
    envelope = (
        f"""\
  - kind: envelope
    name: access
    rules:
      - {rules}
"""
        if rules
        else ""
    )
    keys = "".join(f"    {line.strip()}\n" for line in extra.splitlines())
    body = f"filters:\n{envelope}  - kind: greylist\n    name: greylisting\n{keys}"
    return compile_yaml(tmp_path, body)


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


# --- the first attempt and retries -------------------------------------------------------------


async def test_the_first_attempt_is_deferred_at_rcpt_with_451_4_7_1_and_a_retry_hint(
    tmp_path: Path, world: World
) -> None:
    verdict = await judge(greylisting(tmp_path), world.lookups)
    assert verdict.stage is Stage.RCPT
    assert verdict.disposition is Disposition.DEFERRED
    assert verdict.reply == Reply(451, "4.7.1", "Greylisted: please try again in 300 seconds")
    assert verdict.codes == ["GREYLIST_DEFERRED"]
    finding = verdict.findings[0]
    assert finding.decided
    assert finding.action is Action.TEMPFAIL
    assert finding.category is Category.DELIVERY
    assert finding.stage is Stage.RCPT
    assert finding.detail == {
        "triplet": {
            "client": "203.0.113.0/24",
            "sender": "alice@sender.example",
            "recipient": "bob@corp.example",
        },
        "first_seen": T0,
        "attempts": 1,
        "delay": 300,
        "retry_after": 300,
    }
    assert "has not seen mail from 203.0.113.0/24" in finding.reason
    assert "try again in 300 seconds" in finding.reason


async def test_a_retry_too_early_is_deferred_again_with_the_seconds_left(
    tmp_path: Path, world: World
) -> None:
    pipeline = greylisting(tmp_path)
    await judge(pipeline, world.lookups)
    world.clock.t = T0 + 100.4
    verdict = await judge(pipeline, world.lookups)
    assert verdict.reply == Reply(451, "4.7.1", "Greylisted: please try again in 200 seconds")
    assert verdict.findings[0].detail["retry_after"] == 199.6
    assert verdict.findings[0].detail["attempts"] == 2
    assert "too early" in verdict.findings[0].reason


async def test_a_retry_after_the_delay_passes_and_the_message_is_accepted_with_the_wait_recorded(
    tmp_path: Path, world: World
) -> None:
    pipeline = greylisting(tmp_path)
    await judge(pipeline, world.lookups)
    world.clock.t = T0 + 312
    verdict = await judge(pipeline, world.lookups)
    assert verdict.stage is Stage.DATA
    assert verdict.disposition is Disposition.INBOX
    assert verdict.reply.code == 250
    assert verdict.codes == ["GREYLIST_PASSED"]
    finding = verdict.findings[0]
    assert finding.action is Action.NONE
    assert finding.stage is Stage.RCPT
    assert finding.detail["waited"] == 312
    assert finding.detail["remembered"] is False
    assert "retried" in finding.reason and "after 312 seconds" in finding.reason


async def test_a_remembered_triplet_passes_at_once_the_next_time(
    tmp_path: Path, world: World
) -> None:
    pipeline = greylisting(tmp_path)
    await judge(pipeline, world.lookups)
    world.clock.t = T0 + 300
    await judge(pipeline, world.lookups)
    world.clock.t = T0 + 86400 * 10
    verdict = await judge(pipeline, world.lookups)
    assert verdict.disposition is Disposition.INBOX
    finding = verdict.findings[0]
    assert finding.code == "GREYLIST_PASSED"
    assert finding.detail["remembered"] is True
    assert finding.detail["waited"] == 300
    assert "passes at once" in finding.reason


async def test_each_recipient_is_its_own_triplet(tmp_path: Path, world: World) -> None:
    pipeline = greylisting(tmp_path)
    await judge(pipeline, world.lookups, rcpts=["bob@corp.example"])
    world.clock.t = T0 + 300
    verdicts = await deliver(
        pipeline, world.lookups, rcpts=["bob@corp.example", "eve@corp.example"]
    )
    refused, accepted = verdicts
    assert refused.stage is Stage.RCPT
    assert refused.envelope.rcpt_to == ("eve@corp.example",)
    assert refused.codes == ["GREYLIST_DEFERRED"]
    assert accepted.stage is Stage.DATA
    assert accepted.envelope.rcpt_to == ("bob@corp.example",)


async def test_the_delay_and_reply_of_the_spec_are_used(tmp_path: Path, world: World) -> None:
    pipeline = greylisting(tmp_path, "delay: 60\nretry_window: 120\nreply: postgrey.greylisted")
    verdict = await judge(pipeline, world.lookups)
    assert verdict.reply == Reply(
        450,
        "4.2.0",
        "<bob@corp.example>: Recipient address rejected: Greylisted, see "
        "http://postgrey.schweikert.ch/help/corp.example.html",
    )
    world.clock.t = T0 + 121
    assert (await judge(pipeline, world.lookups)).codes == ["GREYLIST_DEFERRED"]  # window over
    world.clock.t = T0 + 121 + 60
    assert (await judge(pipeline, world.lookups)).codes == ["GREYLIST_PASSED"]


async def test_the_memorys_delay_override_wins_over_the_profile_and_shows_in_the_reply(
    tmp_path: Path,
) -> None:
    world = World(FakeClock(), DeliveryState(delay_override=5))
    pipeline = greylisting(tmp_path)
    verdict = await judge(pipeline, world.lookups)
    assert verdict.reply.text == "Greylisted: please try again in 5 seconds"
    assert verdict.findings[0].detail["delay"] == 5
    world.clock.t = T0 + 5
    assert (await judge(pipeline, world.lookups)).codes == ["GREYLIST_PASSED"]


# --- the triplet -------------------------------------------------------------------------------


async def test_a_retry_from_another_address_of_the_same_ipv4_24_passes(
    tmp_path: Path, world: World
) -> None:
    pipeline = greylisting(tmp_path)
    await judge(pipeline, world.lookups, client_ip="203.0.113.5")
    world.clock.t = T0 + 300
    passed = await judge(pipeline, world.lookups, client_ip="203.0.113.250")
    other = await judge(pipeline, world.lookups, client_ip="203.0.114.5")
    assert passed.codes == ["GREYLIST_PASSED"]
    assert other.codes == ["GREYLIST_DEFERRED"]


async def test_ipv6_clients_are_grouped_by_their_64_and_the_prefixes_are_configurable(
    tmp_path: Path, world: World
) -> None:
    pipeline = greylisting(tmp_path, "ipv4_prefix: 32\nipv6_prefix: 48")
    first = await judge(pipeline, world.lookups, client_ip="2001:db8:1:2::5")
    assert first.findings[0].detail["triplet"]["client"] == "2001:db8:1::/48"
    world.clock.t = T0 + 300
    assert (await judge(pipeline, world.lookups, client_ip="2001:db8:1:ff::9")).codes == [
        "GREYLIST_PASSED"
    ]
    v4 = await judge(pipeline, world.lookups, client_ip="203.0.113.5")
    assert v4.findings[0].detail["triplet"]["client"] == "203.0.113.5/32"


@pytest.mark.parametrize(
    ("ip", "network"),
    [
        ("192.0.2.77", "192.0.2.0/24"),
        ("2001:db8:aa:bb:cc::1", "2001:db8:aa:bb::/64"),
        ("not-an-ip", "not-an-ip"),
    ],
)
def test_client_network_reduces_the_address_as_postgrey_lookup_by_subnet(
    ip: str, network: str
) -> None:
    assert client_network(ip, 24, 64) == network


@pytest.mark.parametrize(
    ("sender", "normalised"),
    [
        ("Alice@Sender.Example", "alice@sender.example"),
        ("bounce-1234-5678@esp.example", "bounce-#-#@esp.example"),
        ("list+bounces-99=bob=corp.example@lists.example", "list@lists.example"),
        ("news2024@shop.example", "news2024@shop.example"),  # not a number on its own
        ("", ""),
    ],
)
def test_senders_are_normalised_as_postgrey_does(sender: str, normalised: str) -> None:
    assert normalise_sender(sender, True) == normalised


async def test_verp_return_paths_share_one_triplet_unless_substitutions_are_off(
    tmp_path: Path, world: World
) -> None:
    on = greylisting(tmp_path)
    await judge(on, world.lookups, mail_from="bounce-1001@esp.example")
    world.clock.t = T0 + 300
    assert (await judge(on, world.lookups, mail_from="bounce-1002@esp.example")).codes == [
        "GREYLIST_PASSED"
    ]
    off = greylisting(tmp_path, "sender_substitutions: false")
    verdict = await judge(off, world.lookups, mail_from="bounce-1003@esp.example")
    assert verdict.codes == ["GREYLIST_DEFERRED"]
    assert verdict.findings[0].detail["triplet"]["sender"] == "bounce-1003@esp.example"


async def test_the_null_sender_is_greylisted_too(tmp_path: Path, world: World) -> None:
    verdict = await judge(greylisting(tmp_path), world.lookups, mail_from="")
    assert verdict.codes == ["GREYLIST_DEFERRED"]
    assert verdict.findings[0].detail["triplet"]["sender"] == ""


# --- skipping --------------------------------------------------------------------------------


async def test_without_a_memory_greylisting_is_skipped_with_a_note_and_the_mail_accepted(
    tmp_path: Path,
) -> None:
    verdict = await judge(greylisting(tmp_path), Lookups())
    assert verdict.disposition is Disposition.INBOX
    assert verdict.codes == ["GREYLIST_SKIPPED"]
    finding = verdict.findings[0]
    assert finding.action is Action.NONE
    assert "sinkd check" in finding.reason


async def test_an_allowlisted_sender_with_skip_delivery_is_not_greylisted(
    tmp_path: Path, world: World
) -> None:
    pipeline = greylisting(
        tmp_path,
        rules="{id: PARTNER, match: mail_from, entries: ['*@partner.example'], action: allow, "
        "skip: [delivery]}",
    )
    verdict = await judge(pipeline, world.lookups, mail_from="ann@partner.example")
    assert verdict.disposition is Disposition.INBOX
    assert verdict.codes == ["ENVELOPE_PARTNER"]
    assert len(world.state) == 0
    other = await judge(pipeline, world.lookups, mail_from="ann@other.example")
    assert other.codes == ["GREYLIST_DEFERRED"]


async def test_an_allowlisted_recipient_with_skip_delivery_is_not_greylisted(
    tmp_path: Path, world: World
) -> None:
    pipeline = greylisting(
        tmp_path,
        rules="{match: rcpt_to, entries: ['postmaster@'], action: allow, skip: [delivery]}",
    )
    verdicts = await deliver(
        pipeline, world.lookups, rcpts=["postmaster@corp.example", "bob@corp.example"]
    )
    assert [v.stage for v in verdicts] == [Stage.RCPT, Stage.DATA]
    assert verdicts[0].envelope.rcpt_to == ("bob@corp.example",)
    assert verdicts[1].envelope.rcpt_to == ("postmaster@corp.example",)


async def test_a_recipient_refused_by_an_earlier_check_is_not_greylisted(
    tmp_path: Path, world: World
) -> None:
    pipeline = greylisting(
        tmp_path, rules="{match: mail_from, entries: ['spammer@bad.example'], action: reject}"
    )
    verdict = await judge(pipeline, world.lookups, mail_from="spammer@bad.example")
    assert verdict.disposition is Disposition.REJECTED
    assert verdict.codes == ["ENVELOPE_MAIL_FROM_BLOCKED"]
    assert len(world.state) == 0


# --- the spec ----------------------------------------------------------------------------------


def test_a_retry_window_shorter_than_the_delay_is_a_located_profile_error(tmp_path: Path) -> None:
    with pytest.raises(ProfileError) as info:
        greylisting(tmp_path, "delay: 600\nretry_window: 300")
    message = str(info.value)
    assert "filters[0]" in message
    assert "no retry could ever pass" in message


def test_an_unknown_reply_is_a_located_profile_error(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match=r"filters\[0\]\.reply: unknown reply 'no.such'"):
        greylisting(tmp_path, "reply: no.such")


# --- a shared memory that cannot be reached ------------------------------------------------------


async def test_an_unreachable_shared_memory_defers_with_postfixs_policy_service_451_4_3_5(
    tmp_path: Path,
) -> None:
    memory = UnreachableMemory()
    verdict = await judge(greylisting(tmp_path), Lookups(clock=FakeClock(), state=memory))
    assert memory.calls == 1
    assert verdict.stage is Stage.RCPT
    assert verdict.disposition is Disposition.DEFERRED
    # postconf(5) smtpd_policy_service_default_action: what Postfix answers when its
    # greylisting policy service (postgrey) fails.
    assert verdict.reply == Reply(451, "4.3.5", "Server configuration problem")
    assert verdict.codes == ["GREYLIST_UNAVAILABLE"]
    finding = verdict.findings[0]
    assert finding.action is Action.TEMPFAIL
    assert finding.unjudged is Unjudged.UNAVAILABLE
    assert finding.detail["error"] == OUTAGE
    assert "unreachable" in finding.reason
