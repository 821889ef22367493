"""The sender_id filter: the Purported Responsible Address of RFC 4407 §2 and Sender ID's
spf2.0 records (RFC 4406), with and without the v=spf1 fallback."""

from __future__ import annotations

from email.message import EmailMessage
from typing import Any

import pydantic
import pytest

from sinkd.core.filters import MessageContext
from sinkd.core.filters.sender_id import SenderIdFilter, SenderIdSpec, purported_responsible_address
from sinkd.core.message import parse
from sinkd.core.model import (
    Action,
    Category,
    ClientIdentity,
    Envelope,
    Finding,
    Reply,
    Stage,
    Unjudged,
)
from sinkd.core.ports import Lookups, Resolver
from sinkd.core.profiles import ProfileSet
from sinkd.core.schema import CompileContext
from sinkd.store import Query
from tests.conftest import StartServer
from tests.support.smtp import aio_client
from tests.support.spf import resolver_for

CATALOGUE = ProfileSet().catalogue
IP = "203.0.113.7"
HELO = "mail.relay.example"
EXCHANGE_REJECT = Reply(550, "5.7.1", "Sender ID (PRA) Not Permitted")

ZONE: dict[str, Any] = {
    "pra.example": [{"TXT": f"spf2.0/pra ip4:{IP} -all"}],
    "both.example": [{"TXT": f"spf2.0/mfrom,pra ip4:{IP} -all"}],
    "denied.example": [{"TXT": "spf2.0/pra -all"}],
    "soft.example": [{"TXT": "spf2.0/pra ~all"}],
    "spf1only.example": [{"TXT": f"v=spf1 ip4:{IP} -all"}],
    "spf1deny.example": [{"TXT": "v=spf1 -all"}],
    "preferred.example": [{"TXT": "v=spf1 -all"}, {"TXT": f"spf2.0/pra ip4:{IP} -all"}],
    "mfromonly.example": [{"TXT": "spf2.0/mfrom -all"}, {"TXT": f"v=spf1 ip4:{IP} -all"}],
    "mfrom.example": [{"TXT": f"spf2.0/mfrom ip4:{IP} -all"}],
    "twice.example": [{"TXT": "spf2.0/pra -all"}, {"TXT": "spf2.0/pra,mfrom +all"}],
    "include.example": [{"TXT": "spf2.0/pra include:inner.example -all"}],
    "inner.example": [{"TXT": "v=spf1 -all"}, {"TXT": f"spf2.0/pra ip4:{IP} -all"}],
    "slow.example": ["TIMEOUT"],
    "nosenderid.example": [{"TXT": "v=DMARC1; p=none"}],
}


def sender_id(**spec: Any) -> SenderIdFilter:
    fields: dict[str, Any] = {"kind": "sender_id", "name": "sender-id"} | spec
    return SenderIdFilter(SenderIdSpec(**fields), CompileContext(lists={}, replies=CATALOGUE))


def message(*headers: str, body: str = "Hello.") -> bytes:
    lines = [*headers, "To: bob@corp.example", "Subject: Sender ID"]
    return ("\r\n".join(lines) + "\r\n\r\n" + body + "\r\n").encode()


async def at_data(
    flt: SenderIdFilter,
    raw: bytes,
    *,
    mail_from: str = "bounce@relay.example",
    resolver: Resolver | None = None,
    lookups: Lookups | None = None,
) -> list[Finding]:
    envelope = Envelope(ClientIdentity(ip=IP, helo=HELO), mail_from, ("bob@corp.example",))
    if lookups is None:
        lookups = Lookups(resolver=resolver or resolver_for(ZONE))
    return await flt.check_message(MessageContext(envelope, parse(raw), lookups))


async def pra_finding(*headers: str, **spec: Any) -> Finding:
    (finding,) = await at_data(sender_id(**spec), message(*headers))
    return finding


# --- the Purported Responsible Address (RFC 4407 §2) ---------------------------------------


def pra(*headers: tuple[str, str]) -> tuple[str | None, str | None]:
    found = purported_responsible_address(headers)
    return found.address, found.header


def test_the_from_address_is_the_pra_of_a_plain_message() -> None:
    assert pra(("From", "Ann <ann@shop.example>")) == ("ann@shop.example", "From")


def test_a_sender_header_outranks_from() -> None:
    headers = [("From", "ann@shop.example"), ("Sender", "<list@lists.example>")]
    assert pra(*headers) == ("list@lists.example", "Sender")


def test_the_first_resent_from_outranks_sender_and_from() -> None:
    headers = [
        ("Resent-From", "fwd@forwarder.example"),
        ("Received", "from a by b"),
        ("Resent-From", "older@forwarder.example"),
        ("Sender", "list@lists.example"),
        ("From", "ann@shop.example"),
    ]
    assert pra(*headers) == ("fwd@forwarder.example", "Resent-From")


def test_the_resent_sender_of_the_newest_resent_block_is_the_pra() -> None:
    headers = [
        ("Resent-From", "boss@forwarder.example"),
        ("Resent-Sender", "assistant@forwarder.example"),
        ("Received", "from a by b"),
        ("From", "ann@shop.example"),
    ]
    assert pra(*headers) == ("assistant@forwarder.example", "Resent-Sender")


def test_a_resent_sender_of_an_older_resent_block_loses_to_the_newest_resent_from() -> None:
    headers = [
        ("Resent-From", "newest@forwarder.example"),
        ("Received", "from a by b"),
        ("Resent-From", "older@forwarder.example"),
        ("Resent-Sender", "older-assistant@forwarder.example"),
        ("From", "ann@shop.example"),
    ]
    assert pra(*headers) == ("newest@forwarder.example", "Resent-From")


def test_a_return_path_also_ends_a_resent_block() -> None:
    headers = [
        ("Resent-From", "newest@forwarder.example"),
        ("Return-Path", "<bounce@forwarder.example>"),
        ("Resent-Sender", "older@forwarder.example"),
    ]
    assert pra(*headers) == ("newest@forwarder.example", "Resent-From")


def test_empty_resent_headers_are_skipped() -> None:
    headers = [("Resent-Sender", "  "), ("Resent-From", ""), ("From", "ann@shop.example")]
    assert pra(*headers) == ("ann@shop.example", "From")


@pytest.mark.parametrize(
    ("headers", "problem"),
    [
        ([("From", "a@one.example"), ("From", "b@two.example")], "2 From headers"),
        ([("Sender", "a@one.example"), ("Sender", "b@two.example")], "2 Sender headers"),
        ([("From", "a@one.example, b@two.example")], "exactly one valid mailbox"),
        ([("From", "Ann <ann@>")], "exactly one valid mailbox"),
        ([("From", "ann")], "exactly one valid mailbox"),
        ([("From", "undisclosed-recipients:;")], "exactly one valid mailbox"),
        ([("Sender", "a@one.example, b@two.example"), ("From", "c@three.example")], "Sender"),
        ([("To", "bob@corp.example")], "no From header"),
    ],
)
def test_a_message_without_a_single_responsible_mailbox_has_no_pra(
    headers: list[tuple[str, str]], problem: str
) -> None:
    found = purported_responsible_address(headers)
    assert found.address is None
    assert found.problem is not None and problem in found.problem


def test_an_internationalized_pra_domain_is_looked_up_as_a_labels() -> None:
    assert pra(("From", "ann@bücher.example")) == ("ann@xn--bcher-kva.example", "From")
    assert pra(("From", "ann@b\udcfccher.example"))[0] is None  # raw 8-bit, not UTF-8


def test_a_folded_header_is_unfolded_before_parsing() -> None:
    assert pra(("From", "Ann Example\r\n <ann@shop.example>")) == ("ann@shop.example", "From")


# --- results, outcomes and replies -----------------------------------------------------------


async def test_a_pra_allowed_by_its_spf2_pra_record_passes_and_is_recorded() -> None:
    finding = await pra_finding("From: Ann <ann@pra.example>")
    assert finding.code == "SENDERID_PASS"
    assert finding.action is Action.NONE
    assert finding.category is Category.AUTHENTICATION
    assert finding.stage is Stage.DATA
    assert finding.detail["pra"] == "ann@pra.example"
    assert finding.detail["pra_header"] == "From"
    assert finding.detail["record"] == f"spf2.0/pra ip4:{IP} -all"
    assert finding.detail["mechanism"] == f"ip4:{IP}"


async def test_a_record_for_both_scopes_covers_the_pra() -> None:
    assert (await pra_finding("From: ann@both.example")).code == "SENDERID_PASS"


async def test_a_fail_is_refused_with_exchanges_sender_id_reply() -> None:
    finding = await pra_finding("From: ann@denied.example")
    assert finding.code == "SENDERID_FAIL"
    assert finding.action is Action.REJECT
    assert finding.reply == EXCHANGE_REJECT
    assert finding.reason == (
        f"The sending server {IP} is not allowed to send mail for denied.example, the domain "
        "of the sender shown to the reader (From header): its Sender ID record says fail (-all)."
    )


async def test_the_sender_header_is_checked_rather_than_from() -> None:
    finding = await pra_finding("From: ann@denied.example", "Sender: list@pra.example")
    assert finding.code == "SENDERID_PASS"
    assert finding.detail["pra_header"] == "Sender"


async def test_softfail_is_recorded_and_a_profile_may_score_it() -> None:
    assert (await pra_finding("From: ann@soft.example")).action is Action.NONE
    scored = await pra_finding("From: ann@soft.example", on={"softfail": {"score": 2.0}})
    assert (scored.code, scored.action, scored.score) == ("SENDERID_SOFTFAIL", Action.SCORE, 2.0)


async def test_a_dns_timeout_defers_with_451_4_4_3() -> None:
    finding = await pra_finding("From: ann@slow.example")
    assert finding.code == "SENDERID_TEMPERROR"
    assert finding.action is Action.TEMPFAIL
    assert finding.reply is not None
    assert (finding.reply.code, finding.reply.enhanced) == (451, "4.4.3")


async def test_two_records_for_the_pra_scope_are_a_permerror() -> None:
    finding = await pra_finding("From: ann@twice.example")
    assert finding.code == "SENDERID_PERMERROR"
    assert finding.action is Action.NONE


async def test_an_include_in_a_sender_id_record_reads_the_included_domains_pra_record() -> None:
    assert (await pra_finding("From: ann@include.example")).code == "SENDERID_PASS"


async def test_a_pra_domain_that_does_not_exist_fails_unless_the_profile_says_none() -> None:
    missing = await pra_finding("From: ann@gone.example")
    assert missing.code == "SENDERID_FAIL"
    assert missing.reply == EXCHANGE_REJECT
    assert "does not exist" in missing.reason
    lenient = await pra_finding("From: ann@gone.example", pra_nxdomain="none")
    assert lenient.code == "SENDERID_NONE"


async def test_a_pra_domain_with_no_sender_id_or_spf_record_is_none() -> None:
    finding = await pra_finding("From: ann@nosenderid.example")
    assert finding.code == "SENDERID_NONE"
    assert finding.action is Action.NONE


async def test_a_message_without_a_pra_is_a_permerror_or_what_no_pra_says() -> None:
    two_froms = ("From: a@pra.example", "From: b@pra.example")
    resolver = resolver_for(ZONE)
    (finding,) = await at_data(sender_id(), message(*two_froms), resolver=resolver)
    assert finding.code == "SENDERID_PERMERROR"
    assert finding.detail["pra"] is None
    assert finding.detail["pra_problem"] == "the message has 2 From headers"
    assert finding.reason == (
        "The sender shown to the reader cannot be determined: the message has 2 From headers."
    )
    assert resolver.questions == []
    strict = await pra_finding(*two_froms, no_pra="fail")
    assert (strict.code, strict.reply) == ("SENDERID_FAIL", EXCHANGE_REJECT)


# --- the v=spf1 fallback (RFC 4406 §3.4) ------------------------------------------------------


async def test_with_the_fallback_a_v_spf1_record_is_read_for_the_pra() -> None:
    allowed = await pra_finding("From: ann@spf1only.example")
    assert (allowed.code, allowed.detail["record"]) == ("SENDERID_PASS", f"v=spf1 ip4:{IP} -all")
    denied = await pra_finding("From: ann@spf1deny.example")
    assert (denied.code, denied.reply) == ("SENDERID_FAIL", EXCHANGE_REJECT)


async def test_without_the_fallback_a_v_spf1_record_means_none() -> None:
    finding = await pra_finding("From: ann@spf1deny.example", spf1_fallback=False)
    assert finding.code == "SENDERID_NONE"
    assert finding.detail["spf1_fallback"] is False


async def test_an_spf2_pra_record_is_preferred_over_v_spf1() -> None:
    assert (await pra_finding("From: ann@preferred.example")).code == "SENDERID_PASS"


async def test_any_spf2_record_stops_the_fallback_even_of_another_scope() -> None:
    finding = await pra_finding("From: ann@mfromonly.example")
    assert finding.code == "SENDERID_NONE"


# --- the mfrom scope ----------------------------------------------------------------------------


async def test_the_mfrom_scope_checks_the_envelope_sender_under_its_own_codes() -> None:
    flt = sender_id(scopes=["pra", "mfrom"])
    raw = message("From: ann@denied.example")
    findings = await at_data(flt, raw, mail_from="bounce@mfrom.example")
    assert [f.code for f in findings] == ["SENDERID_FAIL", "SENDERID_MFROM_PASS"]
    assert findings[1].detail["scope"] == "mfrom"
    assert findings[1].detail["domain"] == "mfrom.example"
    assert "pra" not in findings[1].detail
    denied = await at_data(sender_id(scopes=["mfrom"]), raw, mail_from="x@spf1deny.example")
    assert [(f.code, f.reply) for f in denied] == [("SENDERID_MFROM_FAIL", EXCHANGE_REJECT)]


async def test_the_mfrom_scope_reads_spf2_mfrom_and_not_pra_only_records() -> None:
    flt = sender_id(scopes=["mfrom"])
    findings = await at_data(flt, message("From: a@b.example"), mail_from="x@pra.example")
    assert [f.code for f in findings] == ["SENDERID_MFROM_NONE"]


async def test_a_missing_mail_from_domain_is_none_in_the_mfrom_scope() -> None:
    flt = sender_id(scopes=["mfrom"])
    findings = await at_data(flt, message("From: a@b.example"), mail_from="x@gone.example")
    assert [f.code for f in findings] == ["SENDERID_MFROM_NONE"]


async def test_without_a_resolver_the_check_is_a_temperror() -> None:
    lookups = Lookups(resolver=None)
    (finding,) = await at_data(sender_id(), message("From: a@pra.example"), lookups=lookups)
    assert finding.code == "SENDERID_TEMPERROR"
    assert finding.detail["explanation"] == "no DNS resolver is available"


async def test_by_default_dns_has_no_data_so_sender_id_is_not_judged_and_never_refuses() -> None:
    # Lookups() is offline DNS without fixtures: no data is not "the domain does not exist".
    lookups = Lookups()
    (finding,) = await at_data(sender_id(), message("From: a@pra.example"), lookups=lookups)
    assert finding.code == "SENDERID_NONE"
    assert finding.unjudged is Unjudged.NO_DNS_DATA
    assert finding.detail["dns_names"] == ["pra.example"]
    assert (finding.action, finding.reply) == (Action.NONE, None)
    assert "does not exist" not in finding.reason
    assert "--dns-zone FILE" in finding.reason and "--dns live" in finding.reason


async def test_a_pra_domain_that_dns_says_does_not_exist_still_fails() -> None:
    (finding,) = await at_data(sender_id(), message("From: a@gone.example"))
    assert finding.code == "SENDERID_FAIL"
    assert finding.unjudged is None
    assert "that domain does not exist" in finding.reason


def test_the_spec_refuses_unknown_scopes_and_keys() -> None:
    with pytest.raises(pydantic.ValidationError):
        SenderIdSpec.model_validate({"kind": "sender_id", "name": "sid", "scopes": ["helo"]})
    with pytest.raises(pydantic.ValidationError):
        SenderIdSpec.model_validate({"kind": "sender_id", "name": "sid", "scopes": ["pra", "pra"]})
    with pytest.raises(pydantic.ValidationError):
        SenderIdSpec.model_validate({"kind": "sender_id", "name": "sid", "fallback": True})
    with pytest.raises(pydantic.ValidationError):
        SenderIdSpec.model_validate(
            {"kind": "sender_id", "name": "sid", "pra_nxdomain": "permerror"}
        )


# --- over SMTP -------------------------------------------------------------------------------


async def test_legacy_sender_id_with_offline_dns_and_no_fixture_accepts_mail_over_smtp(
    start_server: StartServer,
) -> None:
    # The default DNS mode (offline, no fixture) must not read "no data" as "the domain does
    # not exist": Exchange's Sender ID agent would have refused nothing it could not look up.
    app = await start_server(profile="legacy-sender-id")
    msg = EmailMessage()
    msg["From"] = "Shop <news@shop.example>"
    msg["To"] = "bob@corp.example"
    msg["Subject"] = "Your receipt"
    msg.set_content("Thank you for your order.\n")
    async with aio_client(app) as client:
        await client.mail("bounce@shop.example")
        await client.rcpt("bob@corp.example")
        answer = await client.data(msg.as_bytes())
    assert answer.code == 250
    assert app.store is not None
    (record,) = await app.store.list(Query(limit=1))
    assert record.data["verdict"] == "accept"
    sender_id_finding = next(f for f in record.data["findings"] if f["code"] == "SENDERID_NONE")
    assert sender_id_finding["unjudged"] == "no-dns-data"
    assert sender_id_finding["detail"]["dns_names"] == ["shop.example"]


# --- remembered results (SpfMemo, as the spf filter's) ----------------------------------------


class StepClock:
    def __init__(self) -> None:
        self.t = 1_000_000.0

    def now(self) -> float:
        return self.t


async def test_a_repeated_pra_and_client_reuse_the_result_until_its_ttl_runs_out() -> None:
    resolver, clock = resolver_for(ZONE), StepClock()
    lookups = Lookups(resolver=resolver, clock=clock)
    flt = sender_id(scopes=["pra", "mfrom"])
    raw = message("From: a@pra.example")
    first = await at_data(flt, raw, mail_from="b@mfrom.example", lookups=lookups)
    clock.t += 299
    again = await at_data(flt, raw, mail_from="b@mfrom.example", lookups=lookups)
    assert first == again
    assert [f.code for f in first] == ["SENDERID_PASS", "SENDERID_MFROM_PASS"]
    assert sorted(resolver.questions) == [("mfrom.example", "TXT"), ("pra.example", "TXT")]
    clock.t += 1  # FakeResolver's TTL is 300 s
    assert await at_data(flt, raw, mail_from="b@mfrom.example", lookups=lookups) == first
    assert len(resolver.questions) == 4


async def test_a_pra_of_another_case_is_another_question_for_the_memo() -> None:
    resolver, clock = resolver_for(ZONE), StepClock()
    lookups = Lookups(resolver=resolver, clock=clock)
    flt = sender_id()
    await at_data(flt, message("From: a@pra.example"), lookups=lookups)
    await at_data(flt, message("From: A@pra.example"), lookups=lookups)
    assert resolver.questions == [("pra.example", "TXT"), ("pra.example", "TXT")]
