"""Which store a location opens, and that psycopg stays optional: without the ``postgresql``
extra a SQLite store opens as ever, and a PostgreSQL URL is refused with the extra to install
(each in a fresh interpreter where importing psycopg fails, as it does when it is missing)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from sinkd.location import StoreLocation
from sinkd.store.backends import open_store
from sinkd.store.memory import MemoryStore
from sinkd.store.sqlite import SqliteStore

ROOT = Path(__file__).resolve().parents[2]


def without_psycopg(code: str) -> subprocess.CompletedProcess[str]:
    script = "import sys\nsys.modules['psycopg'] = None  # import psycopg raises ImportError\n"
    return subprocess.run(
        [sys.executable, "-c", script + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        check=False,
    )


def test_without_psycopg_a_sqlite_store_opens_and_a_postgresql_url_names_the_extra(
    tmp_path: Path,
) -> None:
    done = without_psycopg(
        f"""
        import asyncio
        from sinkd.errors import ConfigError
        from sinkd.store.backends import open_store
        from sinkd.location import StoreLocation

        async def main():
            store = await open_store(StoreLocation.parse({str(tmp_path / "s.db")!r}))
            print(type(store).__name__, store.writable)
            await store.close()
            try:
                await open_store(StoreLocation.parse("postgresql://u:secret@db.example/sinkd"))
            except ConfigError as exc:
                print(exc)

        asyncio.run(main())
        """
    )

    assert done.returncode == 0, done.stderr
    first, second = done.stdout.splitlines()
    assert first == "SqliteStore True"
    assert second.startswith(
        "--store postgresql://u:***@db.example/sinkd needs the postgresql extra:"
        " pip install 'sinkd[postgresql]'"
    )


async def test_a_path_opens_sqlite_and_memory_opens_the_memory_store(tmp_path: Path) -> None:
    sqlite = await open_store(StoreLocation.parse(f"sqlite:///{tmp_path / 'a.db'}"))
    memory = await open_store(StoreLocation.parse(":memory:"))
    try:
        assert isinstance(sqlite, SqliteStore) and sqlite.path == tmp_path / "a.db"
        assert isinstance(memory, MemoryStore)
    finally:
        await sqlite.close()
        await memory.close()
