"""Postfix table text → ``TableSpec``, and ``postmap -q`` as the oracle of a lookup.

Tests of ``sinkd.core.postfix_tables`` and of the Postfix filters write a table once as Postfix
text; ``table_spec`` reads it the way the table's man page describes (comments, continuation
lines, ``if``/``endif``), each entry's ``source`` being ``NAME:LINE``, and ``postmap_query``
asks the real Postfix the same key. This is a test reader, not the importer (that is
``sinkd.importers``): it does only what the tests' tables need and fails loudly otherwise.
"""

from __future__ import annotations

import subprocess
import textwrap
from pathlib import Path

from sinkd.core.postfix_tables import TableEntry, TableSpec, TableType, split_pattern

POSTMAP_TIMEOUT = 10.0


def logical_lines(text: str) -> list[tuple[int, str]]:
    """(first line number, logical line): a line starting with whitespace continues the last."""
    lines: list[tuple[int, str]] = []
    for number, raw in enumerate(textwrap.dedent(text).splitlines(), start=1):
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        if raw[0].isspace() and lines:
            first, joined = lines[-1]
            lines[-1] = (first, f"{joined} {raw.strip()}")
        else:
            lines.append((number, raw.rstrip()))
    return lines


def table_spec(type_: TableType, text: str, name: str = "table") -> TableSpec:
    """The ``TableSpec`` of a table written as Postfix text."""
    entries: list[TableEntry] = []
    conditions: list[str] = []
    for number, line in logical_lines(text):
        source = f"{name}:{number}"
        if type_ in ("regexp", "pcre", "cidr"):
            if line == "endif":
                conditions.pop()
                continue
            if line.startswith("if ") or line.startswith("if!"):
                conditions.append(line[2:].strip())
                continue
        if type_ in ("regexp", "pcre"):
            key, value = split_pattern(line)
        else:
            key, _, value = line.partition(" ")
            value = value.strip()
        entries.append(
            TableEntry(key=key, value=value, conditions=tuple(conditions), source=source)
        )
    assert not conditions, "unbalanced if/endif in a test table"
    return TableSpec(type=type_, entries=tuple(entries), source=name)


def postmap_query(
    directory: Path, type_: TableType, text: str, keys: list[str]
) -> dict[str, str | None]:
    """What ``postmap -q - TYPE:FILE`` answers for each of ``keys`` (None: not found), in one
    run of postmap.

    ``directory`` gets an empty main.cf (postmap -c needs one) and the table file; a ``hash``
    table is compiled with postmap first, as a Postfix administrator does."""
    (directory / "main.cf").touch()
    table = directory / f"table-{type_}"
    table.write_text(textwrap.dedent(text))
    if type_ in ("hash", "btree"):
        subprocess.run(
            ["postmap", "-c", str(directory), f"{type_}:{table}"],
            check=True,
            capture_output=True,
            timeout=POSTMAP_TIMEOUT,
        )
    done = subprocess.run(
        ["postmap", "-c", str(directory), "-q", "-", f"{type_}:{table}"],
        input="".join(f"{key}\n" for key in keys),
        capture_output=True,
        text=True,
        timeout=POSTMAP_TIMEOUT,
    )
    assert done.returncode in (0, 1), done.stderr
    # postmap(1) -q -: one "key<TAB>value" line per key found, in input order.
    found: dict[str, str | None] = dict.fromkeys(keys)
    for line in done.stdout.splitlines():
        key, _, value = line.partition("\t")
        found[key] = value
    return found
