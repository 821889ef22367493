"""XCLIENT's parsing (``sinkd.server.xclient``) without a server: what each argument becomes,
and which arguments refuse the whole command. The conversation around it (503 inside a
transaction, the new greeting, the identity recorded) is tested over SMTP in test_smtp.py."""

from __future__ import annotations

import pytest

from sinkd.server import xclient
from sinkd.server.xclient import XclientAttributes

NONE = XclientAttributes()


def test_every_attribute_sinkd_judges_by_is_taken_xtext_decoded() -> None:
    parsed = xclient.parse("ADDR=192.0.2.7 NAME=mx.example HELO=mx+2Eexample LOGIN=alice", NONE)
    assert parsed == XclientAttributes(
        addr="192.0.2.7", name="mx.example", helo="mx.example", login="alice"
    )


def test_attribute_names_are_case_insensitive_and_later_values_win() -> None:
    assert xclient.parse("addr=192.0.2.7 Addr=192.0.2.8", NONE) == XclientAttributes(
        addr="192.0.2.8"
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("IPV6:2001:DB8::1", "2001:db8::1"),
        ("ipv6:2001:db8:0::1", "2001:db8::1"),
        ("2001:db8::1", "2001:db8::1"),
        ("192.0.2.1", "192.0.2.1"),
    ],
)
def test_an_address_is_taken_in_either_ipv6_form_and_canonicalised(
    value: str, expected: str
) -> None:
    assert xclient.address(value) == expected


def test_an_address_that_is_no_ip_is_none() -> None:
    assert xclient.address("mx.example") is None


def test_unavailable_values_clear_what_an_earlier_xclient_set() -> None:
    before = XclientAttributes(addr="192.0.2.7", name="mx.example", helo="mx", login="alice")
    parsed = xclient.parse(
        "ADDR=[UNAVAILABLE] NAME=[TEMPUNAVAIL] HELO=[unavailable] LOGIN=[UNAVAILABLE]", before
    )
    assert parsed == NONE


def test_attributes_not_given_keep_their_earlier_values() -> None:
    before = XclientAttributes(addr="192.0.2.7", login="alice")
    assert xclient.parse("NAME=mx.example", before) == XclientAttributes(
        addr="192.0.2.7", name="mx.example", login="alice"
    )


def test_advertised_attributes_sinkd_does_not_judge_by_are_accepted_and_ignored() -> None:
    assert xclient.parse("PROTO=ESMTP PORT=25 DESTADDR=192.0.2.1 DESTPORT=25", NONE) == NONE


@pytest.mark.parametrize(
    ("arg", "reply"),
    [
        (None, "501 5.5.4 Syntax: XCLIENT attribute=value [attribute=value ...]"),
        ("", "501 5.5.4 Syntax: XCLIENT attribute=value [attribute=value ...]"),
        ("FOO=bar", "501 5.5.4 Bad XCLIENT attribute name: FOO"),
        ("ADDR", "501 5.5.4 Bad XCLIENT attribute name: ADDR"),
        ("ADDR=not-an-ip", "501 5.5.4 Bad XCLIENT ADDR syntax: not-an-ip"),
        ("NAME=a+20b", "501 5.5.4 Bad XCLIENT NAME syntax"),
        ("HELO=a+7Fb", "501 5.5.4 Bad XCLIENT HELO syntax"),
    ],
)
def test_a_bad_argument_is_the_501_reply_that_refuses_the_command(
    arg: str | None, reply: str
) -> None:
    assert xclient.parse(arg, NONE) == reply


def test_a_refused_command_applies_none_of_its_attributes() -> None:
    before = XclientAttributes(addr="192.0.2.7")
    assert isinstance(xclient.parse("NAME=mx.example ADDR=bogus", before), str)
    assert before == XclientAttributes(addr="192.0.2.7")


def test_a_long_bad_attribute_name_is_cut_to_64_characters_in_the_reply() -> None:
    reply = xclient.parse("X" * 200 + "=1", NONE)
    assert reply == "501 5.5.4 Bad XCLIENT attribute name: " + "X" * 64


def test_the_ehlo_keyword_advertises_every_attribute_parse_takes() -> None:
    keyword, *names = xclient.EHLO_KEYWORD.split()
    assert keyword == "XCLIENT"
    assert set(names) == xclient.ATTRIBUTES
