"""Settling a store write's future on the event loop that awaits it.

Owns the three ways an answer reaches its caller: from the writer thread
(``settle_threadsafe``), from a writer-process client's loop (``settle_on``), and the final
step both use on the caller's own loop (``resolve_future``). Shared by ``sinkd.store.sqlite``
(the thread) and ``sinkd.store.writer`` (the process's clients), which is why it is a module of
its own: neither of those may import the other's internals (they used to, in a cycle). It
decides nothing about what a write's answer is, and never blocks.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any


def resolve_future(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    """Settle a write's future, on its own loop (the writer thread's and process's answers)."""
    if future.done():  # the awaiting task was cancelled; the write stands regardless
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


def settle_threadsafe(
    loop: asyncio.AbstractEventLoop,
    future: asyncio.Future[Any],
    result: Any,
    error: BaseException | None,
) -> None:
    """Resolve ``future`` on its own loop from another thread (the writer thread)."""
    # RuntimeError: the loop is closed, so nobody is waiting for the answer any more.
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(resolve_future, future, result, error)


def settle_on(
    caller: asyncio.AbstractEventLoop,
    home: asyncio.AbstractEventLoop | None,
    future: asyncio.Future[Any],
    result: Any,
    error: BaseException | None,
) -> None:
    """Resolve ``future`` now when it belongs to the loop we run in (``home``), else on its
    own loop."""
    if caller is home:
        resolve_future(future, result, error)
    else:
        settle_threadsafe(caller, future, result, error)
