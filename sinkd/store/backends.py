"""Which store a location names: a SQLite file, a PostgreSQL database, or ``:memory:`` for the
in-memory store; and what a server runs beside a store several instances share.

Owns those decisions, so the server opens its store with ``open_store`` (``migrate_store`` for
``sinkd store migrate``), asks ``in_memory`` where the difference matters (worker processes,
where the certificate goes), and gets from ``shared_links`` and ``shared_delivery_state`` the
events of the other instances, the relay lease and the delivery state they share (None, or
not asked, for a store of one machine). It holds no records itself: ``sinkd.store.sqlite``,
``sinkd.store.postgres``, ``sinkd.store.memory``, ``pg_events`` and ``pg_state`` do.

psycopg is the optional ``postgresql`` extra and a SQLite user runs sinkd without it, so the
PostgreSQL modules are imported inside the functions that need them, under
``_postgresql_extra`` (they hide no cycle); this is the one place the server reaches them.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from sinkd.errors import ConfigError, StoreError
from sinkd.location import NEEDS_EXTRA, StoreLocation
from sinkd.store import Store
from sinkd.store.memory import MemoryStore
from sinkd.store.sql import SCHEMA_VERSION, open_writer
from sinkd.store.sqlite import WriterKind, open_sqlite

if TYPE_CHECKING:
    from sinkd.store.pg_events import Notification, SharedLinks
    from sinkd.store.pg_state import PgDeliveryState

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
        with _postgresql_extra(location):
            from sinkd.store.postgres import open_postgres
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
        with _postgresql_extra(location):
            from sinkd.store.pg_sql import connect, ensure_schema
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


def shared_links(
    location: StoreLocation,
    instance: str,
    on_event: Callable[[Notification], Awaitable[None]],
    *,
    relay: bool,
) -> SharedLinks | None:
    """The links a server on ``location`` needs (not started), or None for a store that no
    other instance can share. ``instance`` names this server in the events it commits."""
    if location.kind != "postgresql":
        return None
    with _postgresql_extra(location):
        from sinkd.store import pg_events
    return pg_events.links(location, instance, on_event, relay=relay)


def shared_delivery_state(
    location: StoreLocation, instance: str, *, delay_override: float | None
) -> PgDeliveryState:
    """The delivery state every instance on the PostgreSQL store at ``location`` shares (not
    started); ``delay_override`` is ``--greylist-delay``."""
    with _postgresql_extra(location):
        from sinkd.store.pg_state import PgDeliveryState
    assert location.url is not None, "a postgresql location has its URL"
    return PgDeliveryState(location.url, instance=instance, delay_override=delay_override)


@contextlib.contextmanager
def _postgresql_extra(location: StoreLocation) -> Iterator[None]:
    """Import PostgreSQL modules inside: without psycopg, a ``ConfigError`` saying which
    extra to install."""
    try:
        yield
    except ImportError as exc:
        raise ConfigError(f"{NEEDS_EXTRA.format(shown=location.shown)} ({exc})") from None
