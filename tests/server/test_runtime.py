"""Starting and stopping a whole server in process (``sinkd.server.runtime.Sinkd``)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sinkd.errors import SinkdError
from sinkd.server.runtime import Sinkd
from sinkd.services.settings import Settings


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
