"""The writer process's wire format: messages with large bytes out of band (pickle protocol 5)
read back whole, whatever pieces the stream arrives in."""

from __future__ import annotations

import random
import socket
import threading

from sinkd.store.writer_main import OUT_OF_BAND, Channel, FrameReader, _blob, frame


def _messages() -> list[object]:
    big = bytes(range(256)) * (OUT_OF_BAND // 256 + 3)
    return [
        ("done", 3, [(1, None, None)]),
        [(7, "record", "m1", None, _blob(big), _blob(b"small"), (), 0, (), None)],
        [(8, "save", "m2", None, _blob(big), _blob(big[:-1] + b"!"), (), 0, (), None)],
        None,
    ]


def _plain(value: object) -> object:
    """``value`` with the buffers it arrives with turned into bytes, to compare."""
    if isinstance(value, list | tuple):
        return type(value)(_plain(v) for v in value)
    if isinstance(value, memoryview | bytearray):
        return bytes(value)
    return value


def _expected() -> list[object]:
    big = bytes(range(256)) * (OUT_OF_BAND // 256 + 3)
    return [
        ("done", 3, [(1, None, None)]),
        [(7, "record", "m1", None, big, b"small", (), 0, (), None)],
        [(8, "save", "m2", None, big, big[:-1] + b"!", (), 0, (), None)],
        None,
    ]


def test_large_bytes_travel_beside_the_pickle_not_in_it() -> None:
    big = b"z" * OUT_OF_BAND
    head, *buffers = frame([(1, _blob(big))])
    assert len(head) < 200
    assert [bytes(b) for b in buffers] == [big]


def test_frames_read_in_random_pieces_are_the_messages_sent() -> None:
    stream = b"".join(bytes(part) for value in _messages() for part in frame(value))
    rng = random.Random(574)
    reader = FrameReader()
    got: list[object] = []
    at = 0
    while at < len(stream):
        step = rng.choice([1, 3, 17, 4096, 70_000])
        got.extend(reader.feed(stream[at : at + step]))
        at += step
    assert [_plain(m) for m in got] == _expected()


def test_the_writer_processs_channel_reads_the_frames_a_client_sends() -> None:
    ours, theirs = socket.socketpair()
    channel = Channel(theirs)

    def send() -> None:
        for value in _messages():
            for part in frame(value):
                ours.sendall(part)

    sender = threading.Thread(target=send)
    sender.start()
    try:
        got = [channel.recv() for _ in _messages()]
    finally:
        sender.join()
        ours.close()
        channel.close()
    assert [_plain(m) for m in got] == _expected()
