"""The PostgreSQL store's schema: its tables, its versioned migrations, and the names several
sinkd instances agree on (the events channel, the advisory-lock keys).

Owns DDL and shared constants only; it imports no driver, so the writer process, the
repository, the delivery state and the command line all read the one definition. The
statements that read and write these tables live with their users: ``sinkd.store.pg_sql``
(messages, raw bytes, findings, relay queue), ``sinkd.store.pg_state`` (greylist triplets,
rate windows, instances and their SMTP connections).

Versions are the SQLite store's (``sinkd.store.sql.SCHEMA_VERSION``): the PostgreSQL store
first exists at version 7, so it is created at 7; a later schema change adds one step to
``PG_MIGRATIONS`` under the same number as its SQLite step (``tests/store/test_pg_schema.py``
holds the two in step).
"""

from __future__ import annotations

from sinkd.store.sql import SCHEMA_VERSION

__all__ = [
    "DELIVERY_TABLES",
    "EVENTS_CHANNEL",
    "FIRST_PG_VERSION",
    "LOCK_MIGRATE",
    "LOCK_RELAY",
    "LOCK_SEQ",
    "MESSAGE_TABLES",
    "PG_MIGRATIONS",
    "SCHEMA_VERSION",
    "TRIGRAM_INDEXES",
]

# The first schema version the PostgreSQL store has: older SQLite versions have no PostgreSQL
# counterpart to migrate from.
FIRST_PG_VERSION = 7

# version -> statements bringing a PostgreSQL store from that version to the next, each run
# in the migrating transaction (``sinkd store migrate``): empty until version 8.
PG_MIGRATIONS: dict[int, tuple[str, ...]] = {}

# The message store at version 7: what SQLite keeps in messages, raw, finding_codes,
# message_search and relay, shaped for PostgreSQL. ``seq`` comes from its own sequence, taken
# under the LOCK_SEQ transaction lock so that it grows in commit order across instances (keyset
# paging: a new arrival never lands inside a page already read). The case-folded search text
# (``sinkd.store.columns.fold``) and the finding codes sit in the messages row itself: one row
# per save instead of four, and PostgreSQL indexes them where they are (pg_trgm, GIN on the
# array). Times are kept as the RFC 3339 text the JSON shape has (whole milliseconds, UTC,
# compared as text in the "C" collation: same width, so text order is time order) next to a
# timestamptz for the time-range filters. The JSON shape is stored as text, exactly as the
# API answers it (jsonb would reorder and re-encode it).
MESSAGE_TABLES: tuple[str, ...] = (
    "CREATE SEQUENCE IF NOT EXISTS message_seq AS bigint",
    "CREATE TABLE IF NOT EXISTS messages ("
    " seq BIGINT PRIMARY KEY, id TEXT NOT NULL UNIQUE,"
    " received_at TIMESTAMPTZ NOT NULL, transaction_id TEXT NOT NULL, profile TEXT,"
    " verdict TEXT NOT NULL, disposition TEXT NOT NULL, score DOUBLE PRECISION NOT NULL,"
    " stage TEXT NOT NULL, subject TEXT, mail_from TEXT, client_ip TEXT, size BIGINT,"
    " data TEXT NOT NULL, released_at TEXT, codes TEXT[] NOT NULL DEFAULT '{}',"
    " search_subject TEXT NOT NULL, search_mail_from TEXT NOT NULL,"
    " search_rcpt_to TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS messages_received_at ON messages (received_at)",
    "CREATE INDEX IF NOT EXISTS messages_verdict ON messages (verdict, seq)",
    "CREATE INDEX IF NOT EXISTS messages_profile ON messages (profile, seq)",
    "CREATE INDEX IF NOT EXISTS messages_codes ON messages USING gin (codes)",
    "CREATE TABLE IF NOT EXISTS raw ("
    " id TEXT PRIMARY KEY REFERENCES messages (id) ON DELETE CASCADE,"
    " bytes BYTEA NOT NULL, filtered BYTEA, filtered_from BIGINT)",
    "CREATE TABLE IF NOT EXISTS relay ("
    " message_id TEXT PRIMARY KEY REFERENCES messages (id) ON DELETE CASCADE,"
    " status TEXT NOT NULL, attempts INTEGER NOT NULL, queued_at TEXT NOT NULL,"
    ' last_attempt_at TEXT, next_attempt_at TEXT COLLATE "C", done_at TEXT,'
    " last_reply TEXT, recipients TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS relay_due ON relay (status, next_attempt_at)",
    "CREATE TABLE IF NOT EXISTS sinkd_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
)

# Trigram indexes for the substring filters (pg_trgm, "F.35.4. Index Support": a GIN
# gin_trgm_ops index answers LIKE '%needle%'); made only where the extension is there or can
# be created (it is a trusted extension since PostgreSQL 13, so a database owner may create
# it). Without them the filters still work, by scanning.
TRIGRAM_INDEXES: tuple[str, ...] = tuple(
    f"CREATE INDEX IF NOT EXISTS messages_{column}_trgm ON messages"
    f" USING gin ({column} gin_trgm_ops)"
    for column in ("search_subject", "search_mail_from", "search_rcpt_to")
)

# LISTEN/NOTIFY channel (PostgreSQL NOTIFY: "a simple identifier"): every instance's writer
# notifies it in the transaction that commits a record, a release or a relay update, so the
# notification is delivered only if that commit happens (NOTIFY: "if a NOTIFY is executed
# inside a transaction, the notify events are not delivered until and unless the transaction
# is committed"). Payload: JSON ``{"origin": INSTANCE, "event": "verdict"|"released"|"relay",
# "ids": [...]}``, at most NOTIFY_PAYLOAD_BYTES (the default configuration's limit is 8000
# bytes), so a batch is split over several notifications.
EVENTS_CHANNEL = "sinkd_events"
NOTIFY_PAYLOAD_BYTES = 7800

# Advisory-lock keys (pg_advisory_lock's bigint space is shared by every client of the
# database: these are "sinkd" in ASCII followed by a small number, unlikely to collide).
_BASE = int.from_bytes(b"sinkd", "big") << 16
LOCK_MIGRATE = _BASE + 1  # session lock while one instance creates or migrates the schema
LOCK_SEQ = _BASE + 2  # transaction lock: seq numbers are taken in commit order (keyset paging)
LOCK_RELAY = _BASE + 3  # session lock: the one instance that delivers the relay queue

# The delivery state several instances share (what ``sinkd.core.delivery_state`` keeps in one
# process's memory): greylist triplets keyed as the greylist filter keys them; each client's
# message times per rate-limit scope (one row, updated under its row lock, so a count is exact
# across instances); the live instances (a heartbeat) and their open SMTP connections per
# client address (an instance that stops heartbeating no longer counts).
DELIVERY_TABLES: tuple[str, ...] = (
    "CREATE TABLE IF NOT EXISTS greylist ("
    " client TEXT NOT NULL, sender TEXT NOT NULL, recipient TEXT NOT NULL,"
    " first_seen DOUBLE PRECISION NOT NULL, last_seen DOUBLE PRECISION NOT NULL,"
    " expires DOUBLE PRECISION NOT NULL, attempts INTEGER NOT NULL,"
    " passed_at DOUBLE PRECISION, remember DOUBLE PRECISION NOT NULL DEFAULT 0,"
    " PRIMARY KEY (client, sender, recipient))",
    "CREATE INDEX IF NOT EXISTS greylist_expires ON greylist (expires)",
    "CREATE TABLE IF NOT EXISTS rate_windows ("
    " scope TEXT NOT NULL, client TEXT NOT NULL, span DOUBLE PRECISION NOT NULL,"
    " times DOUBLE PRECISION[] NOT NULL, last DOUBLE PRECISION NOT NULL,"
    " PRIMARY KEY (scope, client))",
    "CREATE INDEX IF NOT EXISTS rate_windows_last ON rate_windows (last)",
    "CREATE TABLE IF NOT EXISTS instances ("
    " id TEXT PRIMARY KEY, hostname TEXT NOT NULL, started_at TIMESTAMPTZ NOT NULL,"
    " seen_at TIMESTAMPTZ NOT NULL)",
    "CREATE TABLE IF NOT EXISTS smtp_connections ("
    " instance TEXT NOT NULL REFERENCES instances (id) ON DELETE CASCADE,"
    " ip TEXT NOT NULL, open INTEGER NOT NULL, PRIMARY KEY (instance, ip))",
    "CREATE INDEX IF NOT EXISTS smtp_connections_ip ON smtp_connections (ip)",
)
