"""``sinkd profiles diff A B``: the rule-by-rule printout, the corpus run, JSON and exit codes
(0 nothing differs, 1 something differs, 2 bad input)."""

from __future__ import annotations

import asyncio
import io
import json
import os
import textwrap
from pathlib import Path
from typing import Any

import pytest

from sinkd.cli import main
from sinkd.cli.judging import check_message, file_envelope, option_identity, read_message
from sinkd.core.message import parse
from sinkd.core.profiles import ProfileSet
from sinkd.services.judge import Judge
from tests.support.paths import TESTS

CORPUS = TESTS / "corpus" / "messages"
HEAD = """\
schema: sinkd.profile/v1
id: changed
title: typical-corporate with one change
extends: typical-corporate
models:
  - {what: "one change", assumption: "the test of profiles diff"}
"""


@pytest.fixture(autouse=True)
def _no_sinkd_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("SINKD_"):
            monkeypatch.delenv(name)


def run(*argv: str | Path) -> tuple[int, str]:
    out = io.StringIO()
    code = main([str(a) for a in argv], out=out)
    return code, out.getvalue()


def changed(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "changed.yaml"
    path.write_text(HEAD + textwrap.dedent(body), encoding="utf-8")
    return path


def test_a_profile_against_itself_is_no_differences_and_exit_0() -> None:
    code, out = run("profiles", "diff", "typical-corporate", "typical-corporate")
    assert code == 0
    assert "Rules: no differences" in out


def test_one_changed_threshold_is_printed_as_a_to_b_and_exits_1(tmp_path: Path) -> None:
    path = changed(tmp_path, "scoring: {thresholds: {quarantine: 6.0}}\n")
    code, out = run("profiles", "diff", "typical-corporate", path)
    assert code == 1
    assert "Rules: 1 setting(s) differ in 1 group(s)" in out
    assert "scoring:\n  thresholds.quarantine: 8 → 6\n" in out
    code, out = run("profiles", "diff", "typical-corporate", path, "--json")
    assert code == 1
    data = json.loads(out)
    assert data["rules"] == [
        {"group": "scoring", "setting": "thresholds.quarantine", "a": 8.0, "b": 6.0}
    ]
    assert (data["a"]["id"], data["b"]["id"], data["differs"]) == (
        "typical-corporate",
        "changed",
        True,
    )


def test_one_list_entry_added_is_printed_with_a_plus(tmp_path: Path) -> None:
    entries = [*ProfileSet().resolve("typical-corporate").profile.lists["trigger_words"].entries]
    path = changed(tmp_path, f"lists: {{trigger_words: {{entries: {[*entries, 'crypto']!r}}}}}\n")
    code, out = run("profiles", "diff", "typical-corporate", path)
    assert code == 1
    assert "list trigger_words:\n  entries:\n    + crypto\n" in out


def test_a_filter_only_in_b_is_printed_with_its_settings(tmp_path: Path) -> None:
    path = changed(
        tmp_path,
        """\
        filters:
          - {kind: size, name: small-messages, max_bytes: 1000,
             assumption: "a gateway that takes small messages only"}
        """,
    )
    code, out = run("profiles", "diff", "typical-corporate", path)
    assert code == 1
    assert "filter small-messages (size): only in B\n  max_bytes: 1000\n" in out


@pytest.mark.parametrize("which", ["A", "B"])
def test_an_unknown_profile_id_is_exit_2_naming_the_argument(
    which: str, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["typical-corporate", "no-such-profile"]
    if which == "A":
        args.reverse()
    code, out = run("profiles", "diff", *args)
    assert code == 2
    assert out == ""
    assert f"{which} 'no-such-profile': unknown profile" in capsys.readouterr().err


def test_a_missing_or_invalid_profile_file_is_exit_2_naming_the_argument(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _ = run("profiles", "diff", "typical-corporate", tmp_path / "missing.yaml")
    assert code == 2
    err = capsys.readouterr().err
    assert "B '" in err and "missing.yaml" in err and "not found" in err
    broken = changed(tmp_path, "scoring: {thresholds: {quarantine: lots}}\n")
    code, _ = run("profiles", "diff", broken, "typical-corporate")
    assert code == 2
    err = capsys.readouterr().err
    assert f"A '{broken}'" in err and "quarantine" in err


def test_a_corpus_that_is_not_a_directory_of_messages_is_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _ = run("profiles", "diff", "typical-corporate", "strict-finance", "--corpus", tmp_path)
    assert code == 2
    assert f"--corpus {tmp_path}: a directory with no *.eml files" in capsys.readouterr().err
    missing = tmp_path / "nowhere"
    code, _ = run("profiles", "diff", "typical-corporate", "strict-finance", "--corpus", missing)
    assert code == 2
    assert f"--corpus {missing}: not a directory" in capsys.readouterr().err


def judged(profile: str) -> dict[str, dict[str, Any]]:
    """Every corpus file judged by ``profile`` as ``sinkd check`` judges it (offline DNS, the
    header envelope, client 127.0.0.1): file -> what a sender sees of the verdict."""
    profiles = ProfileSet()
    judge = Judge(profiles, profile=profile)
    loaded = profiles.resolve(profile)
    identity = option_identity("127.0.0.1", "localhost")
    seen = {}
    for path in sorted(CORPUS.glob("*.eml")):
        raw = read_message(path)
        envelope = file_envelope(parse(raw), None, [])
        (verdict,) = asyncio.run(check_message(judge, raw, envelope, identity, profile=loaded))
        seen[str(path)] = {
            "verdict": verdict.verdict.value,
            "disposition": verdict.disposition.value,
            "stage": verdict.stage.value,
            "reply": (verdict.reply.code, verdict.reply.enhanced, verdict.reply.text),
            "deciding": [f.code for f in verdict.findings if f.decided],
            "stripped": list(verdict.stripped),
        }
    return seen


def test_a_corpus_run_lists_exactly_the_messages_the_two_profiles_judge_differently() -> None:
    a, b = judged("typical-corporate"), judged("strict-finance")
    expected = sorted(name for name in a if a[name] != b[name])
    assert expected, "the two built-in profiles judge some corpus message differently"
    code, out = run(
        "profiles", "diff", "typical-corporate", "strict-finance", "--corpus", CORPUS, "--json"
    )
    assert code == 1
    corpus = json.loads(out)["corpus"]
    assert corpus["messages"] == len(a)
    assert sorted(d["file"] for d in corpus["messages_judged_differently"]) == expected
    for found in corpus["messages_judged_differently"]:
        assert found["a"]["verdict"] == a[found["file"]]["verdict"]
        assert found["b"]["verdict"] == b[found["file"]]["verdict"]
    assert corpus["summary"].startswith(
        f"{len(expected)} of {len(a)} messages judged differently: "
    )
    code, text = run("profiles", "diff", "typical-corporate", "strict-finance", "--corpus", CORPUS)
    assert code == 1
    assert f"Corpus {CORPUS}: {corpus['summary']}\n" in text
    for name in expected:
        assert f"\n{name}: " in text


def test_a_corpus_judged_alike_by_identical_profiles_is_exit_0() -> None:
    code, out = run("profiles", "diff", "strict-finance", "strict-finance", "--corpus", CORPUS)
    assert code == 0
    count = len(list(CORPUS.glob("*.eml")))
    assert f"0 of {count} messages judged differently" in out
