"""Where the patrol engine keeps its state between restarts: a small SQLite file.

The state is one JSON document (open rounds, last tap per checkpoint, the
last complete round, the overdue gaps already raised, reader health). It is
small (a few kB) and changes a few times an hour, so it is rewritten whole
in one transaction on every change: simpler than row-level updates and
atomic, so a ``kill -9`` leaves the previous or the new state, never a mix.
``MemoryPatrolStore`` is the same protocol for tests and for ``--no-state``.
A damaged file is moved aside and a fresh one started
(gateway/sqlite_file.py); ``incident`` says so, and the gateway alarms.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from pathlib import Path
from typing import Any, Protocol

from gateway.errors import GatewayError
from gateway.sqlite_file import Damaged, FileIncident, open_sqlite, small_wal

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
LOST = (
    "open rounds, the last tap at each checkpoint and the overdue clock:"
    " the next overdue alarm counts from this start"
)


class PatrolStoreError(GatewayError):
    """The patrol state file cannot be opened, read or written."""


class PatrolStore(Protocol):
    incident: FileIncident | None
    # Why the last save failed (the state is kept in memory meanwhile), or None.
    save_error: str | None

    def load(self) -> dict[str, Any] | None: ...

    def save(self, state: dict[str, Any]) -> None: ...

    def close(self) -> None: ...


class MemoryPatrolStore:
    """Keeps the state in memory (a JSON round trip, so it proves the state serialises)."""

    def __init__(self) -> None:
        self.saved: str | None = None
        self.saves = 0
        self.incident: FileIncident | None = None
        self.save_error: str | None = None

    def load(self) -> dict[str, Any] | None:
        return None if self.saved is None else dict(json.loads(self.saved))

    def save(self, state: dict[str, Any]) -> None:
        self.saved = json.dumps(state, sort_keys=True)
        self.saves += 1

    def close(self) -> None:
        pass


class SqlitePatrolStore:
    """The patrol state in SQLite (WAL, ``synchronous=FULL``: a save survives a power cut)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.save_error: str | None = None
        try:
            self._db, _, self.incident = open_sqlite(
                self.path, "patrol state", LOST, _prepare, isolation_level=None
            )
        except sqlite3.Error as exc:
            raise PatrolStoreError(f"patrol state {self.path}: {exc}") from exc

    def load(self) -> dict[str, Any] | None:
        try:
            row = self._db.execute("SELECT version, body FROM patrol_state WHERE id = 1").fetchone()
        except sqlite3.Error as exc:
            raise PatrolStoreError(f"patrol state {self.path}: {exc}") from exc
        if row is None:
            return None
        if row[0] != SCHEMA_VERSION:
            raise PatrolStoreError(
                f"patrol state {self.path}: version {row[0]}, this gateway reads {SCHEMA_VERSION}"
            )
        data = json.loads(row[1])
        if not isinstance(data, dict):
            raise PatrolStoreError(f"patrol state {self.path}: not a JSON object")
        return data

    def save(self, state: dict[str, Any]) -> None:
        """Write the state; a failure (a full disk) is logged and kept in ``save_error``.

        Never raises: the engine holds the state in memory and the next
        change saves it whole, so a failed save costs only what a restart
        before the next good one would forget. The gateway alarms meanwhile.
        """
        body = json.dumps(state, sort_keys=True, separators=(",", ":"))
        try:
            self._db.execute(
                "INSERT INTO patrol_state(id, version, saved_ns, body) VALUES (1, ?, ?, ?)"
                " ON CONFLICT(id) DO UPDATE SET version = excluded.version,"
                " saved_ns = excluded.saved_ns, body = excluded.body",
                (SCHEMA_VERSION, int(state.get("saved_ns", 0)), body),
            )
        except sqlite3.Error as exc:
            if self.save_error is None:
                log.error(
                    "patrol state %s: cannot save (%s); kept in memory, saved again"
                    " with the next change",
                    self.path,
                    exc,
                )
            self.save_error = f"patrol state {self.path} cannot be saved: {exc}"
            return
        if self.save_error is not None:
            log.warning("patrol state %s: saved again", self.path)
            self.save_error = None

    def close(self) -> None:
        self._db.close()


def _prepare(db: sqlite3.Connection) -> None:
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    small_wal(db)
    db.execute(
        "CREATE TABLE IF NOT EXISTS patrol_state ("
        " id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL,"
        " saved_ns INTEGER NOT NULL, body TEXT NOT NULL)"
    )
    row = db.execute("SELECT body FROM patrol_state WHERE id = 1").fetchone()
    if row is not None:
        try:
            json.loads(row[0])
        except ValueError as exc:
            raise Damaged(f"the saved state is not JSON: {exc}") from exc
