"""``sinkd messages list|show``: read the store a server wrote, from a terminal or a script.

Owns the listing and the single-message printout (YAML, JSON, the raw or the delivered bytes).
Reads go through ``sinkd.store``; it never writes to the store and needs no running server.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import TextIO

import yaml

from sinkd.cli.base import EXIT_OK, Parser
from sinkd.core.model import VerdictAction
from sinkd.errors import NotFound, StoreError
from sinkd.location import StoreLocation
from sinkd.services.settings import default_db_path
from sinkd.store import Query
from sinkd.store.backends import open_store


def add_arguments(messages: argparse.ArgumentParser) -> None:
    message_commands = messages.add_subparsers(
        dest="messages_command", required=True, parser_class=Parser
    )
    listing = message_commands.add_parser("list", help="stored verdicts, newest first")
    _where(listing)
    listing.add_argument("--verdict", choices=[v.value for v in VerdictAction])
    listing.add_argument("--profile")
    listing.add_argument("--limit", type=int, default=50)
    listing.add_argument("--json", action="store_true")
    show = message_commands.add_parser("show", help="one stored verdict")
    show.add_argument("id")
    _where(show)
    show.add_argument("--json", action="store_true")
    show.add_argument("--raw", action="store_true", help="print the original message bytes")
    show.add_argument(
        "--filtered",
        action="store_true",
        help="print the message as delivered, after strip actions",
    )


def _where(command: argparse.ArgumentParser) -> None:
    where = command.add_mutually_exclusive_group()
    where.add_argument("--db", type=Path, default=None, metavar="PATH", help="a SQLite file")
    where.add_argument(
        "--store",
        type=StoreLocation.parse,
        default=None,
        metavar="URL",
        help="PATH, sqlite:///PATH or postgresql://USER:PASSWORD@HOST:PORT/DATABASE",
    )


def run(args: argparse.Namespace, out: TextIO) -> int:
    return asyncio.run(_messages(args, out))


async def _messages(args: argparse.Namespace, out: TextIO) -> int:
    location: StoreLocation = args.store or StoreLocation.of_path(args.db or default_db_path())
    if location.kind == "sqlite" and location.path is not None and not location.path.is_file():
        raise StoreError(f"{location.path}: no store there yet (start 'sinkd serve' or pass --db)")
    # Only reads: a PostgreSQL schema is never created or migrated here (sinkd store migrate).
    store = await open_store(location)
    try:
        if args.messages_command == "list":
            rows = await store.list(
                Query(verdict=args.verdict, profile=args.profile, limit=args.limit)
            )
            if args.json:
                print(json.dumps([r.data for r in rows], indent=2, ensure_ascii=False), file=out)
                return EXIT_OK
            for row in rows:
                d = row.data
                reply = d["reply"]
                print(
                    f"{d['id']}  {d['received_at']}  {d['verdict']:<10} {d['profile']:<18} "
                    f"{d['stage']:<4} {reply['code']} {reply['enhanced']}  "
                    f"{(d.get('subject') or '')[:50]!r}",
                    file=out,
                )
            return EXIT_OK
        stored = await store.get(args.id, with_raw=args.raw or args.filtered)
        if args.raw or args.filtered:
            if stored.raw is None:
                raise NotFound(f"message {args.id} has no raw bytes (refused before DATA)")
            body = stored.raw
            if args.filtered:
                if stored.data["verdict"] == VerdictAction.REJECT.value:
                    raise NotFound(f"message {args.id} was refused; nothing was delivered")
                # Nothing stripped: the original is what was delivered.
                body = stored.filtered if stored.filtered is not None else stored.raw
            out.flush()
            sys.stdout.buffer.write(body)
            sys.stdout.buffer.flush()
        elif args.json:
            print(json.dumps(stored.data, indent=2, ensure_ascii=False), file=out)
        else:
            print(
                yaml.safe_dump(stored.data, sort_keys=False, allow_unicode=True, width=100),
                file=out,
                end="",
            )
        return EXIT_OK
    finally:
        await store.close()
