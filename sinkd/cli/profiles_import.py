"""``sinkd profiles import PRODUCT FILE… [-o OUT] [--id ID] [--strict]``: a profile built from
a gateway's own configuration.

Owns the command's options, where the profile goes (``-o`` or standard output), the list of
untranslated items on standard error, the check that the written profile loads, and the exit
code: 0 written, 2 bad input (a file that cannot be read or parsed, named with its line; any
untranslated item with ``--strict``, in which case nothing is written). The translation is each
product's ``sinkd.importers`` module. Must not judge mail or import the server or the store.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from pathlib import Path
from typing import TextIO

from sinkd.cli.base import EXIT_OK, EXIT_USAGE, Parser
from sinkd.core.profiles import ProfileSet
from sinkd.errors import PolicyImportError, ProfileError
from sinkd.importers import render
from sinkd.importers.products import REGISTRY
from sinkd.services.settings import add_options

_ID = re.compile(r"[^a-z0-9-]+")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    products = parser.add_subparsers(dest="product", required=True, parser_class=Parser)
    for importer in REGISTRY.values():
        sub = products.add_parser(importer.product, help=importer.help)
        importer.add_arguments(sub)
        sub.add_argument(
            "-o",
            "--output",
            type=Path,
            metavar="FILE",
            help="write the profile here (default: standard output)",
        )
        sub.add_argument(
            "--id",
            dest="profile_id",
            metavar="ID",
            help="the profile's id (default: from the output file's name, else 'imported-PRODUCT')",
        )
        sub.add_argument(
            "--strict",
            action="store_true",
            help="any item that cannot be translated is an error (exit 2, nothing written)",
        )
        add_options(sub, "profiles", "profiles_dirs")


def _profile_id(args: argparse.Namespace) -> str:
    if args.profile_id:
        return str(args.profile_id)
    if args.output is not None:
        stem = _ID.sub("-", args.output.stem.lower()).strip("-")
        if stem:
            return stem[:64]
    return f"imported-{args.product}"


def run(args: argparse.Namespace, out: TextIO) -> int:
    importer = REGISTRY[args.product]
    profile_id = _profile_id(args)
    try:
        imported = importer.run(args, profile_id)
    except PolicyImportError as exc:
        print(f"sinkd profiles import {args.product}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    for item in imported.untranslated:
        print(f"untranslated: {item.line()}", file=sys.stderr)
    for note in imported.notes:
        print(f"note: {note}", file=sys.stderr)
    if imported.untranslated and args.strict:
        print(
            f"sinkd profiles import {args.product}: {len(imported.untranslated)} item(s) could "
            "not be translated and --strict is set: nothing written",
            file=sys.stderr,
        )
        return EXIT_USAGE
    text = render(imported)
    # The profile must load as written: a document that does not is an importer bug, reported
    # with the field the profile loader names rather than written for the user to find later.
    with tempfile.TemporaryDirectory(prefix="sinkd-import-") as tmp:
        candidate = Path(tmp) / f"{profile_id}.yaml"
        candidate.write_text(text, encoding="utf-8")
        try:
            ProfileSet(args.profiles_dir).load(candidate)
        except ProfileError as exc:
            print(
                f"sinkd profiles import {args.product}: the profile built does not load "
                f"(a sinkd bug, please report it): {exc}",
                file=sys.stderr,
            )
            return EXIT_USAGE
    if args.output is None:
        out.write(text)
    else:
        args.output.write_text(text, encoding="utf-8")
        summary = (
            f"{len(imported.untranslated)} item(s) not translated (listed above and in "
            "the file's comments)"
            if imported.untranslated
            else "everything translated"
        )
        print(f"wrote {args.output} (profile {profile_id}): {summary}", file=out)
    return EXIT_OK
