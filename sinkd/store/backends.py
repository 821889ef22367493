"""Which store a location names: a SQLite file, a PostgreSQL database, or ``:memory:`` for the
in-memory store.

Owns that one decision, so the server opens its store with ``open_store`` and asks
``in_memory`` where the difference matters (worker processes, where the certificate goes).
It holds no records itself: ``sinkd.store.sqlite``, ``sinkd.store.postgres`` and
``sinkd.store.memory`` do. psycopg (the ``postgresql`` extra) is imported only when a
PostgreSQL store is opened.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from sinkd.errors import ConfigError, StoreError
from sinkd.location import NEEDS_EXTRA, StoreLocation
from sinkd.store import Store
from sinkd.store.memory import MemoryStore
from sinkd.store.sql import SCHEMA_VERSION, open_writer
from sinkd.store.sqlite import WriterKind, open_sqlite

IN_MEMORY = Path(":memory:")


def in_memory(db: Path | StoreLocation) -> bool:
    """Whether ``db`` names the in-memory store (kept by this process only, gone at stop)."""
    if isinstance(db, StoreLocation):
        return db.kind == "memory"
    return db == IN_MEMORY


async def open_store(
    location: StoreLocation | Path,
    *,
    writer: WriterKind = "thread",
    migrate: bool = False,
    instance: str | None = None,
) -> Store:
    """The store ``location`` names. SQLite's own ``:memory:`` database would be private to the
    connection that made it (the writer's: saves acknowledged, never readable), so
    ``:memory:`` means ``MemoryStore``; a SQLite file is always created or migrated, a
    PostgreSQL database only with ``migrate`` (else a missing or older schema is refused)."""
    if isinstance(location, Path):
        location = StoreLocation.of_path(location)
    if location.kind == "memory":
        return MemoryStore()
    if location.kind == "postgresql":
        # Imported here only: psycopg is the optional ``postgresql`` extra, and a SQLite user
        # without it must still be able to run sinkd.
        try:
            from sinkd.store.postgres import open_postgres
        except ImportError as exc:
            raise ConfigError(f"{NEEDS_EXTRA.format(shown=location.shown)} ({exc})") from None
        return await open_postgres(location, writer=writer, migrate=migrate, instance=instance)
    assert location.path is not None
    return await open_sqlite(location.path, writer=writer)


def migrate_store(location: StoreLocation) -> tuple[int | None, int]:
    """Create or migrate the store at ``location`` (``sinkd store migrate``): the schema
    version it had (None: there was no store) and the one it has now; ``StoreError`` when it
    cannot be reached or is newer than this sinkd, ``ConfigError`` for ``:memory:``."""
    if location.kind == "memory":
        raise ConfigError(":memory: has no schema to migrate; give a file or postgresql:// URL")
    if location.kind == "postgresql":
        try:  # the optional postgresql extra, as in open_store
            from sinkd.store.pg_sql import connect, ensure_schema
        except ImportError as exc:
            raise ConfigError(f"{NEEDS_EXTRA.format(shown=location.shown)} ({exc})") from None
        conn = connect(location)
        try:
            return ensure_schema(conn, location, migrate=True)
        finally:
            conn.close()
    assert location.path is not None
    found = _sqlite_version(location.path)
    open_writer(location.path, 5.0).close()  # creates or migrates, as every start does
    return found, SCHEMA_VERSION


def _sqlite_version(path: Path) -> int | None:
    """The schema version of the SQLite store at ``path``; None when there is none yet."""
    if not path.exists():
        return None
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        finally:
            conn.close()
    except sqlite3.Error as exc:
        if "no such table" in str(exc):
            return None
        raise StoreError(f"cannot read message store {path}: {exc}") from exc
    return None if row is None else int(row[0])
