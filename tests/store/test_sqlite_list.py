"""Listing from SQLite beyond the contract (every filter, paging and counting are in
tests/store/test_contract.py): a bulk-loaded file and the schema 4 -> 5 backfill answer every
filter as the plain-Python reference does."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sqlite3
from collections.abc import Sequence
from pathlib import Path

import pytest

from sinkd.store import MessageRecord, Query, iso
from sinkd.store.sqlite import SCHEMA_VERSION, SqliteStore, bulk_load, open_sqlite
from tests.support.store import QUERIES, records, reference


async def save_all(store: SqliteStore, rows: Sequence[MessageRecord]) -> None:
    # Concurrent, as SMTP sessions save; the writer still stores them in submission order.
    await asyncio.gather(*(store.save(r) for r in rows))


async def listed(store: SqliteStore, q: Query) -> list[str]:
    return [m.id for m in await store.list(dataclasses.replace(q, limit=10_000))]


@pytest.fixture(scope="module")
def history() -> list[MessageRecord]:
    return records(240)


async def test_bulk_load_stores_what_save_would(
    tmp_path: Path, history: list[MessageRecord]
) -> None:
    path = tmp_path / "bulk.sqlite3"
    assert bulk_load(path, history[:100], batch=30) == 100
    store = await open_sqlite(path)
    try:
        for q in QUERIES[:12]:
            assert await listed(store, q) == reference(history[:100], q)
        await store.save(history[100])
        assert (await store.list(Query(limit=1)))[0].id == history[100].id
    finally:
        await store.close()


# --- schema 4 -> 5 ------------------------------------------------------------------------------

_V4_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT INTO meta VALUES ('schema_version', '4');
CREATE TABLE messages (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE,
    received_at TEXT NOT NULL, transaction_id TEXT NOT NULL, profile TEXT NOT NULL,
    verdict TEXT NOT NULL, disposition TEXT NOT NULL, score REAL NOT NULL, stage TEXT NOT NULL,
    subject TEXT, mail_from TEXT, client_ip TEXT, size INTEGER, data TEXT NOT NULL,
    released_at TEXT);
CREATE TABLE raw (id TEXT PRIMARY KEY REFERENCES messages(id) ON DELETE CASCADE,
    bytes BLOB NOT NULL, filtered BLOB);
CREATE TABLE finding_codes (code TEXT NOT NULL, message_id TEXT NOT NULL
    REFERENCES messages(id) ON DELETE CASCADE, PRIMARY KEY (code, message_id)) WITHOUT ROWID;
CREATE INDEX finding_codes_message ON finding_codes(message_id);
CREATE INDEX messages_received_at ON messages(received_at);
CREATE INDEX messages_verdict ON messages(verdict, seq);
CREATE INDEX messages_profile ON messages(profile, seq);
"""


def write_v4_store(path: Path, rows: Sequence[MessageRecord]) -> None:
    """A store as schema 4 wrote it, rows included (the columns the v4 writer filled)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path)
    with conn:
        conn.executescript(_V4_SCHEMA)
        for r in rows:
            data = r.to_json()
            conn.execute(
                "INSERT INTO messages (id, received_at, transaction_id, profile, verdict,"
                " disposition, score, stage, subject, mail_from, client_ip, size, data)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    r.id,
                    iso(r.received_at),
                    r.transaction_id,
                    data["profile"],
                    data["verdict"],
                    data["disposition"],
                    data["score"],
                    data["stage"],
                    data["subject"],
                    data["envelope"]["mail_from"],
                    data["envelope"]["client_ip"],
                    data["size"],
                    json.dumps(data),
                ),
            )
            conn.executemany(
                "INSERT OR IGNORE INTO finding_codes VALUES (?, ?)",
                [(c, r.id) for c in r.verdict.codes],
            )
    conn.close()


async def test_a_version_4_store_with_messages_is_migrated_and_every_filter_works(
    tmp_path: Path, history: list[MessageRecord]
) -> None:
    path = tmp_path / "old.sqlite3"
    write_v4_store(path, history[:200])
    store = await open_sqlite(path)
    try:
        for q in QUERIES:
            assert await listed(store, q) == reference(history[:200], q), q
        # New messages after the migration are found beside the backfilled ones.
        await save_all(store, history[200:])
        for q in QUERIES:
            assert await listed(store, q) == reference(history, q), q
    finally:
        await store.close()
    conn = sqlite3.connect(path)
    try:
        (version,) = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        (searchable,) = conn.execute("SELECT count(*) FROM message_search").fetchone()
        (missing,) = conn.execute(
            "SELECT count(*) FROM messages WHERE received_max IS NULL"
        ).fetchone()
    finally:
        conn.close()
    assert (version, searchable, missing) == (str(SCHEMA_VERSION), len(history), 0)


@pytest.mark.parametrize(
    "q",
    [
        Query(),
        Query(verdict="accept"),
        Query(profile="strict"),
        Query(code="SPF_FAIL"),
        Query(subject="hello"),
        Query(to="co"),
    ],
    ids=repr,
)
async def test_a_page_after_a_cursor_is_read_along_an_index_without_a_sort_or_a_scan(
    tmp_path: Path, history: list[MessageRecord], q: Query
) -> None:
    store = await open_sqlite(tmp_path / "plan.sqlite3")
    try:
        await save_all(store, history[:60])
        for paged in (dataclasses.replace(q, after=10), dataclasses.replace(q, before=50)):
            plan = await store.explain(paged)
            assert plan, f"{paged!r} has a plan"
            assert not any("TEMP B-TREE" in step for step in plan), plan  # no sort
            assert not any(step.startswith("SCAN m") for step in plan), plan  # no table scan
            driver = plan[0]
            # The driver seeks to the cursor (a seq range on an index), or is the trigram
            # index answering the text match with the seq bound.
            assert (
                "seq>?" in driver
                or "rowid>?" in driver
                or "seq<?" in driver
                or "rowid<?" in driver
                or driver.startswith("SCAN t VIRTUAL TABLE")
            ), plan
    finally:
        await store.close()
