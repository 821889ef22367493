"""Shared fixtures: in-process servers on free ports, message files, and the rule that a test
needing a missing real component skips on a laptop but fails in CI (CI=true)."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from sinkd.runtime import Settings, Sinkd

MESSAGES = Path(__file__).parent / "messages"


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def require_executable(name: str, package: str) -> str:
    """The path of ``name``; skip (laptop) or fail (CI) with the package that provides it."""
    path = shutil.which(name)
    if path is None:
        reason = f"{name} not found: install the Debian package '{package}' (.ci/run does)"
        if in_ci():
            pytest.fail(f"CI must not skip: {reason}")
        pytest.skip(reason)
    return path


StartServer = Callable[..., Awaitable[Sinkd]]


@pytest.fixture
async def start_server(tmp_path: Path) -> AsyncIterator[StartServer]:
    """Start sinkd in this event loop on a free port; every server is stopped afterwards.

    Keyword arguments override ``Settings`` fields (profile, routes, auth, ...).
    """
    started: list[Sinkd] = []

    async def start(**overrides: object) -> Sinkd:
        settings = Settings(
            host="127.0.0.1",
            port=0,
            db=tmp_path / f"sinkd-{len(started)}.db",
            hostname="sinkd.test",
        )
        for key, value in overrides.items():
            setattr(settings, key, value)
        app = Sinkd(settings)
        await app.start()
        started.append(app)
        return app

    yield start
    for app in started:
        await app.stop()
