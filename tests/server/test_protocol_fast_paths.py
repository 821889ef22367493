"""``SinkdSMTP.clone``: a connection's protocol copied from a prototype must be the protocol
aiosmtpd's own ``__init__`` would have built.

The copy skips aiosmtpd's per-connection reflection (see ``SinkdSMTP.clone``). These tests
compare it attribute by attribute with a protocol built the long way, so an aiosmtpd release
that adds or changes per-connection state fails here instead of sharing state between
connections. The end-to-end behaviour (every SMTP test in tests/server/test_smtp.py) runs on clones.
"""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

from sinkd.server.handler import SinkHandler
from sinkd.server.options import ServerOptions
from sinkd.server.protocol import build_protocol
from sinkd.services.judge import Judge
from sinkd.services.recorder import Recorder


def _handler(options: ServerOptions) -> SinkHandler:
    # The handler is only reflected over and held; no message passes through these protocols.
    return SinkHandler(Judge.__new__(Judge), Recorder.__new__(Recorder), options)


def _bound_to(value: Any) -> Any:
    return getattr(value, "__self__", None)


async def test_a_clone_has_every_attribute_a_fully_built_protocol_has() -> None:
    options = ServerOptions(auth="any")
    handler = _handler(options)
    prototype = build_protocol(handler, options)
    built = build_protocol(handler, options)
    copy = prototype.clone()
    assert set(copy.__dict__) == set(built.__dict__)


async def test_a_clone_shares_no_per_connection_state_with_its_prototype_or_other_clones() -> None:
    options = ServerOptions(auth="any")
    prototype = build_protocol(_handler(options), options)
    first, second = prototype.clone(), prototype.clone()
    for name, value in first.__dict__.items():
        other = second.__dict__[name]
        if isinstance(value, (dict, list, set, asyncio.StreamReader, asyncio.Future)):
            shared_ok = name == "_handle_hooks"  # bound to the one handler, read only
            assert shared_ok or value is not other, f"{name} is shared between connections"
    assert first.connection is not second.connection is not prototype.connection
    assert first._stream_reader is not second._stream_reader


async def test_a_clones_smtp_and_builtin_auth_methods_are_bound_to_the_clone() -> None:
    options = ServerOptions(auth="any")
    prototype = build_protocol(_handler(options), options)
    copy = prototype.clone()
    built = build_protocol(_handler(options), options)
    assert set(copy._smtp_methods) == set(built._smtp_methods)
    assert all(_bound_to(m) is copy for m in copy._smtp_methods.values())
    # Each command's handler is wrapped to label its replies (GET /metrics); what it runs is
    # the clone's own method too.
    assert all(_bound_to(m.method) is copy for m in copy._smtp_methods.values())
    assert set(copy._auth_methods) == set(built._auth_methods) == {"LOGIN", "PLAIN"}
    for entry in copy._auth_methods.values():
        assert entry.is_builtin
        assert _bound_to(entry.method) is copy


async def test_auth_off_removes_the_mechanisms_from_clones_too() -> None:
    options = ServerOptions(auth="off")
    copy = build_protocol(_handler(options), options).clone()
    assert copy._auth_methods == {}


async def test_a_clones_connection_state_starts_empty_like_a_new_protocol() -> None:
    options = ServerOptions()
    built = build_protocol(_handler(options), options)
    copy = build_protocol(_handler(options), options).clone()
    for name in ("session", "envelope", "transport", "_handler_coroutine", "_timeout_handle"):
        assert getattr(copy, name) is None is getattr(built, name)
    # Settings carried over from the prototype equal those aiosmtpd computes.
    for name, value in built.__dict__.items():
        if inspect.ismethod(value) or name.startswith("_stream") or name in _PER_OBJECT:
            continue
        assert copy.__dict__[name] == value or _same_kind(copy.__dict__[name], value), name


_PER_OBJECT = {
    "_closed",
    "_strong_reader",
    "_source_traceback",
    "_client_connected_cb",
    "_drain_waiters",
    "_paused",
    "_connection_lost",
    "_over_ssl",
    "_reject_connection",
    "_task",
    "_transport",
    "_loop",
    "connection",
    "_smtp_methods",
    "_auth_methods",
    "_handle_hooks",
}


def _same_kind(a: Any, b: Any) -> bool:
    return type(a) is type(b) and not isinstance(a, (int, str, bool, float, type(None)))


# --- plain addresses: sinkd's match against aiosmtpd's RFC 5322 parser ----------------------

_SAMPLES = [
    "<a@example.com>",
    "<a@example.com> SIZE=100 BODY=8BITMIME",
    "  <First.Last+tag@mail.example.org>   SIZE=1",
    "<a@x>SIZE=1",
    "<a@x> ",
    "<A@B>  x  ",
    "<o'hara@example.ie>",
    "<{weird}~|$@ex-ample.com>",
    "<a@-x>",
    # not plain: left to aiosmtpd's parser, whatever it makes of them
    "<>",
    "<a..b@x>",
    "<.a@x>",
    '<"quoted local"@x>',
    "<a@[192.0.2.1]>",
    "<a@x.>",
    "<a@x> (comment) SIZE=1",
    "<@relay.example:a@x>",
    "a@example.com",
    "<a@x",
    "<a b@x>",
    "<ä@x>",
    "<a@exämple.com>",
]


def _alphabet_strings(count: int) -> list[str]:
    import random

    rng = random.Random(5321)
    pieces = ["<", ">", "@", ".", "a", "Z", "0", "-", "+", " ", "\t", "(", ")", '"', "x", "=", "ä"]
    return ["".join(rng.choice(pieces) for _ in range(rng.randint(1, 14))) for _ in range(count)]


async def test_plain_addresses_parse_exactly_as_aiosmtpds_parser_would() -> None:
    from aiosmtpd.smtp import SMTP

    options = ServerOptions()
    protocol = build_protocol(_handler(options), options).clone()
    fast_hits = 0
    for sample in _SAMPLES + _alphabet_strings(5000):
        try:
            expected = SMTP._getaddr(protocol, sample)
        except IndexError:  # the email package's parser on truncated input: malformed
            expected = (None, None)
        got = protocol._getaddr(sample)
        assert got == expected, sample
        fast_hits += _fast_path_taken(sample)
    assert fast_hits >= 9  # the plain samples really went the fast way


def _fast_path_taken(sample: str) -> int:
    from sinkd.server.protocol import _PLAIN_PATH

    return int(_PLAIN_PATH.match(sample) is not None)
