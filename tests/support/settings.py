"""The settings ``sinkd serve`` would run with, read the way the CLI reads them, for the tests of
options and environment variables (tests/services/test_settings.py, test_relay_settings.py)."""

from __future__ import annotations

import os

import pytest

from sinkd.cli import build_parser
from sinkd.services.settings import Settings, from_namespace


def serve(*argv: str) -> Settings:
    """The settings ``sinkd serve ARGV`` runs with (under the current environment)."""
    return from_namespace(build_parser("serve").parse_args(["serve", *argv]))


def clear_sinkd_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No ``SINKD_*`` variable of the machine running the tests reaches the settings."""
    for name in list(os.environ):
        if name.startswith("SINKD_"):
            monkeypatch.delenv(name)
