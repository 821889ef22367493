"""Starting and stopping a whole server in process (``sinkd.server.runtime.Sinkd``)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sinkd.errors import ConfigError, SinkdError, StoreError
from sinkd.server.runtime import Sinkd
from sinkd.services.settings import Settings
from sinkd.store import Query
from sinkd.store.sqlite import open_sqlite
from tests.conftest import StartServer
from tests.support.smtp import message, send


def children() -> list[str]:
    pid = os.getpid()
    return Path(f"/proc/{pid}/task/{pid}/children").read_text().split()


async def test_a_start_that_fails_leaves_no_child_process_behind(tmp_path: Path) -> None:
    # The certificate child starts first; a profile that does not exist stops the start before
    # the certificate is needed. The child is waited for (warnings are errors here: an unreaped
    # one would fail the test), and neither it nor a store writer is left.
    settings = Settings(
        port=0, http=False, db=tmp_path / "s.db", hostname="sinkd.test", profile="no-such-one"
    )
    before = set(children())  # earlier tests may leave pytest a helper (multiprocessing's tracker)
    server = Sinkd(settings)
    with pytest.raises(SinkdError, match="no-such-one"):
        await server.start()
    await server.stop()
    assert set(children()) - before == set()
    assert not (tmp_path / "s.db").exists()  # the store was never opened


async def test_a_server_on_db_memory_keeps_what_it_accepted_readable(
    start_server: StartServer,
) -> None:
    # SQLite's :memory: is private to one connection: the writer's saves were acknowledged with
    # 250 and never readable. --db :memory: now means the in-memory store.
    app = await start_server(db=Path(":memory:"), http=True)
    await send(app, message("Quarterly figures"), "alice@sender.example", "bob@corp.example")
    assert app.store is not None
    (stored,) = await app.store.list(Query(limit=5))
    assert stored.data["subject"] == "Quarterly figures"


async def test_db_memory_with_worker_processes_is_refused_naming_both_options(
    start_server: StartServer,
) -> None:
    with pytest.raises(ConfigError, match=r"--workers 2: --db :memory:"):
        await start_server(db=Path(":memory:"), workers=2)


async def test_open_sqlite_refuses_memory_instead_of_losing_every_save() -> None:
    with pytest.raises(StoreError, match=":memory:"):
        await open_sqlite(":memory:")


async def test_a_server_on_db_memory_writes_no_certificate_where_it_was_started(
    start_server: StartServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # ":memory:"'s parent is the working directory
    app = await start_server(db=Path(":memory:"))
    await app.stop()
    assert os.listdir(tmp_path) == []
