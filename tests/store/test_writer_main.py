"""The writer process's module stays light: it starts for every server and store."""

from __future__ import annotations

import subprocess
import sys


def test_the_writer_process_loads_neither_asyncio_nor_the_rest_of_sinkd() -> None:
    code = (
        "import sys, sinkd.store.writer_main\n"
        "heavy = [m for m in sys.modules if m == 'asyncio' or m.startswith(('sinkd.core.filters',"
        " 'sinkd.server.protocol', 'sinkd.server.runtime', 'pydantic', 'aiosmtpd'))]\n"
        "print(heavy)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"
