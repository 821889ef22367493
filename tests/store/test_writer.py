"""The store's writer process: what happens when it dies, and that it never outlives work."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from sinkd.core.model import Category
from sinkd.errors import NotFound, StoreError
from sinkd.store import MessageRecord, Query
from sinkd.store.sqlite import WriterKind, open_sqlite
from sinkd.store.writer import SEND_STEP, WriterClient, WriterProcess, socket_pair
from tests.support.store import make_record


def remote_of(store: object) -> WriterProcess:
    remote = getattr(store, "writer_process", None)
    assert isinstance(remote, WriterProcess)
    return remote


async def test_a_save_in_flight_when_the_writer_process_dies_fails_and_the_next_one_restarts_it(
    tmp_path: Path,
) -> None:
    store = await open_sqlite(tmp_path / "s.db", writer="process")
    try:
        await store.save(make_record(1))
        remote = remote_of(store)
        assert remote._process is not None
        first_pid = remote._process.pid
        # Stopped, the process cannot answer: the save below is sent and stays unconfirmed.
        os.kill(first_pid, signal.SIGSTOP)
        in_flight = asyncio.create_task(store.save(make_record(2)))
        await asyncio.sleep(0)  # let the task send its record
        os.kill(first_pid, signal.SIGKILL)

        # Sent before the kill, it is never confirmed; sent after (the send happens in the
        # loop's next turn), the socket is gone. Either way: an error, never a 250.
        with pytest.raises(StoreError, match=r"ended .*before confirming the commit|is gone"):
            await in_flight

        await store.save(make_record(3))  # a new writer process takes over
        assert remote._process is not None and remote._process.pid != first_pid
        ids = {m.id for m in await store.list(Query())}
        assert {"m0001", "m0003"} <= ids
    finally:
        await store.close()


async def test_close_answers_every_save_sent_before_it_and_ends_the_process(
    tmp_path: Path,
) -> None:
    store = await open_sqlite(tmp_path / "s.db", writer="process")
    remote = remote_of(store)
    saves = [asyncio.create_task(store.save(make_record(n))) for n in range(50)]
    await asyncio.sleep(0)

    await store.close()

    assert [s.result() for s in saves] == [None] * 50
    assert remote._process is not None and remote._process.returncode == 0
    with pytest.raises(StoreError, match="is closed"):
        await store.save(make_record(99))


async def test_a_writer_process_that_cannot_open_the_file_is_reported_and_reaped(
    tmp_path: Path,
) -> None:
    (tmp_path / "dir.db").mkdir()
    with pytest.raises(StoreError, match="cannot open message store") as info:
        await open_sqlite(tmp_path / "dir.db", writer="process")
    assert str(tmp_path / "dir.db") in str(info.value)


async def test_the_writer_process_ignores_the_terminals_ctrl_c(tmp_path: Path) -> None:
    # A terminal's Ctrl-C signals the server's process group; the writer runs in a session of
    # its own and ignores SIGINT, so it is still there to commit the sessions that finish.
    store = await open_sqlite(tmp_path / "s.db", writer="process")
    try:
        remote = remote_of(store)
        assert remote._process is not None
        assert os.getpgid(remote._process.pid) != os.getpgid(0)
        os.kill(remote._process.pid, signal.SIGINT)
        await store.save(make_record(1))
        assert remote._process.poll() is None
    finally:
        await store.close()


@pytest.mark.parametrize("writer", ["thread", "process"])
async def test_a_store_opened_in_another_event_loop_answers_saves_from_this_one(
    tmp_path: Path, writer: WriterKind
) -> None:
    # The pytest plugin's server runs in a thread with its own loop; whatever loop submits a
    # write gets its answer on that loop.
    import threading

    home = asyncio.new_event_loop()
    thread = threading.Thread(target=home.run_forever, daemon=True)
    thread.start()
    try:
        opened = asyncio.run_coroutine_threadsafe(
            open_sqlite(tmp_path / "s.db", writer=writer), home
        )
        store = await asyncio.wrap_future(opened)
        async with asyncio.timeout(30):  # an answer that never comes fails, not hangs
            await asyncio.gather(*(store.save(make_record(n)) for n in range(20)))
            assert await store.count() == 20
            with pytest.raises(NotFound):
                await store.delete("no-such-id")
        await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(store.close(), home))
    finally:
        home.call_soon_threadsafe(home.stop)
        thread.join(timeout=10)
        home.close()


async def test_a_writer_process_slow_to_read_never_blocks_the_event_loop(tmp_path: Path) -> None:
    # Megabytes of records wait in the client while the process cannot read (stopped, as when
    # its commit waits for another program's lock): the loop keeps serving everything else.
    store = await open_sqlite(tmp_path / "s.db", writer="process")
    remote = remote_of(store)
    assert remote._process is not None
    pid = remote._process.pid
    try:
        os.kill(pid, signal.SIGSTOP)
        saves = [
            asyncio.create_task(store.save(make_record(n, raw=b"x" * 200_000))) for n in range(50)
        ]
        async with asyncio.timeout(10):
            assert await store.count() == 0  # a read, answered while 10 MB wait to be sent
        assert remote._unsent  # more than the socket took
        assert not any(s.done() for s in saves)
        os.kill(pid, signal.SIGCONT)
        async with asyncio.timeout(30):
            await asyncio.gather(*saves)
        assert await store.count() == 50
    finally:
        os.kill(pid, signal.SIGCONT)
        await store.close()


async def test_saves_made_while_a_batch_is_in_flight_travel_together_once_it_is_answered(
    tmp_path: Path,
) -> None:
    store = await open_sqlite(tmp_path / "s.db", writer="process")
    try:
        await store.save(make_record(1))
        remote = remote_of(store)
        assert remote._process is not None
        commits = store.commits
        os.kill(remote._process.pid, signal.SIGSTOP)  # the batch below stays unanswered
        try:
            first = asyncio.create_task(store.save(make_record(2)))
            for _ in range(3):
                await asyncio.sleep(0)  # sent: the socket takes it while the process sleeps
            later = [asyncio.create_task(store.save(make_record(n))) for n in (3, 4)]
            for _ in range(3):
                await asyncio.sleep(0)
            # Held by the client, not queued in the socket behind the unanswered batch.
            assert len(remote._outbox) == 2
        finally:
            os.kill(remote._process.pid, signal.SIGCONT)
        await asyncio.gather(first, *later)

        assert store.commits == commits + 2  # the first batch, then both held saves at once
        ids = {m.id for m in await store.list(Query())}
        assert {"m0001", "m0002", "m0003", "m0004"} <= ids
    finally:
        await store.close()


def with_detail(record: MessageRecord, detail: dict[str, Any]) -> MessageRecord:
    (finding,) = record.verdict.findings
    verdict = dataclasses.replace(
        record.verdict, findings=(dataclasses.replace(finding, detail=detail),)
    )
    return dataclasses.replace(record, verdict=verdict)


async def test_a_record_the_writer_process_cannot_encode_fails_alone_and_its_batch_commits(
    tmp_path: Path,
) -> None:
    store = await open_sqlite(tmp_path / "s.db", writer="process")
    try:
        # A set travels as data but has no JSON: the writer process finds out, for it alone.
        bad = with_detail(make_record(1), {"words": {"free"}})
        saves = [store.save(bad), store.save(make_record(2)), store.save(make_record(3))]
        results = await asyncio.gather(*saves, return_exceptions=True)
        assert isinstance(results[0], StoreError)
        assert "'m0001' cannot be stored as JSON" in str(results[0])
        assert results[1:] == [None, None]
        assert {m.id for m in await store.list(Query())} == {"m0002", "m0003"}
    finally:
        await store.close()


async def test_a_record_that_is_not_plain_data_is_stored_as_the_thread_writer_stores_it(
    tmp_path: Path,
) -> None:
    # A str subclass (a StrEnum) is no plain data to send as such: the record is prepared
    # before it is sent, as every record was, and stored with the same JSON.
    record = with_detail(make_record(1), {"category": Category.CONTENT})
    unencodable = with_detail(make_record(2), {"thing": object()})
    stored = {}
    kinds: tuple[WriterKind, ...] = ("process", "thread")
    for kind in kinds:
        store = await open_sqlite(tmp_path / f"{kind}.db", writer=kind)
        try:
            await store.save(record)
            with pytest.raises(StoreError, match="'m0002' cannot be stored as JSON"):
                await store.save(unencodable)
            stored[kind] = (await store.get("m0001", with_raw=True)).data
        finally:
            await store.close()
    assert stored["process"] == stored["thread"] == record.to_json()
    assert stored["process"]["findings"][0]["detail"] == {"category": "content"}


async def test_a_subject_with_undecodable_bytes_is_stored_by_the_writer_process_as_by_the_thread(
    tmp_path: Path,
) -> None:
    # A header's undecodable bytes come through as lone surrogates: the JSON keeps them
    # escaped and the subject filter matches on the rest.
    record = make_record(1)
    record = dataclasses.replace(
        record, verdict=dataclasses.replace(record.verdict, subject="caf\udce9 au lait")
    )
    found = {}
    kinds: tuple[WriterKind, ...] = ("process", "thread")
    for kind in kinds:
        store = await open_sqlite(tmp_path / f"{kind}.db", writer=kind)
        try:
            await store.save(record)
            listed = await store.list(Query(subject="AU LAIT"))
            found[kind] = [m.data for m in listed]
        finally:
            await store.close()
    assert found["process"] == found["thread"]
    assert [d["subject"] for d in found["process"]] == ["caf\udce9 au lait"]


def _big_message(size: int) -> bytes:
    # Dot-stuffing already undone, long lines, bare LFs and CRs, 8-bit octets: stored as is.
    pieces = [
        b".dot line\r\n",
        b"x" * 70_000 + b"\r\n",
        b"bare\nLF\r\n",
        b"cr\r\n",
        bytes(range(256)),
    ]
    body = b"".join(pieces)
    return b"Subject: big\r\n\r\n" + body * (size // len(body) + 1)


async def test_big_raw_and_filtered_bytes_are_stored_by_the_writer_process_as_sent(
    tmp_path: Path,
) -> None:
    # They travel out of band (pickle protocol 5), in several sends: what is read back is
    # every byte, as the thread writer stores them, for small and big ones side by side.
    raw = _big_message(5 * 1024 * 1024)
    filtered = b"Authentication-Results: sinkd; none\r\n" + raw
    big = make_record(1, raw=raw)
    big = dataclasses.replace(big, verdict=dataclasses.replace(big.verdict, filtered=filtered))
    small = make_record(2)
    exactly_at = make_record(3, raw=b"y" * (64 * 1024))
    stored = {}
    kinds: tuple[WriterKind, ...] = ("process", "thread")
    for kind in kinds:
        store = await open_sqlite(tmp_path / f"{kind}.db", writer=kind)
        try:
            await asyncio.gather(store.save(big), store.save(small), store.save(exactly_at))
            stored[kind] = [
                await store.get(ident, with_raw=True) for ident in ("m0001", "m0002", "m0003")
            ]
        finally:
            await store.close()
    for got in stored.values():
        assert [m.raw for m in got] == [raw, small.raw, exactly_at.raw]
        assert got[0].filtered == filtered
        assert all(type(m.raw) is bytes for m in got)
    assert [m.data for m in stored["process"]] == [m.data for m in stored["thread"]]


async def test_a_big_record_is_sent_a_step_per_turn_of_the_event_loop(tmp_path: Path) -> None:
    # A writer process that reads as fast as it is sent to must not take 20 MiB in one
    # callback: each turn sends at most SEND_STEP, the other sessions run between them.
    ours, theirs = socket_pair()
    client = WriterClient(tmp_path / "s.db")
    client.bind(ours)
    try:
        saving = asyncio.create_task(client.submit_record(make_record(1, raw=b"r" * (3 << 20))))
        got = bytearray()
        theirs.setblocking(False)
        steps = []
        while len(got) < 3 << 20:
            await asyncio.sleep(0)
            with contextlib.suppress(BlockingIOError):
                while chunk := theirs.recv(16 << 20):
                    got += chunk
                    steps.append(len(chunk))
        assert max(steps) <= SEND_STEP
        assert len(steps) >= (3 << 20) // SEND_STEP
        saving.cancel()
    finally:
        await client.close()
        theirs.close()
