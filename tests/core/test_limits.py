"""The header cut on raw octets: where the header block ends and what each scope keeps."""

from __future__ import annotations

from sinkd.core.limits import DEFAULT_SCAN_LIMITS, HeaderCut, cut_header, header_extent

BODY = b"\r\nbody line\r\n"


def test_the_header_block_ends_before_the_empty_line() -> None:
    assert header_extent(b"A: 1\r\nB: 2\r\n\r\nbody\r\n") == len(b"A: 1\r\nB: 2\r\n")
    assert header_extent(b"A: 1\nB: 2\n\nbody\n") == len(b"A: 1\nB: 2\n")


def test_a_message_of_header_lines_only_is_all_header() -> None:
    assert header_extent(b"A: 1\r\nB: 2\r\n") == len(b"A: 1\r\nB: 2\r\n")


def test_a_message_starting_with_an_empty_line_has_no_header() -> None:
    assert header_extent(b"\r\nbody\r\n") == 0


def test_the_default_limits_are_spamassassins_and_cut_no_header() -> None:
    assert DEFAULT_SCAN_LIMITS.body_part_scan_size == 50_000
    assert DEFAULT_SCAN_LIMITS.rawbody_part_scan_size == 500_000
    assert DEFAULT_SCAN_LIMITS.header_size_limit is None


def test_a_header_block_within_the_limit_is_returned_as_it_is() -> None:
    raw = b"Subject: hello\r\nX-Long: " + b"a" * 50 + b"\r\n" + BODY
    cut, cuts = cut_header(raw, 1000, "field")
    assert cut is raw
    assert cuts == ()


def test_a_field_over_the_limit_keeps_its_first_octets_and_the_others_stay_whole() -> None:
    long_field = b"X-Long: " + b"a" * 100 + b"\r\n " + b"b" * 100 + b"\r\n"
    raw = b"Subject: hello\r\n" + long_field + b"To: bob@corp.example\r\n" + BODY
    cut, cuts = cut_header(raw, 60, "field")
    assert cut == b"Subject: hello\r\nX-Long: " + b"a" * 52 + b"\r\nTo: bob@corp.example\r\n" + BODY
    assert cuts == (HeaderCut("X-Long", len(long_field) - 2, 60),)  # its last CRLF not counted


def test_the_continuation_lines_past_the_limit_are_discarded_with_the_field_kept() -> None:
    field = b"Received: from a\r\n" + b"".join(b"\tby hop%d\r\n" % i for i in range(50))
    raw = field + b"Subject: hi\r\n" + BODY
    cut, [what] = cut_header(raw, 40, "field")
    assert cut.startswith(b"Received: from a\r\n\tby hop0\r\n\tby")
    assert b"hop49" not in cut
    assert b"Subject: hi\r\n" + BODY in cut
    assert what.name == "Received"


def test_the_value_scope_counts_only_what_follows_the_colon() -> None:
    raw = b"X-Name-Is-Long: " + b"v" * 10 + b"\r\n" + b"Subject: " + b"s" * 30 + b"\r\n" + BODY
    cut, cuts = cut_header(raw, 20, "value")
    assert b"X-Name-Is-Long: " + b"v" * 10 + b"\r\n" in cut  # 11 octets of value: kept whole
    assert b"Subject: " + b"s" * 19 + b"\r\n" in cut  # 20 octets of value: " " and 19 s
    assert [c.name for c in cuts] == ["Subject"]


def test_the_block_scope_keeps_the_whole_lines_that_fit() -> None:
    lines = b"".join(b"X-%02d: value\r\n" % i for i in range(10))  # 13 octets each
    cut, cuts = cut_header(lines + BODY, 40, "block")
    assert cut == lines[:39] + BODY
    assert cuts == (HeaderCut(None, len(lines), 39),)


def test_lf_only_messages_are_cut_with_lf_line_breaks() -> None:
    raw = b"Subject: " + b"s" * 100 + b"\nTo: bob@corp.example\n\nbody\n"
    cut, _ = cut_header(raw, 30, "field")
    assert cut == b"Subject: " + b"s" * 21 + b"\nTo: bob@corp.example\n\nbody\n"


def test_a_field_cut_once_is_within_the_limit_when_cut_again() -> None:
    raw = b"Subject: " + b"s" * 300 + b"\r\nTo: bob@corp.example\r\n\r\nbody\r\n"
    once, _ = cut_header(raw, 100, "field")
    again, cuts = cut_header(once, 100, "field")
    assert again is once
    assert cuts == ()
