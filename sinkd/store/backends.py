"""Which store a ``--db`` value means: a SQLite file, or ``:memory:`` for the in-memory store.

Owns that one decision, so the server opens its store with ``open_store`` and asks
``in_memory`` where the difference matters (worker processes, where the certificate goes).
It holds no records itself: ``sinkd.store.sqlite`` and ``sinkd.store.memory`` do.
"""

from __future__ import annotations

from pathlib import Path

from sinkd.store import Store
from sinkd.store.memory import MemoryStore
from sinkd.store.sqlite import WriterKind, open_sqlite

IN_MEMORY = Path(":memory:")


def in_memory(db: Path) -> bool:
    """Whether ``db`` names the in-memory store (kept by this process only, gone at stop)."""
    return db == IN_MEMORY


async def open_store(db: Path, *, writer: WriterKind = "thread") -> Store:
    """The store ``db`` names. SQLite's own ``:memory:`` database would be private to the
    connection that made it (the writer's: saves acknowledged, never readable), so
    ``:memory:`` means ``MemoryStore``; any other value is a SQLite file."""
    return MemoryStore() if in_memory(db) else await open_sqlite(db, writer=writer)
