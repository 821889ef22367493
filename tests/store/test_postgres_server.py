"""The private PostgreSQL server the PostgreSQL store's tests will run against (issue 21):
it starts, ``psql`` (a real client, over loopback TCP) reaches the ``sinkd`` database through
the DSN, and it stops leaving nothing behind. Skips on a laptop without initdb; fails under
CI=true (tests/conftest.py ``require_executable``)."""

from __future__ import annotations

import subprocess
from urllib.parse import urlsplit

from tests.conftest import require_executable
from tests.support.postgres import PostgresServer, postgres_server

__all__ = ["postgres_server"]  # the session fixture, used below by name


def psql(dsn: str, sql: str) -> subprocess.CompletedProcess[str]:
    binary = require_executable("psql", "postgresql-client")
    return subprocess.run(
        [binary, "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", dsn, "-c", sql],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_session_server_accepts_psql_on_loopback_in_the_sinkd_database(
    postgres_server: PostgresServer,
) -> None:
    parts = urlsplit(postgres_server.dsn)
    assert (parts.scheme, parts.hostname, parts.path) == ("postgresql", "127.0.0.1", "/sinkd")
    assert parts.port == postgres_server.port
    done = psql(
        postgres_server.dsn,
        "SELECT current_database(), inet_server_addr(), inet_server_port()",
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"sinkd|127.0.0.1|{postgres_server.port}"


def test_the_session_server_keeps_what_is_written_in_it(postgres_server: PostgresServer) -> None:
    done = psql(
        postgres_server.dsn,
        "CREATE TABLE probe (n int); INSERT INTO probe VALUES (21); SELECT n FROM probe;"
        " DROP TABLE probe",
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["21"]


def test_a_stopped_server_refuses_connections_and_leaves_no_directory() -> None:
    server = PostgresServer().start()
    dsn, directory = server.dsn, server.directory
    assert psql(dsn, "SELECT 1").returncode == 0
    server.stop()
    refused = psql(dsn, "SELECT 1")
    assert refused.returncode != 0
    assert "Connection refused" in refused.stderr
    assert not directory.exists()


def test_a_paused_server_refuses_connections_and_serves_again_after_resume(
    postgres_server: PostgresServer,
) -> None:
    dsn = postgres_server.create_database()
    assert psql(dsn, "CREATE TABLE kept (n int); INSERT INTO kept VALUES (7)").returncode == 0

    postgres_server.pause()
    try:
        refused = psql(dsn, "SELECT 1")
        assert refused.returncode != 0
        assert "Connection refused" in refused.stderr or "could not connect" in refused.stderr
    finally:
        postgres_server.resume()

    assert psql(dsn, "SELECT n FROM kept").stdout.strip() == "7"
