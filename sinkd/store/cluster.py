"""What a server runs beside a store that several sinkd instances share: the events other
instances commit, and the lease that lets one of them relay.

Owns choosing those links by store location: a PostgreSQL store has them
(``sinkd.store.pg_events``), a SQLite file or the in-memory store, kept by one machine, has
none. It is where a server reaches psycopg, and only for a PostgreSQL store: psycopg is the
optional ``postgresql`` extra, and a server on SQLite must start without it (hence the one
import inside ``shared_links``, which hides no cycle). It publishes nothing and decides nothing
about mail.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from sinkd.errors import ConfigError
from sinkd.store.location import StoreLocation

if TYPE_CHECKING:
    from sinkd.store.pg_events import Notification, SharedLinks

NEEDS_EXTRA = (
    "--store {shown} needs the postgresql extra (psycopg): pip install 'sinkd[postgresql]'"
)


def shared_links(
    location: StoreLocation,
    instance: str,
    on_event: Callable[[Notification], Awaitable[None]],
    *,
    relay: bool,
) -> SharedLinks | None:
    """The links a server on ``location`` needs (not started), or None for a store that no
    other instance can share. ``instance`` names this server in the events it commits."""
    if location.kind != "postgresql":
        return None
    try:
        from sinkd.store import pg_events  # the optional postgresql extra (module docstring)
    except ImportError as exc:
        raise ConfigError(NEEDS_EXTRA.format(shown=location.shown)) from exc
    return pg_events.links(location, instance, on_event, relay=relay)
