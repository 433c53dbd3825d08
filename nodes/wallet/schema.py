"""The wallet's SQLite schema: an append-only event log and the projections derived from it."""

from __future__ import annotations

import secrets
import sqlite3
from pathlib import Path
from typing import Final

SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS events (
    seq       INTEGER PRIMARY KEY,
    account   TEXT    NOT NULL,
    asset     TEXT    NOT NULL,
    version   INTEGER NOT NULL CHECK (version > 0),
    type      TEXT    NOT NULL,
    amount    INTEGER NOT NULL CHECK (amount > 0),
    hold_id   TEXT,
    op_id     TEXT    NOT NULL,
    ts_ns     INTEGER NOT NULL,
    prev_hash TEXT    NOT NULL,
    hash      TEXT    NOT NULL,
    traceparent TEXT,           -- metadata for the relay: not part of the hash
    UNIQUE (account, asset, version)
);
CREATE TRIGGER IF NOT EXISTS events_refuse_update BEFORE UPDATE ON events
BEGIN SELECT RAISE(ABORT, 'events are append-only: UPDATE refused'); END;
CREATE TRIGGER IF NOT EXISTS events_refuse_delete BEFORE DELETE ON events
BEGIN SELECT RAISE(ABORT, 'events are append-only: DELETE refused'); END;

CREATE TABLE IF NOT EXISTS balances (
    account   TEXT    NOT NULL,
    asset     TEXT    NOT NULL,
    available INTEGER NOT NULL CHECK (available >= 0),
    held      INTEGER NOT NULL CHECK (held >= 0),
    version   INTEGER NOT NULL,
    head      TEXT    NOT NULL,
    PRIMARY KEY (account, asset)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS holds (
    hold_id   TEXT    PRIMARY KEY,
    account   TEXT    NOT NULL,
    asset     TEXT    NOT NULL,
    amount    INTEGER NOT NULL CHECK (amount > 0),
    remaining INTEGER NOT NULL CHECK (remaining >= 0),
    released  INTEGER NOT NULL DEFAULT 0 CHECK (released >= 0)  -- for release-to-total_debits
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS holds_open ON holds (account, asset) WHERE remaining > 0;

CREATE TABLE IF NOT EXISTS snapshots (
    account   TEXT    NOT NULL,
    asset     TEXT    NOT NULL,
    version   INTEGER NOT NULL,
    seq       INTEGER NOT NULL,
    available INTEGER NOT NULL,
    held      INTEGER NOT NULL,
    head      TEXT    NOT NULL,
    holds     TEXT    NOT NULL,
    PRIMARY KEY (account, asset, version)
) WITHOUT ROWID;

-- The outbox is the tail of `events` past the relay's cursor (`meta.relayed_seq`): the event row
-- itself is the outbox record, written in the same transaction, with nothing to keep in step.
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
INSERT OR IGNORE INTO meta(key, value) VALUES ('relayed_seq', '0');

CREATE TABLE IF NOT EXISTS ops (
    op_id        TEXT PRIMARY KEY,
    request_hash TEXT NOT NULL,
    reply        BLOB NOT NULL,
    ts_ns        INTEGER NOT NULL
) WITHOUT ROWID;
"""

#: FULL fsyncs the WAL on every commit (durable across power loss); NORMAL only at checkpoints.
SYNC_MODES: Final = ("FULL", "NORMAL", "EXTRA")


def open_db(path: Path, *, synchronous: str = "FULL", readonly: bool = False,
            schema: bool = True) -> sqlite3.Connection:
    """Open the wallet database in WAL mode with explicit transactions (autocommit off). `schema=False`: a
    second connection beside the writer's, which runs no schema script (a write that would wait for it)."""
    if synchronous not in SYNC_MODES:
        raise ValueError(f"synchronous must be one of {SYNC_MODES}, got {synchronous!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    uri = f"file:{path}?mode=ro" if readonly else f"file:{path}"
    conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False, timeout=30)
    conn.execute("PRAGMA busy_timeout=30000")
    if not readonly and schema:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.executescript(SCHEMA)
        _migrate(conn)
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute("PRAGMA cache_size=-65536")
    return conn


def _migrate(conn: sqlite3.Connection) -> None:
    """Bring a database made by an older version up to SCHEMA (additive changes only)."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(holds)")}
    if "released" not in columns:  # sum what the log says each hold released so far
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("ALTER TABLE holds ADD COLUMN released INTEGER NOT NULL DEFAULT 0")
        conn.execute(
            "UPDATE holds SET released = (SELECT COALESCE(SUM(amount), 0) FROM events "
            "WHERE events.hold_id = holds.hold_id AND events.type = 'released')"
        )
        conn.execute("COMMIT")


def ledger_id(conn: sqlite3.Connection, partition: int) -> str:
    """This database's ledger id (`p<partition>.<random>`), drawn once when it is created."""
    conn.execute(
        "INSERT OR IGNORE INTO meta(key, value) VALUES ('ledger_id', ?)",
        (f"p{partition}.{secrets.token_hex(4)}",),
    )
    return str(conn.execute("SELECT value FROM meta WHERE key='ledger_id'").fetchone()[0])


class PartitionCountMismatch(Exception):
    """The database was created for another mesh-wide wallet partition count than the one configured."""


def record_partitions(path: Path, partitions: int) -> None:
    """Record the partition count `partitions` in the database on its first boot; refuse a different one later.

    Accounts are hashed mod the count: a wallet started with another count would own other accounts
    than its ledger holds, so one account's money could end up split across two ledgers.
    """
    recorded = _recorded_partitions(path)
    if recorded is None:  # first boot of this file: record it
        conn = open_db(path)
        try:
            conn.execute("INSERT OR IGNORE INTO meta(key, value) VALUES ('partitions', ?)", (str(partitions),))
            recorded = int(conn.execute("SELECT value FROM meta WHERE key='partitions'").fetchone()[0])
        finally:
            conn.close()
    if recorded != partitions:
        raise PartitionCountMismatch(f"{path} was created with {recorded} wallet partitions, configured {partitions}")


def _recorded_partitions(path: Path) -> int | None:
    """The recorded partition count, read without taking the write lock (None if not recorded yet).

    A standby checks the file at start while the partition's active writer commits on its event loop:
    a write here would make that loop wait for it.
    """
    if not path.exists():
        return None
    conn = open_db(path, readonly=True)
    try:
        row = conn.execute("SELECT value FROM meta WHERE key='partitions'").fetchone()
    except sqlite3.OperationalError:  # no schema yet
        return None
    finally:
        conn.close()
    return None if row is None else int(row[0])
