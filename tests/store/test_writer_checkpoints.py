"""The writer process's WAL checkpoints: on their own thread and connection, never in the
commit that a message's 250 waits for."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from sinkd.store.sql import Op, Writer
from sinkd.store.writer_main import CHECKPOINT_BYTES, Checkpointer


def test_the_writers_commits_leave_checkpoints_to_the_checkpointer(tmp_path: Path) -> None:
    writer = Writer(tmp_path / "s.db", 5.0)
    checkpointer = Checkpointer(writer, 5.0)
    try:
        (pages,) = writer.conn.execute("PRAGMA wal_autocheckpoint").fetchone()
        assert pages == 0
    finally:
        checkpointer.close()
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
