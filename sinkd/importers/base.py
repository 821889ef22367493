"""What every importer shares: origins, untranslated items, the imported document, its text.

Owns the ``Importer`` protocol the command line calls, the ``Imported`` result (the profile
document as plain data, what could not be translated and what the user must still do), and
``render``, which writes the document as YAML with a header of comments: where it came from,
every untranslated item with its origin and reason, and the notes. Must not know any product's
syntax (each ``sinkd.importers.<product>`` module does) and must not write files (the command
line does).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import yaml

from sinkd.errors import PolicyImportError


@dataclass(frozen=True, slots=True)
class Untranslated:
    """One item of the configuration that the profile does not express.

    ``origin`` says where it is ("main.cf:14", "local.cf:3", "transport rule 'Block .exe'"),
    ``item`` quotes it, ``reason`` says why sinkd does not translate it and, where it matters,
    what that changes in the verdicts.
    """

    origin: str
    item: str
    reason: str

    def line(self) -> str:
        return f"{self.origin}: {self.item}: {self.reason}"


@dataclass(slots=True)
class Imported:
    """An importer's result: a profile document (``schema: sinkd.profile/v1``) as plain data,
    whose rules carry ``source:`` pointing back to the file and line or the policy and rule
    they come from."""

    product: str
    inputs: tuple[str, ...]  # the files read, as the user named them
    profile: dict[str, Any]
    untranslated: list[Untranslated] = field(default_factory=list)
    # What the user must still do for the profile to judge as the product does ("start spamd
    # with --siteconfigpath DIR"); written as comments and printed.
    notes: list[str] = field(default_factory=list)


class Importer(Protocol):
    """One product's importer, as ``sinkd profiles import PRODUCT`` runs it."""

    @property
    def product(self) -> str:
        """The command-line name: ``postfix``, ``spamassassin``, ``exchange-online``."""

    @property
    def help(self) -> str:
        """One line for ``sinkd profiles import --help``."""

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        """The product's own options and positional arguments (the files to read)."""

    def run(self, args: argparse.Namespace, profile_id: str) -> Imported:
        """Read the files ``args`` names and build the profile. A file that cannot be read
        or parsed raises ``sinkd.errors.PolicyImportError`` naming the file and line."""


def _comment(text: str, width: int = 98) -> list[str]:
    lines: list[str] = []
    for paragraph in text.splitlines() or [""]:
        words = paragraph.split(" ")
        current = "#"
        for word in words:
            if len(current) + 1 + len(word) > width and current != "#":
                lines.append(current)
                current = "#  "
            current = f"{current} {word}" if current else word
        lines.append(current.rstrip())
    return lines


def render(imported: Imported) -> str:
    """The profile as YAML, with comments first: the command that made it, the notes and every
    untranslated item (the profile validates without them; the comments keep them visible)."""
    head = [
        f"# Imported by `sinkd profiles import {imported.product}` from: "
        + ", ".join(imported.inputs),
        "# Each rule's source: names the file and line (or the policy and rule) it comes from.",
    ]
    if imported.notes:
        head.append("#")
        head.append("# To judge as the product does:")
        for note in imported.notes:
            head.extend(_comment(f"- {note}"))
    head.append("#")
    if imported.untranslated:
        count = len(imported.untranslated)
        head.append(f"# NOT TRANSLATED ({count} item{'' if count == 1 else 's'}):")
        for item in imported.untranslated:
            head.extend(_comment(f"- {item.line()}"))
    else:
        head.append("# Everything in the configuration was translated.")
    body = yaml.safe_dump(
        imported.profile, sort_keys=False, allow_unicode=True, width=100, default_flow_style=False
    )
    return "\n".join(head) + "\n" + body


def read_text(path: Path) -> str:
    """A configuration file's text; undecodable bytes are kept as replacement characters
    rather than refusing the whole file (configuration files are ASCII in practice)."""
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise PolicyImportError(
            f"{path}: cannot read: {exc.strerror or exc}", path=str(path)
        ) from None


def located(path: str | Path, line: int | None = None) -> str:
    """An origin "file:line" as the importers write them."""
    return f"{path}:{line}" if line is not None else str(path)
