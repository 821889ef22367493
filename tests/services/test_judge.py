"""The ``Judge`` as a command builds it (profiles, DNS options, spamd) and as the server uses it:
one resolver per set of zone files, kept; what-ifs that remember no delivery state; the staged
transaction SMTP runs under the routing in force."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import sinkd.lookups.dns
import sinkd.services.judge
from sinkd.core.delivery_state import DeliveryState
from sinkd.core.model import ClientIdentity
from sinkd.core.ports import Resolver
from sinkd.core.profiles import ProfileSet, builtin_profiles_dir
from sinkd.errors import ProfileError
from sinkd.services.judge import Identity, Judge, MailEnvelope
from tests.support.smtp import GTUBE_MESSAGE, message

SENDER = Identity(ClientIdentity(ip="192.0.2.10", helo="mail.sender.example", source="option"))
ENVELOPE = MailEnvelope("alice@sender.example", ("bob@corp.example",))
DEMO_ZONE = builtin_profiles_dir() / "dns" / "demo.zone"


def zoned_profiles(directory: Path) -> ProfileSet:
    """The built-ins plus ``zoned``: typical-corporate with the demo zone as its DNS fixture."""
    (directory / "zoned.yaml").write_text(
        "schema: sinkd.profile/v1\nid: zoned\ntitle: typical-corporate with a DNS fixture\n"
        f"extends: typical-corporate\ndns_zones: [{DEMO_ZONE}]\n",
        encoding="utf-8",
    )
    return ProfileSet([directory])


def counting_builds(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Path, ...]]:
    """Every resolver the judge builds from now on, by its zone files."""
    built: list[tuple[Path, ...]] = []
    real = sinkd.lookups.dns.build_resolver

    def build(*args: Any) -> Resolver:
        built.append(tuple(args[2]))
        return real(*args)

    monkeypatch.setattr(sinkd.services.judge, "build_resolver", build)
    return built


async def test_evaluate_with_the_routing_in_force_judges_as_sinkd_check_does() -> None:
    judge = Judge(ProfileSet(), profile="typical-corporate")
    counter = iter(range(1, 100))
    (verdict,) = await judge.evaluate(
        message(), ENVELOPE, SENDER, new_id=lambda: f"check-{next(counter)}"
    )
    assert (verdict.id, verdict.profile, verdict.verdict.value) == (
        "check-1",
        "typical-corporate",
        "accept",
    )
    assert verdict.envelope.client == SENDER.client


async def test_evaluate_with_a_profile_judges_with_that_profile_alone() -> None:
    judge = Judge(ProfileSet(), profile="no-filter")
    (verdict,) = await judge.evaluate(GTUBE_MESSAGE, ENVELOPE, SENDER, profile="typical-corporate")
    assert (verdict.profile, verdict.verdict.value) == ("typical-corporate", "reject")


async def test_repeated_evaluations_read_the_zone_files_once_and_share_one_resolver(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    judge = Judge(zoned_profiles(tmp_path), profile="typical-corporate")
    built = counting_builds(monkeypatch)
    for _ in range(3):
        await judge.evaluate(message(), ENVELOPE, SENDER, profile="zoned")
        await judge.evaluate(message(), ENVELOPE, SENDER, profile="typical-corporate")
        await judge.evaluate(message(), ENVELOPE, SENDER)
    # Once for the zoned profile's fixture; typical-corporate's (none) is the routing's own,
    # built when the judge was.
    assert built == [(DEMO_ZONE,)]
    assert judge.resolver_for([DEMO_ZONE]) is judge.resolver_for([DEMO_ZONE])
    assert judge.resolver_for([]) is judge.lookups.resolver


async def test_a_command_may_judge_with_a_profile_it_loaded_from_a_path(tmp_path: Path) -> None:
    profiles = zoned_profiles(tmp_path)
    judge = Judge(ProfileSet())
    loaded = profiles.resolve(str(tmp_path / "zoned.yaml"))
    (verdict,) = await judge.evaluate(message(), ENVELOPE, SENDER, profile=loaded)
    assert verdict.profile == "zoned"
    with pytest.raises(ProfileError, match="unknown profile"):
        await judge.evaluate(message(), ENVELOPE, SENDER, profile=str(tmp_path / "zoned.yaml"))


def test_a_resolver_given_by_a_command_answers_every_lookup() -> None:
    given = sinkd.lookups.dns.build_resolver("offline", None, [], 5.0)
    judge = Judge(ProfileSet(), resolver=given)
    assert judge.lookups.resolver is given
    assert judge.resolver_for([Path("/nowhere.zone")]) is given


async def test_a_what_if_evaluation_remembers_no_delivery_state() -> None:
    delivery = DeliveryState()
    judge = Judge(ProfileSet(), profile="typical-corporate", delivery=delivery)
    assert judge.lookups.state is delivery  # SMTP's transactions remember
    await judge.evaluate(message(), ENVELOPE, SENDER)
    assert len(delivery) == 0


async def test_a_transaction_carries_the_senders_auth_user_and_tls() -> None:
    judge = Judge(ProfileSet(), profile="no-filter")
    transaction = judge.transaction(Identity(SENDER.client, auth_user="alice", tls=True))
    assert await transaction.mail("alice@sender.example") is None
    assert (transaction.envelope.auth_user, transaction.envelope.tls) == ("alice", True)
    assert transaction.lookups is judge.lookups


def test_new_routing_is_in_force_only_once_applied_and_rereads_changed_zones(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    judge = Judge(zoned_profiles(tmp_path), profile="no-filter")
    built = counting_builds(monkeypatch)
    routing = judge.prepare_routing("typical-corporate", {"finance.example": "zoned"})
    assert judge.routing() == ("no-filter", {})
    judge.apply_routing(routing)
    assert judge.routing() == ("typical-corporate", {"finance.example": "zoned"})
    assert built == [(DEMO_ZONE,)]
    judge.apply_routing(judge.prepare_routing("typical-corporate", {"finance.example": "zoned"}))
    assert built == [(DEMO_ZONE,)]  # the same zones: the resolver and its cache are kept


def test_routing_names_profiles_by_id_only() -> None:
    judge = Judge(ProfileSet())
    with pytest.raises(ProfileError, match="unknown profile"):
        judge.prepare_routing("../profiles/no-filter.yaml", {})
