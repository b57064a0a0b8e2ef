"""Durable alerting state in one SQLite file: alarms, pending escalations, notification queue.

It also holds the alarm journal: every alarm transition is written to it in
the transaction that saves the alarm, and stays there until the outboxes
(the main one and the alarm lane's) have committed it. A crash between the
two commits therefore never leaves a saved alarm that is not, or will not
be, published: on start the gateway appends what the journal still holds.

One file, so the alarm state, the escalation step and the notifications it
queued are written in one transaction: after a crash either all of them
happened or none did, which is what keeps a restart from firing twice or
forgetting an escalation. Notifications carry a unique ``dedupe`` key for
the same reason, and a send is recorded before it starts (state ``sending``,
attempts + 1): a row still ``sending`` at the next start may have reached
its channel, so it is sent again marked ``possible_duplicate``. WAL mode
lets ``gateway alarms list`` read while the gateway writes. A damaged file
is moved aside and a fresh one started (gateway/sqlite_file.py);
``incident`` says so, and the gateway alarms.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.errors import AlarmError
from gateway.sqlite_file import FileIncident, open_sqlite, small_wal

LOST = (
    "the state of every alarm (acknowledgements, latches, shelves, out of service),"
    " pending escalations, queued notifications and the journal of alarm transitions"
    " not yet in the outboxes; alarms whose condition is still present are raised"
    " again by the next readings"
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS alarms (
    alarm_id TEXT PRIMARY KEY,
    doc TEXT NOT NULL,
    changed_ns INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS escalations (
    alarm_id TEXT NOT NULL,
    route TEXT NOT NULL,
    level INTEGER NOT NULL,
    due_ns INTEGER NOT NULL,
    raised_ns INTEGER NOT NULL,
    repeats INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (alarm_id, route)
);
CREATE TABLE IF NOT EXISTS notifications (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    dedupe TEXT NOT NULL UNIQUE,
    channel TEXT NOT NULL,
    recipients TEXT NOT NULL,
    item TEXT NOT NULL,
    created_ns INTEGER NOT NULL,
    due_ns INTEGER NOT NULL,
    next_ns INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    state TEXT NOT NULL DEFAULT 'pending',
    last_error TEXT,
    sent_ns INTEGER,
    possible_duplicate INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS notifications_pending ON notifications (state, next_ns);
CREATE INDEX IF NOT EXISTS notifications_sent ON notifications (channel, recipients, sent_ns);
CREATE TABLE IF NOT EXISTS alarm_journal (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    event TEXT NOT NULL
);
"""


@dataclass(frozen=True)
class Escalation:
    alarm_id: str
    route: str
    level: int
    due_ns: int
    raised_ns: int
    repeats: int


@dataclass(frozen=True)
class QueuedNotification:
    id: int
    channel: str
    recipients: tuple[str, ...]
    item: dict[str, Any]
    created_ns: int
    due_ns: int
    attempts: int
    possible_duplicate: bool = False


class AlertStore:
    """The SQLite file; every method is one short statement or one transaction."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        # Set when the file was damaged or emptied and replaced by a fresh one.
        self.incident: FileIncident | None = None
        # The notifier and the engine share one event loop thread; SMTP runs in a
        # worker thread but never touches the database.
        try:
            if self.path == ":memory:":
                self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
                _prepare(self.db)
            else:
                self.db, _, self.incident = open_sqlite(
                    Path(self.path),
                    "alarm state",
                    LOST,
                    _prepare,
                    isolation_level=None,
                    check_same_thread=False,
                )
        except sqlite3.Error as exc:
            raise AlarmError(f"cannot open alarm state database {self.path}: {exc}") from exc
        self._depth = 0

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Nestable: only the outermost block commits."""
        if self._depth == 0:
            self.db.execute("BEGIN IMMEDIATE")
        self._depth += 1
        try:
            yield
        except BaseException:
            self._depth -= 1
            if self._depth == 0:
                self.db.execute("ROLLBACK")
            raise
        self._depth -= 1
        if self._depth == 0:
            self.db.execute("COMMIT")

    def shift_timers(self, step_ns: int, never_ns: int) -> None:
        """Move every pending timer by ``step_ns`` (the wall clock stepped); ``never_ns`` stays."""
        with self.transaction():
            self.db.execute(
                "UPDATE escalations SET due_ns = due_ns + ? WHERE due_ns < ?", (step_ns, never_ns)
            )
            self.db.execute(
                "UPDATE notifications SET created_ns = created_ns + ?, due_ns = due_ns + ?,"
                " next_ns = next_ns + ? WHERE state = 'pending'",
                (step_ns, step_ns, step_ns),
            )

    # ------------------------------------------------------------------ alarms

    def save_alarms(self, docs: list[dict[str, Any]]) -> None:
        with self.transaction():
            self.db.executemany(
                "INSERT INTO alarms (alarm_id, doc, changed_ns) VALUES (?, ?, ?)"
                " ON CONFLICT(alarm_id) DO UPDATE SET"
                " doc=excluded.doc, changed_ns=excluded.changed_ns",
                [(d["spec"]["alarm_id"], json.dumps(d), d["changed_ns"]) for d in docs],
            )

    def load_alarms(self) -> list[dict[str, Any]]:
        rows = self.db.execute("SELECT doc FROM alarms ORDER BY alarm_id").fetchall()
        return [json.loads(r[0]) for r in rows]

    def get_meta(self, key: str) -> Any:
        row = self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])

    def set_meta(self, key: str, value: Any) -> None:
        self.db.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?)"
            " ON CONFLICT(key) DO UPDATE SET value=excluded.value",
            (key, json.dumps(value)),
        )

    # ------------------------------------------------------------------ alarm journal

    def journal(self, events: list[dict[str, Any]]) -> None:
        """Record alarm transitions not yet in the outbox (call inside the state transaction)."""
        self.db.executemany(
            "INSERT INTO alarm_journal (event) VALUES (?)", [(json.dumps(e),) for e in events]
        )

    def journaled(self) -> list[dict[str, Any]]:
        """The transitions the outbox has not confirmed yet, oldest first."""
        rows = self.db.execute("SELECT event FROM alarm_journal ORDER BY id").fetchall()
        return [json.loads(r[0]) for r in rows]

    def journal_head(self) -> int:
        """The id of the newest journaled transition (0 when the journal is empty)."""
        try:
            row = self.db.execute("SELECT MAX(id) FROM alarm_journal").fetchone()
        except sqlite3.Error as exc:
            raise AlarmError(f"alarm journal in {self.path}: {exc}") from exc
        return int(row[0] or 0)

    def confirm_journal(self, upto: int) -> None:
        """The outbox committed every transition up to ``upto``: forget them."""
        try:
            self.db.execute("DELETE FROM alarm_journal WHERE id <= ?", (upto,))
        except sqlite3.Error as exc:
            raise AlarmError(f"alarm journal in {self.path}: {exc}") from exc

    # ------------------------------------------------------------------ escalations

    def put_escalation(self, e: Escalation) -> None:
        self.db.execute(
            "INSERT INTO escalations (alarm_id, route, level, due_ns, raised_ns, repeats)"
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(alarm_id, route) DO UPDATE SET"
            " level=excluded.level, due_ns=excluded.due_ns, raised_ns=excluded.raised_ns,"
            " repeats=excluded.repeats",
            (e.alarm_id, e.route, e.level, e.due_ns, e.raised_ns, e.repeats),
        )

    def drop_escalations(self, alarm_id: str, route: str | None = None) -> int:
        if route is None:
            cur = self.db.execute("DELETE FROM escalations WHERE alarm_id=?", (alarm_id,))
        else:
            cur = self.db.execute(
                "DELETE FROM escalations WHERE alarm_id=? AND route=?", (alarm_id, route)
            )
        return cur.rowcount

    def escalations(self, due_before_ns: int | None = None) -> list[Escalation]:
        if due_before_ns is None:
            rows = self.db.execute(
                "SELECT alarm_id, route, level, due_ns, raised_ns, repeats FROM escalations"
                " ORDER BY due_ns"
            ).fetchall()
        else:
            rows = self.db.execute(
                "SELECT alarm_id, route, level, due_ns, raised_ns, repeats FROM escalations"
                " WHERE due_ns <= ? ORDER BY due_ns",
                (due_before_ns,),
            ).fetchall()
        return [Escalation(*r) for r in rows]

    def next_escalation_ns(self) -> int | None:
        row = self.db.execute("SELECT MIN(due_ns) FROM escalations").fetchone()
        return None if row is None or row[0] is None else int(row[0])

    # ------------------------------------------------------------------ notifications

    def enqueue(
        self,
        dedupe: str,
        channel: str,
        recipients: tuple[str, ...],
        item: dict[str, Any],
        created_ns: int,
        due_ns: int,
    ) -> bool:
        """Queue one notification; False when the same one was queued before (never twice)."""
        cur = self.db.execute(
            "INSERT OR IGNORE INTO notifications"
            " (dedupe, channel, recipients, item, created_ns, due_ns, next_ns)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (dedupe, channel, json.dumps(list(recipients)), json.dumps(item), created_ns, due_ns,
             due_ns),
        )  # fmt: skip
        return cur.rowcount == 1

    def last_sent_ns(self, channel: str, recipients: tuple[str, ...]) -> int | None:
        """When a message last went to these recipients on this channel (None: never)."""
        row = self.db.execute(
            "SELECT MAX(sent_ns) FROM notifications WHERE channel=? AND recipients=?",
            (channel, json.dumps(list(recipients))),
        ).fetchone()
        return None if row is None or row[0] is None else int(row[0])

    def pending(self, limit: int = 1000) -> list[QueuedNotification]:
        rows = self.db.execute(
            "SELECT id, channel, recipients, item, created_ns, due_ns, attempts,"
            " possible_duplicate FROM notifications WHERE state='pending' ORDER BY id LIMIT ?",
            (limit,),
        ).fetchall()
        return [
            QueuedNotification(
                r[0], r[1], tuple(json.loads(r[2])), json.loads(r[3]), r[4], r[5], r[6], bool(r[7])
            )
            for r in rows
        ]

    def next_attempt(self) -> dict[tuple[str, tuple[str, ...]], int]:
        """Per (channel, recipients): the time the group may be tried again."""
        rows = self.db.execute(
            "SELECT channel, recipients, MAX(next_ns) FROM notifications WHERE state='pending'"
            " GROUP BY channel, recipients"
        ).fetchall()
        return {(r[0], tuple(json.loads(r[1]))): int(r[2]) for r in rows}

    def mark_sending(self, ids: list[int]) -> None:
        """Record an attempt before it starts (committed at once: see the module docstring)."""
        self.db.executemany(
            "UPDATE notifications SET state='sending', attempts=attempts+1 WHERE id=?",
            [(i,) for i in ids],
        )

    def mark_sent(self, ids: list[int], ts_ns: int) -> None:
        self.db.executemany(
            "UPDATE notifications SET state='sent', sent_ns=? WHERE id=?",
            [(ts_ns, i) for i in ids],
        )

    def mark_failed(
        self, ids: list[int], next_ns: int, error: str, maybe_sent: bool = False
    ) -> None:
        """Back to the queue for a retry at ``next_ns``; ``maybe_sent``: it may have arrived."""
        self.db.executemany(
            "UPDATE notifications SET state='pending', next_ns=?, last_error=?,"
            " possible_duplicate=MAX(possible_duplicate, ?) WHERE id=?",
            [(next_ns, error[:500], int(maybe_sent), i) for i in ids],
        )

    def mark_dead(self, ids: list[int], error: str) -> None:
        self.db.executemany(
            "UPDATE notifications SET state='dead', last_error=? WHERE id=?",
            [(error[:500], i) for i in ids],
        )

    def counts(self) -> dict[str, int]:
        rows = self.db.execute(
            "SELECT state, COUNT(*) FROM notifications GROUP BY state"
        ).fetchall()
        return {r[0]: int(r[1]) for r in rows}

    def notifications(self, state: str | None = None) -> list[dict[str, Any]]:
        sql = (
            "SELECT id, channel, recipients, item, attempts, state, last_error, sent_ns"
            " FROM notifications"
        )
        args: tuple[Any, ...] = ()
        if state is not None:
            sql += " WHERE state=?"
            args = (state,)
        rows = self.db.execute(sql + " ORDER BY id", args).fetchall()
        return [
            {
                "id": r[0],
                "channel": r[1],
                "recipients": json.loads(r[2]),
                "item": json.loads(r[3]),
                "attempts": r[4],
                "state": r[5],
                "last_error": r[6],
                "sent_ns": r[7],
            }
            for r in rows
        ]


def _prepare(db: sqlite3.Connection) -> None:
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("PRAGMA busy_timeout=5000")
    small_wal(db)
    db.executescript(_SCHEMA)
    cols = {r[1] for r in db.execute("PRAGMA table_info(notifications)")}
    if "possible_duplicate" not in cols:  # a state file of an older version
        db.execute(
            "ALTER TABLE notifications ADD COLUMN possible_duplicate INTEGER NOT NULL DEFAULT 0"
        )
    # Sends cut short by a crash or a stop that could not wait: maybe sent.
    db.execute(
        "UPDATE notifications SET state='pending', possible_duplicate=1 WHERE state='sending'"
    )


def read_alarms(path: str | Path) -> list[dict[str, Any]]:
    """The stored alarms, read-only, for ``gateway alarms list`` while the gateway runs."""
    p = Path(path)
    if not p.exists():
        raise AlarmError(f"no alarm state database at {p}")
    try:
        db = sqlite3.connect(f"file:{p}?mode=ro", uri=True)
        try:
            rows = db.execute("SELECT doc FROM alarms ORDER BY alarm_id").fetchall()
        finally:
            db.close()
    except sqlite3.Error as exc:
        raise AlarmError(f"cannot read alarm state database {p}: {exc}") from exc
    return [json.loads(r[0]) for r in rows]
