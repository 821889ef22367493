"""The population estimate: exact shares, causes, fixes and gains, computed by hand below."""

from __future__ import annotations

import io
from fractions import Fraction
from pathlib import Path

import pytest

from sinkd.core.model import Action, Category, ClientIdentity, Finding
from sinkd.core.population import Estimate, Outcome, fix_for, load_population
from sinkd.core.ports import Lookups
from sinkd.core.profiles import ProfileSet
from sinkd.errors import ProfileError
from sinkd.lookups.dns import build_resolver
from sinkd.reports.deliverability import MessageReport, render_html, write_text
from tests.support.paths import PROFILES

F = Fraction
FILTERING = 1 - F(3, 100)  # 97% run some filter
T, R, L, S = F(80, 100), F(64, 100), F(75, 100), F(51, 100)  # the survey's feature shares


def eml(subject: str, html: str, sender: str = "news@shop.example") -> bytes:
    text = (
        f"From: News <{sender}>\r\nTo: bob@corp.example\r\nSubject: {subject}\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
        f"<html><body>{html}</body></html>\r\n"
    )
    return text.encode()


async def estimate(
    raw: bytes,
    *,
    ip: str = "127.0.0.1",
    zones: list[Path] | None = None,
    sender: str = "news@shop.example",
) -> Estimate:
    population = load_population(ProfileSet())
    resolver = build_resolver("offline", None, zones or [], 5.0)
    return await population.estimate(
        raw,
        mail_from=sender,
        rcpt="bob@corp.example",
        client=ClientIdentity(ip=ip, helo="mx.sender.example", source="option"),
        lookups=Lookups(resolver=resolver),
    )


async def test_a_clean_plain_message_reaches_every_recipient_intact() -> None:
    est = await estimate(
        eml("Your October statement", "<p>Hello Sam, your statement is ready.</p>")
    )
    assert est.share(Outcome.INTACT) == 1  # exactly, as a Fraction
    assert isinstance(est.share(Outcome.INTACT), Fraction)
    assert est.causes == ()
    assert est.to_json()["population"] == {
        "intact": 1.0,
        "stripped": 0.0,
        "quarantine": 0.0,
        "reject": 0.0,
    }


async def test_an_inline_script_is_stripped_for_the_rich_content_share_only() -> None:
    # (A hidden preheader is no longer stripped: typical-corporate records it as gateways do.)
    raw = eml(
        "Your October statement",
        "<script>track('open')</script><p>Hello Sam, your statement is ready.</p>",
    )
    est = await estimate(raw)
    stripped = FILTERING * R  # 0.97 * 0.64 = 0.6208
    assert est.share(Outcome.STRIPPED) == stripped == F(388, 625)
    assert est.share(Outcome.INTACT) == 1 - stripped
    assert est.share(Outcome.QUARANTINE) == est.share(Outcome.REJECT) == 0
    [cause] = est.causes
    assert cause.code == "MIME_ACTIVE_SCRIPT"
    assert cause.share_lost == stripped
    assert cause.gain_intact == stripped  # without it, every stripped recipient gets it intact
    assert cause.fix == "remove scripts, forms and event handlers from the HTML"


ZONE = """$TTL 300
$ORIGIN spf-fail.example.
@       TXT     "v=spf1 ip4:198.51.100.0/24 -all"
$ORIGIN zen.spamhaus.org.
99.2.0.192      A       127.0.0.2
"""


async def test_a_message_that_trips_every_feature_gets_the_hand_computed_shares(
    tmp_path: Path,
) -> None:
    zone = tmp_path / "trip.zone"
    zone.write_text(ZONE)
    raw = eml(
        "Last chance",
        "<script>open()</script>"
        "<p>Casino night: win the lottery, paid by wire transfer or bitcoin.</p>",
        sender="news@spf-fail.example",
    )
    est = await estimate(raw, ip="192.0.2.99", zones=[zone], sender="news@spf-fail.example")
    # By hand, with typical-corporate's settings (tag 5, quarantine 8, reject 15):
    # - lists (Spamhaus ZEN lists 192.0.2.99) or SPF (-all fails) refuse at RCPT TO:
    #   reject = 0.97 * (1 - 0.25 * 0.49) = 0.97 * 0.8775 = 0.851175
    # - otherwise trigger words score 3 per word, at most 9 points: >= 8, < 15, so quarantine
    #   (trigger words alone never reject): 0.97 * 0.1225 * 0.8 = 0.09506
    # - otherwise rich content strips the script: 0.97 * 0.1225 * 0.2 * 0.64 = 0.0152096
    # - intact: the rest of the filtering 97% plus the 3% with no filter:
    #   0.97 * 0.1225 * 0.2 * 0.36 + 0.03 = 0.0085554 + 0.03 = 0.0385554
    neither = (1 - L) * (1 - S)
    assert est.share(Outcome.REJECT) == FILTERING * (1 - neither) == F("0.851175")
    assert est.share(Outcome.QUARANTINE) == FILTERING * neither * T == F("0.09506")
    assert est.share(Outcome.STRIPPED) == FILTERING * neither * (1 - T) * R == F("0.0152096")
    assert est.share(Outcome.INTACT) == F("0.0385554")
    assert sum(est.shares.values()) == 1

    # Causes, ranked by the share they cost: DNSBL 0.97*0.75 = 0.7275, SPF 0.97*0.51 = 0.4947,
    # trigger words 0.09506, script 0.0152096.
    causes = {c.code: c for c in est.causes}
    assert [c.code for c in est.causes] == [
        "DNSBL_LISTED",
        "SPF_FAIL",
        "CONTENT_TRIGGER_WORD",
        "MIME_ACTIVE_SCRIPT",
    ]
    assert causes["DNSBL_LISTED"].share_lost == FILTERING * L
    assert causes["SPF_FAIL"].share_lost == FILTERING * S
    # Gains: delisting helps only where SPF does not refuse too, and then only companies
    # without trigger words or rich content: 0.97 * 0.75 * 0.49 * 0.2 * 0.36 = 0.0256662.
    assert causes["DNSBL_LISTED"].gain_intact == FILTERING * L * (1 - S) * (1 - T) * (1 - R)
    assert causes["DNSBL_LISTED"].gain_intact == F("0.0256662")
    # Rewording: the quarantined 0.09506 become intact where nothing strips: * 0.36.
    assert causes["CONTENT_TRIGGER_WORD"].gain_intact == F("0.09506") * (1 - R)
    assert causes["MIME_ACTIVE_SCRIPT"].gain_intact == F("0.0152096")
    assert causes["DNSBL_LISTED"].fix == "delist the sending IP"
    assert causes["SPF_FAIL"].fix == "publish SPF that covers your sending servers"
    assert causes["CONTENT_TRIGGER_WORD"].fix == (
        "reword: avoid 'bitcoin', 'casino', 'lottery', 'wire transfer'"
    )


def test_every_combination_is_enumerated_once_and_the_shares_add_up_to_one() -> None:
    population = load_population(ProfileSet())
    combos = population.combinations()
    assert len(combos) == 1 + 2**4
    assert sum(share for _, share in combos) == 1
    assert combos[0] == (None, F(3, 100))


def test_each_combination_pipeline_is_built_once_with_only_its_filters() -> None:
    population = load_population(ProfileSet())
    chosen = frozenset({"lists", "spf_or_senderid"})
    pipeline = population.pipeline(chosen)
    assert population.pipeline(chosen) is pipeline
    assert [f.name for f in pipeline.filters] == [
        "access-lists",
        "message-size",
        "spf",
        "spamhaus",
        "rfc-hygiene",
    ]
    assert pipeline.profile.scoring.thresholds.quarantine == 8.0


def test_unknown_codes_fall_back_to_addressing_their_reason() -> None:
    assert fix_for("ENVELOPE_BLOCK_IP", []).startswith("send from an address")
    assert fix_for("NEW_THING", []) == "address NEW_THING"
    finding = Finding(
        code="NEW_THING",
        filter="x",
        category=Category.CONTENT,
        action=Action.QUARANTINE,
        reason="The message is odd.",
    )
    assert fix_for("NEW_THING", [finding]) == "address the message is odd"


def test_a_population_naming_a_missing_filter_names_the_file_the_line_and_the_field(
    tmp_path: Path,
) -> None:
    text = (PROFILES / "population.yaml").read_text()
    bad = tmp_path / "population.yaml"
    bad.write_text(text.replace("filters: [trigger-words]", "filters: [trigger-wordz]"))
    with pytest.raises(ProfileError) as caught:
        load_population(ProfileSet(), bad)
    message = str(caught.value)
    assert f"{bad}:" in message and "features[0].filters[0]" in message
    assert "trigger-wordz" in message


def test_a_share_above_one_is_refused_with_its_location(tmp_path: Path) -> None:
    text = (PROFILES / "population.yaml").read_text()
    bad = tmp_path / "population.yaml"
    bad.write_text(text.replace("share: 0.64", "share: 1.64"))
    with pytest.raises(ProfileError, match=r"features\[1\]\.share"):
        load_population(ProfileSet(), bad)


async def test_overlapping_causes_gain_nothing_alone_and_everything_together() -> None:
    raw = eml(
        "October news",
        "<script>track('open')</script>"
        '<p>Hello Sam.</p><video src="https://cdn.shop.example/hero.mp4" controls></video>',
    )
    est = await estimate(raw)
    stripped = FILTERING * R  # the same companies strip the video and the script
    assert est.share(Outcome.STRIPPED) == stripped
    causes = {c.code: c for c in est.causes}
    assert set(causes) == {"MIME_ACTIVE_SCRIPT", "MIME_MULTIMEDIA"}
    assert causes["MIME_ACTIVE_SCRIPT"].gain_intact == causes["MIME_MULTIMEDIA"].gain_intact == 0
    assert est.gain_all == stripped
    assert est.to_json()["gain_all_intact"] == pytest.approx(0.6208)
    text = io.StringIO()
    write_text(MessageReport("news.eml", "October news", [], est), text)
    assert (
        "remove scripts, forms and event handlers from the HTML: no gain on its own: other"
        " causes hit" in text.getvalue()
    )
    assert "+0.0" not in text.getvalue()
    assert "fix all 2 causes: +62.1 points intact" in text.getvalue()
    page = render_html([MessageReport("news.eml", "October news", [], est)])
    assert "fix all 2 causes: +62.1 points intact" in page and "+0.0" not in page
