"""The SQLite store beyond the contract (tests/store/test_contract.py): durability in the file,
group commit, the schema and its migrations, and failures that name the file."""

from __future__ import annotations

import asyncio
import os
import select
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sinkd.errors import StoreError
from sinkd.store import Query
from sinkd.store.sqlite import SCHEMA_VERSION, SqliteStore, WriterKind, open_sqlite
from tests.support.paths import ROOT
from tests.support.store import make_record


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "sinkd.sqlite3"


@pytest.fixture(params=["thread", "process"])
def writer(request: pytest.FixtureRequest) -> WriterKind:
    """Every store test runs with the writer thread and with the writer process."""
    kind: WriterKind = request.param
    return kind


@pytest.fixture
async def store(db_path: Path, writer: WriterKind) -> AsyncIterator[SqliteStore]:
    s = await open_sqlite(db_path, writer=writer)
    yield s
    await s.close()


def direct_count(path: Path, table: str) -> int:
    conn = sqlite3.connect(path)
    try:
        (n,) = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
        return int(n)
    finally:
        conn.close()


async def test_save_is_committed_when_it_returns(store: SqliteStore, db_path: Path) -> None:
    await store.save(make_record(1))

    # A separate connection sees the row: it is committed, not buffered in the store.
    assert direct_count(db_path, "messages") == 1
    assert direct_count(db_path, "raw") == 1


def stored_schema_version(db_path: Path) -> str:
    conn = sqlite3.connect(db_path)
    try:
        (version,) = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    finally:
        conn.close()
    return str(version)


async def test_database_uses_wal_and_the_current_schema_version(
    store: SqliteStore, db_path: Path
) -> None:
    conn = sqlite3.connect(db_path)
    try:
        (mode,) = conn.execute("PRAGMA journal_mode").fetchone()
        (version,) = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    finally:
        conn.close()
    assert mode == "wal"
    assert version == str(SCHEMA_VERSION)


async def test_concurrent_saves_share_commits(store: SqliteStore) -> None:
    # That they all persist is the contract's (tests/store/test_contract.py).
    before = store.commits

    await asyncio.gather(*(store.save(make_record(n)) for n in range(200)))

    assert 1 <= store.commits - before < 200


async def test_delete_removes_the_records_raw_bytes_from_the_file(
    store: SqliteStore, db_path: Path
) -> None:
    await store.save(make_record(1))
    await store.save(make_record(2))

    await store.delete("m0001")

    assert direct_count(db_path, "raw") == 1
    assert direct_count(db_path, "finding_codes") == 1
    assert direct_count(db_path, "message_search") == 1


async def test_clear_empties_every_table_of_the_file(store: SqliteStore, db_path: Path) -> None:
    for n in range(5):
        await store.save(make_record(n))

    assert await store.clear() == 5
    for table in ("messages", "raw", "finding_codes", "message_search"):
        assert direct_count(db_path, table) == 0


async def test_records_survive_reopening_the_file(db_path: Path, writer: WriterKind) -> None:
    first = await open_sqlite(db_path, writer=writer)
    await first.save(make_record(1))
    await first.save(make_record(2))
    await first.close()

    again = await open_sqlite(db_path, writer=writer)
    try:
        assert [m.id for m in await again.list(Query())] == ["m0002", "m0001"]
        await again.save(make_record(3))
        assert (await again.list(Query(limit=1)))[0].id == "m0003"
    finally:
        await again.close()


async def test_saved_records_survive_the_process_being_killed(
    db_path: Path, writer: WriterKind
) -> None:
    # The child acknowledges each save on stdout, then dies by SIGKILL without closing:
    # whatever it acknowledged must be in the file.
    script = textwrap.dedent(
        f"""
        import asyncio, os, signal, sys
        sys.path[:0] = {sys.path!r}
        from {__name__} import make_record
        from sinkd.store.sqlite import open_sqlite

        async def main():
            store = await open_sqlite({str(db_path)!r}, writer={writer!r})
            await asyncio.gather(*(store.save(make_record(n)) for n in range(20)))
            remote = store.writer_process
            print("saved", remote._process.pid if remote else 0, flush=True)
            os.kill(os.getpid(), signal.SIGKILL)

        asyncio.run(main())
        """
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        script,
        cwd=ROOT,
        stdout=subprocess.PIPE,
    )
    out, _ = await proc.communicate()
    said, writer_pid = out.split()
    assert said == b"saved"
    assert proc.returncode == -9
    if writer == "process":
        # The writer process sees its socket close and ends on its own: no orphan holds the
        # file. (A pidfd becomes readable when the process ends: no polling.)
        assert await asyncio.to_thread(process_ends, int(writer_pid), 10.0)

    store = await open_sqlite(db_path, writer=writer)
    try:
        assert await store.count() == 20
    finally:
        await store.close()


def process_ends(pid: int, timeout: float) -> bool:
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True  # already gone
    try:
        readable, _, _ = select.select([fd], [], [], timeout)
        return bool(readable)
    finally:
        os.close(fd)


async def test_a_batch_of_saves_is_one_commit_with_consecutive_seqs_never_reused(
    store: SqliteStore,
) -> None:
    await store.save(make_record(1))
    commits = store.commits
    await asyncio.gather(*(store.save(make_record(n)) for n in range(2, 42)))
    assert store.commits - commits < 40  # group commit: the writer took them in batches
    listed = await store.list(Query(limit=100))
    seqs = [m.seq or 0 for m in listed]  # every listed message has its seq
    assert seqs == sorted(seqs, reverse=True) and len(set(seqs)) == 41
    assert len(await store.list(Query(code="CONTENT_SPAM_WORD", limit=100))) == 41
    newest = listed[0]
    await store.delete(newest.id)
    await store.save(make_record(99))
    (latest,) = await store.list(Query(limit=1))
    assert latest.id == "m0099" and latest.seq is not None and newest.seq is not None
    assert latest.seq > newest.seq  # AUTOINCREMENT: a deleted seq is not handed out again


async def test_locked_database_fails_the_whole_batch_and_writer_keeps_serving(
    db_path: Path,
) -> None:
    store = await open_sqlite(db_path, busy_timeout=0.05, writer="thread")
    blocker = sqlite3.connect(db_path, isolation_level=None)
    try:
        blocker.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        results = await asyncio.gather(
            *(store.save(make_record(n)) for n in range(5)), return_exceptions=True
        )
        blocker.execute("ROLLBACK")

        assert all(isinstance(r, StoreError) for r in results)
        assert str(db_path) in str(results[0])
        await store.save(make_record(9))
        assert [m.id for m in await store.list(Query())] == ["m0009"]
    finally:
        blocker.close()
        await store.close()


async def test_close_finishes_pending_saves_and_is_idempotent(
    db_path: Path, writer: WriterKind
) -> None:
    store = await open_sqlite(db_path, writer=writer)
    tasks = [asyncio.create_task(store.save(make_record(n))) for n in range(30)]
    await asyncio.sleep(0)  # let every task queue its record

    await store.close()
    await store.close()

    assert [t.result() for t in tasks] == [None] * 30
    assert direct_count(db_path, "messages") == 30


async def test_newer_schema_version_is_refused_with_the_path(
    db_path: Path, writer: WriterKind
) -> None:
    store = await open_sqlite(db_path, writer=writer)
    await store.close()
    conn = sqlite3.connect(db_path)
    with conn:
        conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    conn.close()

    with pytest.raises(StoreError, match="schema version 99, newer") as info:
        await open_sqlite(db_path, writer=writer)
    assert str(db_path) in str(info.value)


async def test_unopenable_path_raises_store_error_naming_it(
    tmp_path: Path, writer: WriterKind
) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    under_a_file = not_a_dir / "sinkd.sqlite3"
    a_directory = tmp_path / "dir.sqlite3"
    a_directory.mkdir()

    for path in (under_a_file, a_directory):
        with pytest.raises(StoreError) as info:
            await open_sqlite(path, writer=writer)
        assert str(path) in str(info.value)


async def test_corrupt_database_raises_store_error_naming_it(
    tmp_path: Path, writer: WriterKind
) -> None:
    path = tmp_path / "corrupt.sqlite3"
    path.write_bytes(b"this is not a database, just some bytes" * 100)

    with pytest.raises(StoreError, match="cannot open message store") as info:
        await open_sqlite(path, writer=writer)
    assert str(path) in str(info.value)


async def test_a_version_1_store_is_migrated_and_keeps_its_messages(
    db_path: Path, writer: WriterKind
) -> None:
    # A store as the first release wrote it: no 'filtered' column, schema_version 1.
    db_path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(db_path)
    with conn:
        conn.executescript(
            """
            CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
            INSERT INTO meta VALUES ('schema_version', '1');
            CREATE TABLE messages (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE,
                received_at TEXT NOT NULL, transaction_id TEXT NOT NULL, profile TEXT NOT NULL,
                verdict TEXT NOT NULL, disposition TEXT NOT NULL, score REAL NOT NULL,
                stage TEXT NOT NULL, subject TEXT, mail_from TEXT, client_ip TEXT, size INTEGER,
                data TEXT NOT NULL);
            CREATE TABLE raw (id TEXT PRIMARY KEY REFERENCES messages(id) ON DELETE CASCADE,
                bytes BLOB NOT NULL);
            INSERT INTO messages VALUES (1, 'OLD1', '2026-01-01T00:00:00.000Z', 'T1', 'p',
                'accept', 'inbox', 0, 'data', 's', 'a@b', '127.0.0.1', 5, '{"id": "OLD1"}');
            INSERT INTO raw VALUES ('OLD1', x'6869');
            """
        )
    conn.close()
    store = await open_sqlite(db_path, writer=writer)
    try:
        old = await store.get("OLD1", with_raw=True)
        assert old.raw == b"hi" and old.filtered is None
        await store.save(make_record(7))
        assert await store.count() == 2
    finally:
        await store.close()
    version = stored_schema_version(db_path)
    assert version == str(SCHEMA_VERSION)


async def test_a_version_6_store_is_migrated_keeps_its_messages_and_then_queues_relays(
    db_path: Path, writer: WriterKind
) -> None:
    # A schema-6 file: today's tables without the relay queue, as sinkd wrote them before it.
    store = await open_sqlite(db_path, writer=writer)
    await store.save(make_record(1))
    await store.close()
    conn = sqlite3.connect(db_path)
    with conn:
        conn.execute("DROP TABLE relay")
        conn.execute("UPDATE meta SET value = '6' WHERE key = 'schema_version'")
    conn.close()

    store = await open_sqlite(db_path, writer=writer)
    try:
        old = await store.get("m0001", with_raw=True)
        assert old.raw is not None and old.data["relay"] is None
        await store.save(make_record(2, relay=True))
        assert [e.message_id for e in await store.relay_queue(10)] == ["m0002"]
        assert await store.count() == 2
    finally:
        await store.close()
    version = stored_schema_version(db_path)
    assert version == "7" == str(SCHEMA_VERSION)
