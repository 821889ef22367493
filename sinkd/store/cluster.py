"""What a server runs beside a store that several sinkd instances share: the events other
instances commit, the lease that lets one of them relay, and the delivery state (greylist
triplets, rate windows, connection counts) they all read.

Owns choosing those by store location: a PostgreSQL store has them (``sinkd.store.pg_events``,
``sinkd.store.pg_state``), a SQLite file or the in-memory store, kept by one machine, has
none. It is where a server reaches psycopg, and only for a PostgreSQL store: psycopg is the
optional ``postgresql`` extra, and a server on SQLite must start without it (hence the
imports inside the functions below, which hide no cycle). It publishes nothing and decides nothing
about mail.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from sinkd.errors import ConfigError
from sinkd.location import NEEDS_EXTRA, StoreLocation

if TYPE_CHECKING:
    from sinkd.store.pg_events import Notification, SharedLinks
    from sinkd.store.pg_state import PgDeliveryState


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


def shared_delivery_state(
    location: StoreLocation, instance: str, *, delay_override: float | None
) -> PgDeliveryState:
    """The delivery state every instance on the PostgreSQL store at ``location`` shares (not
    started); ``delay_override`` is ``--greylist-delay``."""
    try:
        from sinkd.store.pg_state import PgDeliveryState  # the optional postgresql extra
    except ImportError as exc:
        raise ConfigError(NEEDS_EXTRA.format(shown=location.shown)) from exc
    assert location.url is not None, "a postgresql location has its URL"
    return PgDeliveryState(location.url, instance=instance, delay_override=delay_override)
