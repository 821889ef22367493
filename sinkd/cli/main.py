"""``sinkd``'s entry point: the top-level parser, the subcommand table and the exit codes of
errors.

Owns which subcommands exist and loading each one only when it runs: ``sinkd --help`` and
``sinkd check`` import neither the SMTP server, the web app nor the store (``sinkd.cli``
docstring; ``bench/startup.py`` measures it). Every subcommand module offers
``add_arguments(parser)`` and ``run(args, out) -> int``. Must not judge, serve or read
anything itself.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import TextIO

from sinkd import __version__
from sinkd.cli.base import EXIT_ERROR, EXIT_OK, EXIT_USAGE, Parser
from sinkd.errors import ConfigError, InputError, NotFound, ProfileError, SinkdError

# name: (help in the command list, the module that parses and runs it).
COMMANDS: dict[str, tuple[str, str]] = {
    "serve": ("run the SMTP sink", "sinkd.cli.serve"),
    "check": ("judge message files without a server", "sinkd.cli.check"),
    "report": (
        "deliverability report: every profile's verdict and the survey population estimate",
        "sinkd.cli.report",
    ),
    "profiles": ("list, show, validate, diff and import profiles", "sinkd.cli.profiles"),
    "readyz": (
        "is a running sinkd ready? exit 0 if it is, 1 if not (health checks, CI scripts)",
        "sinkd.cli.readyz",
    ),
    "messages": ("read the store", "sinkd.cli.messages"),
    "store": ("create or migrate the store's schema (store migrate)", "sinkd.cli.store"),
}
ALL = "*"  # build_parser(ALL): every subcommand's options (tests, tools listing them)


def _command(name: str) -> ModuleType:
    # Imported by name, when that subcommand runs: each pulls in what it needs (the engine,
    # the server, the store), and the others' start-up cost is not paid.
    return importlib.import_module(COMMANDS[name][1])


def build_parser(only: str | None = ALL) -> argparse.ArgumentParser:
    """The ``sinkd`` parser. ``only``: the one subcommand whose options are added (and whose
    module is loaded); None adds none (``sinkd --help``, ``--version``); ALL, every one."""
    parser = Parser(
        prog="sinkd",
        description="A local SMTP test sink that judges mail like a corporate filter.",
    )
    parser.add_argument("--version", action="version", version=f"sinkd {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for name, (help_text, _) in COMMANDS.items():
        sub = commands.add_parser(name, help=help_text)
        if only in (ALL, name):
            _command(name).add_arguments(sub)
    return parser


def _command_word(argv: Sequence[str]) -> str | None:
    """The subcommand named on the command line (the top level takes no option values)."""
    return next((w for w in argv if not w.startswith("-")), None)


def _prog(argv: Sequence[str] | None) -> str:
    """Who speaks in an input error: ``sinkd check`` / ``sinkd report`` (their errors name a
    file or option of that command), else ``sinkd``."""
    words = sys.argv[1:] if argv is None else argv
    command = _command_word(words)
    return f"sinkd {command}" if command in ("check", "report") else "sinkd"


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    words = sys.argv[1:] if argv is None else list(argv)
    try:
        name = _command_word(words)
        args = build_parser(name if name in COMMANDS else None).parse_args(words)
        result: int = _command(args.command).run(args, out)
        return result
    except (ConfigError, InputError, ProfileError) as exc:
        print(f"{_prog(argv)}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except NotFound as exc:
        print(f"sinkd: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except SinkdError as exc:
        print(f"sinkd: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        with contextlib.suppress(Exception):
            sys.stdout.close()
        return EXIT_OK
