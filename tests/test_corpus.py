"""The corpus keeps the verdicts honest: every message of ``tests/corpus/messages`` judged by
every built-in profile must give what ``tests/corpus/expected.yaml`` says, cell by cell, every
cell that is not a plain accept must cite the product behaviour it reproduces, and the docs'
matrix must be the one the table generates.

When a verdict changes on purpose: ``python -m tests.corpus.generate``, review the diff of
``expected.yaml`` and ``docs/corpus.md``, commit both.
"""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path

import pytest

from sinkd.cli import main as sinkd_main
from sinkd.core.model import Verdict
from tests.conftest import SpamdProcess
from tests.corpus import make_messages
from tests.support.corpus import (
    CORPUS_PAGE,
    ENVELOPES,
    MATRIX_END,
    MATRIX_START,
    MESSAGES,
    SPAMD_PROFILE,
    ZONE,
    Cell,
    ProfileJudge,
    Table,
    between,
    builtin_profiles,
    envelopes,
    judge_corpus,
    load_expected,
    matrix_text,
    message_names,
    read_message,
)

REGENERATE = "if the change is intended: python -m tests.corpus.generate, review the diff, commit"
PROFILES = builtin_profiles()
OFFLINE_PROFILES = [p for p in PROFILES if p != SPAMD_PROFILE]


def _compare(profile: str, actual: dict[str, Cell]) -> None:
    expected = load_expected()
    problems: list[str] = []
    for name in sorted(set(expected) | set(actual)):
        want = expected.get(name, {}).get(profile)
        got = actual.get(name)
        if want is None:
            problems.append(f"{name} / {profile}: not in expected.yaml")
        elif got is None:
            problems.append(f"{name} / {profile}: in expected.yaml, but no such message")
        else:
            problems.extend(f"{name} / {profile}: {d}" for d in want.differences(got))
    assert not problems, (
        f"{len(problems)} cell(s) differ (expected -> actual); {REGENERATE}:\n"
        + "\n".join(problems)
    )


# --- the corpus itself ---------------------------------------------------------------------------


def test_the_corpus_holds_at_least_forty_messages_each_with_its_envelope() -> None:
    names = message_names()
    assert len(names) >= 40
    assert sorted(envelopes()) == names


def test_corpus_messages_are_stored_with_lf_line_endings_and_full_headers() -> None:
    for name in message_names():
        stored = (MESSAGES / f"{name}.eml").read_bytes()
        assert b"\r" not in stored, name
        head = stored.partition(b"\n\n")[0].lower()
        for field in (b"\nfrom: ", b"\nto: ", b"\nsubject: ", b"\ndate: ", b"\nmessage-id: <"):
            assert field in b"\n" + head, f"{name}: no {field.strip().decode()} header"


def test_the_committed_corpus_is_what_make_messages_writes(tmp_path: Path) -> None:
    make_messages.main(tmp_path)
    written = sorted(p.name for p in (tmp_path / "messages").glob("*.eml"))
    assert written == sorted(p.name for p in MESSAGES.glob("*.eml"))
    for name in written:
        assert (tmp_path / "messages" / name).read_bytes() == (MESSAGES / name).read_bytes(), (
            f"{name} differs from what make_messages.py writes: rerun "
            "python -m tests.corpus.make_messages"
        )
    assert (tmp_path / "envelopes.yaml").read_bytes() == ENVELOPES.read_bytes()


def _typical_verdicts() -> dict[str, Verdict]:
    judge = ProfileJudge("typical-corporate")
    known = envelopes()

    async def run() -> dict[str, Verdict]:
        return {n: await judge.verdict(read_message(n), known[n]) for n in message_names()}

    return asyncio.run(run())


def test_signed_corpus_messages_pass_dkim_unless_altered_after_signing() -> None:
    judged_after_data = {n: v for n, v in _typical_verdicts().items() if v.stage.value == "data"}
    assert len(judged_after_data) >= 40
    for name, verdict in judged_after_data.items():
        codes = verdict.codes
        head = read_message(name).partition(b"\r\n\r\n")[0].lower()
        signed = head.startswith(b"dkim-signature:") or b"\r\ndkim-signature:" in head
        if not signed:
            assert "DKIM_NONE" in codes, (name, codes)
        elif "altered" in name:
            assert "DKIM_FAIL" in codes, (name, codes)
        else:
            assert "DKIM_PASS" in codes, (name, codes)


@pytest.mark.parametrize("profile", OFFLINE_PROFILES)
def test_every_check_on_the_corpus_has_the_dns_data_it_needs(profile: str) -> None:
    judge = ProfileJudge(profile)
    known = envelopes()
    missing: list[str] = []

    async def run() -> None:
        for name in message_names():
            verdict = await judge.verdict(read_message(name), known[name])
            for finding in verdict.findings:
                if finding.unjudged is not None:
                    names = finding.detail.get("dns_names", [])
                    missing.append(
                        f"{name}: {finding.code} ({finding.unjudged}) {names}: {finding.reason}"
                    )

    asyncio.run(run())
    assert not missing, (
        f"{profile}: checks that could not judge; add the names to "
        "tests/corpus/dns/corpus.zone or fix the check:\n" + "\n".join(missing)
    )


# --- the expected table --------------------------------------------------------------------------


def test_the_expected_table_has_a_cell_for_every_message_and_builtin_profile() -> None:
    table = load_expected()
    assert sorted(table) == message_names()
    for name, row in table.items():
        assert sorted(row) == sorted(PROFILES), name


@pytest.mark.parametrize("profile", OFFLINE_PROFILES)
def test_each_profile_judges_every_corpus_message_as_the_expected_table_says(
    profile: str,
) -> None:
    _compare(profile, judge_corpus(profile))


def test_spamassassin_default_judges_every_corpus_message_as_the_expected_table_says(
    spamd: SpamdProcess,
) -> None:
    _compare(SPAMD_PROFILE, judge_corpus(SPAMD_PROFILE, spamd=spamd.address))


def test_every_cell_that_is_not_a_plain_accept_cites_where_its_behaviour_comes_from() -> None:
    unsourced = [
        f"{name} / {profile}: {cell.disposition} by {cell.code or ', '.join(cell.stripped)}"
        for name, row in load_expected().items()
        for profile, cell in row.items()
        if not cell.plain_accept and not (cell.source or "").strip()
    ]
    assert not unsourced, (
        "these cells refuse, hold, file, tag or strip without a source: give the deciding "
        "profile rule a source: or assumption:, then regenerate:\n" + "\n".join(unsourced)
    )


def test_the_docs_matrix_is_generated_from_the_expected_table() -> None:
    table: Table = load_expected()
    shown = between(CORPUS_PAGE.read_text(encoding="utf-8"), MATRIX_START, MATRIX_END)
    assert shown == matrix_text(table, PROFILES), (
        "the corpus matrix in docs/corpus.md differs from tests/corpus/expected.yaml: "
        "python -m tests.corpus.generate --no-spamd rewrites it"
    )


@pytest.mark.parametrize(
    ("name", "profile"),
    [
        ("phish-dmarc-reject-spoof", "m365-default-like"),
        ("auth-spf-fail", "typical-corporate"),
        ("mal-zip-exe", "google-workspace-like"),
        ("spam-lottery-listed-ip", "strict-finance"),
        ("tx-invoice-pdf", "typical-corporate"),
    ],
)
def test_sinkd_check_on_the_stored_file_gives_the_cell_of_the_expected_table(
    name: str, profile: str
) -> None:
    """The table is judged in process; ``sinkd check`` on the LF file must agree with it."""
    envelope = envelopes()[name]
    out = io.StringIO()
    argv = [
        "check",
        str(MESSAGES / f"{name}.eml"),
        "--json",
        "--profile",
        profile,
        "--dns-zone",
        str(ZONE),
        "--client-ip",
        envelope.client_ip,
        "--helo",
        envelope.helo,
        "--mail-from",
        envelope.mail_from,
        *(arg for rcpt in envelope.rcpt for arg in ("--rcpt", rcpt)),
    ]
    sinkd_main(argv, out=out)
    (verdict,) = json.loads(out.getvalue())
    deciding = [f["code"] for f in verdict["findings"] if f["decided"]]
    cell = load_expected()[name][profile]
    assert verdict["disposition"] == cell.disposition
    assert verdict["verdict"] == cell.verdict
    assert deciding[:1] == ([cell.code] if cell.code else [])
    assert f"{verdict['reply']['code']} {verdict['reply']['enhanced']}" == cell.reply
    assert verdict["stage"] == cell.stage
