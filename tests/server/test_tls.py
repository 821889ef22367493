"""The STARTTLS certificate: made once by a child process, reused, and never loading
``cryptography`` into the server."""

from __future__ import annotations

import ssl
import subprocess
import sys
from pathlib import Path

import pytest

from sinkd.errors import ConfigError
from sinkd.server.tls import self_signed, server_context


async def test_a_self_signed_certificate_is_made_once_and_then_reused(tmp_path: Path) -> None:
    cert, key = await self_signed(tmp_path / "state", "mx.sinkd.test")
    made = cert.stat().st_mtime_ns, key.stat().st_mtime_ns

    again = await self_signed(tmp_path / "state", "mx.sinkd.test")

    assert again == (cert, key)
    assert (cert.stat().st_mtime_ns, key.stat().st_mtime_ns) == made
    assert key.stat().st_mode & 0o777 == 0o600
    assert isinstance(server_context(cert, key), ssl.SSLContext)


async def test_a_directory_that_cannot_be_written_is_a_config_error_naming_it(
    tmp_path: Path,
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(ConfigError, match="cannot create a self-signed certificate in") as info:
        await self_signed(blocker / "state", "mx.sinkd.test")
    assert str(blocker / "state") in str(info.value)


def test_the_server_modules_do_not_load_cryptography() -> None:
    code = "import sys, sinkd.cli, sinkd.server.runtime; print('cryptography' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "False"
