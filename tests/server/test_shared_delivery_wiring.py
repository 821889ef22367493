"""How many SMTP processes a stateful profile may run (issue 21): with delivery state in one
process's memory, ``--workers N`` is refused for a greylisting profile; with a PostgreSQL store
every process shares it, so the same command is taken as given."""

from __future__ import annotations

import os

import pytest

from sinkd.core.profiles import ProfileSet
from sinkd.errors import ConfigError
from sinkd.server.runtime import MAX_WORKERS, Sinkd
from sinkd.services.judge import Judge
from tests.support.settings import clear_sinkd_environment, serve

PG = "postgresql://sinkd@127.0.0.1:5432/sinkd"


@pytest.fixture(autouse=True)
def _no_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    clear_sinkd_environment(monkeypatch)


def workers_for(*argv: str) -> int:
    settings = serve(*argv)
    router = Judge(ProfileSet(), profile="deferring-gateway").router
    assert router.keeps_state()
    return Sinkd(settings).listener_count(router)


def test_a_greylisting_profile_with_workers_is_refused_when_state_is_in_memory() -> None:
    with pytest.raises(ConfigError, match="keeps delivery state"):
        workers_for("--workers", "2")
    assert workers_for("--workers", "auto") == 1  # auto: one process, which holds the state


def test_a_greylisting_profile_runs_the_workers_asked_for_on_a_postgresql_store() -> None:
    assert workers_for("--workers", "2", "--store", PG) == 2
    expected = max(1, min(os.cpu_count() or 1, MAX_WORKERS))
    assert workers_for("--workers", "auto", "--store", PG) == expected
