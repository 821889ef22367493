"""``sinkd profiles import postfix``: what each main.cf construct becomes in the profile, and
what is reported untranslated with its reason (``sinkd.importers.postfix``).

These tests build the profile document with the filter kinds' own ``SUPPORTED_*`` sets except
where a test names a smaller ``Support`` to see what the importer does with a restriction or
action the filters do not evaluate.
"""

from __future__ import annotations

import dataclasses
import re
import textwrap
from pathlib import Path
from typing import Any

import pytest

from sinkd.core.profiles import ProfileSet
from sinkd.errors import PolicyImportError
from sinkd.importers import Imported, render
from sinkd.importers.postfix import (
    EXTERNAL_TABLES,
    RELEVANT_PARAMETERS,
    RELEVANT_PREFIXES,
    RESTRICTION_REASONS,
    SUPPORT,
    Config,
    Support,
    translate,
)
from tests.support.paths import DOCS

NARROW = Support(
    restrictions=frozenset(
        {
            "permit_mynetworks",
            "reject_unauth_destination",
            "check_client_access",
            "check_helo_access",
            "check_sender_access",
            "check_recipient_access",
            "check_policy_service",
            "reject_rbl_client",
            "permit",
            "reject",
        }
    ),
    smtpd_parameters=frozenset({"smtpd_delay_reject", "mynetworks", "relay_domains"}),
    cleanup_parameters=SUPPORT.cleanup_parameters,
    cleanup_actions=SUPPORT.cleanup_actions,
    policy_services=frozenset({"policyd-spf", "postgrey"}),
)


# Postfix will not run without a relay guard; tests about something else add one.
GUARD = "smtpd_relay_restrictions = reject_unauth_destination\n"


def write(directory: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")


def imported(
    tmp_path: Path,
    main_cf: str,
    files: dict[str, str] | None = None,
    *,
    master_cf: str | None = None,
    support: Support = NARROW,
) -> Imported:
    write(tmp_path, {"main.cf": main_cf, **(files or {})})
    master = None
    if master_cf is not None:
        write(tmp_path, {"master.cf": master_cf})
        master = tmp_path / "master.cf"
    return translate(Config(tmp_path / "main.cf", tmp_path, master), "my-gateway", support)


def smtpd(result: Imported) -> dict[str, Any]:
    found = result.profile["filters"][0]
    assert found["kind"] == "postfix_smtpd"
    return dict(found)


def cleanup(result: Imported) -> dict[str, Any]:
    found = result.profile["filters"][1]
    assert found["kind"] == "postfix_cleanup"
    return dict(found)


def untranslated(result: Imported) -> dict[str, tuple[str, str]]:
    """item -> (origin, reason)"""
    return {u.item: (u.origin, u.reason) for u in result.untranslated}


def test_restrictions_keep_their_list_order_arguments_tables_and_own_lines(tmp_path: Path) -> None:
    result = imported(
        tmp_path,
        """\
        mynetworks = 127.0.0.0/8 192.0.2.0/24
        smtpd_sender_restrictions = check_sender_access hash:/etc/postfix/sender_access
        smtpd_recipient_restrictions =
            permit_mynetworks,
            reject_rbl_client zen.spamhaus.org=127.0.0.[2..11],
            reject_unauth_destination
        """,
        {"sender_access": "spam@blocked.example REJECT\n"},
    )
    restrictions = smtpd(result)["restrictions"]
    assert restrictions == {
        "relay": [],  # compatibility_level 0: empty, written so the filter does not default it
        "sender": [
            {"restriction": "check_sender_access", "table": "sender_access", "source": "main.cf:2"}
        ],
        "recipient": [
            {"restriction": "permit_mynetworks", "source": "main.cf:4"},
            {
                "restriction": "reject_rbl_client",
                "argument": "zen.spamhaus.org=127.0.0.[2..11]",
                "source": "main.cf:5",
            },
            {"restriction": "reject_unauth_destination", "source": "main.cf:6"},
        ],
    }
    assert smtpd(result)["tables"]["sender_access"] == {
        "type": "hash",
        "source": "/etc/postfix/sender_access",
        "entries": [
            {"key": "spam@blocked.example", "value": "REJECT", "source": "sender_access:1"}
        ],
    }
    assert str(tmp_path / "sender_access") in result.inputs


def test_the_seven_lists_map_to_the_contract_keys(tmp_path: Path) -> None:
    names = ["client", "helo", "sender", "relay", "recipient", "data", "end_of_data"]
    main_cf = "".join(f"smtpd_{name}_restrictions = permit\n" for name in names)
    restrictions = smtpd(imported(tmp_path, main_cf))["restrictions"]
    assert list(restrictions) == names


def test_the_relay_list_takes_its_default_at_compatibility_level_1_and_later(
    tmp_path: Path,
) -> None:
    support = Support(
        NARROW.restrictions | {"permit_sasl_authenticated", "defer_unauth_destination"},
        NARROW.smtpd_parameters,
        NARROW.cleanup_parameters,
        NARROW.cleanup_actions,
        NARROW.policy_services,
    )
    result = imported(
        tmp_path, "compatibility_level = 3.6\nmynetworks = 10.0.0.0/8\n", support=support
    )
    relay = smtpd(result)["restrictions"]["relay"]
    assert [(r["restriction"], r["source"]) for r in relay] == [
        ("permit_mynetworks", "postconf -d (Postfix 3.7.11) smtpd_relay_restrictions"),
        ("permit_sasl_authenticated", "postconf -d (Postfix 3.7.11) smtpd_relay_restrictions"),
        ("defer_unauth_destination", "postconf -d (Postfix 3.7.11) smtpd_relay_restrictions"),
    ]
    assert smtpd(result)["parameters"]["relay_domains"] == {
        "value": "",
        "source": "postconf -d (Postfix 3.7.11) relay_domains",
    }


@pytest.mark.parametrize("kind", ["hash", "btree", "lmdb", "texthash"])
def test_indexed_tables_are_read_from_their_text_source(tmp_path: Path, kind: str) -> None:
    result = imported(
        tmp_path,
        f"smtpd_client_restrictions = check_client_access {kind}:/etc/postfix/clients.db\n",
        {"clients": "# x\n192.0.2.7   REJECT\nMail.Example OK\n"},
    )
    table = smtpd(result)["tables"]["clients"]
    assert table["type"] == kind
    assert [(e["key"], e["value"], e["source"]) for e in table["entries"]] == [
        ("192.0.2.7", "REJECT", "clients:2"),
        ("mail.example", "OK", "clients:3"),
    ]


def test_a_cdb_table_is_written_as_hash_naming_its_type(tmp_path: Path) -> None:
    result = imported(
        tmp_path,
        "smtpd_client_restrictions = check_client_access cdb:/etc/postfix/clients\n",
        {"clients": "192.0.2.7 REJECT\n"},
    )
    table = smtpd(result)["tables"]["clients"]
    assert (table["type"], table["source"]) == (
        "hash",
        "cdb:/etc/postfix/clients (looked up as hash:)",
    )


@pytest.mark.parametrize("kind", ["regexp", "pcre"])
def test_pattern_tables_keep_patterns_conditions_and_lines(tmp_path: Path, kind: str) -> None:
    result = imported(
        tmp_path,
        f"smtpd_helo_restrictions = check_helo_access {kind}:/etc/postfix/helo_re\n",
        {"helo_re": "if /\\./\n/^localhost\\./ REJECT no\nendif\n!/\\./ 550 5.7.1 dots\n"},
    )
    table = smtpd(result)["tables"]["helo_re"]
    assert table["type"] == kind
    assert table["entries"] == [
        {
            "key": "/^localhost\\./",
            "value": "REJECT no",
            "conditions": ["/\\./"],
            "source": "helo_re:2",
        },
        {"key": "!/\\./", "value": "550 5.7.1 dots", "source": "helo_re:4"},
    ]


def test_cidr_tables_keep_file_order(tmp_path: Path) -> None:
    result = imported(
        tmp_path,
        "smtpd_client_restrictions = check_client_access cidr:/etc/postfix/client.cidr\n",
        {"client.cidr": "192.0.2.0/24 REJECT\n192.0.2.7 OK\n"},
    )
    table = smtpd(result)["tables"]["client_cidr"]
    assert table["type"] == "cidr"
    assert [e["key"] for e in table["entries"]] == ["192.0.2.0/24", "192.0.2.7"]


def test_inline_and_static_tables_are_written_from_main_cf(tmp_path: Path) -> None:
    result = imported(
        tmp_path,
        "smtpd_sender_restrictions =\n"
        "  check_sender_access inline:{ a.example=REJECT, { b.example = 550 5.7.1 no, thanks } }\n"
        "  check_recipient_access static:{ 450 4.7.1 try later }\n",
    )
    tables = smtpd(result)["tables"]
    assert tables["inline"] == {
        "type": "inline",
        "source": "main.cf:2",
        "entries": [
            {"key": "a.example", "value": "REJECT", "source": "main.cf:2"},
            {"key": "b.example", "value": "550 5.7.1 no, thanks", "source": "main.cf:2"},
        ],
    }
    assert tables["static"]["type"] == "static"
    assert tables["static"]["entries"][0]["value"] == "450 4.7.1 try later"


def test_proxy_is_the_table_it_proxies_and_one_table_named_twice_is_written_once(
    tmp_path: Path,
) -> None:
    result = imported(
        tmp_path,
        "smtpd_sender_restrictions = check_sender_access proxy:hash:/etc/postfix/access\n"
        "smtpd_recipient_restrictions = check_recipient_access hash:/etc/postfix/access,"
        " check_sender_access hash:/etc/postfix/other/access\n",
        {"access": "a.example REJECT\n", "other/access": "b.example OK\n"},
    )
    tables = smtpd(result)["tables"]
    assert sorted(tables) == ["access", "access_2"]
    assert [r["table"] for r in smtpd(result)["restrictions"]["recipient"]] == [
        "access",
        "access_2",
    ]


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        ("mysql:/etc/postfix/mysql-access.cf", "asks a MySQL database"),
        ("pgsql:/etc/postfix/pg.cf", "asks a PostgreSQL database"),
        ("ldap:/etc/postfix/ldap.cf", "asks an LDAP server"),
        ("proxy:mysql:/etc/postfix/mysql.cf", "asks a MySQL database"),
        ("tcp:127.0.0.1:2222", "asks a TCP lookup server"),
        ("socketmap:inet:127.0.0.1:9000:access", "asks a socketmap server"),
    ],
)
def test_tables_that_ask_a_server_are_untranslated_with_the_reason(
    tmp_path: Path, spec: str, reason: str
) -> None:
    result = imported(tmp_path, f"smtpd_sender_restrictions = check_sender_access {spec}\n")
    assert "sender" not in smtpd(result)["restrictions"]
    origin, why = untranslated(result)[f"smtpd_sender_restrictions: check_sender_access {spec}"]
    assert origin == "main.cf:1"
    assert reason in why and "hash:" in why


def test_a_missing_table_file_is_an_error_naming_the_main_cf_line(tmp_path: Path) -> None:
    with pytest.raises(PolicyImportError, match=r"^main\.cf:2: table file /etc/postfix/nope not"):
        imported(
            tmp_path,
            "a = b\nsmtpd_sender_restrictions = check_sender_access hash:/etc/postfix/nope\n",
        )


def test_a_malformed_table_is_an_error_naming_the_table_file_and_line(tmp_path: Path) -> None:
    with pytest.raises(PolicyImportError, match=r"^helo_re:2: expected '/pattern/flags result'"):
        imported(
            tmp_path,
            "smtpd_helo_restrictions = check_helo_access regexp:/etc/postfix/helo_re\n",
            {"helo_re": "/a/ OK\nnot a pattern\n"},
        )


def test_a_restriction_without_its_argument_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(PolicyImportError, match=r"main\.cf:1: .*check_sender_access needs an arg"):
        imported(tmp_path, "smtpd_sender_restrictions = permit_mynetworks check_sender_access\n")


def test_restrictions_sinkd_does_not_evaluate_are_untranslated_with_the_reason(
    tmp_path: Path,
) -> None:
    result = imported(
        tmp_path,
        """\
        mynetworks = 10.0.0.0/8
        smtpd_recipient_restrictions =
            permit_mynetworks
            reject_unverified_recipient
            reject_no_such_thing
            reject_unauth_destination
        """,
    )
    assert [r["restriction"] for r in smtpd(result)["restrictions"]["recipient"]] == [
        "permit_mynetworks",
        "reject_unauth_destination",
    ]
    items = untranslated(result)
    assert items["smtpd_recipient_restrictions: reject_unverified_recipient"] == (
        "main.cf:4",
        "address verification probes the next hop, which sinkd does not do",
    )
    assert (
        "451 4.3.5 Server configuration error"
        in (items["smtpd_recipient_restrictions: reject_no_such_thing"][1])
    )


def test_a_restriction_class_is_written_in_place_with_its_own_lines(tmp_path: Path) -> None:
    result = imported(
        tmp_path,
        """\
        smtpd_restriction_classes = strict, very_strict
        strict = reject_unauth_destination,
            very_strict
        very_strict = reject
        smtpd_recipient_restrictions = permit_mynetworks, strict
        mynetworks = 127.0.0.0/8
        """,
    )
    recipient = smtpd(result)["restrictions"]["recipient"]
    assert [(r["restriction"], r["source"]) for r in recipient] == [
        ("permit_mynetworks", "main.cf:5"),
        ("reject_unauth_destination", "main.cf:2"),
        ("reject", "main.cf:4"),
    ]
    assert result.untranslated == []


def test_a_restriction_class_that_names_itself_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(PolicyImportError, match=r"main\.cf:2: the restriction class a names"):
        imported(
            tmp_path,
            "smtpd_restriction_classes = a\na = b, a\nsmtpd_recipient_restrictions = a\n",
        )


def test_policyd_spf_is_recognised_from_its_master_cf_command(tmp_path: Path) -> None:
    result = imported(
        tmp_path,
        "smtpd_recipient_restrictions = check_policy_service unix:private/spfcheck\n",
        master_cf="""\
        smtp      inet  n       -       y       -       -       smtpd
        spfcheck  unix  -       n       n       -       0       spawn
            user=policyd-spf argv=/usr/bin/policyd-spf
        """,
    )
    assert smtpd(result)["restrictions"]["recipient"] == [
        {
            "restriction": "check_policy_service",
            "service": "policyd-spf",
            "argument": "unix:private/spfcheck",
            "source": "main.cf:1",
        }
    ]
    (note,) = result.notes
    assert note.startswith(
        "main.cf:1: check_policy_service unix:private/spfcheck: policyd-spf's own settings "
        "(policyd-spf.conf) are not read"
    )


def test_postgrey_is_guessed_from_port_10023_and_the_guess_is_said(tmp_path: Path) -> None:
    result = imported(
        tmp_path,
        "smtpd_recipient_restrictions =\n"
        "  check_policy_service { inet:127.0.0.1:10023, timeout=10s }\n",
    )
    item = smtpd(result)["restrictions"]["recipient"][0]
    assert (item["service"], item["argument"]) == ("postgrey", "inet:127.0.0.1:10023")
    assert any("a guess from the port" in note for note in result.notes)
    assert any("timeout=10s only matter when" in note for note in result.notes)


def test_an_unknown_policy_server_is_untranslated(tmp_path: Path) -> None:
    result = imported(
        tmp_path,
        "smtpd_recipient_restrictions = check_policy_service inet:127.0.0.1:12340,"
        " check_policy_service unix:private/quota\n",
        master_cf="quota unix - n n - 0 spawn user=nobody argv=/usr/local/bin/quota-policy\n",
    )
    assert "recipient" not in smtpd(result)["restrictions"]
    items = untranslated(result)
    assert (
        "unknown policy server"
        in items["smtpd_recipient_restrictions: check_policy_service inet:127.0.0.1:12340"][1]
    )
    assert (
        "quota-policy"
        in items["smtpd_recipient_restrictions: check_policy_service unix:private/quota"][1]
    )


def test_master_cf_overrides_of_the_smtp_service_apply_to_smtpd(tmp_path: Path) -> None:
    result = imported(
        tmp_path,
        "smtpd_helo_restrictions = permit\n",
        master_cf="""\
        smtp      inet  n       -       y       -       -       smtpd
          -o smtpd_delay_reject=no
          -o { smtpd_helo_restrictions = reject }
        submission inet n       -       y       -       -       smtpd
          -o smtpd_delay_reject=yes
        """,
    )
    assert result.profile["smtp"]["envelope_reply_stage"] == "mail"
    assert smtpd(result)["restrictions"]["helo"] == [
        {"restriction": "reject", "source": "master.cf:1 (-o of smtp inet)"}
    ]
    assert smtpd(result)["parameters"]["smtpd_delay_reject"] == {
        "value": "no",
        "source": "master.cf:1 (-o of smtp inet)",
    }
    assert "smtpd_delay_reject = no" not in untranslated(result)  # answered at EHLO now


def test_behind_postscreen_the_smtpd_pass_service_is_the_one_read(tmp_path: Path) -> None:
    result = imported(
        tmp_path,
        "postscreen_greet_action = enforce\n",
        master_cf="""\
        smtp      inet  n       -       y       -       1       postscreen
        smtpd     pass  -       -       y       -       -       smtpd
          -o smtpd_sender_restrictions=reject
        """,
    )
    assert smtpd(result)["restrictions"]["sender"][0]["restriction"] == "reject"
    items = untranslated(result)
    assert "postscreen(8)" in items["smtp inet … postscreen"][1]
    assert "postscreen(8)" in items["postscreen_greet_action = enforce"][1]


def test_delay_reject_yes_answers_at_rcpt_and_no_at_the_command_judged_with_nothing_left_out(
    tmp_path: Path,
) -> None:
    yes = imported(tmp_path, "smtpd_client_restrictions = reject\n" + GUARD)
    assert yes.profile["smtp"]["envelope_reply_stage"] == "rcpt"
    assert yes.untranslated == []
    no = imported(tmp_path, "smtpd_delay_reject = no\nsmtpd_client_restrictions = reject\n" + GUARD)
    assert no.profile["smtp"]["envelope_reply_stage"] == "mail"
    assert no.profile["smtp"]["source"].startswith("main.cf:1: smtpd_delay_reject = no")
    # The client list is answered at the greeting by the filter itself: no stage shift.
    assert no.untranslated == []


def test_supported_parameters_are_written_with_their_lines_after_expansion(
    tmp_path: Path,
) -> None:
    result = imported(
        tmp_path,
        "mydomain = example.com\nrelay_domains = $mydomain, ${mydomain?sub.$mydomain}\n",
    )
    assert smtpd(result)["parameters"]["relay_domains"] == {
        "value": "example.com sub.example.com",
        "source": "main.cf:2",
    }


def test_permit_mynetworks_without_mynetworks_trusts_loopback_and_says_so(tmp_path: Path) -> None:
    result = imported(tmp_path, "smtpd_recipient_restrictions = permit_mynetworks, reject\n")
    assert smtpd(result)["parameters"]["mynetworks"]["value"] == "127.0.0.0/8 [::1]/128"
    assert "cannot know" in untranslated(result)["mynetworks (not set)"][1]


def test_parameters_that_change_filtering_are_untranslated_and_the_rest_ignored(
    tmp_path: Path,
) -> None:
    result = imported(
        tmp_path,
        """\
        myhostname = mx.example.com
        alias_maps = hash:/etc/aliases
        smtp_tls_security_level = may
        my_networks_list = 10.0.0.0/8
        mynetworks = $my_networks_list
        smtpd_helo_required = yes
        strict_rfc821_envelopes = yes
        smtpd_client_connection_rate_limit = 30
        smtpd_milters = inet:127.0.0.1:8891
        content_filter = amavis:[127.0.0.1]:10024
        postscreen_dnsbl_sites = zen.spamhaus.org*2
        some_future_parameter = 1
        """
        + GUARD,
    )
    items = untranslated(result)
    assert set(items) == {
        "smtpd_helo_required = yes",
        "strict_rfc821_envelopes = yes",
        "smtpd_client_connection_rate_limit = 30",
        "smtpd_milters = inet:127.0.0.1:8891",
        "content_filter = amavis:[127.0.0.1]:10024",
        "postscreen_dnsbl_sites = zen.spamhaus.org*2",
        "some_future_parameter = 1",
    }
    assert items["content_filter = amavis:[127.0.0.1]:10024"][1].startswith(
        "filtering by an external program sinkd does not run"
    )
    assert items["smtpd_milters = inet:127.0.0.1:8891"] == (
        "main.cf:9",
        "filtering by an external program sinkd does not run (a milter)",
    )


def test_unset_mime_and_nested_checks_are_left_to_default_to_header_checks(tmp_path: Path) -> None:
    result = imported(
        tmp_path,
        "header_checks = regexp:/etc/postfix/header_checks\n"
        "body_checks = pcre:/etc/postfix/body_checks\n" + GUARD,
        {
            "header_checks": "/^Subject: .*viagra/ REJECT no thanks\n",
            "body_checks": "/casino/ DISCARD\n",
        },
    )
    found = cleanup(result)
    assert {k: found[k] for k in _CHECKS if k in found} == {
        "header_checks": {"table": "header_checks", "source": "main.cf:1"},
        "body_checks": {"table": "body_checks", "source": "main.cf:2"},
    }
    assert found["tables"]["body_checks"]["type"] == "pcre"
    assert result.untranslated == []


_CHECKS = ("header_checks", "mime_header_checks", "nested_header_checks", "body_checks")


def test_an_action_cleanup_does_not_know_is_reported_and_kept_as_postfix_keeps_it(
    tmp_path: Path,
) -> None:
    result = imported(
        tmp_path,
        "body_checks = regexp:/etc/postfix/body_checks\n" + GUARD,
        {"body_checks": "/a/ REJECT\n/b/ DELAY 1h\n/c/ PREPEND X-C: yes\n"},
    )
    entries = cleanup(result)["tables"]["body_checks"]["entries"]
    assert [e["key"] for e in entries] == ["/a/", "/b/", "/c/"]
    assert list(untranslated(result)) == ["/b/ DELAY 1h"]
    origin, reason = untranslated(result)["/b/ DELAY 1h"]
    assert origin == "body_checks:2" and "'unknown command'" in reason


def test_only_the_first_table_of_a_check_is_read_and_the_others_are_reported(
    tmp_path: Path,
) -> None:
    result = imported(
        tmp_path,
        "header_checks = regexp:/etc/postfix/a, regexp:/etc/postfix/b\nmime_header_checks =\n"
        "nested_header_checks =\n",
        {"a": "/x/ REJECT\n", "b": "/y/ REJECT\n"},
    )
    assert cleanup(result)["header_checks"] == {"table": "a", "source": "main.cf:1"}
    assert cleanup(result)["mime_header_checks"] == {"table": None, "source": "main.cf:2"}
    assert (
        "only the first table" in untranslated(result)["header_checks = … regexp:/etc/postfix/b"][1]
    )


def test_the_cleanup_service_named_by_smtpd_gets_its_master_cf_overrides(tmp_path: Path) -> None:
    result = imported(
        tmp_path,
        "header_checks = regexp:/etc/postfix/a\n",
        {"a": "/x/ REJECT\n", "b": "/y/ REJECT\n"},
        master_cf="""\
        smtp      inet  n       -       y       -       -       smtpd
          -o cleanup_service_name=pre-cleanup
        pre-cleanup unix n      -       y       -       0       cleanup
          -o header_checks=regexp:/etc/postfix/b
        cleanup   unix  n       -       y       -       0       cleanup
        """,
    )
    assert cleanup(result)["tables"]["b"]["entries"][0]["key"] == "/y/"


def test_the_profile_has_the_schema_id_models_and_a_stage_with_its_source(tmp_path: Path) -> None:
    result = imported(tmp_path, "smtpd_delay_reject = yes\n")
    profile = result.profile
    assert (profile["schema"], profile["id"]) == ("sinkd.profile/v1", "my-gateway")
    assert all("what" in m and "source" in m for m in profile["models"])
    assert profile["smtp"] == {
        "envelope_reply_stage": "rcpt",
        "source": "main.cf:1: smtpd_delay_reject = yes (postconf(5): client, HELO and sender "
        "restrictions wait for RCPT TO)",
    }
    assert [f["kind"] for f in profile["filters"]] == ["postfix_smtpd", "postfix_cleanup"]


def test_the_real_support_sets_are_what_the_filter_kinds_export() -> None:
    from sinkd.core.filters import postfix_cleanup, postfix_smtpd

    assert SUPPORT.restrictions == postfix_smtpd.SUPPORTED_RESTRICTIONS
    assert SUPPORT.cleanup_actions == postfix_cleanup.SUPPORTED_ACTIONS


def test_a_pattern_python_cannot_match_as_postfix_does_is_untranslated_and_the_rest_kept(
    tmp_path: Path,
) -> None:
    result = imported(
        tmp_path,
        "header_checks = regexp:/etc/postfix/header_checks\n",
        {"header_checks": "/^Subject: [[:nosuch:]]/ REJECT\n/^Subject: ok/ WARN\n"},
    )
    entries = cleanup(result)["tables"]["header_checks"]["entries"]
    assert [e["source"] for e in entries] == ["header_checks:2"]
    origin, reason = untranslated(result)["/^Subject: [[:nosuch:]]/ REJECT"]
    assert origin == "header_checks:1" and "[:nosuch:]" in reason


def test_negation_may_be_followed_by_whitespace_as_dict_regexp_reads_it(tmp_path: Path) -> None:
    result = imported(
        tmp_path,
        "body_checks = regexp:/etc/postfix/body_checks\n",
        {"body_checks": "! /^[ -~]*$/ WARN 8-bit\n"},
    )
    assert cleanup(result)["tables"]["body_checks"]["entries"][0]["key"] == "! /^[ -~]*$/"


def test_the_docs_page_names_every_construct_the_importer_reports() -> None:
    page = (DOCS / "import-postfix.md").read_text(encoding="utf-8")
    named = [
        *RELEVANT_PARAMETERS,
        *(prefix + "*" for prefix in RELEVANT_PREFIXES),
        *RESTRICTION_REASONS,
        *(f"{kind}:" for kind in EXTERNAL_TABLES),
    ]
    missing = [name for name in named if f"`{name}`" not in page]
    assert missing == []


def test_host_lists_read_file_names_and_indexed_tables_and_report_other_tables(
    tmp_path: Path,
) -> None:
    result = imported(
        tmp_path,
        "mynetworks = 127.0.0.0/8 [::1]/128 /etc/postfix/networks\n"
        "relay_domains = example.com, hash:/etc/postfix/relay_domains, ldap:/etc/postfix/ldap.cf\n",
        {"networks": "# ours\n192.0.2.0/24 198.51.100.0/24\n", "relay_domains": "example.net OK\n"},
    )
    parameters = smtpd(result)["parameters"]
    assert parameters["mynetworks"]["value"] == "127.0.0.0/8 [::1]/128 192.0.2.0/24 198.51.100.0/24"
    assert parameters["relay_domains"] == {
        "value": "example.com example.net",
        "source": "main.cf:2",
    }
    assert (
        "ldap: table in relay_domains"
        in untranslated(result)["relay_domains = … ldap:/etc/postfix/ldap.cf"][1]
    )


def test_lists_that_cannot_refuse_relaying_are_reported_as_postfix_refuses_them(
    tmp_path: Path,
) -> None:
    result = imported(tmp_path, "smtpd_recipient_restrictions = permit_mynetworks\n")
    origin, reason = untranslated(result)[
        "smtpd_relay_restrictions and smtpd_recipient_restrictions"
    ]
    assert origin == "main.cf:1" and "fatal error" in reason
    guarded = imported(tmp_path, "smtpd_recipient_restrictions = permit_mynetworks, defer\n")
    assert "smtpd_relay_restrictions and smtpd_recipient_restrictions" not in untranslated(guarded)


def test_a_policy_server_the_filter_does_not_evaluate_is_reported_naming_it(
    tmp_path: Path,
) -> None:
    support = dataclasses.replace(NARROW, policy_services=frozenset({"postgrey"}))
    result = imported(
        tmp_path,
        "smtpd_recipient_restrictions = reject_unauth_destination,"
        " check_policy_service unix:private/policyd-spf,"
        " check_policy_service inet:127.0.0.1:10023\n",
        master_cf="policyd-spf unix - n n - 0 spawn user=policyd-spf argv=/usr/bin/policyd-spf\n",
        support=support,
    )
    origin, reason = untranslated(result)[
        "smtpd_recipient_restrictions: check_policy_service unix:private/policyd-spf"
    ]
    assert origin == "main.cf:1"
    assert reason == (
        "policyd-spf (recognised from master.cf): sinkd's postfix_smtpd filter does not "
        "evaluate this policy server (it evaluates: postgrey)"
    )
    services = [r.get("service") for r in smtpd(result)["restrictions"]["recipient"]]
    assert services == [None, "postgrey"]


def test_data_restrictions_are_translated_with_nothing_left_untranslated(tmp_path: Path) -> None:
    result = imported(tmp_path, "smtpd_data_restrictions = reject\n" + GUARD)
    assert smtpd(result)["restrictions"]["data"] == [
        {"restriction": "reject", "source": "main.cf:1"}
    ]
    # sinkd answers them at the DATA command, as Postfix does: no stage shift to report.
    assert "smtpd_data_restrictions" not in untranslated(result)


def test_every_table_type_and_restriction_kind_loads_as_a_profile(tmp_path: Path) -> None:
    result = imported(
        tmp_path,
        """\
        compatibility_level = 3.6
        mynetworks = 127.0.0.0/8
        relay_domains = example.com
        default_rbl_reply = $rbl_code blocked by $rbl_domain
        rbl_reply_maps = texthash:/etc/postfix/rbl_reply
        smtpd_client_restrictions =
            check_client_access cidr:/etc/postfix/clients.cidr
            check_client_access inline:{ 192.0.2.9=REJECT }
            reject_rbl_client zen.spamhaus.org=127.0.0.[2..11]
        smtpd_helo_restrictions = check_helo_access pcre:/etc/postfix/helo.pcre
            reject_invalid_helo_hostname
        smtpd_sender_restrictions = check_sender_access btree:/etc/postfix/senders
            reject_rhsbl_sender dbl.spamhaus.org
        smtpd_recipient_restrictions = check_recipient_access static:DUNNO
            check_recipient_access lmdb:/etc/postfix/rcpts
            reject_unauth_destination
            check_policy_service inet:127.0.0.1:10023
        smtpd_end_of_data_restrictions = check_sender_access regexp:/etc/postfix/eod
        header_checks = pcre:/etc/postfix/header_checks
        body_checks = regexp:/etc/postfix/body_checks
        """,
        {
            "rbl_reply": "zen.spamhaus.org $rbl_code Listed, see https://www.spamhaus.org/\n",
            "clients.cidr": "192.0.2.0/24 REJECT\n",
            "helo.pcre": "/^\\[?\\d+\\.\\d+\\.\\d+\\.\\d+\\]?$/ REJECT numeric HELO\n",
            "senders": "blocked.example REJECT\n",
            "rcpts": "abuse@example.com OK\n",
            "eod": "/^spam@/ REJECT late\n",
            "header_checks": "/^Subject: (.*)viagra/ REJECT $1\n",
            "body_checks": "/casino/ DISCARD\n",
        },
        support=SUPPORT,
    )
    assert result.untranslated == []
    assert smtpd(result)["rbl_reply_maps"] == {"table": "rbl_reply", "source": "main.cf:5"}
    assert smtpd(result)["parameters"]["default_rbl_reply"]["value"] == (
        "$rbl_code blocked by $rbl_domain"
    )
    path = tmp_path / "my-gateway.yaml"
    path.write_text(render(result), encoding="utf-8")
    loaded = ProfileSet().load(path)
    assert [f.kind for f in loaded.profile.filters] == ["postfix_smtpd", "postfix_cleanup"]


def test_a_bare_table_in_a_restriction_list_is_untranslated(tmp_path: Path) -> None:
    result = imported(tmp_path, "smtpd_sender_restrictions = hash:/etc/postfix/access\n" + GUARD)
    assert (
        "check_<class>_access"
        in untranslated(result)["smtpd_sender_restrictions: hash:/etc/postfix/access"][1]
    )


def test_a_default_that_reads_the_gateways_own_host_name_says_it_is_unknown(
    tmp_path: Path,
) -> None:
    result = imported(tmp_path, "mydomain = example.com\n" + GUARD, support=SUPPORT)
    mydestination = smtpd(result)["parameters"]["mydestination"]
    assert mydestination["value"] == "localhost.localdomain localhost.example.com localhost"
    assert "the gateway's host name is unknown here" in mydestination["source"]
    named = imported(tmp_path, "myhostname = mx.example.com\n" + GUARD, support=SUPPORT)
    assert "unknown" not in smtpd(named)["parameters"]["mydestination"]["source"]


def test_soft_bounce_goes_to_smtpd_and_is_reported_for_cleanups_refusals(tmp_path: Path) -> None:
    result = imported(tmp_path, "soft_bounce = yes\n" + GUARD, support=SUPPORT)
    assert smtpd(result)["parameters"]["soft_bounce"] == {"value": "yes", "source": "main.cf:1"}
    if "soft_bounce" not in SUPPORT.cleanup_parameters:
        assert "keeps them 5xx" in untranslated(result)["soft_bounce = yes"][1]
    else:
        assert cleanup(result)["parameters"]["soft_bounce"]["value"] == "yes"
        assert result.untranslated == []


def test_table_results_naming_restrictions_sinkd_cannot_evaluate_there_are_reported(
    tmp_path: Path,
) -> None:
    result = imported(
        tmp_path,
        "smtpd_restriction_classes = freemail\nfreemail = reject\n"
        "smtpd_sender_restrictions = check_sender_access hash:/etc/postfix/senders\n" + GUARD,
        {
            "senders": "gmail.com freemail\nyahoo.com reject_unauth_destination\n"
            "a.example OK\nb.example 550 no\nc.example reject_unverified_sender\n"
        },
        support=SUPPORT,
    )
    items = untranslated(result)
    assert "gmail.com freemail" not in items
    [gmail] = [e for e in smtpd(result)["tables"]["senders"]["entries"] if e["key"] == "gmail.com"]
    assert gmail == {
        "key": "gmail.com",
        "value": "reject",
        "source": "senders:1 (restriction class freemail = main.cf:2)",
    }
    assert "reject_unverified_sender" in items["c.example reject_unverified_sender"][1]
    assert "yahoo.com reject_unauth_destination" not in items
    assert "a.example OK" not in items and "b.example 550 no" not in items


def test_the_docs_page_lists_exactly_what_the_filter_kinds_evaluate() -> None:
    page = (DOCS / "import-postfix.md").read_text(encoding="utf-8")

    def listed(label: str) -> set[str]:
        [line] = [line for line in page.split("\n- ") if line.startswith(f"**{label}**")]
        item = line.split("\n\n", 1)[0]  # the item ends with its paragraph
        return set(re.findall(r"`([^`]+)`", item.split(":", 1)[1]))

    assert listed("Restrictions") == SUPPORT.restrictions
    assert listed("Policy servers") == SUPPORT.policy_services
    assert listed("smtpd parameters") == SUPPORT.smtpd_parameters
    assert listed("cleanup parameters") == SUPPORT.cleanup_parameters
    assert listed("Header and body check actions") == SUPPORT.cleanup_actions


def test_postgrey_found_in_master_cf_still_says_its_own_options_are_not_read(
    tmp_path: Path,
) -> None:
    result = imported(
        tmp_path,
        "smtpd_recipient_restrictions = reject_unauth_destination,"
        " check_policy_service unix:private/greylist\n",
        master_cf="greylist unix - n n - 0 spawn user=postgrey argv=/usr/sbin/postgrey --unix\n",
    )
    assert smtpd(result)["restrictions"]["recipient"][1]["service"] == "postgrey"
    assert any("postgrey's own options" in note for note in result.notes)


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("message_size_limit = lots", r"^main\.cf:1: message_size_limit = lots: "),
        ("access_map_reject_code = 5xx", r"^main\.cf:1: access_map_reject_code = 5xx: "),
        ("header_size_limit = big", r"^main\.cf:1: header_size_limit = big: "),
    ],
)
def test_a_parameter_value_postfix_would_refuse_is_an_error_naming_its_line(
    tmp_path: Path, setting: str, message: str
) -> None:
    with pytest.raises(PolicyImportError, match=message):
        imported(tmp_path, f"{setting}\n" + GUARD, support=SUPPORT)


def test_host_list_entries_the_filter_cannot_read_are_reported_and_left_out(
    tmp_path: Path,
) -> None:
    result = imported(
        tmp_path,
        "mynetworks = !192.0.2.1 192.0.2.0/24 [2001:db8::]/32 *.example.com\n"
        "relay_domains = !sub.example.com example.com\n" + GUARD,
        support=SUPPORT,
    )
    parameters = smtpd(result)["parameters"]
    assert parameters["mynetworks"]["value"] == "192.0.2.0/24 [2001:db8::]/32"
    assert parameters["relay_domains"]["value"] == "example.com"
    items = untranslated(result)
    assert "exclusions are not translated" in items["mynetworks = … !192.0.2.1"][1]
    assert "host names" in items["mynetworks = … *.example.com"][1]
    assert "exclusions are not translated" in items["relay_domains = … !sub.example.com"][1]


def test_a_compiled_table_without_its_text_source_is_an_error_saying_which_file_to_copy(
    tmp_path: Path,
) -> None:
    (tmp_path / "access.db").write_bytes(b"\x00\x06\x15\x61")
    with pytest.raises(PolicyImportError, match=r"only the compiled .*access\.db is here"):
        imported(
            tmp_path, "smtpd_sender_restrictions = check_sender_access hash:/etc/postfix/access\n"
        )


def test_a_relay_guard_inside_a_restriction_class_counts_and_one_after_permit_does_not(
    tmp_path: Path,
) -> None:
    guarded = imported(
        tmp_path,
        "smtpd_restriction_classes = c\nc = reject_unauth_destination\n"
        "smtpd_recipient_restrictions = c\n",
    )
    assert "smtpd_relay_restrictions and smtpd_recipient_restrictions" not in untranslated(guarded)
    unreachable = imported(
        tmp_path, "smtpd_recipient_restrictions = permit, reject_unauth_destination\n"
    )
    assert "smtpd_relay_restrictions and smtpd_recipient_restrictions" in untranslated(unreachable)


def test_no_header_body_checks_for_the_smtp_service_writes_the_checks_empty(
    tmp_path: Path,
) -> None:
    result = imported(
        tmp_path,
        "header_checks = regexp:/etc/postfix/missing_is_fine\n"
        "receive_override_options = no_address_mappings\n" + GUARD,
        master_cf="smtp inet n - y - - smtpd\n"
        "  -o receive_override_options=no_header_body_checks,no_milters\n",
    )
    found = cleanup(result)
    source = "master.cf:1 (-o of smtp inet): receive_override_options = no_header_body_checks"
    assert {k: found[k] for k in _CHECKS} == {k: {"table": None, "source": source} for k in _CHECKS}
    assert found["tables"] == {}
    assert result.untranslated == []
