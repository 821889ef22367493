"""A large filtered message kept as a delta of its original (schema 6): what is read back is
the filtered message, byte for byte, whichever way it was stored."""

from __future__ import annotations

import dataclasses
import sqlite3
from pathlib import Path

import pytest

from sinkd.store import MessageRecord
from sinkd.store.sql import FILTERED_DELTA_BYTES, SCHEMA_VERSION, filtered_message, raw_values
from sinkd.store.sqlite import WriterKind, open_sqlite
from tests.support.store import make_record

AR = b"Authentication-Results: sinkd.test; spf=pass smtp.mailfrom=example.com\r\n"
BODY = (b"..dotted\r\nlong " + b"y" * 70_000 + b"\r\nbare\nLF \xe9\xff\r\n") * 4


def _raw(newline: bytes = b"\r\n") -> bytes:
    header = newline.join([b"Subject: big", b"Authentication-Results: sinkd.test; forged", b""])
    return header + newline + BODY


CASES = {
    "a field added at the top": (_raw(), AR + _raw()),
    "a forged field removed": (_raw(), AR + b"Subject: big\r\n\r\n" + BODY),
    "bare LF header block rewritten": (_raw(b"\n"), AR + b"Subject: big\n\n" + BODY),
    "the body changed": (_raw(), AR + _raw().replace(b"long", b"LONG")),
    "shorter than the delta size": (b"Subject: s\r\n\r\nhi\r\n", AR + b"Subject: s\r\n\r\nhi\r\n"),
    "unchanged": (_raw(), _raw()),
}


@pytest.mark.parametrize("case", CASES)
def test_the_stored_values_give_back_the_filtered_message(case: str) -> None:
    raw, filtered = CASES[case]
    _, stored_raw, head, start = raw_values("m1", raw, filtered)
    assert stored_raw is raw
    assert head is not None
    assert filtered_message(raw, head, start) == filtered
    if case in ("the body changed", "shorter than the delta size"):
        assert start is None and head == filtered  # stored whole, as before
    else:
        assert start is not None and len(head) < 200


def test_no_filtered_message_stores_none() -> None:
    assert raw_values("m1", _raw(), None) == ("m1", _raw(), None, None)


def _with_filtered(n: int, raw: bytes, filtered: bytes) -> MessageRecord:
    record = make_record(n, raw=raw)
    return dataclasses.replace(
        record, verdict=dataclasses.replace(record.verdict, filtered=filtered)
    )


@pytest.mark.parametrize("writer", ["process", "thread"])
async def test_filtered_messages_are_read_back_as_saved(tmp_path: Path, writer: WriterKind) -> None:
    store = await open_sqlite(tmp_path / "s.db", writer=writer)
    try:
        for n, (raw, filtered) in enumerate(CASES.values(), start=1):
            await store.save(_with_filtered(n, raw, filtered))
        for n, (raw, filtered) in enumerate(CASES.values(), start=1):
            stored = await store.get(f"m{n:04d}", with_raw=True)
            assert (stored.raw, stored.filtered) == (raw, filtered)
    finally:
        await store.close()
    conn = sqlite3.connect(tmp_path / "s.db")
    try:
        (kept,) = conn.execute("SELECT length(filtered) FROM raw WHERE id = 'm0001'").fetchone()
    finally:
        conn.close()
    assert kept == len(AR)  # not the megabytes again


async def test_a_version_5_store_is_migrated_and_reads_its_filtered_messages(
    tmp_path: Path,
) -> None:
    path = tmp_path / "s.db"
    raw, filtered = CASES["a field added at the top"]
    small = (b"Subject: s\r\n\r\nhi\r\n", AR + b"Subject: s\r\n\r\nhi\r\n")
    store = await open_sqlite(path, writer="thread")
    try:
        await store.save(_with_filtered(1, *small))
    finally:
        await store.close()
    conn = sqlite3.connect(path)
    with conn:  # as schema 5 had it: no filtered_from
        conn.execute("ALTER TABLE raw DROP COLUMN filtered_from")
        conn.execute("UPDATE meta SET value = '5' WHERE key = 'schema_version'")
    conn.close()
    store = await open_sqlite(path, writer="thread")
    try:
        assert (await store.get("m0001", with_raw=True)).filtered == small[1]
        await store.save(_with_filtered(2, raw, filtered))
        assert (await store.get("m0002", with_raw=True)).filtered == filtered
    finally:
        await store.close()
    conn = sqlite3.connect(path)
    try:
        (version,) = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    finally:
        conn.close()
    assert version == str(SCHEMA_VERSION) == "7"
    assert len(_raw()) >= FILTERED_DELTA_BYTES
