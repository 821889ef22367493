"""The PostgreSQL schema stays in step with SQLite's: the same version numbers, a migration step
for every version after the first PostgreSQL one, and the trigram indexes where pg_trgm is
there. Real PostgreSQL (the session's server, a database per test) where a database is
needed."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from sinkd.errors import StoreError
from sinkd.store import pg_schema
from sinkd.store.postgres import open_postgres
from sinkd.store.sql import MIGRATIONS, SCHEMA_VERSION
from tests.support.postgres import PostgresServer, postgres_server

__all__ = ["postgres_server"]  # the session fixture, used below by name


def test_the_postgresql_schema_has_the_sqlite_stores_version() -> None:
    assert pg_schema.SCHEMA_VERSION == SCHEMA_VERSION
    assert pg_schema.FIRST_PG_VERSION <= SCHEMA_VERSION


def test_every_version_after_the_first_postgresql_one_has_a_step_in_both_stores() -> None:
    wanted = set(range(pg_schema.FIRST_PG_VERSION, SCHEMA_VERSION))
    assert set(pg_schema.PG_MIGRATIONS) == wanted
    assert {v for v in MIGRATIONS if v >= pg_schema.FIRST_PG_VERSION} == wanted


def in_database(server: PostgresServer, dsn: str, sql: str) -> str:
    return server.psql(urlsplit(dsn).path.lstrip("/"), sql).strip()


async def test_the_substring_filters_get_trigram_indexes_where_pg_trgm_is_available(
    postgres_server: PostgresServer,
) -> None:
    dsn = postgres_server.create_database()
    await (await open_postgres(dsn, migrate=True)).close()

    available = in_database(
        postgres_server, dsn, "SELECT count(*) FROM pg_available_extensions WHERE name = 'pg_trgm'"
    )
    indexes = in_database(
        postgres_server,
        dsn,
        "SELECT string_agg(indexname, ',' ORDER BY indexname) FROM pg_indexes"
        " WHERE indexname LIKE '%trgm'",
    )
    if available == "1":
        assert indexes.split(",") == [
            "messages_search_mail_from_trgm",
            "messages_search_rcpt_to_trgm",
            "messages_search_subject_trgm",
        ]
    else:
        assert indexes == ""


async def test_a_version_no_postgresql_store_ever_had_is_refused_even_with_migrate(
    postgres_server: PostgresServer,
) -> None:
    dsn = postgres_server.create_database()
    await (await open_postgres(dsn, migrate=True)).close()
    in_database(postgres_server, dsn, "UPDATE sinkd_meta SET value = '5'")

    with pytest.raises(StoreError, match="version 5, which no PostgreSQL store ever had"):
        await open_postgres(dsn, migrate=True)
