"""Store records and backends for the store tests: ``make_record(n)`` is message ``n`` received
``n`` seconds after ``T0``, with one finding and the disposition of its verdict; ``records(n)``
varied ones with ``reference``, the list filters in plain Python, and ``QUERIES`` that exercise
them; ``open_backend`` opens each ``Store`` implementation and ``open_sink`` each
``VerdictSink`` (with the repository that reads what it saved); ``database_for`` gives a
PostgreSQL kind a new database of its own on the session's private server."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from sinkd.core.model import (
    Action,
    Category,
    ClientIdentity,
    Disposition,
    Envelope,
    Finding,
    Reply,
    Stage,
    Verdict,
    VerdictAction,
)
from sinkd.server.workers import PipeStore
from sinkd.store import MessageRecord, Query, Repository, Store, VerdictSink, iso
from sinkd.store.memory import MemoryStore
from sinkd.store.sqlite import WriterKind, open_sqlite
from sinkd.store.writer import WriterProcess

T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)

DISPOSITIONS = {
    VerdictAction.ACCEPT: Disposition.INBOX,
    VerdictAction.QUARANTINE: Disposition.QUARANTINED,
    VerdictAction.REJECT: Disposition.REJECTED,
}


def make_record(
    n: int,
    *,
    verdict: VerdictAction = VerdictAction.ACCEPT,
    profile: str = "default",
    raw: bytes | None = b"Subject: hi\r\n\r\nbody\r\n",
    message_id: str | None = None,
    relay: bool = False,
    rcpt_to: tuple[str, ...] = ("rcpt@example.org",),
) -> MessageRecord:
    finding = Finding(
        code="CONTENT_SPAM_WORD",
        filter="content",
        category=Category.CONTENT,
        action=Action.SCORE,
        reason="The body uses a phrase spam filters look for.",
        score=1.5,
        detail={"word": "free"},
    )
    v = Verdict(
        profile=profile,
        verdict=verdict,
        disposition=DISPOSITIONS[verdict],
        score=1.5,
        stage=Stage.DATA,
        reply=Reply(250, "2.0.0", "OK"),
        findings=(finding,),
        envelope=Envelope(
            client=ClientIdentity(ip="192.0.2.7", helo="mx.example"),
            mail_from="sender@example.com",
            rcpt_to=rcpt_to,
        ),
        subject=f"message {n}",
    )
    return MessageRecord(
        id=message_id or f"m{n:04d}",
        received_at=T0 + timedelta(seconds=n),
        transaction_id=f"t{n:04d}",
        verdict=v,
        raw=raw,
        relay=relay,
    )


# --- varied records and the filter rules in plain Python ----------------------------------

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


# --- every backend ---------------------------------------------------------------------------

# Every full Store: SQLite and PostgreSQL, each with its writer thread and with its writer
# process (what ``sinkd serve`` runs), and in memory.
BACKENDS = ("sqlite-thread", "sqlite-process", "postgres-thread", "postgres-process", "memory")
# Every VerdictSink: the full stores, and a worker's PipeStore (saves through its own
# connection to a writer process, read back through the primary's store), on SQLite and on
# PostgreSQL.
SINKS = (*BACKENDS, "pipe", "pipe-postgres")


def database_for(kind: str, request: pytest.FixtureRequest) -> str | None:
    """A new, empty database on the session's PostgreSQL server for a PostgreSQL ``kind``
    (the test module imports the ``postgres_server`` fixture); None for the others."""
    if "postgres" not in kind:
        return None
    server = request.getfixturevalue("postgres_server")
    dsn: str = server.create_database()
    return dsn


@asynccontextmanager
async def open_backend(
    kind: str, directory: Path, database: str | None = None
) -> AsyncIterator[Store]:
    """A new, empty ``Store`` of ``kind`` (its files, if any, in ``directory``; a PostgreSQL
    one in ``database``, a DSN of an empty database)."""
    store: Store
    if kind == "memory":
        store = MemoryStore()
    elif kind in ("sqlite-thread", "sqlite-process"):
        writer: WriterKind = "thread" if kind == "sqlite-thread" else "process"
        store = await open_sqlite(directory / "sinkd.sqlite3", writer=writer)
    elif kind in ("postgres-thread", "postgres-process"):
        from sinkd.store.postgres import open_postgres  # psycopg: the optional extra

        assert database is not None, "a PostgreSQL backend needs database_for(...)"
        writer = "thread" if kind == "postgres-thread" else "process"
        store = await open_postgres(database, writer=writer, migrate=True)
    else:
        raise ValueError(f"no store backend {kind!r}")
    try:
        yield store
    finally:
        await store.close()


@dataclass(frozen=True)
class SinkUnderTest:
    """A sink and the repository in which what it saved shows up."""

    sink: VerdictSink
    reader: Repository


@asynccontextmanager
async def open_sink(
    kind: str, directory: Path, database: str | None = None
) -> AsyncIterator[SinkUnderTest]:
    """A new ``VerdictSink`` of ``kind`` (one of ``SINKS``) over an empty store."""
    if kind not in ("pipe", "pipe-postgres"):
        async with open_backend(kind, directory, database) as store:
            yield SinkUnderTest(store, store)
        return
    primary_kind = "sqlite-process" if kind == "pipe" else "postgres-process"
    async with open_backend(primary_kind, directory, database) as primary:
        writer = getattr(primary, "writer_process", None)
        assert isinstance(writer, WriterProcess)
        pipe = PipeStore(writer.path)
        pipe.client.bind(writer.attach())  # as a worker binds the socket the primary passed
        try:
            yield SinkUnderTest(pipe, primary)
        finally:
            await pipe.close()
            await pipe.client.close()
