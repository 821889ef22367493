"""Profiles: the shipped ones, located errors, ``extends`` and the filter-kind registry."""

from __future__ import annotations

import importlib
import io
import json
import re
import textwrap
import typing
from pathlib import Path

import aiosmtplib
import pytest
import yaml

from sinkd.cli import main
from sinkd.core.engine import compile_profile
from sinkd.core.filters import REGISTRY
from sinkd.core.model import Action, Disposition, Reply, Verdict, VerdictAction
from sinkd.core.profiles import (
    FilterSpec,
    Profile,
    ProfileSet,
    _Loader,
    builtin_profiles_dir,
    format_loc,
    load_catalogue,
)
from sinkd.core.schema import Spec
from sinkd.errors import ProfileError
from tests.conftest import StartServer
from tests.support.judging import HEAD, judge, transaction

BODY_LINE = 6  # the first line after HEAD


def write(tmp_path: Path, body: str, profile_id: str = "test", *, head: bool = True) -> Path:
    path = tmp_path / f"{profile_id}.yaml"
    text = (HEAD.format(id=profile_id) if head else "") + textwrap.dedent(body)
    path.write_text(text, encoding="utf-8")
    return path


def load(tmp_path: Path, body: str, profile_id: str = "test"):  # type: ignore[no-untyped-def]
    path = write(tmp_path, body, profile_id)
    return ProfileSet([tmp_path]).resolve(str(path))


def error_of(tmp_path: Path, body: str, profile_id: str = "test") -> str:
    path = write(tmp_path, body, profile_id)
    with pytest.raises(ProfileError) as info:
        ProfileSet([tmp_path]).resolve(str(path))
    assert info.value.path == str(path)
    return str(info.value)


def envelope_rule(rule: str) -> str:
    return f"""\
filters:
  - kind: envelope
    name: access
    rules:
      - {rule}
"""


RULE_LINE = BODY_LINE + 4


# --- shipped profiles -----------------------------------------------------------------------

SHIPPED = ProfileSet()


def test_the_builtin_profiles_are_the_documented_ones() -> None:
    assert SHIPPED.names() == [
        "deferring-gateway",
        "google-workspace-like",
        "legacy-sender-id",
        "m365-default-like",
        "no-filter",
        "spamassassin-default",
        "strict-finance",
        "typical-corporate",
    ]


@pytest.mark.parametrize("name", SHIPPED.names())
def test_every_shipped_profile_validates_compiles_and_cites_its_sources(name: str) -> None:
    loaded = SHIPPED.resolve(name)
    profile = loaded.profile
    assert profile.id == name == loaded.path.stem
    assert loaded.path.parent == builtin_profiles_dir()
    assert profile.models
    for model in profile.models:
        assert model.what.strip()
        assert model.provenance is not None
    pipeline = compile_profile(loaded)
    # A header size limit the product answers with a refusal adds the scanning filter first.
    header = profile.scanning.header_size_limit
    added = 1 if header is not None and header.action == "reject" else 0
    assert len(pipeline.filters) == len(profile.filters) + added
    assert len(profile.filters) >= 1


def test_the_filter_examples_in_module_docstrings_are_valid_profiles(tmp_path: Path) -> None:
    filters: list[object] = []
    for kind in sorted(REGISTRY):
        doc = importlib.import_module(f"sinkd.core.filters.{kind}").__doc__ or ""
        match = re.search(r"```yaml\n(.*?)```", doc, re.S)
        assert match, f"sinkd/core/filters/{kind}.py has no YAML example"
        filters.extend(yaml.load(match.group(1), Loader=_Loader))  # as profiles are read
    body = yaml.safe_dump(
        {
            "lists": {
                "partners": {"kind": "address_glob", "entries": ["*@partner.example"]},
                "trigger_words": {"kind": "word", "entries": ["casino"]},
            },
            "filters": filters,
        }
    )
    loaded = load(tmp_path, body)
    assert sorted({f.kind for f in loaded.profile.filters}) == sorted(REGISTRY)


# --- located errors -------------------------------------------------------------------------


def test_an_unknown_key_names_the_file_line_and_field_path(tmp_path: Path) -> None:
    message = error_of(
        tmp_path,
        envelope_rule("{match: client_ip, entries: [192.0.2.1], action: reject, colour: red}"),
    )
    path = tmp_path / "test.yaml"
    assert message == f"{path}:{RULE_LINE}: filters[0].rules[0].colour: unknown key"


def test_an_unknown_top_level_key_is_located_too(tmp_path: Path) -> None:
    message = error_of(tmp_path, "filters: []\nthreshold: 5\n")
    assert message == f"{tmp_path / 'test.yaml'}:{BODY_LINE + 1}: threshold: unknown key"


def test_a_bad_enum_value_lists_the_allowed_ones_and_the_value_given(tmp_path: Path) -> None:
    message = error_of(
        tmp_path, envelope_rule("{match: client_ip, entries: [192.0.2.1], action: explode}")
    )
    assert f"test.yaml:{RULE_LINE}: filters[0].rules[0].action: Input should be" in message
    assert "'reject'" in message
    assert "(got 'explode')" in message


def test_a_bad_match_field_is_an_error(tmp_path: Path) -> None:
    message = error_of(tmp_path, envelope_rule("{match: subject, entries: [x], action: reject}"))
    assert "filters[0].rules[0].match: Input should be 'client_ip'" in message


def test_a_missing_required_field_is_named(tmp_path: Path) -> None:
    message = error_of(tmp_path, envelope_rule("{match: client_ip, action: reject}"))
    assert message.endswith(f"test.yaml:{RULE_LINE}: filters[0].rules[0].entries: Field required")


def test_a_missing_profile_field_is_named(tmp_path: Path) -> None:
    path = write(tmp_path, "schema: sinkd.profile/v1\nid: test\ntitle: T\n", head=False)
    with pytest.raises(ProfileError, match=r"test\.yaml:1: models: Field required"):
        ProfileSet([tmp_path]).resolve(str(path))


def test_an_empty_models_list_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "schema: sinkd.profile/v1\nid: test\ntitle: T\nmodels: []\n", head=False)
    with pytest.raises(ProfileError, match=r"test\.yaml:4: models: List should have at least 1"):
        ProfileSet([tmp_path]).resolve(str(path))


def test_an_unknown_filter_kind_lists_the_known_ones(tmp_path: Path) -> None:
    message = error_of(tmp_path, "filters:\n  - {kind: milter, name: x}\n")
    assert f"test.yaml:{BODY_LINE + 1}: filters[0]:" in message
    assert "Input tag 'milter'" in message
    for kind in ("envelope", "size", "spf", "sender_id", "dkim", "dmarc", "dnsbl", "mime"):
        assert f"'{kind}'" in message


def test_an_unknown_list_reference_names_the_known_lists(tmp_path: Path) -> None:
    body = "lists:\n  ips: {kind: cidr, entries: [192.0.2.0/24]}\n" + envelope_rule(
        '{match: client_ip, entries: "@nope", action: reject}'
    )
    message = error_of(tmp_path, body)
    assert message == (
        f"{tmp_path / 'test.yaml'}:{RULE_LINE + 2}: filters[0].rules[0].entries: "
        "unknown list '@nope' (lists: ips)"
    )


def test_a_list_reference_inside_a_list_is_located_by_index(tmp_path: Path) -> None:
    message = error_of(
        tmp_path,
        envelope_rule('{match: client_ip, entries: ["192.0.2.1", "@nope"], action: reject}'),
    )
    assert "filters[0].rules[0].entries[1]: unknown list '@nope' (lists: none)" in message


def test_a_list_of_the_wrong_kind_is_refused(tmp_path: Path) -> None:
    body = "lists:\n  words: {kind: word, entries: [casino]}\n" + envelope_rule(
        '{match: client_ip, entries: "@words", action: reject}'
    )
    message = error_of(tmp_path, body)
    assert message.endswith(
        "filters[0].rules[0].entries: list '@words' is of kind 'word'; this field takes cidr"
    )


def test_an_address_list_cannot_feed_word_rules(tmp_path: Path) -> None:
    body = (
        "lists:\n  senders: {kind: address_glob, entries: ['*@x.example']}\n"
        "filters:\n  - kind: content\n    name: words\n    rules:\n"
        "      - {id: W, words: '@senders'}\n"
    )
    message = error_of(tmp_path, body)
    assert "filters[0].rules[0].words: list '@senders' is of kind 'address_glob'" in message
    assert "this field takes word or phrase" in message


def test_an_unknown_list_kind_is_refused(tmp_path: Path) -> None:
    message = error_of(tmp_path, "lists:\n  x: {kind: emoji, entries: []}\n")
    assert f"test.yaml:{BODY_LINE + 1}: lists.x.kind: Input should be" in message


def test_an_invalid_regex_is_located(tmp_path: Path) -> None:
    body = (
        "filters:\n  - kind: content\n    name: words\n    rules:\n      - {id: R, regex: 'a(b'}\n"
    )
    message = error_of(tmp_path, body)
    assert f"test.yaml:{RULE_LINE}: filters[0].rules[0].regex: invalid regular expression:" in (
        message
    )


def test_an_invalid_regex_in_a_list_is_located_by_index(tmp_path: Path) -> None:
    body = (
        "filters:\n  - kind: content\n    name: words\n    rules:\n"
        "      - {id: R, regex: ['ok', '[unclosed']}\n"
    )
    assert "filters[0].rules[0].regex[1]: invalid regular expression" in error_of(tmp_path, body)


@pytest.mark.parametrize("entry", ["10.0.0.300/8", "192.0.2.0/33", "not-an-ip", "2001:db8::/129"])
def test_an_invalid_cidr_is_refused(tmp_path: Path, entry: str) -> None:
    message = error_of(
        tmp_path, envelope_rule(f'{{match: client_ip, entries: ["{entry}"], action: reject}}')
    )
    assert message.endswith(
        f"filters[0].rules[0].entries: {entry!r} is not an IP address or CIDR range"
    )


def test_an_unknown_reply_key_is_refused(tmp_path: Path) -> None:
    message = error_of(
        tmp_path,
        envelope_rule("{match: client_ip, entries: [192.0.2.1], action: reject, reply: foo.bar}"),
    )
    assert message.endswith(
        "filters[0].rules[0].reply: unknown reply 'foo.bar' (not in the catalogue)"
    )


@pytest.mark.parametrize("reply", ["550 4.7.1 x", "450 5.7.1 x", "250 5.0.0 x", "550 nope"])
def test_a_literal_reply_whose_class_disagrees_is_refused(tmp_path: Path, reply: str) -> None:
    message = error_of(
        tmp_path,
        envelope_rule(
            f'{{match: client_ip, entries: [192.0.2.1], action: reject, reply: "{reply}"}}'
        ),
    )
    assert f"filters[0].rules[0].reply: reply {reply!r} is neither a catalogue key" in message


def test_an_unknown_scoring_reject_reply_is_located(tmp_path: Path) -> None:
    message = error_of(tmp_path, "scoring:\n  reject_reply: nope.nothing\n")
    assert "scoring.reject_reply: unknown reply 'nope.nothing'" in message


def test_a_profile_reply_override_must_be_a_literal_reply(tmp_path: Path) -> None:
    message = error_of(tmp_path, 'replies:\n  generic.spam: "550 4.7.1 x"\n')
    assert message == (
        f"{tmp_path / 'test.yaml'}:{BODY_LINE + 1}: replies.generic.spam: "
        "expected a reply like '550 5.7.1 text'"
    )


def test_a_profile_reply_override_replaces_the_catalogue_entry(tmp_path: Path) -> None:
    loaded = load(tmp_path, 'replies:\n  generic.spam: "554 5.7.1 Spam (${score})"\n')
    pipeline = compile_profile(loaded)
    assert pipeline.reject_reply.render({"score": 9}).text == "Spam (9)"
    assert SHIPPED.catalogue["generic.spam"].template == "Message rejected as spam (score ${score})"


# --- scanning limits ------------------------------------------------------------------------


def test_a_negative_scan_size_is_an_error_naming_the_file_line_and_field(tmp_path: Path) -> None:
    message = error_of(tmp_path, "scanning:\n  body_part_scan_size: {size: -1, source: x}\n")
    path = tmp_path / "test.yaml"
    assert message.startswith(f"{path}:{BODY_LINE + 1}: scanning.body_part_scan_size.size: ")
    assert "greater than or equal to 0" in message
    assert "(got -1)" in message


def test_a_zero_header_size_limit_is_an_error_naming_the_field(tmp_path: Path) -> None:
    message = error_of(
        tmp_path,
        "scanning:\n  header_size_limit: {size: 0, applies_to: field, source: x}\n",
    )
    assert "scanning.header_size_limit.size: Input should be greater than 0" in message


def test_an_unknown_header_limit_scope_lists_the_known_ones(tmp_path: Path) -> None:
    message = error_of(
        tmp_path,
        "scanning:\n  header_size_limit: {size: 10, applies_to: line, source: x}\n",
    )
    assert "scanning.header_size_limit.applies_to: Input should be 'field'" in message
    assert "(got 'line')" in message


def test_a_header_limit_that_rejects_needs_the_products_reply(tmp_path: Path) -> None:
    message = error_of(
        tmp_path,
        "scanning:\n  header_size_limit: {size: 10, applies_to: block, action: reject}\n",
    )
    assert "scanning.header_size_limit: Value error, action reject needs the product's reply" in (
        message
    )


def test_a_header_limit_that_truncates_takes_no_reply(tmp_path: Path) -> None:
    message = error_of(
        tmp_path,
        "scanning:\n  header_size_limit: {size: 10, applies_to: field, reply: x.y}\n",
    )
    assert "reply: goes with action reject" in message


def test_an_unknown_header_limit_reply_is_located(tmp_path: Path) -> None:
    message = error_of(
        tmp_path,
        "scanning:\n  header_size_limit: {size: 10, applies_to: block, action: reject,"
        " reply: nope.nothing}\n",
    )
    assert "scanning.header_size_limit.reply: unknown reply 'nope.nothing'" in message


def test_a_profile_that_says_nothing_reads_as_sinkd_did_before(tmp_path: Path) -> None:
    limits = load(tmp_path, "filters: []\n").profile.scanning.limits()
    assert limits.body_part_scan_size == 50_000
    assert limits.rawbody_part_scan_size == 500_000
    assert limits.header_size_limit is None
    assert "Conf.pm" in limits.body_source


def test_a_profile_extending_another_keeps_its_scanning_limits_and_may_change_one(
    tmp_path: Path,
) -> None:
    loaded = load(
        tmp_path,
        """\
        extends: typical-corporate
        scanning:
          body_part_scan_size: {size: 20000, source: our gateway's local.cf}
        """,
    )
    limits = loaded.profile.scanning.limits()
    assert limits.header_size_limit == 102_400  # typical-corporate's Postfix limit
    assert limits.body_part_scan_size == 20_000
    assert limits.body_source == "our gateway's local.cf"


@pytest.mark.parametrize(
    ("name", "size", "applies_to", "action"),
    [
        ("typical-corporate", 102_400, "field", "truncate"),
        ("strict-finance", 102_400, "field", "truncate"),
        ("deferring-gateway", 102_400, "field", "truncate"),
        ("no-filter", 102_400, "field", "truncate"),
        ("spamassassin-default", 8192, "value", "truncate"),
        ("m365-default-like", 262_144, "block", "reject"),
        ("legacy-sender-id", 262_144, "block", "reject"),
        ("google-workspace-like", 512_000, "block", "reject"),
    ],
)
def test_each_shipped_profile_has_the_header_size_limit_of_the_product_it_models(
    name: str, size: int, applies_to: str, action: str
) -> None:
    scanning = SHIPPED.resolve(name).profile.scanning
    header = scanning.header_size_limit
    assert header is not None
    assert (header.size, header.applies_to, header.action) == (size, applies_to, action)
    assert header.provenance is not None
    assert scanning.body_part_scan_size.size == 50_000
    assert scanning.rawbody_part_scan_size.size == 500_000


def test_thresholds_must_ascend(tmp_path: Path) -> None:
    message = error_of(tmp_path, "scoring:\n  thresholds: {tag: 5, quarantine: 8, reject: 6}\n")
    assert f"test.yaml:{BODY_LINE + 1}: scoring.thresholds:" in message
    assert "thresholds must ascend: quarantine (8.0) is above reject (6.0)" in message


def test_equal_and_missing_thresholds_are_fine(tmp_path: Path) -> None:
    loaded = load(tmp_path, "scoring:\n  thresholds: {tag: 5, reject: 5}\n")
    thresholds = loaded.profile.scoring.thresholds
    assert (thresholds.tag, thresholds.junk, thresholds.reject) == (5.0, None, 5.0)


def test_duplicate_filter_names_are_refused(tmp_path: Path) -> None:
    message = error_of(
        tmp_path, "filters:\n  - {kind: format, name: same}\n  - {kind: content, name: same}\n"
    )
    assert message == (
        f"{tmp_path / 'test.yaml'}:{BODY_LINE}: filters: "
        "Value error, two filters are named 'same'; names must be unique"
    )


def test_a_bad_filter_name_is_refused(tmp_path: Path) -> None:
    message = error_of(tmp_path, "filters:\n  - {kind: format, name: Bad_Name}\n")
    assert "filters[0].name: String should match pattern" in message


def test_a_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    message = error_of(tmp_path, "filters:\n  - {kind: format, name: a\n  - {kind: size}\n")
    assert message.startswith(f"{tmp_path / 'test.yaml'}:{BODY_LINE + 2}: YAML syntax error:")


def test_a_profile_that_is_not_a_mapping_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "- just\n- a list\n", head=False)
    with pytest.raises(ProfileError, match="a profile must be a YAML mapping"):
        ProfileSet([tmp_path]).resolve(str(path))


def test_the_id_must_equal_the_file_name(tmp_path: Path) -> None:
    path = tmp_path / "other-name.yaml"
    path.write_text(HEAD.format(id="test"), encoding="utf-8")
    with pytest.raises(ProfileError) as info:
        ProfileSet([tmp_path]).resolve("other-name")
    assert str(info.value) == f"{path}:2: id: must equal the file name 'other-name'"


def test_a_missing_profile_names_the_available_ones(tmp_path: Path) -> None:
    with pytest.raises(
        ProfileError,
        match=re.escape(
            "unknown profile 'nope'; available: deferring-gateway, google-workspace-like, "
            "legacy-sender-id, "
            "m365-default-like, no-filter, spamassassin-default, strict-finance, typical-corporate"
        )
        + "$",
    ):
        ProfileSet().resolve("nope")
    with pytest.raises(ProfileError, match="profile file not found"):
        ProfileSet().resolve(str(tmp_path / "absent.yaml"))


def test_a_missing_profiles_directory_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match="profiles directory not found"):
        ProfileSet([tmp_path / "nowhere"])


# --- extends --------------------------------------------------------------------------------

BASE = """\
lists:
  blocked: {kind: address_glob, entries: ["a@spam.example", "b@spam.example"]}
  words: {kind: word, entries: [casino]}
scoring:
  thresholds: {tag: 3.0, reject: 10.0}
filters:
  - kind: envelope
    name: access
    rules:
      - {id: BLOCK, match: mail_from, entries: "@blocked", action: reject}
  - kind: content
    name: words
    gtube: {action: reject}
    rules:
      - {id: WORD, words: "@words", score: 2.0}
"""
CHILD = """\
schema: sinkd.profile/v1
id: child
title: Child profile
extends: base
lists:
  blocked: {kind: address_glob, entries: ["c@spam.example"]}
scoring:
  thresholds: {reject: 20.0}
filters:
  - kind: content
    name: words
    rules:
      - {id: WORD, words: "@words", score: 5.0}
  - kind: format
    name: hygiene
    nul_bytes: {action: reject}
"""


def test_extends_merges_lists_thresholds_and_filters_by_name(tmp_path: Path) -> None:
    write(tmp_path, BASE, "base")
    write(tmp_path, CHILD, "child", head=False)
    profile = ProfileSet([tmp_path]).resolve("child").profile
    assert profile.id == "child"
    assert profile.title == "Child profile"
    assert profile.extends == "base"
    assert profile.models[0].source == "the test suite"  # inherited
    # A list's entries are replaced, not appended.
    assert profile.lists["blocked"].entries == ["c@spam.example"]
    assert profile.lists["words"].entries == ["casino"]
    # Maps merge key by key.
    assert profile.scoring.thresholds.tag == 3.0
    assert profile.scoring.thresholds.reject == 20.0
    # A filter with the same name is merged in place; a new one is appended.
    assert [(f.kind, f.name) for f in profile.filters] == [
        ("envelope", "access"),
        ("content", "words"),
        ("format", "hygiene"),
    ]
    words = profile.filters[1]
    assert words.rules[0].score == 5.0  # type: ignore[union-attr]
    assert len(words.rules) == 1  # type: ignore[union-attr]
    assert words.gtube is not None  # type: ignore[union-attr]
    assert words.gtube.action == "reject"  # type: ignore[union-attr]


async def test_an_extended_profile_judges_with_the_merged_rules(tmp_path: Path) -> None:
    from sinkd.core.model import VerdictAction

    write(tmp_path, BASE, "base")
    write(tmp_path, CHILD, "child", head=False)
    pipeline = compile_profile(ProfileSet([tmp_path]).resolve("child"))

    async def judge(mail_from: str) -> VerdictAction:
        tx = transaction(pipeline)
        refused = await tx.mail(mail_from)
        assert refused is None
        verdict = await tx.rcpt("bob@corp.example")
        if verdict is not None:
            return verdict.verdict
        [verdict] = await tx.data(b"Subject: casino\r\n\r\nhello\r\n")
        assert verdict.score == 5.0
        return verdict.verdict

    assert await judge("a@spam.example") is VerdictAction.ACCEPT  # dropped from the list
    assert await judge("c@spam.example") is VerdictAction.REJECT


def test_a_profile_may_extend_a_builtin_one(tmp_path: Path) -> None:
    write(
        tmp_path,
        "extends: typical-corporate\nscoring:\n  thresholds: {reject: 30.0}\n",
        "mine",
    )
    profile = ProfileSet([tmp_path]).resolve("mine").profile
    assert profile.scoring.thresholds.tag == 5.0
    assert profile.scoring.thresholds.reject == 30.0
    assert [f.name for f in profile.filters] == [
        "access-lists",
        "message-size",
        "spf",
        "spamhaus",
        "trigger-words",
        "rich-content",
        "dkim",
        "dmarc",
        "rfc-hygiene",
    ]
    assert profile.models[0].source == "the test suite"  # the child's list replaces the parent's


def test_an_extends_cycle_is_an_error(tmp_path: Path) -> None:
    write(tmp_path, "extends: b\n", "a")
    write(tmp_path, "extends: a\n", "b")
    with pytest.raises(ProfileError, match=r"extends: cycle a -> b -> a"):
        ProfileSet([tmp_path]).resolve("a")


def test_a_profile_extending_itself_is_a_cycle(tmp_path: Path) -> None:
    write(tmp_path, "extends: self\n", "self")
    with pytest.raises(ProfileError, match=r"extends: cycle self -> self"):
        ProfileSet([tmp_path]).resolve("self")


def test_extending_an_unknown_profile_is_located(tmp_path: Path) -> None:
    message = error_of(tmp_path, "extends: nothing-here\n")
    assert f"test.yaml:{BODY_LINE}: extends: unknown profile 'nothing-here'" in message


# --- the filter registry --------------------------------------------------------------------


def _spec_kinds() -> dict[str, type]:
    union, *_metadata = typing.get_args(FilterSpec)
    kinds: dict[str, type] = {}
    for spec in typing.get_args(union):
        (kind,) = typing.get_args(spec.model_fields["kind"].annotation)
        kinds[kind] = spec
    return kinds


def test_the_registry_and_the_profile_schema_name_the_same_filter_kinds() -> None:
    specs = _spec_kinds()
    assert (
        set(specs)
        == set(REGISTRY)
        == {
            "envelope",
            "size",
            "spf",
            "sender_id",
            "dkim",
            "sender_auth",
            "dmarc",
            "dnsbl",
            "content",
            "mime",
            "spamassassin",
            "format",
            "greylist",
            "rate_limit",
            "postfix_smtpd",
            "postfix_cleanup",
        }
    )
    for kind, cls in REGISTRY.items():
        assert cls.Spec is specs[kind]


@pytest.mark.parametrize("kind", sorted(REGISTRY))
def test_each_filter_class_kind_equals_its_module_name(kind: str) -> None:
    cls = REGISTRY[kind]
    assert cls.kind == kind
    assert cls.__module__ == f"sinkd.core.filters.{kind}"


def test_on_and_off_are_plain_keys_and_strings_in_profiles_as_in_yaml_1_2(tmp_path: Path) -> None:
    # PyYAML's YAML 1.1 would read the key "on" as True and "off" as False.
    write(
        tmp_path,
        "filters:\n  - {kind: spf, name: spf, on: {fail: {action: none}}}\n"
        "  - {kind: content, name: c, rules: [{id: W, words: [off, yes], score: 1}]}\n",
        "yaml12",
    )
    profile = ProfileSet([tmp_path]).resolve("yaml12").profile
    spf, content = profile.filters
    assert spf.kind == "spf" and "fail" in spf.on  # type: ignore[union-attr]
    assert content.rules[0].words == ["off", "yes"]  # type: ignore[union-attr]


# --- sources and assumptions ------------------------------------------------------------------

# The list fields whose every item is a rule, and the mapping whose every value is one.
RULE_LISTS = frozenset({"rules", "attachments", "zones"})
RULE_MAPS = frozenset({"codes"})


def _acts(node: Spec) -> bool:
    """Whether an outcome-like node does something beyond recording: an action other than
    none/score, a score, or a reply. ``{}`` and ``{action: none}`` only record."""
    action = getattr(node, "action", None)
    score = getattr(node, "score", 0.0) or 0.0
    reply = getattr(node, "reply", None)
    return action not in (None, Action.NONE, Action.SCORE) or score != 0 or reply is not None


def unsourced(profile: Profile) -> list[str]:
    """The field paths of the nodes a built-in profile must source and does not.

    A node needs ``source:`` or ``assumption:`` when it is
    - a filter (``filters[i]``): its settings (limits, identities, spec, thresholds, ...);
    - a rule: each item of a filter's ``rules``, ``attachments`` or ``zones`` and each value of
      a zone's ``codes``;
    - an outcome that acts, wherever it is written (``on:``, ``on_fail_policy:``, ``gtube``,
      ``classes``, format actions, a zone's ``default``, ``on_error``): any node with an
      ``action`` that is not none/score, a non-zero ``score`` or a ``reply``;
    - the thresholds (``scoring``) and the stage and connection limits (``smtp``), when written;
    - each scanning limit (``scanning.header_size_limit``, ``scanning.body_part_scan_size``, ...);
    - a named list with entries (which words, which file types);
    - a ``models`` entry (the schema already demands it).
    Only what the file writes counts (``model_fields_set``): defaults are the filter's own and
    its source covers them. Replies are checked in the catalogue (below); a built-in profile
    may not override one with an unsourced literal, so ``replies:`` must be empty.
    """
    missing: list[str] = []

    def needs(node: Spec, path: tuple[str | int, ...]) -> bool:
        parent = path[-2] if len(path) >= 2 else None
        if path[:1] == ("filters",) and len(path) == 2:
            return True
        if isinstance(path[-1], int) and parent in RULE_LISTS:
            return True
        if parent in RULE_MAPS:
            return True
        if path in (("scoring",), ("smtp",)) or path[:1] == ("models",):
            return True
        if path[:1] == ("scanning",) and len(path) == 2:
            return True  # each scanning limit: which product's, and where it says so
        if path[:1] == ("lists",) and len(path) == 2:
            return bool(getattr(node, "entries", None))
        return "action" in type(node).model_fields and _acts(node)

    def walk(value: object, path: tuple[str | int, ...]) -> None:
        if isinstance(value, Spec):
            if path and needs(value, path) and value.provenance is None:
                missing.append(format_loc(path))
            fields = type(value).model_fields
            for field in sorted(value.model_fields_set):
                walk(getattr(value, field), (*path, fields[field].alias or field))
        elif isinstance(value, (list, tuple)):
            for index, item in enumerate(value):
                walk(item, (*path, index))
        elif isinstance(value, dict):
            for key, item in value.items():
                walk(item, (*path, str(key)))

    walk(profile, ())
    if profile.replies:
        missing.append("replies (a built-in profile takes its replies from the catalogue)")
    return missing


@pytest.mark.parametrize("name", SHIPPED.names())
def test_every_rule_threshold_limit_outcome_and_stage_of_a_builtin_profile_is_sourced(
    name: str,
) -> None:
    loaded = SHIPPED.resolve(name)
    missing = unsourced(loaded.profile)
    assert not missing, f"{loaded.path}: no source: or assumption: at " + ", ".join(missing)


def test_every_reply_in_the_catalogue_says_where_its_wording_comes_from() -> None:
    catalogue = builtin_profiles_dir() / "replies.yaml"
    where = SHIPPED.catalogue_provenance
    assert set(where) == set(SHIPPED.catalogue)
    missing = sorted(key for key, origin in where.items() if origin is None)
    assert not missing, f"{catalogue}: no source: or assumption: for " + ", ".join(missing)


def test_the_sourcing_check_finds_an_unsourced_rule_outcome_and_list(tmp_path: Path) -> None:
    loaded = load(
        tmp_path,
        """\
lists:
  words: {kind: word, entries: [casino]}
  empty: {kind: word, entries: []}
scoring: {thresholds: {reject: 9}, assumption: "a test threshold"}
filters:
  - kind: content
    name: words
    source: "the test suite"
    gtube: {action: junk}
    rules:
      - {id: WORD, words: "@words", score: 3}
  - kind: spf
    name: spf
    assumption: "a test"
    on: {fail: {action: none}, softfail: {score: 1.0}, none: {}}
""",
    )
    assert unsourced(loaded.profile) == [
        "filters[0].gtube",
        "filters[0].rules[0]",
        "filters[1].on.softfail",
        "lists.words",
    ]


def test_source_and_assumption_together_are_an_error_naming_file_line_and_node(
    tmp_path: Path,
) -> None:
    message = error_of(
        tmp_path,
        envelope_rule(
            "{match: client_ip, entries: [192.0.2.1], action: reject, source: a, assumption: b}"
        ),
    )
    assert message.startswith(f"{tmp_path / 'test.yaml'}:{RULE_LINE}: filters[0].rules[0]: ")
    assert "either source: (a document a reader can check) or assumption:" in message


@pytest.mark.parametrize("field", ["source", "assumption"])
def test_an_empty_source_or_assumption_is_an_error_naming_the_field(
    tmp_path: Path, field: str
) -> None:
    message = error_of(tmp_path, f"scoring:\n  thresholds: {{reject: 9}}\n  {field}: '  '\n")
    assert f"test.yaml:{BODY_LINE + 2}: scoring.{field}: Value error, must not be empty" in message


def test_a_models_entry_without_source_or_assumption_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "test.yaml"
    path.write_text(
        "schema: sinkd.profile/v1\nid: test\ntitle: T\nmodels:\n  - {what: something}\n",
        encoding="utf-8",
    )
    with pytest.raises(ProfileError) as info:
        ProfileSet([tmp_path]).resolve(str(path))
    assert f"{path}:5: models[0]: Value error, say where this comes from" in str(info.value)


def test_a_models_entry_may_give_an_assumption_instead_of_a_source(tmp_path: Path) -> None:
    path = tmp_path / "test.yaml"
    path.write_text(
        "schema: sinkd.profile/v1\nid: test\ntitle: T\n"
        "models:\n  - {what: something, assumption: because}\n",
        encoding="utf-8",
    )
    loaded = ProfileSet([tmp_path]).resolve(str(path))
    assert loaded.profile.models[0].provenance == ("assumption", "because")


def test_a_catalogue_entry_with_both_or_an_unknown_key_is_located(tmp_path: Path) -> None:
    path = tmp_path / "replies.yaml"
    path.write_text(
        "replies:\n  my.reply:\n    reply: '550 5.7.1 no'\n    source: a\n    assumption: b\n",
        encoding="utf-8",
    )
    with pytest.raises(ProfileError) as info:
        load_catalogue([path])
    assert (
        str(info.value)
        == f"{path}:2: replies.my.reply: give either source: or assumption:, not both"
    )
    path.write_text("replies:\n  my.reply: {reply: '550 5.7.1 no', cite: x}\n", encoding="utf-8")
    with pytest.raises(ProfileError) as info:
        load_catalogue([path])
    assert str(info.value) == f"{path}:2: replies.my.reply.cite: unknown key"


def test_a_catalogue_in_a_profiles_dir_may_give_plain_replies(tmp_path: Path) -> None:
    (tmp_path / "replies.yaml").write_text(
        "replies:\n  my.reply: '550 5.7.1 no'\n"
        "  my.other: {reply: '451 4.7.1 later', assumption: x}\n",
        encoding="utf-8",
    )
    profiles = ProfileSet([tmp_path])
    assert profiles.catalogue_provenance["my.reply"] is None
    assert profiles.catalogue_provenance["my.other"] == ("assumption", "x")
    assert profiles.catalogue["my.reply"].enhanced == "5.7.1"


# --- what the built-in profiles do (issue 15: the products' documented facts) ---------------

PLAIN = "From: Alice <alice@sender.example>\r\nTo: bob@corp.example\r\nSubject: {subject}\r\n"
PLAIN += "Date: Mon, 1 Jan 2024 10:00:00 +0000\r\nMessage-ID: <1@sender.example>\r\n\r\n{body}\r\n"


async def judged(name: str, subject: str, body: str = "Hello.") -> Verdict:
    """The verdict of a built-in profile on a plain message from a sender whose domain has no
    SPF, DKIM or DMARC data (offline DNS: recorded only, no score)."""
    raw = PLAIN.format(subject=subject, body=body).encode()
    return await judge(compile_profile(SHIPPED.resolve(name)), raw, declare_size=True)


async def refused_at_mail(name: str, size: int) -> Verdict | None:
    tx = transaction(compile_profile(SHIPPED.resolve(name)))
    return await tx.mail("alice@sender.example", size)


MB = 1024 * 1024


async def test_m365_has_no_trigger_word_filter_so_casino_and_lottery_are_inbox_mail() -> None:
    verdict = await judged("m365-default-like", "Casino night", "Win the lottery, buy viagra.")
    assert verdict.disposition is Disposition.INBOX
    assert not [code for code in verdict.codes if "TRIGGER" in code]


async def test_m365_refuses_over_the_36_mb_default_receive_size_and_takes_30_mb() -> None:
    assert await refused_at_mail("m365-default-like", 30 * MB) is None
    verdict = await refused_at_mail("m365-default-like", 36 * MB + 1)
    assert verdict is not None and verdict.verdict is VerdictAction.REJECT
    assert verdict.reply == Reply(
        550, "5.2.3", "RESOLVER.RST.RecipSizeLimit; message too large for this recipient"
    )


async def test_google_takes_a_30_mb_message_and_refuses_over_50_mb_with_552_5_3_4() -> None:
    assert await refused_at_mail("google-workspace-like", 30 * MB) is None
    verdict = await refused_at_mail("google-workspace-like", 50 * MB + 1)
    assert verdict is not None and verdict.verdict is VerdictAction.REJECT
    assert verdict.reply == Reply(
        552, "5.3.4", "Your message exceeded Google's message size limits."
    )


async def test_typical_corporate_does_not_count_unsubscribe_as_a_trigger_word() -> None:
    verdict = await judged("typical-corporate", "October news", "To unsubscribe, click below.")
    assert "CONTENT_TRIGGER_WORD" not in verdict.codes
    assert verdict.score == 0


@pytest.mark.parametrize(
    ("subject", "body"),
    [
        ("Reminder: invoice overdue", "Our invoice 4711 is overdue; the invoice overdue notice."),
        ("Wire transfer received", "We received your wire transfer of EUR 1,200."),
    ],
    ids=["dunning-letter", "bank-notice"],
)
async def test_strict_finance_delivers_a_dunning_letter_and_a_bank_notice(
    subject: str, body: str
) -> None:
    verdict = await judged("strict-finance", subject, body)
    assert verdict.verdict is VerdictAction.ACCEPT
    assert verdict.disposition is Disposition.INBOX
    assert {"CONTENT_BEC_SUBJECT", "CONTENT_BEC_TERMS"} <= set(verdict.codes)
    assert verdict.score < 5


async def test_strict_finance_holds_bec_wording_that_comes_with_another_spam_sign() -> None:
    verdict = await judged(
        "strict-finance", "Urgent payment: bank details changed", "Click here to act now."
    )
    assert verdict.verdict is VerdictAction.QUARANTINE
    assert {"CONTENT_BEC_SUBJECT", "CONTENT_TRIGGER_WORD"} <= set(verdict.codes)
    assert verdict.score >= 5


# shop.example (profiles/dns/demo.zone) publishes "v=spf1 ... -all" for 192.0.2.0/24.
DEMO_ZONE = builtin_profiles_dir() / "dns" / "demo.zone"


async def test_google_answers_an_spf_hard_fail_at_the_end_of_data_after_accepting_rcpt(
    start_server: StartServer,
) -> None:
    app = await start_server(
        profile="google-workspace-like", dns_zones=[DEMO_ZONE], client_ip="203.0.113.5"
    )
    assert app.smtp_address is not None
    host, port = app.smtp_address
    raw = PLAIN.replace("sender.example", "shop.example").format(subject="Order", body="Hi.")
    async with aiosmtplib.SMTP(hostname=host, port=port, start_tls=False, timeout=30) as smtp:
        await smtp.ehlo()
        assert (await smtp.mail("alice@shop.example"))[0] == 250
        assert (await smtp.rcpt("ann@gmail.example"))[0] == 250  # not refused at RCPT TO
        with pytest.raises(aiosmtplib.SMTPDataError) as refused:
            await smtp.data(raw.encode())
    assert refused.value.code == 550
    assert refused.value.message.startswith(
        "5.7.26 The (E)MAIL FROM domain [shop.example] has an SPF record with a hard fail policy"
    )


async def test_typical_corporate_still_refuses_an_spf_fail_at_rcpt_to(
    start_server: StartServer,
) -> None:
    app = await start_server(
        profile="typical-corporate", dns_zones=[DEMO_ZONE], client_ip="203.0.113.5"
    )
    assert app.smtp_address is not None
    host, port = app.smtp_address
    async with aiosmtplib.SMTP(hostname=host, port=port, start_tls=False, timeout=30) as smtp:
        await smtp.ehlo()
        assert (await smtp.mail("alice@shop.example"))[0] == 250
        with pytest.raises(aiosmtplib.SMTPRecipientRefused) as refused:
            await smtp.rcpt("bob@corp.example")
    assert (refused.value.code, refused.value.message) == (550, "5.7.23 SPF validation failed")


# --- sinkd profiles show ------------------------------------------------------------------------


def show(*argv: str) -> str:
    out = io.StringIO()
    assert main(["profiles", "show", *argv], out=out) == 0
    return out.getvalue()


def test_profiles_show_prints_each_rule_with_its_source_or_assumption() -> None:
    lines = show("typical-corporate").splitlines()
    assert lines[0] == "# Typical corporate IT policy (survey composite)"
    block = lines[lines.index("  trigger-words (content)") :]
    rule = next(i for i, line in enumerate(block) if line.startswith("    TRIGGER_WORD: "))
    assert "score=3 per_match=True max_score=9" in block[rule]
    assert block[rule + 1].startswith("      assumption: survey: 80% filter trigger words;")
    stage = lines.index("SMTP: envelope refusals answered at RCPT TO")
    assert lines[stage + 1].startswith("      source: postconf(5) smtpd_delay_reject")
    assert lines[stage + 2] == "        answered at RCPT TO)"  # wrapped under its label
    assert lines[stage + 3].startswith("Scoring: tag at 5, quarantine at 8, reject at 15;")
    assert lines[stage + 4].startswith("      assumption: tag at 5 is SpamAssassin's")


def test_profiles_show_prints_the_scanning_limits_with_their_sources() -> None:
    lines = show("m365-default-like").splitlines()
    at = lines.index("Scanning:")
    assert lines[at + 1] == (
        "  header: 262,144 octets of header; refused with exchange.header_size"
    )
    assert lines[at + 2].startswith("      assumption: Exchange Online publishes no header limit")
    sizes = [line for line in lines[at:] if line.startswith("  body_part_scan_size")]
    assert sizes == ["  body_part_scan_size: 50,000"]
    assert "  exchange.header_size: 552 5.3.4 Header size exceeds fixed maximum size" in lines


def test_profiles_show_lists_the_replies_the_profile_uses_with_their_sources() -> None:
    text = show("google-workspace-like")
    assert "SMTP: envelope refusals answered at the end of DATA" in text
    replies = text[text.index("\nReplies:\n") :].splitlines()
    at = replies.index(
        "  gmail.size: 552 5.3.4 Your message exceeded Google's message size limits."
    )
    assert replies[at + 1] == "      source: Google 'Gmail SMTP errors and codes' 552 5.3.4"
    assert all(len(line) <= 100 or " " not in line.strip() for line in replies)


def test_profiles_show_of_a_profile_without_sources_prints_its_rules_only(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        envelope_rule("{id: BLOCK, match: client_ip, entries: [192.0.2.1], action: reject}"),
    )
    text = show(str(path))
    assert "    BLOCK: match=client_ip entries=[192.0.2.1] action=reject\n" in text
    assert "source:" not in text.split("Filters:")[1].split("Replies:")[0]


def test_profiles_show_json_carries_the_sources_given_and_no_empty_ones() -> None:
    data = json.loads(show("m365-default-like", "--json"))
    size = next(f for f in data["filters"] if f["kind"] == "size")
    assert size["max_bytes"] == 36 * MB
    assert size["source"].startswith("office-docs-powershell Set-MailboxPlan.md -MaxReceiveSize")
    assert "assumption" not in size
    assert data["scoring"]["assumption"].startswith("EOP's spam verdicts")
    assert "source" not in data["scoring"]


def test_profiles_show_lists_only_the_replies_the_profile_can_send() -> None:
    replies = show("m365-default-like").split("\nReplies:\n")[1]
    assert "  m365.dmarc_reject: 550 5.7.509" in replies
    # GTUBE goes to Junk, there is no reject threshold and no connection limit: their default
    # replies are never sent.
    for unused in ("gtube.reject", "generic.spam", "postfix.connection_limit"):
        assert f"  {unused}:" not in replies
