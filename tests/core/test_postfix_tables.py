"""Postfix lookup tables: each lookup answers what ``postmap -q`` answers for the same table."""

from __future__ import annotations

from pathlib import Path

import pytest

from sinkd.core.postfix_tables import (
    TableEntry,
    TableMatch,
    TableSpec,
    TableType,
    compile_table,
    split_pattern,
)
from sinkd.core.schema import CompileError
from tests.conftest import require_executable
from tests.support.postfix_tables import postmap_query, table_spec

ACCESS = """\
    # sender access, as access(5) writes it
    spam@blocked.example   REJECT
    blocked.example        550 5.7.0 go away
    Mixed.Example          OK
    postmaster@            DUNNO
    spam@blocked.example   OK
    """

CIDR = """\
    192.0.2.1              REJECT one host
    192.0.2.0/24           OK
    10.0.0.0/8             DUNNO
    [2001:db8::1]          REJECT v6 host
    2001:db8::/32          550 5.7.1 v6 net
    !198.51.100.0/24       DEFER not from there
    """

REGEXP = """\
    /^(.*)@blocked\\.example$/   REJECT user $1 is blocked
    /^postmaster@/               OK
    /^([[:digit:]]+)@/           550 5.7.1 numeric ${1}x
    /^CaseSensitive@/i           REJECT case sensitive
    /^([[:alpha:]]+)\\.([a-z]+)@(x)/  REJECT $2-$1-$$
    !/@/                         REJECT no domain
    if /@inner\\.example$/
    /^a/                         REJECT inner a
    if !/^ab/
    /^a/                         REJECT inner not ab
    endif
    endif
    /^a/                         OK outer a
    """

PCRE = """\
    /^(?!owner-)(.*)-outgoing@(.*)/  550 Use ${1}@${2} instead
    /^[[:alnum:]]+\\d@digits\\.example$/  REJECT ends in a digit
    /^CASE@/i                    REJECT exact case
    /^x.y@/                      OK dotall
    /^(?<user>[a-z]+)@named\\.example$/  REJECT named $1
    /^A/A                        OK anchored
    if /@cond\\.example$/
    /^b/                         REJECT b in cond
    endif
    """

REGEXP_EDGES = """\
    /^[]x]+@/                    REJECT bracket starts with ]
    /^a\\.b[^]]@/                REJECT negated bracket with ]
    /\\<word\\>/                  REJECT word boundaries
    /^(ab|a)(c)?@/               REJECT alt $1 $2
    /^UPPER@/i                   REJECT case flag toggled off
    /^[[:upper:]][[:lower:]]+@/  REJECT posix classes
    /x{2,3}@/                    REJECT interval
    /\\$money@/                    REJECT escaped dollar
    """

PCRE_EDGES = """\
    /^a b@/x                     REJECT extended ignores spaces
    /^dot.all@/s                 REJECT dotall toggled off
    /^anch/A                     REJECT anchored
    /^end@x\\.example$/E           REJECT dollar end only
    /^(?<n>[0-9]+)-(\\w+)@/       REJECT named $1 and $2
    /^[^@]*\\d{3}@/                REJECT three digits
    /\\bword\\b/                   REJECT word boundary
    """

CIDR_EDGES = """\
    if 10.0.0.0/8
    !10.1.0.0/16                 REJECT in 10/8 outside 10.1/16
    endif
    10.1.2.3                     OK exact host
    0.0.0.0/0                    DUNNO any v4
    ::/0                         DUNNO any v6
    """

CASES: list[tuple[TableType, str, str]] = [
    ("regexp", REGEXP_EDGES, "]x]@a.example"),
    ("regexp", REGEXP_EDGES, "a.bq@a.example"),
    ("regexp", REGEXP_EDGES, "a.b]@a.example"),
    ("regexp", REGEXP_EDGES, "some word here"),
    ("regexp", REGEXP_EDGES, "swordfish"),
    ("regexp", REGEXP_EDGES, "abc@a.example"),
    ("regexp", REGEXP_EDGES, "ab@a.example"),
    ("regexp", REGEXP_EDGES, "UPPER@a.example"),
    ("regexp", REGEXP_EDGES, "upper@a.example"),
    ("regexp", REGEXP_EDGES, "Mixed@a.example"),
    ("regexp", REGEXP_EDGES, "xxx@a.example"),
    ("regexp", REGEXP_EDGES, "$money@a.example"),
    ("pcre", PCRE_EDGES, "ab@x.example"),
    ("pcre", PCRE_EDGES, "a b@x.example"),
    ("pcre", PCRE_EDGES, "dot\nall@x.example"),
    ("pcre", PCRE_EDGES, "dotXall@x.example"),
    ("pcre", PCRE_EDGES, "anchor@x.example"),
    ("pcre", PCRE_EDGES, "end@x.example"),
    ("pcre", PCRE_EDGES, "123-abc@x.example"),
    ("pcre", PCRE_EDGES, "zz999@x.example"),
    ("pcre", PCRE_EDGES, "a word"),
    ("cidr", CIDR_EDGES, "10.2.3.4"),
    ("cidr", CIDR_EDGES, "10.1.2.3"),
    ("cidr", CIDR_EDGES, "10.1.9.9"),
    ("cidr", CIDR_EDGES, "192.0.2.1"),
    ("cidr", CIDR_EDGES, "2001:db8::1"),
    ("hash", ACCESS, "spam@blocked.example"),
    ("hash", ACCESS, "SPAM@Blocked.Example"),
    ("hash", ACCESS, "blocked.example"),
    ("hash", ACCESS, "mixed.example"),
    ("hash", ACCESS, "postmaster@"),
    ("hash", ACCESS, "nobody@blocked.example"),
    ("texthash", ACCESS, "spam@blocked.example"),
    ("texthash", ACCESS, "MIXED.EXAMPLE"),
    ("texthash", ACCESS, "other.example"),
    ("cidr", CIDR, "192.0.2.1"),
    ("cidr", CIDR, "192.0.2.77"),
    ("cidr", CIDR, "10.1.2.3"),
    ("cidr", CIDR, "2001:db8::1"),
    ("cidr", CIDR, "2001:db8:0:0::2"),
    ("cidr", CIDR, "2001:0db8::0002"),
    ("cidr", CIDR, "203.0.113.9"),
    ("cidr", CIDR, "198.51.100.9"),
    ("regexp", REGEXP, "joe@blocked.example"),
    ("regexp", REGEXP, "JOE@BLOCKED.EXAMPLE"),
    ("regexp", REGEXP, "postmaster@x.example"),
    ("regexp", REGEXP, "12345@x.example"),
    ("regexp", REGEXP, "CaseSensitive@x.example"),
    ("regexp", REGEXP, "casesensitive@x.example"),
    ("regexp", REGEXP, "first.last@x.example"),
    ("regexp", REGEXP, "nodomain"),
    ("regexp", REGEXP, "apple@inner.example"),
    ("regexp", REGEXP, "abba@inner.example"),
    ("regexp", REGEXP, "abba@outer.example"),
    ("regexp", REGEXP, "zed@outer.example"),
    ("pcre", PCRE, "list-outgoing@lists.example"),
    ("pcre", PCRE, "owner-list-outgoing@lists.example"),
    ("pcre", PCRE, "abc7@digits.example"),
    ("pcre", PCRE, "abc@digits.example"),
    ("pcre", PCRE, "CASE@x.example"),
    ("pcre", PCRE, "case@x.example"),
    ("pcre", PCRE, "xzy@x.example"),
    ("pcre", PCRE, "joe@named.example"),
    ("pcre", PCRE, "Alpha@x.example"),
    ("pcre", PCRE, "bob@cond.example"),
    ("pcre", PCRE, "bob@other.example"),
]


def grouped(cases: list[tuple[TableType, str, str]]) -> list[tuple[TableType, str, list[str]]]:
    """The cases by table, in order: one postmap run answers all of a table's keys."""
    groups: dict[tuple[TableType, str], list[str]] = {}
    for type_, text, key in cases:
        groups.setdefault((type_, text), []).append(key)
    return [(type_, text, keys) for (type_, text), keys in groups.items()]


@pytest.mark.parametrize(("type_", "text", "keys"), grouped(CASES))
def test_a_lookup_answers_what_postmap_answers(
    tmp_path: Path, type_: TableType, text: str, keys: list[str]
) -> None:
    require_executable("postmap", "postfix")
    if type_ == "pcre":
        require_executable("postmap", "postfix-pcre")
    expected = postmap_query(tmp_path, type_, text, keys)
    table = compile_table(table_spec(type_, text), ("tables", "t"))
    found = {key: (match.value if (match := table.lookup(key)) else None) for key in keys}
    assert found == expected


def test_fixed_string_tables_fold_case_and_keep_the_first_of_duplicate_keys() -> None:
    table = compile_table(table_spec("hash", ACCESS, "sender_access"), ("t",))
    assert table.indexed and not table.cidr
    assert table.lookup("Spam@Blocked.EXAMPLE") == TableMatch("REJECT", "sender_access:2")
    assert table.lookup("blocked.example") == TableMatch("550 5.7.0 go away", "sender_access:3")
    assert table.lookup("example") is None


def test_a_static_table_answers_every_key_with_its_one_value() -> None:
    spec = TableSpec(type="static", entries=(TableEntry(key="*", value="OK", source="main.cf:3"),))
    table = compile_table(spec, ("t",))
    assert table.indexed
    assert table.lookup("anything@anywhere.example") == TableMatch("OK", "main.cf:3")


def test_cidr_tables_match_the_address_only_first_match_in_file_order() -> None:
    table = compile_table(table_spec("cidr", CIDR, "client_cidr"), ("t",))
    assert table.cidr and not table.indexed
    assert table.lookup("192.0.2.1") == TableMatch("REJECT one host", "client_cidr:1")
    assert table.lookup("192.0.2.2") == TableMatch("OK", "client_cidr:2")
    assert table.lookup("not-an-address.example") == TableMatch(
        "DEFER not from there", "client_cidr:6"
    )


def test_regexp_substitutes_groups_and_names_the_matching_line() -> None:
    table = compile_table(table_spec("regexp", REGEXP, "sender_re"), ("t",))
    assert table.lookup("first.last@x.example") == TableMatch("REJECT last-first-$", "sender_re:5")
    assert table.lookup("apple@inner.example") == TableMatch("REJECT inner a", "sender_re:8")


@pytest.mark.parametrize(
    ("type_", "key", "message"),
    [
        ("regexp", "/a(/", "bad pattern"),
        ("regexp", "/(?i)a/", "not POSIX extended syntax"),
        ("regexp", "/a/x", "basic regular expressions"),
        ("regexp", "/a/q", "unknown regexp flag"),
        ("regexp", "/[[:nope:]]/", "unknown character class"),
        ("pcre", "/a/U", "ungreedy"),
        ("pcre", "/\\Ka/", "\\K"),
        ("pcre", "/a", "no closing delimiter"),
        ("cidr", "192.0.2.1/24", "not a cidr pattern"),
        ("cidr", "mail.example", "not a cidr pattern"),
    ],
)
def test_an_untranslatable_pattern_is_a_compile_error_at_its_entry(
    type_: TableType, key: str, message: str
) -> None:
    spec = TableSpec(
        type=type_,
        entries=(
            TableEntry(key="/ok/" if type_ != "cidr" else "10.0.0.0/8", value="OK"),
            TableEntry(key=key, value="REJECT"),
        ),
    )
    with pytest.raises(CompileError) as raised:
        compile_table(spec, ("filters", 0, "tables", "t"))
    assert raised.value.loc == ("filters", 0, "tables", "t", "entries", 1, "key")
    assert message in raised.value.message


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("REJECT $3", "out of range"),
        ("REJECT $1abc", "non-numeric"),
        ("REJECT ${user}", "non-numeric"),
        ("REJECT costs $ 5", "empty macro name"),
    ],
)
def test_a_bad_substitution_is_a_compile_error_as_postfix_skips_the_rule(
    value: str, message: str
) -> None:
    spec = TableSpec(type="regexp", entries=(TableEntry(key="/(a)(b)/", value=value),))
    with pytest.raises(CompileError) as raised:
        compile_table(spec, ("t",))
    assert raised.value.loc == ("t", "entries", 0, "value")
    assert message in raised.value.message


def test_a_negated_pattern_cannot_substitute() -> None:
    spec = TableSpec(type="pcre", entries=(TableEntry(key="!/(a)/", value="REJECT $1"),))
    with pytest.raises(CompileError, match="negative match"):
        compile_table(spec, ("t",))


def test_split_pattern_ends_at_the_first_unescaped_delimiter_and_its_flags() -> None:
    assert split_pattern("/a\\/b c/i REJECT x y") == ("/a\\/b c/i", "REJECT x y")
    assert split_pattern("! /x/ OK") == ("! /x/", "OK")
    assert split_pattern("~^[[:alnum:]+/]{60,}$~ OK") == ("~^[[:alnum:]+/]{60,}$~", "OK")
