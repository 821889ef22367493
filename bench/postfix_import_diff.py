"""The Postfix differential on the whole SpamAssassin public corpus (issue 20): every
configuration of ``tests/fixtures/postfix`` run by the real Postfix and by sinkd with the
imported profile (``tests/support/postfix_diff.py``), every ham and spam file of the corpus plus
the golden corpus and the hand-made messages sent to both, and the figures printed: messages
compared, identical, and the differences grouped by what each side answered (stage and code),
with a few examples of each group.

    python bench/postfix_import_diff.py                         # every configuration, whole corpus
    python bench/postfix_import_diff.py --config content-checks --per-kind 500

The CI test (tests/e2e/test_postfix_import_diff.py) sends a seeded sample; this script is the
full run, for when someone asks. It needs what the test needs: root, Postfix with postfix-pcre,
postgrey, postfix-policyd-spf-python, util-linux's unshare, and the corpus in .ci/corpus.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from tests.support.postfix_diff import (  # noqa: E402 (the repository root goes on sys.path first)
    CONFIGS,
    HANDMADE,
    Compared,
    golden_cases,
    load_config,
    public_cases,
    records_for,
    running,
)

EXAMPLES = 3


def signature(compared: Compared) -> str:
    p, s = compared.postfix, compared.sinkd
    return (
        f"postfix {p.stage} {p.final[1]} {p.final[2]} / sinkd {s.stage} {s.final[1]} {s.final[2]}"
    )


def run(name: str, per_kind: int, workdir: Path) -> list[Compared]:
    config = load_config(name)
    cases = HANDMADE[name] + golden_cases(records_for(config)) + public_cases(per_kind)
    with running(name, workdir) as started:
        return started.compare(cases)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", action="append", choices=CONFIGS, help="repeatable")
    parser.add_argument(
        "--per-kind", type=int, default=0, help="ham and spam files each (0: all of them)"
    )
    args = parser.parse_args()
    totals = Counter[str]()
    for name in args.config or CONFIGS:
        started = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="sinkd-pfdiff-") as workdir:
            compared = run(name, args.per_kind, Path(workdir))
        groups: dict[str, list[Compared]] = defaultdict(list)
        for result in compared:
            if not result.identical:
                groups[signature(result)].append(result)
        identical = sum(c.identical for c in compared)
        totals["compared"] += len(compared)
        totals["identical"] += identical
        print(
            f"{name}: {len(compared)} messages, {identical} identical, "
            f"{len(compared) - identical} different ({time.monotonic() - started:.0f} s)"
        )
        for key, results in sorted(groups.items(), key=lambda item: -len(item[1])):
            print(f"  {len(results):5d}  {key}")
            for result in results[:EXAMPLES]:
                print("         " + str(result).replace("\n", "\n         "))
    print(f"all: {totals['compared']} messages, {totals['identical']} identical")
    return 0


if __name__ == "__main__":
    sys.exit(main())
