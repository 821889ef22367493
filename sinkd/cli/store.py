"""``sinkd store migrate``: create a store, or bring its schema up to this sinkd's version.

Owns the command's options and output: one line saying which store and what happened to its
schema (``created``, ``migrated from N``, ``up to date``), exit 0; exit 2 with one line when the
store cannot be reached, has a newer schema or the location is no store (never a traceback).
The work is ``sinkd.store.backends.migrate_store``; it prints no password (``shown``).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TextIO

from sinkd.cli.base import EXIT_OK, EXIT_USAGE, Parser
from sinkd.errors import ConfigError, StoreError
from sinkd.location import StoreLocation
from sinkd.services.settings import default_db_path
from sinkd.store.backends import migrate_store


def add_arguments(store: argparse.ArgumentParser) -> None:
    commands = store.add_subparsers(dest="store_command", required=True, parser_class=Parser)
    migrate = commands.add_parser(
        "migrate", help="create the store or migrate its schema to this sinkd's version"
    )
    where = migrate.add_mutually_exclusive_group()
    where.add_argument(
        "--store",
        default=None,
        metavar="URL",
        help="PATH, sqlite:///PATH or postgresql://USER:PASSWORD@HOST:PORT/DATABASE "
        "(env SINKD_STORE)",
    )
    where.add_argument("--db", type=Path, default=None, metavar="PATH", help="a SQLite file")


def location_of(store: str | None, db: Path | None) -> StoreLocation:
    """The store named by ``--store``, ``--db``, ``$SINKD_STORE`` or the default file."""
    if store is not None:
        return StoreLocation.parse(store)
    if db is not None:
        return StoreLocation.of_path(db)
    from_env = os.environ.get("SINKD_STORE")
    if from_env:
        return StoreLocation.parse(from_env)
    return StoreLocation.of_path(default_db_path())


def run(args: argparse.Namespace, out: TextIO) -> int:
    try:
        location = location_of(args.store, args.db)
        found, now = migrate_store(location)
    except (ConfigError, StoreError) as exc:
        print(f"sinkd store migrate: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if found is None:
        what = "created"
    elif found == now:
        what = "up to date"
    else:
        what = f"migrated from {found}"
    print(f"store {location.shown}: schema version {now} ({what})", file=out)
    return EXIT_OK
