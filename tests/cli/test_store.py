"""``sinkd store migrate`` (and ``sinkd messages --store``) through the real entry point: it
creates a store, finds it up to date the next time, migrates nothing it cannot, and refuses
what is no reachable store with exit 2 and one line (no traceback, no password); the messages
commands read a PostgreSQL store. A real private PostgreSQL on loopback (the session's server,
a database per test)."""

from __future__ import annotations

import asyncio
import io
import json
import sqlite3
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from sinkd.cli import EXIT_OK, EXIT_USAGE, main
from sinkd.core.model import VerdictAction
from sinkd.store.postgres import open_postgres
from sinkd.store.sql import SCHEMA_VERSION
from tests.support.postgres import PostgresServer, postgres_server
from tests.support.store import make_record

__all__ = ["postgres_server"]  # the session fixture, used below by name

SECRET = "pw-never-printed-0815"


def migrate(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    code = main(["store", "migrate", *argv], out=out)
    return code, out.getvalue()


def with_password(dsn: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(netloc=f"postgres:{SECRET}@{parts.hostname}:{parts.port}"))


def test_a_postgresql_store_is_created_then_found_up_to_date(
    postgres_server: PostgresServer, capsys: pytest.CaptureFixture[str]
) -> None:
    url = with_password(postgres_server.create_database())
    shown = url.replace(SECRET, "***")

    assert migrate("--store", url) == (
        EXIT_OK,
        f"store {shown}: schema version {SCHEMA_VERSION} (created)\n",
    )
    assert migrate("--store", url) == (
        EXIT_OK,
        f"store {shown}: schema version {SCHEMA_VERSION} (up to date)\n",
    )
    assert SECRET not in capsys.readouterr().err


def test_a_sqlite_file_is_created_then_found_up_to_date(tmp_path: Path) -> None:
    path = tmp_path / "sinkd.db"

    assert migrate("--db", str(path)) == (
        EXIT_OK,
        f"store {path}: schema version {SCHEMA_VERSION} (created)\n",
    )
    assert migrate("--store", f"sqlite:///{path}") == (
        EXIT_OK,
        f"store {path}: schema version {SCHEMA_VERSION} (up to date)\n",
    )
    with sqlite3.connect(path) as conn:
        (version,) = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    assert version == str(SCHEMA_VERSION)


def test_a_newer_postgresql_schema_is_refused_with_exit_2(
    postgres_server: PostgresServer, capsys: pytest.CaptureFixture[str]
) -> None:
    url = postgres_server.create_database()
    assert migrate("--store", url)[0] == EXIT_OK
    postgres_server.psql(urlsplit(url).path.lstrip("/"), "UPDATE sinkd_meta SET value = '99'")

    code, out = migrate("--store", url)

    assert (code, out) == (EXIT_USAGE, "")
    err = capsys.readouterr().err
    assert err.startswith("sinkd store migrate: message store postgresql://")
    assert "schema version 99, newer than this sinkd supports" in err
    assert "Traceback" not in err


def test_an_unreachable_database_is_refused_with_exit_2_and_no_password(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with PostgresServer() as server:
        url = with_password(server.create_database())
        server.pause()
        code, out = migrate("--store", url)
        server.resume()

    assert (code, out) == (EXIT_USAGE, "")
    err = capsys.readouterr().err
    assert "cannot reach message store postgresql://postgres:***@127.0.0.1:" in err
    assert SECRET not in err
    assert err.count("\n") == 1


def test_a_location_that_is_no_store_is_refused_with_exit_2(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert migrate("--store", "mysql://u:p@h/db") == (EXIT_USAGE, "")
    assert "unknown scheme 'mysql'" in capsys.readouterr().err


def test_messages_list_and_show_read_a_postgresql_store(postgres_server: PostgresServer) -> None:
    url = postgres_server.create_database()

    async def save() -> None:
        async with await open_postgres(url, migrate=True) as store:
            await store.save(make_record(1))
            await store.save(make_record(2, verdict=VerdictAction.QUARANTINE))

    asyncio.run(save())

    out = io.StringIO()
    assert main(["messages", "list", "--store", url, "--json"], out=out) == EXIT_OK
    assert [m["id"] for m in json.loads(out.getvalue())] == ["m0002", "m0001"]
    out = io.StringIO()
    assert main(["messages", "list", "--store", url, "--verdict", "quarantine"], out=out) == 0
    assert [line.split()[0] for line in out.getvalue().splitlines()] == ["m0002"]
    out = io.StringIO()
    assert main(["messages", "show", "m0001", "--store", url, "--json"], out=out) == EXIT_OK
    assert json.loads(out.getvalue())["subject"] == "message 1"
