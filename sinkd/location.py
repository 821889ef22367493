"""Where a store lives: what a ``--store`` value (or ``$SINKD_STORE``, or ``--db``) names.

Owns parsing a store location and showing it without its password: ``postgresql://`` or
``postgres://`` URLs (libpq's connection URIs, PostgreSQL "Connection URIs", §34.1.1.2) name a
PostgreSQL database; ``sqlite:///path`` or a plain path a SQLite file; ``:memory:`` the
in-memory store. It opens nothing and imports no driver: ``sinkd.store.backends`` does.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

from sinkd.errors import ConfigError

StoreKind = Literal["sqlite", "postgresql", "memory"]

_PG_SCHEMES = ("postgresql", "postgres")
# What a PostgreSQL location without psycopg installed is told (psycopg is the optional
# ``postgresql`` extra, imported only where a PostgreSQL store is used).
NEEDS_EXTRA = (
    "--store {shown} needs the postgresql extra (psycopg): pip install 'sinkd[postgresql]'"
)


@dataclass(frozen=True, slots=True)
class StoreLocation:
    """A parsed store location: ``kind`` and either ``path`` (SQLite) or ``url`` (PostgreSQL,
    as given, password included: pass it to the driver, never to a log; ``shown`` is for
    people)."""

    kind: StoreKind
    path: Path | None = None
    url: str | None = None

    @classmethod
    def parse(cls, text: str) -> StoreLocation:
        """``text`` as a store location; ``ConfigError`` saying what forms there are."""
        value = text.strip()
        if not value:
            raise ConfigError("empty store location; give a path, sqlite:///PATH or postgresql://")
        if value == ":memory:":
            return cls("memory", path=Path(":memory:"))
        scheme, sep, _ = value.partition("://")
        if not sep:
            return cls("sqlite", path=Path(value))
        scheme = scheme.lower()
        if scheme in _PG_SCHEMES:
            parts = urlsplit(value)
            if not (parts.path.strip("/") or parts.query):
                raise ConfigError(
                    f"store {_redact(value)}: name the database "
                    "(postgresql://USER:PASSWORD@HOST:PORT/DATABASE)"
                )
            return cls("postgresql", url=value)
        if scheme == "sqlite":
            # sqlite:///relative/or/absolute as SQLAlchemy spells it: three slashes and a
            # relative path, four for an absolute one; sqlite:///:memory: too.
            rest = value[len("sqlite://") :]
            if not rest.startswith("/") or rest == "/":
                raise ConfigError(f"store {value}: write sqlite:///PATH (three slashes)")
            return cls.parse(rest[1:]) if rest[1:] == ":memory:" else cls("sqlite", Path(rest[1:]))
        raise ConfigError(
            f"store {_redact(value)}: unknown scheme {scheme!r}; "
            "use a path, sqlite:///PATH or postgresql://USER@HOST/DATABASE"
        )

    @classmethod
    def of_path(cls, path: Path) -> StoreLocation:
        """The location ``--db PATH`` names (``:memory:`` included)."""
        return cls.parse(str(path))

    @property
    def shown(self) -> str:
        """The location for logs and messages: a URL without its password."""
        if self.url is not None:
            return _redact(self.url)
        return str(self.path)

    def __str__(self) -> str:
        return self.shown


def _redact(url: str) -> str:
    """``url`` with the password in its authority replaced by ``***`` (a ``password=``
    query parameter too)."""
    parts = urlsplit(url)
    netloc = parts.netloc
    user, at, host = netloc.rpartition("@")
    if at and ":" in user:
        netloc = f"{user.split(':', 1)[0]}:***@{host}"
    query = "&".join(
        "password=***" if item.lower().startswith("password=") else item
        for item in parts.query.split("&")
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query if parts.query else "", ""))
