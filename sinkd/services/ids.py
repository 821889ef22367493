"""Message ids: short, time-ordered and unique across the SMTP processes of one server.

Owns the id scheme every entry point stamps on verdicts and transactions (SMTP, the API's
re-evaluation). It keeps one counter per process and nothing else: no I/O, no protocol.
"""

from __future__ import annotations

import itertools
import secrets
import time

_SEQUENCE = itertools.count(secrets.randbelow(1 << 28))


def configure_ids(index: int, total: int) -> None:
    """Make this process's ids distinct from those of the other ``total - 1`` SMTP processes
    of one server (``--workers``): its sequence numbers are those equal to ``index`` modulo
    ``total``, so two processes never draw the same one in the same millisecond."""
    global _SEQUENCE
    start = secrets.randbelow(1 << 28) // total * total + index
    _SEQUENCE = itertools.count(start, total)


def new_message_id() -> str:
    """A short, time-ordered, unique id: milliseconds then a per-process counter (18 hex digits).

    The counter starts at a random point so that ids of separate processes sharing a store do
    not collide; within a process they never do.
    """
    return f"{int(time.time() * 1000):011X}{next(_SEQUENCE) & 0xFFFFFFF:07X}"
