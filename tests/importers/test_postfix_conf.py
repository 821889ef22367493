"""Postfix's configuration syntax as ``sinkd.importers.postfix_conf`` reads it: main.cf logical
lines and ``$name`` expansion (postconf(5)), master.cf services (master(5)), and the text
sources of tables (postmap(1), regexp_table(5), pcre_table(5), cidr_table(5), inline:)."""

from __future__ import annotations

import subprocess
import textwrap
from pathlib import Path

import pytest

from sinkd.errors import PolicyImportError
from sinkd.importers.postfix_conf import (
    Parameters,
    logical_lines,
    parse_indexed,
    parse_inline,
    parse_main_cf,
    parse_master_cf,
    parse_patterns,
    split_list,
    strip_braces,
)
from tests.conftest import require_executable

MAIN = Path("main.cf")


def params(text: str) -> Parameters:
    return Parameters(parse_main_cf(textwrap.dedent(text), MAIN, "main.cf"))


def test_comments_blank_lines_and_continuations_make_logical_lines() -> None:
    lines = logical_lines("# c\n\na = 1,\n    2\n  # inside\n\t3\nb=x # not a comment\n")
    assert [(line.number, line.text) for line in lines] == [
        (3, "a = 1, 2 3"),
        (7, "b=x # not a comment"),
    ]
    assert [lines[0].line_at(at) for at in (0, 7, 9)] == [3, 4, 6]


def test_a_later_definition_overrides_an_earlier_one_with_its_line() -> None:
    found = params("a = 1\nb = 2\na = 3\n")
    assert found.value("a") == "3"
    assert found.origin("a") == "main.cf:3"


def test_a_line_without_an_equals_sign_is_an_error_naming_file_and_line() -> None:
    with pytest.raises(PolicyImportError, match=r"^main\.cf:2: expected 'name = value'") as exc:
        params("a = 1\nnot a setting\n")
    assert exc.value.line == 2


def test_each_word_of_a_continued_list_keeps_its_own_line() -> None:
    found = params(
        """\
        smtpd_recipient_restrictions =
            permit_mynetworks,
            check_sender_access hash:/etc/postfix/sender_access
            reject_unauth_destination
        """
    )
    words = split_list(found.value("smtpd_recipient_restrictions"))
    assert found.word_origins("smtpd_recipient_restrictions", len(words)) == [
        "main.cf:2",
        "main.cf:3",
        "main.cf:3",
        "main.cf:4",
    ]


def test_dollar_names_expand_in_all_three_spellings_and_dollar_dollar_is_a_dollar() -> None:
    found = params("dir = /etc/postfix\na = $dir/x ${dir}/y $(dir)/z $$HOME\n")
    assert found.value("a") == "/etc/postfix/x /etc/postfix/y /etc/postfix/z $HOME"


def test_conditional_expansion_tests_whether_the_parameter_is_empty() -> None:
    found = params("full = yes\nempty =\na = ${full?on} ${empty?on} ${full:off} ${empty:off}\n")
    assert found.value("a").split() == ["on", "off"]
    grouped = params("full = yes\na = ${full?{a, b}}\n")
    assert grouped.value("a") == "a, b"


def test_unset_names_take_postfix_3_7_defaults_and_unknown_names_are_empty() -> None:
    found = params("myhostname = mx.example.com\na = $nosuch.\n")
    assert found.value("mydestination") == "mx.example.com, localhost.localdomain, localhost"
    assert found.value("a") == "."
    assert found.origin("message_size_limit") == "postconf -d (Postfix 3.7.11) message_size_limit"
    assert found.value("mime_header_checks") == ""


def test_compatibility_level_decides_the_defaults_that_depend_on_it() -> None:
    old = params("mydestination = a.example\n")
    assert old.value("relay_domains") == "a.example"
    assert old.value("smtpd_relay_restrictions") == ""
    new = params("compatibility_level = 3.6\nmydestination = a.example\n")
    assert new.value("relay_domains") == ""
    assert new.value("smtpd_relay_restrictions") == (
        "permit_mynetworks, permit_sasl_authenticated, defer_unauth_destination"
    )


def test_reply_templates_are_left_for_smtpd_to_expand() -> None:
    found = params("default_rbl_reply = $rbl_code go away $rbl_domain\n")
    assert found.value("default_rbl_reply") == "$rbl_code go away $rbl_domain"


def test_a_name_that_refers_to_itself_is_an_error() -> None:
    with pytest.raises(PolicyImportError, match="refers to itself"):
        params("a = $b\nb = $a\n").value("a")


def test_lists_split_on_commas_and_whitespace_keeping_brace_groups_whole() -> None:
    assert split_list("a, b c,,d\n e") == ["a", "b", "c", "d", "e"]
    assert split_list("check_client_access inline:{ 1.2.3.4=REJECT, 5.6.7.8=OK }, x") == [
        "check_client_access",
        "inline:{ 1.2.3.4=REJECT, 5.6.7.8=OK }",
        "x",
    ]
    assert (
        strip_braces("{ inet:127.0.0.1:9998, timeout=10s }") == "inet:127.0.0.1:9998, timeout=10s"
    )


def test_master_cf_services_keep_their_o_overrides_in_both_spellings() -> None:
    services = parse_master_cf(
        textwrap.dedent(
            """\
            # service type private unpriv chroot wakeup maxproc command
            smtp      inet  n       -       y       -       -       smtpd
              -o smtpd_delay_reject=no
              -o { smtpd_helo_restrictions = reject_invalid_helo_hostname, permit }
            policyd-spf  unix  -       n       n       -       0       spawn
                user=policyd-spf argv=/usr/bin/policyd-spf
            """
        ),
        Path("master.cf"),
        "master.cf",
    )
    smtp, spf = services
    assert (smtp.name, smtp.type, smtp.command) == ("smtp", "inet", "smtpd")
    assert [(o.name, o.value, o.origin) for o in smtp.overrides] == [
        ("smtpd_delay_reject", "no", "master.cf:2 (-o of smtp inet)"),
        (
            "smtpd_helo_restrictions",
            "reject_invalid_helo_hostname, permit",
            "master.cf:2 (-o of smtp inet)",
        ),
    ]
    assert spf.command == "spawn"
    assert "argv=/usr/bin/policyd-spf" in spf.arguments


def test_a_master_cf_line_with_too_few_fields_is_an_error_naming_its_line() -> None:
    with pytest.raises(PolicyImportError, match=r"^master\.cf:2: a master\.cf service needs 8"):
        parse_master_cf("# x\nsmtp inet n - y - smtpd\n", Path("master.cf"), "master.cf")


def test_postmap_sources_fold_keys_keep_the_first_duplicate_and_skip_lines_without_value() -> None:
    table = parse_indexed(
        "# blocked\nSpam@Blocked.example   REJECT  go away\n"
        "blocked.example 550 5.7.0\n  no thanks\nspam@blocked.example OK\nlonely\n",
        "sender_access",
    )
    assert [(e.key, e.value, e.origin) for e in table.entries] == [
        ("spam@blocked.example", "REJECT  go away", "sender_access:2"),
        ("blocked.example", "550 5.7.0 no thanks", "sender_access:3"),
    ]
    assert [(s.origin, s.reason.split(":")[0]) for s in table.skipped] == [
        ("sender_access:5", "duplicate key"),
        ("sender_access:6", "postmap ignores it too"),
    ]


def test_regexp_patterns_keep_flags_negation_other_delimiters_and_enclosing_ifs() -> None:
    table = parse_patterns(
        textwrap.dedent(
            """\
            /^Subject: .*viagra/i REJECT no thanks
            if /^X-/
            if !/^X-Spam/
            !/^X-Ok:/ WARN odd header
            endif
            #/^X-Mailer:/ REJECT commented out
            endif
            |^From: .*a/b| DUNNO
            /^Received: .*\\/x/   HOLD
            """
        ),
        "header_checks",
    )
    assert [(e.key, e.value, e.conditions, e.origin) for e in table.entries] == [
        ("/^Subject: .*viagra/i", "REJECT no thanks", (), "header_checks:1"),
        ("!/^X-Ok:/", "WARN odd header", ("/^X-/", "!/^X-Spam/"), "header_checks:4"),
        ("|^From: .*a/b|", "DUNNO", (), "header_checks:8"),
        ("/^Received: .*\\/x/", "HOLD", (), "header_checks:9"),
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("endif\n", r"body_checks:1: 'endif' without 'if'"),
        ("if /a/\n/b/ REJECT\n", r"body_checks:1: 'if /a/' has no 'endif'"),
        ("viagra REJECT\n", r"body_checks:1: expected '/pattern/flags result'"),
        ("/viagra/\n", r"body_checks:1: the pattern '/viagra/' has no result"),
    ],
)
def test_a_malformed_pattern_table_is_an_error_naming_its_line(text: str, message: str) -> None:
    with pytest.raises(PolicyImportError, match=message):
        parse_patterns(text, "body_checks")


def test_cidr_tables_keep_networks_negation_and_ifs_in_file_order() -> None:
    table = parse_patterns(
        "192.0.2.0/24 REJECT\nif 198.51.100.0/24\n!198.51.100.7 OK\nendif\n2001:db8::/32 DUNNO\n",
        "client_cidr",
        cidr=True,
    )
    assert [(e.key, e.value, e.conditions) for e in table.entries] == [
        ("192.0.2.0/24", "REJECT", ()),
        ("!198.51.100.7", "OK", ("198.51.100.0/24",)),
        ("2001:db8::/32", "DUNNO", ()),
    ]
    with pytest.raises(PolicyImportError, match=r"client_cidr:1: expected 'network/prefix"):
        parse_patterns("192.0.2.1\n", "client_cidr", cidr=True)


def test_inline_tables_split_entries_and_keep_brace_grouped_text() -> None:
    table = parse_inline("1.2.3.4=REJECT, { b.example = 550 5.7.1 no, thanks }", "main.cf:3")
    assert [(e.key, e.value, e.origin) for e in table.entries] == [
        ("1.2.3.4", "REJECT", "main.cf:3"),
        ("b.example", "550 5.7.1 no, thanks", "main.cf:3"),
    ]
    with pytest.raises(PolicyImportError, match=r"main\.cf:3: inline table entry 'oops'"):
        parse_inline("oops", "main.cf:3")


REAL_MAIN_CF = """\
compatibility_level = 3.6
mydomain = example.com
myhostname = mx.$mydomain
dir = /etc/postfix
smtpd_banner = $dir/x ${dir}/y $(dir)/z $$HOME
header_checks = ${mydomain?on} ${nosuchp?on} ${mydomain:off} ${nosuchp:off}
body_checks = ${mydomain?{a, b}} ${nosuchp:{c d}}
mydestination = $myhostname, localhost.$mydomain
# comment
relay_domains = $mydomain
  # comment inside
  sub.$mydomain
smtpd_client_restrictions = first
smtpd_client_restrictions = second
"""


@pytest.mark.parametrize(
    "name",
    [
        "smtpd_banner",
        "header_checks",
        "body_checks",
        "mydestination",
        "relay_domains",
        "smtpd_client_restrictions",
        "smtpd_relay_restrictions",
        "mime_header_checks",
        "mynetworks_style",
        "message_size_limit",
        "default_rbl_reply",
    ],
)
def test_expansion_agrees_with_the_real_postconf(tmp_path: Path, name: str) -> None:
    """``postconf -x`` expands main.cf as the daemons do; where it is installed, the importer's
    reading of the same file must give the same values (whitespace aside: postconf prints
    expanded values with runs of blanks folded)."""
    postconf = require_executable("postconf", "postfix")
    (tmp_path / "main.cf").write_text(REAL_MAIN_CF, encoding="utf-8")
    (tmp_path / "master.cf").write_text("", encoding="utf-8")
    flags = [] if name == "default_rbl_reply" else ["-x"]  # a template: postconf -h shows it raw
    real = subprocess.run(
        [postconf, "-c", str(tmp_path), *flags, "-h", name],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.strip()
    ours = params(REAL_MAIN_CF).value(name)
    assert ours.split() == real.split()


def test_master_cf_overrides_agree_with_the_real_postconf(tmp_path: Path) -> None:
    """``postconf -P`` lists every ``-o`` override as service/type/name = value."""
    postconf = require_executable("postconf", "postfix")
    master = textwrap.dedent(
        """\
        smtp      inet  n       -       y       -       -       smtpd
          -o smtpd_delay_reject=no
          -o { smtpd_helo_restrictions = reject_invalid_helo_hostname, permit }
        # a comment
        submission inet n       -       y       -       -       smtpd -o syslog_name=sub
        policyd-spf  unix  -       n       n       -       0       spawn
            user=policyd-spf argv=/usr/bin/policyd-spf
        """
    )
    (tmp_path / "main.cf").write_text("", encoding="utf-8")
    (tmp_path / "master.cf").write_text(master, encoding="utf-8")
    real = subprocess.run(
        [postconf, "-c", str(tmp_path), "-P"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.splitlines()
    ours = [
        f"{service.name}/{service.type}/{o.name} = {o.value}"
        for service in parse_master_cf(master, Path("master.cf"), "master.cf")
        for o in service.overrides
    ]
    assert ours == real


@pytest.mark.parametrize("name", ["relay_domains", "smtpd_relay_restrictions", "mynetworks_style"])
def test_level_0_defaults_agree_with_the_real_postconf(tmp_path: Path, name: str) -> None:
    """Without compatibility_level, Postfix 3.7 gives the backwards-compatible defaults."""
    postconf = require_executable("postconf", "postfix")
    text = "mydestination = a.example\n"
    (tmp_path / "main.cf").write_text(text, encoding="utf-8")
    (tmp_path / "master.cf").write_text("", encoding="utf-8")
    real = subprocess.run(
        [postconf, "-c", str(tmp_path), "-x", "-h", name],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.strip()
    assert params(text).value(name).split() == real.split()
