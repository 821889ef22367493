"""The catalogue of finding codes: what every filter kind and the engine declare they emit.

Owns reading the declarations (``Filter.codes`` of each kind in ``REGISTRY``, of the scanning
filter a profile's ``scanning.header_size_limit`` adds, and ``engine.CODES``) into one list,
answering whether a code is declared, and rendering the code catalogue of docs/filters.md
(``python -m sinkd.core.codes --markdown``). It declares no code itself and judges no mail.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Sequence
from dataclasses import dataclass

from sinkd.core.engine import CODES as ENGINE_CODES
from sinkd.core.filters import REGISTRY
from sinkd.core.filters.scanning import ScanningFilter
from sinkd.core.model import FindingCode

__all__ = ["Declared", "catalogue", "is_declared", "main", "markdown"]


@dataclass(frozen=True, slots=True)
class Declared:
    """One declared code and who declares it: a filter kind, or ``engine``."""

    by: str
    code: FindingCode


def catalogue() -> list[Declared]:
    """Every declared code, kind by kind in registry order, then the scanning filter's (not a
    kind a profile lists: its ``scanning:`` setting adds it), then the engine's."""
    found = [Declared(kind, code) for kind, cls in REGISTRY.items() for code in cls.codes]
    found += [Declared(ScanningFilter.kind, code) for code in ScanningFilter.codes]
    return found + [Declared("engine", code) for code in ENGINE_CODES]


def is_declared(code: str) -> bool:
    """Whether some filter kind or the engine declares ``code`` (exactly, or as a family)."""
    return _ANY.fullmatch(code) is not None


def markdown() -> str:
    """The table of finding codes docs/filters.md shows."""
    lines = ["| Code | Given by | Meaning |", "|---|---|---|"]
    lines += [f"| `{d.code.code}` | {d.by} | {d.code.meaning} |" for d in catalogue()]
    return "\n".join(lines) + "\n"


_ANY = re.compile("|".join(f"(?:{d.code.pattern})" for d in catalogue()))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sinkd.core.codes", description="Print the catalogue of finding codes."
    )
    parser.add_argument("--markdown", action="store_true", help="as the table in docs/filters.md")
    args = parser.parse_args(argv)
    if args.markdown:
        print(markdown(), end="")
    else:
        for declared in catalogue():
            print(f"{declared.code.code}\t{declared.by}\t{declared.code.meaning}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
