"""Where the patrol engine keeps its state between restarts: a small SQLite file.

The state is one JSON document (open rounds, last tap per checkpoint, the
last complete round, the overdue gaps already raised, reader health). It is
small (a few kB) and changes a few times an hour, so it is rewritten whole
in one transaction on every change: simpler than row-level updates and
atomic, so a ``kill -9`` leaves the previous or the new state, never a mix.
``MemoryPatrolStore`` is the same protocol for tests and for ``--no-state``.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any, Protocol

from gateway.errors import GatewayError

SCHEMA_VERSION = 1


class PatrolStoreError(GatewayError):
    """The patrol state file cannot be opened, read or written."""


class PatrolStore(Protocol):
    def load(self) -> dict[str, Any] | None: ...

    def save(self, state: dict[str, Any]) -> None: ...


class MemoryPatrolStore:
    """Keeps the state in memory (a JSON round trip, so it proves the state serialises)."""

    def __init__(self) -> None:
        self.saved: str | None = None
        self.saves = 0

    def load(self) -> dict[str, Any] | None:
        return None if self.saved is None else dict(json.loads(self.saved))

    def save(self, state: dict[str, Any]) -> None:
        self.saved = json.dumps(state, sort_keys=True)
        self.saves += 1


class SqlitePatrolStore:
    """The patrol state in SQLite (WAL, ``synchronous=FULL``: a save survives a power cut)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS patrol_state ("
                " id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL,"
                " saved_ns INTEGER NOT NULL, body TEXT NOT NULL)"
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
        body = json.dumps(state, sort_keys=True, separators=(",", ":"))
        try:
            self._db.execute(
                "INSERT INTO patrol_state(id, version, saved_ns, body) VALUES (1, ?, ?, ?)"
                " ON CONFLICT(id) DO UPDATE SET version = excluded.version,"
                " saved_ns = excluded.saved_ns, body = excluded.body",
                (SCHEMA_VERSION, int(state.get("saved_ns", 0)), body),
            )
        except sqlite3.Error as exc:
            raise PatrolStoreError(f"patrol state {self.path}: cannot save: {exc}") from exc

    def close(self) -> None:
        self._db.close()
