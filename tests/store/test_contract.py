"""The store contract: what every backend answers alike (SQLite and PostgreSQL, each with its
writer thread and with its writer process; memory), and what every ``VerdictSink`` promises
(those, and a worker's ``PipeStore`` on SQLite and on PostgreSQL). Each PostgreSQL test has a
database of its own on the session's private server (tests/support/postgres.py). A
backend-specific property (a file, a commit count, a process) belongs in that backend's own
tests."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from sinkd.core.model import VerdictAction
from sinkd.errors import NotFound, StoreError
from sinkd.store import MessageRecord, Query, Store
from tests.support.postgres import postgres_server
from tests.support.store import (
    BACKENDS,
    QUERIES,
    SINKS,
    T0,
    SinkUnderTest,
    database_for,
    make_record,
    open_backend,
    open_sink,
    records,
    reference,
)

__all__ = ["postgres_server"]  # the session fixture the PostgreSQL backends ask for by name


@pytest.fixture(params=BACKENDS)
async def store(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Store]:
    async with open_backend(request.param, tmp_path, database_for(request.param, request)) as s:
        yield s


@pytest.fixture(params=SINKS)
async def sink(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[SinkUnderTest]:
    async with open_sink(request.param, tmp_path, database_for(request.param, request)) as s:
        yield s


@pytest.fixture(scope="module")
def history() -> list[MessageRecord]:
    return records(240)


async def save_all(store: Store, rows: Sequence[MessageRecord]) -> None:
    # Concurrent, as SMTP sessions save; every backend still stores them in submission order.
    await asyncio.gather(*(store.save(r) for r in rows))


async def listed(store: Store, q: Query) -> list[str]:
    return [m.id for m in await store.list(dataclasses.replace(q, limit=10_000))]


# --- the sink: what the SMTP path relies on ------------------------------------------------


async def test_a_record_is_readable_the_moment_its_own_save_returns(
    sink: SinkUnderTest,
) -> None:
    seen: list[str] = []

    async def save_then_read(record: MessageRecord) -> None:
        await sink.sink.save(record)
        seen.append((await sink.reader.get(record.id)).id)  # no other save awaited first

    await asyncio.gather(*(save_then_read(make_record(n)) for n in range(30)))
    assert sorted(seen) == [make_record(n).id for n in range(30)]


async def test_concurrent_saves_all_persist_in_submission_order(sink: SinkUnderTest) -> None:
    rows = [make_record(n) for n in range(200)]

    await asyncio.gather(*(sink.sink.save(r) for r in rows))

    assert await sink.reader.count() == 200
    assert [m.id for m in await sink.reader.list(Query(limit=500))] == [
        r.id for r in reversed(rows)
    ]


async def test_a_duplicate_id_fails_alone_and_the_sink_keeps_saving(sink: SinkUnderTest) -> None:
    await sink.sink.save(make_record(1))

    duplicate, other = await asyncio.gather(
        sink.sink.save(make_record(1)), sink.sink.save(make_record(2)), return_exceptions=True
    )

    assert isinstance(duplicate, StoreError)
    assert "'m0001' is already stored" in str(duplicate)
    assert other is None  # whatever was saved beside it is stored all the same
    await sink.sink.save(make_record(3))
    assert await sink.reader.count() == 3


async def test_an_open_sink_is_writable(sink: SinkUnderTest) -> None:
    assert sink.sink.writable


# --- reading back ----------------------------------------------------------------------------


async def test_a_saved_record_reads_back_with_its_raw_bytes(store: Store) -> None:
    record = make_record(1)
    await store.save(record)

    got = await store.get("m0001", with_raw=True)

    assert got.id == "m0001"
    assert got.raw == record.raw
    assert got.filtered is None
    assert got.data == record.to_json()
    assert got.data["received_at"] == "2026-05-01T12:00:01.000Z"
    assert got.data["size"] == len(record.raw or b"")
    assert got.data["released_at"] is None


async def test_get_without_raw_leaves_the_bytes_out(store: Store) -> None:
    await store.save(make_record(1))

    got = await store.get("m0001")

    assert (got.raw, got.filtered, got.seq) == (None, None, None)


async def test_a_record_without_data_has_no_raw_and_no_size(store: Store) -> None:
    await store.save(make_record(1, raw=None))
    await store.save(make_record(2, raw=b""))

    before_data = await store.get("m0001", with_raw=True)
    empty = await store.get("m0002", with_raw=True)

    assert before_data.raw is None
    assert before_data.data["size"] is None
    assert empty.raw == b""
    assert empty.data["size"] == 0


async def test_filtered_bytes_are_stored_beside_the_original(store: Store) -> None:
    record = make_record(1)
    filtered = b"Subject: hi\r\n\r\n[removed]\r\n"
    record = dataclasses.replace(
        record, verdict=dataclasses.replace(record.verdict, filtered=filtered)
    )
    await store.save(record)

    got = await store.get(record.id, with_raw=True)

    assert got.raw == record.raw
    assert got.filtered == filtered
    assert (await store.get(record.id, with_raw=False)).filtered is None


async def test_what_a_read_returns_is_a_copy_the_caller_may_change(store: Store) -> None:
    await store.save(make_record(1))

    (await store.get("m0001")).data["subject"] = "changed"
    (await store.list(Query()))[0].data["verdict"] = "changed"

    got = await store.get("m0001")
    assert (got.data["subject"], got.data["verdict"]) == ("message 1", "accept")


async def test_a_missing_id_raises_not_found(store: Store) -> None:
    with pytest.raises(NotFound, match="no message with id 'nope'"):
        await store.get("nope")
    with pytest.raises(NotFound, match="no message with id 'nope'"):
        await store.delete("nope")
    with pytest.raises(NotFound, match="no message with id 'nope'"):
        await store.release("nope", T0)


# --- listing, filtering, counting, paging -------------------------------------------------------


async def test_list_filters_by_verdict_newest_first_without_raw_bytes(store: Store) -> None:
    for n in range(6):
        verdict = VerdictAction.REJECT if n % 2 else VerdictAction.ACCEPT
        await store.save(make_record(n, verdict=verdict))

    rejected = await store.list(Query(verdict="reject"))

    assert [m.id for m in rejected] == ["m0005", "m0003", "m0001"]
    assert all(m.raw is None and m.filtered is None for m in rejected)


async def test_list_filters_by_profile_and_pages_with_limit_and_offset(store: Store) -> None:
    for n in range(10):
        await store.save(make_record(n, profile="strict" if n < 7 else "lenient"))

    page = await store.list(Query(profile="strict", limit=3, offset=2))

    assert [m.id for m in page] == ["m0004", "m0003", "m0002"]
    assert await store.count(Query(profile="strict")) == 7
    assert await store.count(Query(profile="strict", verdict="reject")) == 0
    assert await store.count() == 10


@pytest.mark.parametrize("q", QUERIES, ids=repr)
async def test_every_filter_returns_exactly_the_matching_messages_newest_first(
    store: Store, history: list[MessageRecord], q: Query
) -> None:
    await save_all(store, history)
    expected = reference(history, q)
    assert await listed(store, q) == expected
    assert await store.count(q) == len(expected)


async def test_the_reference_data_exercises_every_filter(history: list[MessageRecord]) -> None:
    # Guards the test above against passing vacuously: most queries match some, none all.
    sizes = [len(reference(history, q)) for q in QUERIES[1:]]
    assert sum(0 < n < len(history) for n in sizes) >= len(QUERIES) - 8


async def test_count_stops_at_at_most_and_ignores_the_page(
    store: Store, history: list[MessageRecord]
) -> None:
    await save_all(store, history)
    matching = len(reference(history, Query(to="corp")))
    assert await store.count(Query(to="corp"), at_most=10) == 10
    assert await store.count(Query(to="corp"), at_most=matching + 5) == matching
    paged = Query(to="corp", limit=3, offset=4, before=10)
    assert await store.count(paged) == matching


async def test_list_gives_each_message_its_seq_in_storage_order(
    store: Store, history: list[MessageRecord]
) -> None:
    await save_all(store, history[:20])
    seqs = [m.seq for m in await store.list(Query(limit=100))]
    assert all(s is not None for s in seqs)
    assert seqs == sorted(seqs, reverse=True)  # type: ignore[type-var]
    assert len(set(seqs)) == 20


async def test_a_seq_is_never_handed_out_again_after_delete_or_clear(store: Store) -> None:
    await save_all(store, [make_record(n) for n in range(5)])
    (newest,) = await store.list(Query(limit=1))
    await store.delete(newest.id)
    await store.save(make_record(10))
    (after_delete,) = await store.list(Query(limit=1))
    await store.clear()
    await store.save(make_record(11))
    (after_clear,) = await store.list(Query(limit=1))

    assert newest.seq is not None and after_delete.seq is not None
    assert after_clear.seq is not None
    assert newest.seq < after_delete.seq < after_clear.seq


@pytest.mark.parametrize("q", [Query(), Query(to="corp"), Query(code="SPF_FAIL")], ids=repr)
async def test_cursor_paging_visits_every_message_once_while_new_ones_arrive(
    store: Store, q: Query
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


@pytest.mark.parametrize("q", [Query(), Query(to="corp"), Query(code="SPF_FAIL")], ids=repr)
async def test_after_gives_exactly_the_rows_above_an_older_page_newest_first(
    store: Store, q: Query
) -> None:
    rows = records(120, seed=5)
    await save_all(store, rows)
    expected = reference(rows, q)
    everything = await store.list(dataclasses.replace(q, limit=10_000))
    assert [m.id for m in everything] == expected
    first = await store.list(dataclasses.replace(q, limit=7))
    older = await store.list(dataclasses.replace(q, limit=7, before=first[-1].seq))
    assert older, "the reference data has a second page for every query here"
    newer = await store.list(dataclasses.replace(q, limit=7, after=older[0].seq))
    assert [m.id for m in newer] == [m.id for m in first]
    # From the middle, a short limit takes the rows just above, not the newest ones.
    middle = len(everything) // 2
    above = await store.list(dataclasses.replace(q, limit=3, after=everything[middle].seq))
    assert [m.id for m in above] == [m.id for m in everything[middle - 3 : middle]]
    # Paging upwards from the oldest visits every message once, and no page repeats a row.
    seen: list[str] = []
    after = everything[-1].seq
    seen.append(everything[-1].id)
    while True:
        page = await store.list(dataclasses.replace(q, limit=4, after=after))
        if not page:
            break
        seen = [m.id for m in page] + seen
        after = page[0].seq
    assert seen == expected


async def test_after_and_before_together_give_the_rows_between_them(
    store: Store, history: list[MessageRecord]
) -> None:
    await save_all(store, history[:30])
    everything = await store.list(Query(limit=30))
    between = await store.list(Query(after=everything[20].seq, before=everything[5].seq))
    assert [m.id for m in between] == [m.id for m in everything[6:20]]
    nearest = await store.list(Query(limit=3, after=everything[20].seq, before=everything[5].seq))
    assert [m.id for m in nearest] == [m.id for m in everything[17:20]]
    skipped = await store.list(Query(limit=3, offset=2, after=everything[20].seq))
    assert [m.id for m in skipped] == [m.id for m in everything[15:18]]
    assert await store.list(Query(after=everything[0].seq)) == []
    assert await store.list(Query(after=everything[3].seq, before=everything[3].seq)) == []


async def test_count_honours_the_cursors_only_when_asked(
    store: Store, history: list[MessageRecord]
) -> None:
    await save_all(store, history[:40])
    everything = await store.list(Query(limit=40))
    assert await store.count(Query(after=everything[10].seq, before=everything[2].seq)) == 40
    assert await store.count(Query(after=everything[10].seq), cursors=True) == 10
    assert await store.count(Query(before=everything[10].seq), cursors=True) == 29
    both = Query(after=everything[10].seq, before=everything[2].seq, limit=1, offset=3)
    assert await store.count(both, cursors=True) == 7
    assert await store.count(Query(after=everything[10].seq), cursors=True, at_most=4) == 4


async def test_offset_still_pages_and_combines_with_the_cursor(
    store: Store, history: list[MessageRecord]
) -> None:
    await save_all(store, history[:30])
    everything = await store.list(Query(limit=30))
    page = await store.list(Query(limit=5, offset=5, before=everything[9].seq))
    assert [m.id for m in page] == [m.id for m in everything[15:20]]


async def test_a_message_received_long_before_it_was_stored_is_still_in_its_time_range(
    store: Store, history: list[MessageRecord]
) -> None:
    late = dataclasses.replace(history[0], id="late", received_at=T0 - timedelta(days=3))
    await save_all(store, [*history[1:50], late, *history[50:60]])
    window = Query(since=T0 - timedelta(days=4), until=T0 - timedelta(days=2))
    assert await listed(store, window) == ["late"]
    assert (await listed(store, Query(until=T0)))[0] == "late"


async def test_time_bounds_compare_in_utc_whatever_the_zone_given(store: Store) -> None:
    await save_all(store, [make_record(n) for n in range(5)])
    plus_two = timezone(timedelta(hours=2))
    since = (T0 + timedelta(seconds=1)).astimezone(plus_two)
    until = (T0 + timedelta(seconds=3)).astimezone(plus_two)
    assert await listed(store, Query(since=since, until=until)) == ["m0002", "m0001"]


# --- release, delete, clear ------------------------------------------------------------------


async def test_release_marks_a_record_once_and_every_read_shows_when(store: Store) -> None:
    await store.save(make_record(1, verdict=VerdictAction.QUARANTINE))
    await store.save(make_record(2, verdict=VerdictAction.QUARANTINE))
    moment = datetime(2026, 5, 2, 14, 30, 0, 123456, tzinfo=UTC)

    assert await store.release("m0001", moment) is True
    assert await store.release("m0001", moment + timedelta(hours=1)) is False

    released = "2026-05-02T14:30:00.123Z"
    assert (await store.get("m0001")).data["released_at"] == released
    assert (await store.get("m0001", with_raw=True)).data["released_at"] == released
    by_id = {m.id: m.data["released_at"] for m in await store.list(Query())}
    assert by_id == {"m0001": released, "m0002": None}


async def test_delete_removes_one_record_from_every_read(store: Store) -> None:
    await store.save(make_record(1))
    await store.save(make_record(2))

    await store.delete("m0001")

    assert [m.id for m in await store.list(Query())] == ["m0002"]
    assert await store.count() == 1
    assert await listed(store, Query(subject="message 1")) == []
    with pytest.raises(NotFound):
        await store.get("m0001", with_raw=True)
    with pytest.raises(NotFound):
        await store.delete("m0001")


async def test_clear_returns_how_many_records_it_removed(store: Store) -> None:
    await save_all(store, [make_record(n) for n in range(5)])

    assert await store.clear() == 5
    assert await store.count() == 0
    assert await store.list(Query()) == []
    assert await store.clear() == 0


async def test_deleted_and_cleared_messages_are_no_longer_found_by_text(
    store: Store, history: list[MessageRecord]
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


async def test_a_deleted_id_may_be_saved_again(store: Store) -> None:
    await store.save(make_record(1))
    await store.delete("m0001")

    await store.save(make_record(1, profile="again"))

    assert (await store.get("m0001")).data["profile"] == "again"


# --- closing ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", BACKENDS)
async def test_close_is_idempotent_and_a_closed_store_refuses_work(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    async with open_backend(kind, tmp_path, database_for(kind, request)) as store:
        await store.save(make_record(1))
        await store.close()
        await store.close()

        assert not store.writable
        with pytest.raises(StoreError, match="is closed"):
            await store.save(make_record(2))
        with pytest.raises(StoreError, match="is closed"):
            await store.count()
        with pytest.raises(StoreError, match="is closed"):
            await store.get("m0001")


# --- the relay queue -------------------------------------------------------------------------


async def test_a_record_to_relay_is_queued_in_its_own_commit_and_every_read_shows_it(
    sink: SinkUnderTest,
) -> None:
    record = make_record(1, relay=True, rcpt_to=("a@example.org", "b@example.org"))
    await sink.sink.save(record)
    await sink.sink.save(make_record(2))

    queued = {
        "status": "queued",
        "attempts": 0,
        "queued_at": "2026-05-01T12:00:01.000Z",
        "last_attempt_at": None,
        "next_attempt_at": "2026-05-01T12:00:01.000Z",
        "done_at": None,
        "last_reply": None,
        "recipients": [
            {"address": "a@example.org", "status": "queued", "reply": None},
            {"address": "b@example.org", "status": "queued", "reply": None},
        ],
    }
    reader = sink.reader
    assert record.to_json()["relay"] == queued  # what the verdict log and events carry
    assert (await reader.get("m0001")).data["relay"] == queued
    assert (await reader.get("m0001", with_raw=True)).data["relay"] == queued
    assert {m.id: m.data["relay"] for m in await reader.list(Query())} == {
        "m0001": queued,
        "m0002": None,
    }
    assert [e.message_id for e in await reader.relay_queue(10)] == ["m0001"]
    assert (await reader.relay_queue(10))[0].state == queued
    assert await reader.relay_depth() == 1


async def test_the_queue_hands_out_the_soonest_due_first_and_forgets_what_is_done(
    store: Store,
) -> None:
    await save_all(store, [make_record(n, relay=True) for n in range(1, 4)])
    first = (await store.relay_queue(10))[0]
    assert [e.message_id for e in await store.relay_queue(10)] == ["m0001", "m0002", "m0003"]
    assert [e.message_id for e in await store.relay_queue(2)] == ["m0001", "m0002"]

    later = first.state | {"attempts": 1, "next_attempt_at": "2026-05-01T13:00:00.000Z"}
    later["last_reply"] = {"code": 451, "enhanced": "4.3.0", "text": "try later"}
    assert await store.relay_update("m0001", later) is True
    assert [e.message_id for e in await store.relay_queue(10)] == ["m0002", "m0003", "m0001"]
    assert (await store.get("m0001")).data["relay"] == later

    done = (await store.relay_queue(10))[0].state | {
        "status": "delivered",
        "attempts": 1,
        "next_attempt_at": None,
        "done_at": "2026-05-01T12:00:05.000Z",
    }
    assert await store.relay_update("m0002", done) is True
    assert [e.message_id for e in await store.relay_queue(10)] == ["m0003", "m0001"]
    assert await store.relay_depth() == 2
    assert (await store.get("m0002")).data["relay"] == done
    # A relay that is done stays as it ended: a late update changes nothing.
    assert await store.relay_update("m0002", later) is False
    assert (await store.get("m0002")).data["relay"] == done
    assert await store.relay_update("no-such-id", later) is False


async def test_deleting_or_clearing_messages_drops_their_queued_relays(store: Store) -> None:
    await save_all(store, [make_record(n, relay=True) for n in range(1, 4)])

    await store.delete("m0002")
    assert [e.message_id for e in await store.relay_queue(10)] == ["m0001", "m0003"]
    state = (await store.relay_queue(10))[0].state
    assert await store.relay_update("m0002", state) is False

    await store.clear()
    assert await store.relay_queue(10) == []
    assert await store.relay_depth() == 0
    # A message saved again under a deleted id starts with a fresh relay.
    await store.save(make_record(2, relay=True))
    assert (await store.get("m0002")).data["relay"]["attempts"] == 0


async def test_a_release_with_relay_queues_the_message_in_the_same_transaction(
    store: Store,
) -> None:
    await store.save(make_record(1, verdict=VerdictAction.QUARANTINE))
    await store.save(make_record(2, verdict=VerdictAction.QUARANTINE))
    await store.save(make_record(3, verdict=VerdictAction.QUARANTINE, raw=None))
    await store.save(make_record(4, verdict=VerdictAction.QUARANTINE, relay=True))
    moment = datetime(2026, 5, 2, 14, 30, 0, 123456, tzinfo=UTC)

    assert await store.release("m0001", moment, relay=True) is True
    assert await store.release("m0002", moment) is True  # no relay asked for
    assert await store.release("m0003", moment, relay=True) is True  # no bytes to relay
    assert await store.release("m0004", moment, relay=True) is True  # queued already

    relay = (await store.get("m0001")).data["relay"]
    assert relay["queued_at"] == relay["next_attempt_at"] == "2026-05-02T14:30:00.123Z"
    assert relay["recipients"] == [
        {"address": "rcpt@example.org", "status": "queued", "reply": None}
    ]
    assert (await store.get("m0002")).data["relay"] is None
    assert (await store.get("m0003")).data["relay"] is None
    assert (await store.get("m0004")).data["relay"]["queued_at"] == "2026-05-01T12:00:04.000Z"
    assert [e.message_id for e in await store.relay_queue(10)] == ["m0004", "m0001"]
    # Released once: a second release neither releases nor queues again.
    assert await store.release("m0002", moment, relay=True) is False
    assert (await store.get("m0002")).data["relay"] is None
