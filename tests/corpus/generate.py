"""Write ``tests/corpus/expected.yaml`` and the corpus matrix of ``docs/corpus.md`` from
actual verdicts.

    python -m tests.corpus.generate            # every built-in profile; starts a spamd if
                                               # Debian's spamd is installed
    python -m tests.corpus.generate --spamd 127.0.0.1:783   # use this spamd instead
    python -m tests.corpus.generate --no-spamd # keep the spamassassin-default column as it is

The table records what the code does now, so review its diff before committing it: every
changed cell is a changed verdict. ``tests/test_corpus.py`` then holds the code to it. This
script judges through ``tests/support/corpus.py``, the same path the test uses; it writes
only ``expected.yaml`` and ``docs/corpus.md`` between the corpus-matrix markers.
"""

from __future__ import annotations

import argparse
import sys

from tests.support.corpus import (
    CORPUS_PAGE,
    EXPECTED,
    MATRIX_END,
    MATRIX_START,
    SPAMD_PROFILE,
    Table,
    builtin_profiles,
    expected_text,
    judge_corpus,
    load_expected,
    matrix_text,
    replace_between,
)


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host or "127.0.0.1", int(port)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--spamd", type=_address, help="HOST:PORT of a running spamd")
    group.add_argument(
        "--no-spamd",
        action="store_true",
        help=f"do not judge {SPAMD_PROFILE}; keep its cells from the current expected.yaml",
    )
    args = parser.parse_args(argv)

    profiles = builtin_profiles()
    table: Table = {}
    for profile in profiles:
        if profile == SPAMD_PROFILE:
            continue
        for name, cell in judge_corpus(profile).items():
            table.setdefault(name, {})[profile] = cell
        print(f"judged with {profile}", file=sys.stderr)

    if SPAMD_PROFILE in profiles:
        if args.no_spamd:
            old = load_expected() if EXPECTED.exists() else {}
            for name in table:
                if SPAMD_PROFILE in old.get(name, {}):
                    table[name][SPAMD_PROFILE] = old[name][SPAMD_PROFILE]
        elif args.spamd is not None:
            for name, cell in judge_corpus(SPAMD_PROFILE, spamd=args.spamd).items():
                table[name][SPAMD_PROFILE] = cell
        else:
            # The tests' spamd: Debian's, on a free loopback port, --local (no network tests).
            from tests.conftest import start_spamd

            spamd = start_spamd()
            try:
                for name, cell in judge_corpus(SPAMD_PROFILE, spamd=spamd.address).items():
                    table[name][SPAMD_PROFILE] = cell
            finally:
                spamd.stop()
        print(f"judged with {SPAMD_PROFILE}", file=sys.stderr)

    EXPECTED.write_text(expected_text(table, profiles), encoding="utf-8")
    page = CORPUS_PAGE.read_text(encoding="utf-8")
    CORPUS_PAGE.write_text(
        replace_between(page, MATRIX_START, MATRIX_END, matrix_text(table, profiles)),
        encoding="utf-8",
    )
    print(f"wrote {EXPECTED} and the matrix in {CORPUS_PAGE}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
