"""The writer process's WAL checkpoints: on their own thread and connection, never in the
commit that a message's 250 waits for."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from sinkd.store.sql import Op, Writer
from sinkd.store.writer_main import (
    CHECKPOINT_BYTES,
    WAL_RESTART_PAGES,
    WAL_SIZE_LIMIT,
    Checkpointer,
)


def test_the_writers_commits_leave_checkpoints_to_the_checkpointer(tmp_path: Path) -> None:
    writer = Writer(tmp_path / "s.db", 5.0)
    checkpointer = Checkpointer(writer, 5.0)
    try:
        (pages,) = writer.conn.execute("PRAGMA wal_autocheckpoint").fetchone()
        assert pages == WAL_RESTART_PAGES  # only as a backstop that rewinds the WAL
    finally:
        checkpointer.close()
        writer.close()


def test_the_wal_stays_bounded_under_steady_commits(tmp_path: Path) -> None:
    # Steady commits with the checkpointer's PASSIVE checkpoints beside them: before the
    # writer's backstop the WAL was never rewound and grew by every commit (~500 MB after
    # 30,000 messages); now it is rewound and cut back to WAL_SIZE_LIMIT.
    db = tmp_path / "s.db"
    writer = Writer(db, 5.0)
    checkpointer = Checkpointer(writer, 5.0)
    writer.conn.execute("CREATE TABLE blob (b BLOB)")
    row = b"x" * 65_536
    written = 0
    try:
        while written < 3 * WAL_SIZE_LIMIT:
            writer.conn.execute("INSERT INTO blob VALUES (?)", (row,))
            checkpointer.count([Op("clear", None, None, None, raw=row)])
            written += len(row)
    finally:
        checkpointer.close()
    try:
        wal = db.with_name("s.db-wal")
        assert wal.stat().st_size <= WAL_SIZE_LIMIT + WAL_RESTART_PAGES * 4096
    finally:
        writer.close()


def test_enough_committed_bytes_move_into_the_database_file(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    writer = Writer(db, 5.0)
    checkpointer = Checkpointer(writer, 5.0)
    writer.conn.execute("CREATE TABLE blob (b BLOB)")
    writer.conn.execute("INSERT INTO blob VALUES (?)", (b"x" * CHECKPOINT_BYTES,))
    before = db.stat().st_size
    try:
        checkpointer.count([Op("clear", None, None, None, raw=b"x" * CHECKPOINT_BYTES)])
    finally:
        checkpointer.close()  # after the checkpoint it was asked for
    try:
        assert before < CHECKPOINT_BYTES <= db.stat().st_size
        reader = sqlite3.connect(db)
        assert reader.execute("SELECT length(b) FROM blob").fetchone() == (CHECKPOINT_BYTES,)
        reader.close()
    finally:
        writer.close()


def test_little_committed_asks_for_no_checkpoint(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    writer = Writer(db, 5.0)
    checkpointer = Checkpointer(writer, 5.0)
    writer.conn.execute("CREATE TABLE blob (b BLOB)")
    writer.conn.execute("INSERT INTO blob VALUES (?)", (b"x" * 100_000,))
    before = db.stat().st_size
    checkpointer.count([Op("clear", None, None, None, raw=b"x" * 100_000)])
    checkpointer.close()
    try:
        assert db.stat().st_size == before
    finally:
        writer.close()
