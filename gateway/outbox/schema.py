"""The outbox file's tables, the SQL helpers of its worker, and what the worker returns.

``Opened``, ``Commit``, ``Quarantined`` and ``Inserted`` are the messages
between the event loop (gateway/outbox/log.py) and the worker thread
(gateway/outbox/store.py): plain values, so no state is shared.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from gateway.outbox.records import Item, RecordKind
from gateway.sqlite_file import FileIncident

SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    seq   INTEGER PRIMARY KEY AUTOINCREMENT,  -- AUTOINCREMENT: a seq is never reused after pruning
    kind  INTEGER NOT NULL,
    ts_ns INTEGER NOT NULL,
    size  INTEGER NOT NULL,
    body  TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS cursors (sink TEXT PRIMARY KEY, seq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS quarantine (
    seq   INTEGER PRIMARY KEY,
    kind  INTEGER,
    ts_ns INTEGER,
    body  BLOB,
    error TEXT NOT NULL
);
"""


def checkpoint_truncate(db: sqlite3.Connection) -> None:
    """Copy the WAL in and start it over (it is reused, not grown: the disk is full)."""
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()


def rollback(db: sqlite3.Connection) -> None:
    """Roll back if a transaction is still open: SQLite ends some by itself (disk full)."""
    if db.in_transaction:
        db.execute("ROLLBACK")


def saved_cursors(db: sqlite3.Connection) -> dict[str, int]:
    return {str(k): int(v) for k, v in db.execute("SELECT sink, seq FROM cursors")}


def read_last_seq(db: sqlite3.Connection) -> int:
    """The last seq ever given (AUTOINCREMENT: pruned rows never lower it)."""
    row = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'records'").fetchone()
    return int(row[0]) if row else 0


@dataclass(slots=True, frozen=True)
class Opened:
    """What the worker read when opening the database."""

    cursors: dict[str, int]
    last_seq: int
    rows: int
    bytes: int
    backlog: dict[str, int]
    head_ts: dict[str, int | None]
    evicted: dict[str, int]
    quarantined: int
    incident: FileIncident | None = None


@dataclass(slots=True, frozen=True)
class Commit:
    """What one commit writes: the batch, moved cursors, pruning, unsaved evictions."""

    batch: list[tuple[RecordKind, int, Item]]
    cursors: dict[str, int]
    prune_upto: int
    unsaved: dict[str, int]
    bytes_before: int


@dataclass(slots=True, frozen=True)
class Quarantined:
    """A row moved to the quarantine table."""

    seq: int
    size: int
    error: str


@dataclass(slots=True, frozen=True)
class Inserted:
    """What one commit changed, for the event loop's mirrors."""

    last_seq: int
    bytes: int
    pruned_rows: int
    evicted: list[tuple[int, int]]
    heads: dict[str, int | None]
