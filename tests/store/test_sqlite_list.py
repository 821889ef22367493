"""Listing stored messages from SQLite: every filter against a plain-Python reference of the
same rules, cursor paging while messages arrive, and the schema 4 -> 5 backfill."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import random
import sqlite3
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from sinkd.core.model import (
    Action,
    Category,
    ClientIdentity,
    Envelope,
    Finding,
    Reply,
    Stage,
    Verdict,
    VerdictAction,
)
from sinkd.store import MessageRecord, Query, iso
from sinkd.store.sqlite import SCHEMA_VERSION, SqliteStore, bulk_load, open_sqlite
from tests.support.store import DISPOSITIONS, T0

_SUBJECTS = [
    "Quarterly figures",
    "INVOICE 2026-001",
    "Ihre Rechnung: Grüße aus Köln",
    "GRÜSSE zurück",
    "café au lait",
    'He said "hi"',
    "Ünïcödé ÆØÅ",
    "x",
    None,
]
_CODES = ["SPF_FAIL", "DKIM_NONE", "CONTENT_TRIGGER_WORD", "DNSBL_LISTED"]


def varied(n: int, rng: random.Random) -> MessageRecord:
    """Record ``n``: about a minute apart, some received well before records stored earlier
    (a slow session finishing late)."""
    verdict = rng.choice(list(VerdictAction))
    codes = rng.sample(_CODES, rng.randint(0, 3))
    late = rng.random() < 0.1
    received = T0 + timedelta(minutes=n - (rng.randint(5, 90) if late else 0), milliseconds=n)
    sender = rng.choice(["Alice@Shop.example", "bob@bank.example", "", "zoë@Straße.example"])
    rcpts = tuple(
        rng.choice(["carol@corp.example", "Dave@Corp.Example", "eve@other.example", "ß@x.io"])
        for _ in range(rng.randint(1, 3))
    )
    findings = tuple(
        Finding(code, code.split("_")[0].lower(), Category.CONTENT, Action.SCORE, "r")
        for code in codes
    )
    v = Verdict(
        profile=rng.choice(["typical-corporate", "strict-finance"]),
        verdict=verdict,
        disposition=DISPOSITIONS[verdict],
        score=0.0,
        stage=Stage.DATA,
        reply=Reply(250, "2.0.0", "OK"),
        findings=findings,
        envelope=Envelope(ClientIdentity(ip="192.0.2.1"), mail_from=sender, rcpt_to=rcpts),
        subject=rng.choice(_SUBJECTS),
    )
    return MessageRecord(f"v{n:05d}", received, f"t{n}", v, b"x")


def records(count: int, seed: int = 7) -> list[MessageRecord]:
    rng = random.Random(seed)
    return [varied(n, rng) for n in range(count)]


def reference(stored: Sequence[MessageRecord], q: Query) -> list[str]:
    """The filter rules in plain Python: what the store must answer, newest (last stored)
    first."""

    def has(value: str | None, needle: str | None) -> bool:
        return needle is None or needle.casefold() in (value or "").casefold()

    def at(moment: datetime) -> str:
        return iso(moment.astimezone(UTC))

    out = []
    for r in reversed(stored):
        v = r.verdict
        if q.verdict is not None and v.verdict.value != q.verdict:
            continue
        if q.profile is not None and v.profile != q.profile:
            continue
        if not has(v.subject, q.subject) or not has(v.envelope.mail_from, q.mail_from):
            continue
        if q.to is not None and not any(has(t, q.to) for t in v.envelope.rcpt_to):
            continue
        if q.code is not None and q.code not in v.codes:
            continue
        received = at(r.received_at)
        if q.since is not None and received < at(q.since):
            continue
        if q.until is not None and received >= at(q.until):
            continue
        out.append(r.id)
    return out


QUERIES = [
    Query(),
    Query(verdict="quarantine"),
    Query(profile="strict-finance"),
    Query(subject="figures"),
    Query(subject="QUARTERLY FIG"),
    Query(subject="grüsse"),  # Grüße and GRÜSSE alike
    Query(subject="GRÜẞE"),  # capital sharp s folds too
    Query(subject="CAFÉ"),
    Query(subject="cafe"),  # no accent: not a substring of café
    Query(subject='"hi"'),  # FTS5 quoting must not leak
    Query(subject="x"),  # one character: the scanned path
    Query(subject="ce"),  # two characters
    Query(subject="nothing like this"),
    Query(mail_from="SHOP.EX"),
    Query(mail_from="straSSe"),
    Query(mail_from="@"),
    Query(to="corp.example"),
    Query(to="DAVE@corp"),
    Query(to="ss@x"),  # ß folds to ss
    Query(to="example\ncarol"),  # never spans two recipients
    Query(to="e.exampled"),  # nor runs one into the next
    Query(code="SPF_FAIL"),
    Query(code="NO_SUCH_CODE"),
    Query(since=T0 + timedelta(minutes=100)),
    Query(until=T0 + timedelta(minutes=60)),
    Query(since=T0 + timedelta(minutes=40), until=T0 + timedelta(minutes=41, seconds=30)),
    Query(since=T0 + timedelta(hours=2), until=T0 + timedelta(hours=3)),
    Query(since=T0 + timedelta(days=9)),
    Query(until=T0 - timedelta(days=1)),
    Query(verdict="reject", to="corp", code="DKIM_NONE"),
    Query(verdict="accept", subject="ü", mail_from="a"),
    Query(profile="typical-corporate", subject="rechnung", since=T0 + timedelta(minutes=30)),
    Query(code="CONTENT_TRIGGER_WORD", to="o", until=T0 + timedelta(minutes=150)),
    Query(subject="figures", to="corp", mail_from="shop", code="SPF_FAIL"),
]


@pytest.fixture(params=["thread", "process"])
async def store(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[SqliteStore]:
    # Both writers: the process gets received times over its socket, which the time-range
    # plan (received_max, the lag) depends on.
    s = await open_sqlite(tmp_path / "sinkd.sqlite3", writer=request.param)
    yield s
    await s.close()


async def save_all(store: SqliteStore, rows: Sequence[MessageRecord]) -> None:
    # Concurrent, as SMTP sessions save; the writer still stores them in submission order.
    await asyncio.gather(*(store.save(r) for r in rows))


async def listed(store: SqliteStore, q: Query) -> list[str]:
    return [m.id for m in await store.list(dataclasses.replace(q, limit=10_000))]


@pytest.fixture(scope="module")
def history() -> list[MessageRecord]:
    return records(240)


@pytest.mark.parametrize("q", QUERIES, ids=repr)
async def test_every_filter_returns_exactly_the_matching_messages_newest_first(
    store: SqliteStore, history: list[MessageRecord], q: Query
) -> None:
    await save_all(store, history)
    expected = reference(history, q)
    assert await listed(store, q) == expected
    assert await store.count(q) == len(expected)


async def test_the_reference_data_exercises_every_filter(history: list[MessageRecord]) -> None:
    # Guards the test above against passing vacuously: most queries match some, none all.
    sizes = [len(reference(history, q)) for q in QUERIES[1:]]
    assert sum(0 < n < len(history) for n in sizes) >= len(QUERIES) - 8


async def test_count_stops_at_at_most(store: SqliteStore, history: list[MessageRecord]) -> None:
    await save_all(store, history)
    matching = len(reference(history, Query(to="corp")))
    assert await store.count(Query(to="corp"), at_most=10) == 10
    assert await store.count(Query(to="corp"), at_most=matching + 5) == matching


async def test_list_gives_each_message_its_seq_in_storage_order(
    store: SqliteStore, history: list[MessageRecord]
) -> None:
    await save_all(store, history[:20])
    seqs = [m.seq for m in await store.list(Query(limit=100))]
    assert all(s is not None for s in seqs)
    assert seqs == sorted(seqs, reverse=True)  # type: ignore[type-var]
    assert len(set(seqs)) == 20


@pytest.mark.parametrize("q", [Query(), Query(to="corp"), Query(code="SPF_FAIL")], ids=repr)
async def test_cursor_paging_visits_every_message_once_while_new_ones_arrive(
    store: SqliteStore, q: Query
) -> None:
    rows = records(150, seed=3)
    await save_all(store, rows[:100])
    expected = reference(rows[:100], q)
    seen: list[str] = []
    before: int | None = None
    arriving = iter(rows[100:])
    while True:
        page = await store.list(dataclasses.replace(q, limit=7, before=before))
        seen += [m.id for m in page]
        for r in [next(arriving, None) for _ in range(3)]:  # newer messages keep arriving
            if r is not None:
                await store.save(r)
        if len(page) < 7:
            break
        before = page[-1].seq
    assert seen == expected  # every one, once, in order; none of the newcomers


async def test_offset_still_pages_and_combines_with_the_cursor(
    store: SqliteStore, history: list[MessageRecord]
) -> None:
    await save_all(store, history[:30])
    everything = await store.list(Query(limit=30))
    page = await store.list(Query(limit=5, offset=5, before=everything[9].seq))
    assert [m.id for m in page] == [m.id for m in everything[15:20]]


async def test_deleted_and_cleared_messages_are_no_longer_found_by_text(
    store: SqliteStore, history: list[MessageRecord]
) -> None:
    await save_all(store, history[:40])
    victim = next(r for r in history[:40] if r.verdict.subject == "Quarterly figures")
    await store.delete(victim.id)
    assert victim.id not in await listed(store, Query(subject="quarterly"))
    assert await listed(store, Query(subject="quarterly")) == reference(
        [r for r in history[:40] if r is not victim], Query(subject="quarterly")
    )
    await store.clear()
    assert await listed(store, Query(subject="quarterly")) == []
    await save_all(store, history[40:60])
    assert await listed(store, Query(subject="quarterly")) == reference(
        history[40:60], Query(subject="quarterly")
    )


async def test_a_message_received_long_before_it_was_stored_is_still_in_its_time_range(
    store: SqliteStore, history: list[MessageRecord]
) -> None:
    late = dataclasses.replace(history[0], id="late", received_at=T0 - timedelta(days=3))
    await save_all(store, [*history[1:50], late, *history[50:60]])
    window = Query(since=T0 - timedelta(days=4), until=T0 - timedelta(days=2))
    assert await listed(store, window) == ["late"]
    assert (await listed(store, Query(until=T0)))[0] == "late"


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
