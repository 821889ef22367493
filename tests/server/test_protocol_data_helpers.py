"""The DATA reader's whole-message steps against the plain Python they replace: the longest
line (a split on CRLF) and undoing dot-stuffing (a replace), on generated buffers."""

from __future__ import annotations

import random

from sinkd.server.protocol import _longest_line_reaches, _unstuffed


def _buffers(count: int) -> list[bytes]:
    rng = random.Random(5321)
    pieces = [b"\r\n", b"\r", b"\n", b".", b"\r\n.", b"a", b"bb" * 7, b"\xff"]
    return [b"".join(rng.choice(pieces) for _ in range(rng.randint(0, 60))) for _ in range(count)]


def test_the_longest_line_check_is_the_split_on_crlf() -> None:
    for data in _buffers(3000):
        longest = max(map(len, data.split(b"\r\n")))
        for length in range(1, 20):
            assert _longest_line_reaches(bytearray(data), length) == (longest >= length), (
                data,
                length,
            )


def test_unstuffing_is_the_replace_of_crlf_dot() -> None:
    for data in _buffers(3000):
        assert _unstuffed(bytearray(data)) == data.replace(b"\r\n.", b"\r\n"), data


def test_unstuffing_returns_bytes_and_leaves_the_buffer_usable() -> None:
    buffer = bytearray(b"a\r\n..b\r\n.c")
    assert type(_unstuffed(buffer)) is bytes
    buffer += b"d"  # no view of it is left exported
    assert buffer.endswith(b"d")
