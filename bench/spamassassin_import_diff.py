"""The SpamAssassin import, measured on the whole public corpus: per configuration of
``tests/fixtures/spamassassin/``, how many messages sinkd with the imported profile scores and
judges exactly as a private spamd loaded with the same files.

For each configuration it runs ``sinkd profiles import spamassassin`` into a temporary
directory, starts the spamd the comparison needs (``tests/support/spamd_config.py``: only the
configuration's rules for a profile sinkd evaluates itself, the stock rules plus the
configuration for one that asks spamd), has spamd and sinkd judge the golden corpus and the
public corpus (``tests/support/spamassassin_diff.py``), and prints one Markdown table (messages,
identical scores, identical verdicts), the rules that most often explain a difference, and the
first differences. The test ``tests/e2e/test_spamassassin_import_diff.py`` runs the same on a
sample. Everything it starts is stopped; it writes nothing outside its temporary directory.

    python bench/spamassassin_import_diff.py [--config NAME …] [--per-kind N] [--show 10]
    python bench/spamassassin_import_diff.py --spamd-only [--per-kind N]

``--spamd-only`` imports nothing: it prints what spamd itself does with each configuration in
both layouts (messages called spam among the golden corpus, the ham and the spam), the
reference the import is measured against.

spamd with the stock rules takes about 0.05-0.1 s per message on two cores: the whole corpus
(about 6,100 messages) is some minutes per configuration.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # the repository root: tests.support is not installed

from tests.support.spamassassin_diff import (  # noqa: E402
    CONFIGS,
    FIXTURES,
    Comparison,
    Figures,
    Message,
    messages,
    run_comparison,
    spamd_answers,
    table,
)
from tests.support.spamd_config import configured_spamd, score_all  # noqa: E402

# As the test: configurations sinkd evaluates itself are compared natively too.
NATIVE = {"custom-rules", "welcomelist"}


def spamd_only(batch: list[Message], names: list[str]) -> None:
    kinds = {m.name: m.name.split("/")[0].rstrip("-0123456789") for m in batch}
    print("| configuration | spamd | golden spam | ham called spam | spam called spam |")
    print("|---|---|---:|---:|---:|")
    for name in names:
        for layout in ("only", "site"):
            with configured_spamd(FIXTURES / name, layout) as spamd:
                theirs = score_all(spamd, {m.name: m.raw for m in batch})
            cells = []
            for kind in ("golden", "easy-ham|hard-ham", "spam"):
                chosen = [n for n in theirs if kinds[n] in kind.split("|")]
                spam = sum(theirs[n].is_spam for n in chosen)
                cells.append(f"{spam}/{len(chosen)}")
            print(f"| {name} | {layout} | " + " | ".join(cells) + " |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", action="append", choices=CONFIGS, help="default: all five")
    parser.add_argument(
        "--per-kind", type=int, default=None, help="a seeded sample of N ham and N spam"
    )
    parser.add_argument("--show", type=int, default=10, help="differences listed per config")
    parser.add_argument("--spamd-only", action="store_true", help="spamd's own figures only")
    args = parser.parse_args()
    batch = messages(args.per_kind)
    if args.spamd_only:
        spamd_only(batch, args.config or list(CONFIGS))
        return 0
    rows: list[Figures] = []
    answers = spamd_answers(batch)
    with tempfile.TemporaryDirectory(prefix="sinkd-sa-diff-") as work:
        for name in args.config or CONFIGS:
            comparisons: list[Comparison] = ["only", "site"] if name in NATIVE else ["site"]
            for comparison in comparisons:
                started = time.monotonic()
                _, figures = run_comparison(name, comparison, batch, Path(work), answers)
                rows.append(figures)
                print(
                    f"{name} [{comparison}]: {len(batch)} messages in"
                    f" {time.monotonic() - started:.0f} s",
                    file=sys.stderr,
                )
    print(table(rows))
    for figures in rows:
        if not figures.differences:
            continue
        print(
            f"\n{figures.config} [{figures.comparison}]: {len(figures.differences)}"
            " difference(s); commonest causes:"
        )
        for cause, count in figures.rule_causes.most_common(8):
            print(f"  {count:5d}  {cause}")
        for difference in figures.differences[: args.show]:
            print(f"  - {difference.line()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
