"""The rule-by-rule comparison of two merged profiles (``sinkd.core.profile_diff``)."""

from __future__ import annotations

import textwrap
from pathlib import Path

from sinkd.core.profile_diff import Change, diff_profiles
from sinkd.core.profiles import Profile, ProfileSet

BASE = "typical-corporate"
HEAD = """\
schema: sinkd.profile/v1
id: changed
title: typical-corporate with one change
extends: typical-corporate
models:
  - {what: "one change", assumption: "the test of profiles diff"}
"""


def changed(tmp_path: Path, body: str = "") -> Profile:
    """typical-corporate with ``body`` written over it (``extends:``), merged."""
    path = tmp_path / "changed.yaml"
    path.write_text(HEAD + textwrap.dedent(body), encoding="utf-8")
    return ProfileSet([tmp_path]).resolve(str(path)).profile


def base() -> Profile:
    return ProfileSet().resolve(BASE).profile


def test_a_profile_compared_with_itself_has_no_changes() -> None:
    assert diff_profiles(base(), base()).changes == ()


def test_what_only_documents_a_profile_is_no_difference(tmp_path: Path) -> None:
    # A new title, models and a source on the scoring node change no verdict.
    profile = changed(
        tmp_path,
        """\
        scoring:
          assumption: "another reason for the same thresholds"
        """,
    )
    assert diff_profiles(base(), profile).changes == ()


def test_one_changed_threshold_is_the_one_change(tmp_path: Path) -> None:
    profile = changed(tmp_path, "scoring: {thresholds: {quarantine: 6.0}}\n")
    diff = diff_profiles(base(), profile)
    assert diff.changes == (Change("scoring", "thresholds.quarantine", 8.0, 6.0),)
    assert (diff.a, diff.b) == (BASE, "changed")


def test_one_list_entry_added_is_named_as_added_not_as_a_new_list(tmp_path: Path) -> None:
    entries = [*base().lists["trigger_words"].entries, "crypto"]
    profile = changed(tmp_path, f"lists: {{trigger_words: {{entries: {entries!r}}}}}\n")
    assert diff_profiles(base(), profile).changes == (
        Change("list trigger_words", "entries", added=("crypto",)),
    )
    # The other way round it is removed.
    assert diff_profiles(profile, base()).changes == (
        Change("list trigger_words", "entries", removed=("crypto",)),
    )


def test_a_filter_only_in_b_is_one_change_for_the_whole_filter(tmp_path: Path) -> None:
    profile = changed(
        tmp_path,
        """\
        filters:
          - {kind: size, name: small-messages, max_bytes: 1000,
             assumption: "a gateway that takes small messages only"}
        """,
    )
    (change,) = diff_profiles(base(), profile).changes
    assert (change.group, change.setting, change.before, change.only_in) == (
        "filter small-messages (size)",
        "",
        None,
        "B",
    )
    assert change.after["max_bytes"] == 1000
    (reverse,) = diff_profiles(profile, base()).changes
    assert reverse.only_in == "A"


def test_a_rule_of_a_filter_is_named_by_its_id(tmp_path: Path) -> None:
    # The filter is merged by name; its rules list replaces the parent's, so the rules kept
    # are written out again, BLOCK_FROM with another action.
    access = next(f for f in base().filters if getattr(f, "name", None) == "access-lists")
    kept = [r.model_dump(mode="json", exclude_none=True) for r in access.rules]  # type: ignore[attr-defined]
    for rule in kept:
        if rule["id"] == "BLOCK_FROM":
            rule["action"] = "reject"
    profile = changed(
        tmp_path, f"filters:\n  - {{kind: envelope, name: access-lists, rules: {kept!r}}}\n"
    )
    assert diff_profiles(base(), profile).changes == (
        Change("filter access-lists (envelope)", "rules.BLOCK_FROM.action", "quarantine", "reject"),
    )


def test_the_changes_serialise_as_json_with_a_and_b_or_added_and_removed() -> None:
    assert Change("scoring", "thresholds.tag", 5.0, None).to_json() == {
        "group": "scoring",
        "setting": "thresholds.tag",
        "a": 5.0,
        "b": None,
    }
    assert Change("list x", "entries", added=("a",)).to_json() == {
        "group": "list x",
        "setting": "entries",
        "added": ["a"],
        "removed": [],
    }


def test_filters_in_another_order_are_an_order_change(tmp_path: Path) -> None:
    # The pipeline runs filters in the order listed: the first to decide wins.
    def standalone(profile_id: str, filters: list[str]) -> Profile:
        path = tmp_path / f"{profile_id}.yaml"
        path.write_text(
            f"schema: sinkd.profile/v1\nid: {profile_id}\ntitle: order\n"
            'models: [{what: "order", assumption: "the test"}]\nfilters:\n'
            + "".join(f"  - {{kind: size, name: {name}, max_bytes: 1000}}\n" for name in filters),
            encoding="utf-8",
        )
        return ProfileSet([tmp_path]).resolve(str(path)).profile

    first = standalone("first", ["small", "smaller"])
    second = standalone("second", ["smaller", "small"])
    assert diff_profiles(first, second).changes == (
        Change(
            "filters",
            "order",
            ["small (size)", "smaller (size)"],
            ["smaller (size)", "small (size)"],
        ),
    )
