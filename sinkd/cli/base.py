"""What every ``sinkd`` subcommand shares: exit codes and the parser that never exits.

Owns the exit codes (see ``sinkd.cli``) and ``Parser``. Must stay import-light: ``sinkd --help``
loads it, and nothing else of sinkd but ``sinkd.cli.main``.
"""

from __future__ import annotations

import argparse
from typing import Any

from sinkd.errors import ConfigError

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_GATE_FAILED = 1  # check --fail-on: a file at or above the level (a CI failure, not a crash)
EXIT_USAGE = 2
EXIT_QUARANTINE = 3
EXIT_REJECT = 4
EXIT_INCOMPLETE = 5  # check: a verdict reached without a check its profile needs


class Parser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so ``main`` owns every exit code."""

    def error(self, message: str) -> Any:
        raise ConfigError(f"{message} (see '{self.prog} --help')")
