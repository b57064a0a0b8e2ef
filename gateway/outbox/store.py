"""The outbox's SQLite file, on its one worker thread.

Everything here runs on the worker thread: opening (a damaged file is moved
aside, gateway/sqlite_file.py), one transaction per commit (new rows, moved
cursors, pruning, eviction counters), eviction of the oldest telemetry past
``max_bytes``, making room on a full disk, reading rows back, and
quarantining rows that cannot be decoded.
Methods take what they need as arguments and return what changed
(``Opened``, ``Inserted``, ``Quarantined``); the event loop side is
gateway/outbox/log.py.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import sqlite3
from pathlib import Path
from typing import Literal

import orjson

from gateway.disk_space import SpaceGuard, is_disk_full
from gateway.errors import OutboxError
from gateway.model import Clock
from gateway.outbox.records import (
    ALARM_CODE,
    CODE_KIND,
    KIND_CODE,
    UNDECODABLE,
    Item,
    RecordKind,
    decode,
    decode_row,
)
from gateway.outbox.schema import (
    SCHEMA,
    Commit,
    Inserted,
    Opened,
    Quarantined,
    checkpoint_truncate,
    read_last_seq,
    rollback,
    saved_cursors,
)
from gateway.sqlite_file import open_sqlite

# The outbox's one logger, whichever half logs.
log = logging.getLogger("gateway.outbox")

LOST = (
    "the undelivered samples, events and alarm events it held"
    " (what the saved copy still holds can be read with sqlite3)"
)

# Accounted per row on top of the JSON body: rowid, kind, ts, size and b-tree
# overhead. It keeps ``max_bytes`` close to the real file size.
ROW_OVERHEAD = 40
# On a full disk the budget is cut to this fraction of the live rows, never below MIN_BUDGET.
SHRINK = 0.7
MIN_BUDGET = 64 * 1024
# Rows evicted (and pages vacuumed x 4) per transaction on a full disk.
ROOM_CHUNK = 64
# Eviction frees down to this fraction of max_bytes, so a full outbox does not
# run a DELETE on every flush.
LOW_WATER = 0.9
# The WAL size (4 kB pages) at which a commit checkpoints by itself when no
# checkpointer runs (SQLite's default is 1000).
BACKSTOP_CHECKPOINT_PAGES = 16_384
# One statement inserts a whole batch (a JSON array of [kind, ts_ns, body]):
# sqlite3's executemany releases and retakes the GIL for every row, and each
# retake waits behind the busy event loop, delaying the alarms in the commit
# (docs/bench.md, "Hot-path changes").
_INSERT_BATCH = (
    "INSERT INTO records(kind, ts_ns, size, body)"
    " SELECT value->>0, value->>1, length(CAST(value->2 AS BLOB)) + ?, value->2"
    " FROM json_each(?) ORDER BY key"
)


class OutboxStore:
    """The SQLite connection and what the worker thread knows (see the module docstring).

    ``max_bytes`` is the budget in force: sized against the free space at
    open, cut when the disk fills. Rows evicted to make room outside a commit
    wait in ``_room_evicted`` / ``_room_freed`` for the next commit's report.
    """

    def __init__(
        self,
        path: Path,
        sink_names: list[str],
        *,
        max_bytes: int | None,
        default_max_bytes: int,
        guard: SpaceGuard,
        clock: Clock,
        synchronous: Literal["normal", "full"],
    ) -> None:
        self.path = path
        self.sink_names = sink_names
        self._max_bytes_cfg = max_bytes
        self.max_bytes = default_max_bytes
        self._guard = guard
        self._clock = clock
        self._synchronous = synchronous
        self._db: sqlite3.Connection | None = None  # worker thread only
        self._room_evicted: list[tuple[int, int]] = []
        self._room_freed = 0

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise OutboxError("the outbox is not open")
        return self._db

    def open(self, sink_names: list[str]) -> Opened:
        # isolation_level=None: we issue BEGIN/COMMIT ourselves, one per batch.
        _, opened, incident = open_sqlite(
            self.path,
            "outbox",
            LOST,
            lambda db: self.prepare(db, sink_names),
            now_ns=self._clock.now_ns,
            isolation_level=None,
        )
        return dataclasses.replace(opened, incident=incident)

    def prepare(self, db: sqlite3.Connection, sink_names: list[str]) -> Opened:
        self._db = db
        # Lets a full disk get freed pages back (a no-op on files made before it).
        db.execute("PRAGMA auto_vacuum=INCREMENTAL")
        mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise OutboxError(f"outbox {self.path}: cannot enable WAL mode (got {mode})")
        db.execute(f"PRAGMA synchronous={self._synchronous.upper()}")
        # Keep the WAL from growing without bound after a long backlog is drained.
        db.execute("PRAGMA journal_size_limit=67108864")
        # Checkpoints run on their own connection and thread (checkpoint.py):
        # done by a commit, copying the WAL into the database stalls that
        # commit, and the alarm waiting for it (docs/bench.md). This is only
        # the backstop for when no checkpointer runs; once the reserve is
        # known it is lowered to what the reserve covers (_wal_bound_pages).
        db.execute(f"PRAGMA wal_autocheckpoint={BACKSTOP_CHECKPOINT_PAGES}")
        db.executescript(SCHEMA)
        evicted: dict[str, int] = {}
        quarantined = 0
        db.execute("BEGIN IMMEDIATE")
        try:
            known = saved_cursors(db)
            for stale in set(known) - set(sink_names):
                log.warning("outbox: dropping the cursor of sink %r (no longer configured)", stale)
                db.execute("DELETE FROM cursors WHERE sink = ?", (stale,))
            for name in sink_names:
                if name not in known:
                    db.execute("INSERT INTO cursors(sink, seq) VALUES (?, 0)", (name,))
            for name, value in db.execute("SELECT name, value FROM counters"):
                if name.startswith("evicted."):
                    evicted[name.removeprefix("evicted.")] = int(value)
                elif name == "quarantined":
                    quarantined = int(value)
            db.execute("COMMIT")
        except BaseException:
            rollback(db)
            raise
        cursors = saved_cursors(db)
        last_seq = read_last_seq(db)
        self.prune(min(cursors.values(), default=0))
        rows, size = db.execute("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM records").fetchone()
        in_use = sum(p.stat().st_size for p in (self.path, Path(f"{self.path}-wal")) if p.exists())
        self.max_bytes = self._guard.open(self._max_bytes_cfg, in_use)
        db.execute(f"PRAGMA wal_autocheckpoint={self._wal_bound_pages(db)}")
        return Opened(
            cursors=cursors,
            last_seq=last_seq,
            rows=int(rows),
            bytes=int(size),
            backlog={name: self.count(cursors[name], last_seq) for name in sink_names},
            head_ts={name: self.head(cursors[name]) for name in sink_names},
            evicted=evicted,
            quarantined=quarantined,
        )

    def _wal_bound_pages(self, db: sqlite3.Connection) -> int:
        """How many WAL pages may wait for a checkpoint: half of what the reserve file holds.

        A checkpoint on a full disk grows the database file by the pages the
        WAL added, and an eviction needs room in the WAL: with more waiting
        than the released reserve gives back, neither can run and nothing is
        ever freed (a busy site writes more than the reserve between two runs
        of the checkpointer). Bounded, the released reserve always lets the
        checkpoint through and leaves room for the eviction after it.
        """
        if not self._guard.reserve_bytes:
            return BACKSTOP_CHECKPOINT_PAGES
        page = int(db.execute("PRAGMA page_size").fetchone()[0])
        return max(1, min(BACKSTOP_CHECKPOINT_PAGES, self._guard.reserve_bytes // 2 // page))

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def insert(self, job: Commit) -> Inserted:
        """Commit (``commit``), making room first when the free space is low.

        On a full disk: make room and retry once.
        """
        if self._guard.due():
            why = self._guard.low()
            if why is not None:
                self.make_room(why, failed=False)
            else:
                self._guard.recovered()
        try:
            res = self.commit(job, job.bytes_before - self._room_freed)
        except sqlite3.OperationalError as exc:
            if not is_disk_full(exc):
                raise
            self.make_room(str(exc), failed=True)
            # If this fails too, the batch waits in memory and the evictions
            # are reported with the next commit that succeeds.
            res = self.commit(job, job.bytes_before - self._room_freed)
        evicted, self._room_evicted, self._room_freed = self._room_evicted, [], 0
        if not evicted:
            return res
        db = self._conn()
        return dataclasses.replace(
            res,
            evicted=evicted + res.evicted,
            heads={s: self.head(c) for s, c in saved_cursors(db).items()},
        )

    def make_room(self, why: str, *, failed: bool) -> None:
        """The disk is full: cut the budget, evict the oldest telemetry, hand pages back.

        Small transactions of their own, a checkpoint after each: every one
        needs room in the WAL, and one big DELETE needed more than a full
        disk had. The evicted rows and bytes wait in ``_room_evicted`` /
        ``_room_freed`` for the next commit's report.
        """
        db = self._conn()
        self._guard.went_full(why, failed=failed)
        size = int(db.execute("SELECT COALESCE(SUM(size), 0) FROM records").fetchone()[0])
        budget = max(MIN_BUDGET, int(size * SHRINK))
        if self._guard.primary and budget < self.max_bytes:
            log.warning(
                "outbox %s: telemetry budget cut to %d kB (the disk is full)",
                self.path,
                budget // 1024,
            )
            self.max_bytes = budget
        while size > self.max_bytes * LOW_WATER:
            db.execute("BEGIN IMMEDIATE")
            try:
                evicted, freed = self.evict(size, limit=ROOM_CHUNK)
                self.save_evictions(evicted, {})
                db.execute("COMMIT")
            except sqlite3.Error as exc:
                rollback(db)
                log.error("outbox %s: cannot even evict on the full disk: %s", self.path, exc)
                break
            if not evicted:
                break
            self._room_evicted += evicted
            self._room_freed += freed
            size -= freed
            try:
                checkpoint_truncate(db)
            except sqlite3.Error as exc:
                # The WAL's pages need room in the database file: nothing more to do now.
                log.error("outbox %s: cannot checkpoint on the full disk: %s", self.path, exc)
                break
        # Give the freed pages back to the file system (the other files need them).
        with contextlib.suppress(sqlite3.Error):
            for _ in range(256):
                if not db.execute("PRAGMA freelist_count").fetchone()[0]:
                    break
                db.execute(f"PRAGMA incremental_vacuum({ROOM_CHUNK // 4})").fetchall()
                checkpoint_truncate(db)

    def save_evictions(self, evicted: list[tuple[int, int]], unsaved: dict[str, int]) -> None:
        """Add evicted rows (and earlier unsaved evictions) to the counters (inside a txn)."""
        to_save = dict(unsaved)
        for _, code in evicted:
            kind_name = CODE_KIND[code].value
            to_save[kind_name] = to_save.get(kind_name, 0) + 1
        for kind_name, n in to_save.items():
            self._conn().execute(
                "INSERT INTO counters(name, value) VALUES (?, ?) "
                "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
                (f"evicted.{kind_name}", n),
            )

    def commit(self, job: Commit, bytes_before: int) -> Inserted:
        """One transaction: the new rows, moved cursors, pruning, eviction counters."""
        batch, cursors, prune_upto, unsaved = job.batch, job.cursors, job.prune_upto, job.unsaved
        db = self._conn()
        payload = orjson.dumps([[KIND_CODE[k], ts, item.to_json_dict()] for k, ts, item in batch])
        db.execute("BEGIN IMMEDIATE")
        try:
            before = read_last_seq(db)
            if batch:
                db.execute(_INSERT_BATCH, (ROW_OVERHEAD, payload))
            added = db.execute(
                "SELECT COALESCE(SUM(size), 0) FROM records WHERE seq > ?", (before,)
            ).fetchone()[0]
            size = bytes_before + int(added)
            if cursors:
                db.executemany(
                    "UPDATE cursors SET seq = ? WHERE sink = ?",
                    [(q, s) for s, q in cursors.items()],
                )
            pruned_rows, pruned_bytes = self.prune(prune_upto) if cursors else (0, 0)
            size -= pruned_bytes
            evicted: list[tuple[int, int]] = []
            if size > self.max_bytes:
                evicted, freed = self.evict(size)
                size -= freed
            self.save_evictions(evicted, unsaved)
            db.execute("COMMIT")
        except BaseException:
            rollback(db)
            raise
        last = before + len(batch)
        heads = {}
        if evicted:
            # The oldest rows went: where each sink now starts.
            heads = {s: self.head(c) for s, c in saved_cursors(db).items()}
        elif batch:
            heads = {s: batch[0][1] for s in self.sink_names}
        return Inserted(
            last_seq=last,
            bytes=size,
            pruned_rows=pruned_rows,
            evicted=evicted,
            heads=heads,
        )

    def evict(self, size: int, limit: int = 0) -> tuple[list[tuple[int, int]], int]:
        """Delete the oldest telemetry until below the low-water mark (inside a txn).

        At most ``limit`` rows when given. Returns the (seq, kind code) of
        every deleted row and the bytes freed.
        """
        db = self._conn()
        out: list[tuple[int, int]] = []
        freed = 0
        target = int(self.max_bytes * LOW_WATER)
        # Rows are ~200 B-2 kB: chunks are sized to the excess by the size of the
        # oldest rows, so a small budget is not overshot (and emptied) by a chunk.
        avg = db.execute(
            "SELECT AVG(size) FROM"
            " (SELECT size FROM records WHERE kind != ? ORDER BY seq LIMIT 64)",
            (ALARM_CODE,),
        ).fetchone()[0]
        while size - freed > target:
            chunk = max(16, min(5000, int((size - freed - target) / (avg or 200)) + 1))
            if limit:
                chunk = min(chunk, limit - len(out))
                if chunk <= 0:
                    break
            deleted = db.execute(
                "DELETE FROM records WHERE seq IN ("
                " SELECT seq FROM records WHERE kind != ? ORDER BY seq LIMIT ?"
                ") RETURNING seq, kind, size",
                (ALARM_CODE, chunk),
            ).fetchall()
            if not deleted:
                break  # only alarms left: they are kept even past max_bytes
            for seq, code, row_size in deleted:
                out.append((int(seq), int(code)))
                freed += int(row_size)
        return out, freed

    def read(
        self, cur: int, limit: int, kinds: frozenset[RecordKind] | None, cached_from: int
    ) -> tuple[list[tuple[int, RecordKind, int, Item | None]], int | None, list[Quarantined]]:
        """Rows after ``cur``; rows from ``cached_from`` on come without their item.

        Undecodable rows are quarantined and returned apart.
        """
        db = self._conn()
        scanned: int | None = None
        out: list[tuple[int, RecordKind, int, Item | None]] = []
        bad: list[tuple[int, str]] = []
        # Rows of the tail need no body (saves copying ~1 kB a row out of SQLite).
        for seq, code, ts, body in db.execute(
            "SELECT seq, kind, ts_ns, CASE WHEN seq >= ? THEN NULL ELSE body END"
            " FROM records WHERE seq > ? ORDER BY seq LIMIT ?",
            (cached_from, cur, limit),
        ).fetchall():
            scanned = seq
            try:
                kind = CODE_KIND[code]
                if kinds is not None and kind not in kinds:
                    continue
                item = None if body is None else decode(kind, body)
            except UNDECODABLE as exc:
                bad.append((seq, f"{type(exc).__name__}: {exc}"))
                continue
            out.append((seq, kind, ts, item))
        return out, scanned, self.quarantine(bad)

    def read_bodies(
        self, seqs: list[int]
    ) -> tuple[list[tuple[int, RecordKind, int, Item]], list[Quarantined]]:
        db = self._conn()
        out = []
        bad: list[tuple[int, str]] = []
        for seq in seqs:
            row = db.execute(
                "SELECT kind, ts_ns, body FROM records WHERE seq = ?", (seq,)
            ).fetchone()
            if row is not None:
                try:
                    kind, item = decode_row(row[0], row[2])
                except UNDECODABLE as exc:
                    bad.append((seq, f"{type(exc).__name__}: {exc}"))
                    continue
                out.append((seq, kind, int(row[1]), item))
        return out, self.quarantine(bad)

    def quarantine(self, bad: list[tuple[int, str]]) -> list[Quarantined]:
        """Move undecodable rows (seq, error) to the quarantine table, in one transaction."""
        if not bad:
            return []
        db = self._conn()
        out = []
        db.execute("BEGIN IMMEDIATE")
        try:
            for seq, error in bad:
                row = db.execute(
                    "DELETE FROM records WHERE seq = ? RETURNING kind, ts_ns, size, body", (seq,)
                ).fetchone()
                if row is None:
                    continue
                kind, ts, size, body = row
                db.execute(
                    "INSERT OR REPLACE INTO quarantine(seq, kind, ts_ns, body, error)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (seq, kind, ts, body, error[:500]),
                )
                out.append(Quarantined(seq=seq, size=int(size), error=error))
            db.execute(
                "INSERT INTO counters(name, value) VALUES ('quarantined', ?) "
                "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
                (len(out),),
            )
            db.execute("COMMIT")
        except BaseException:
            rollback(db)
            raise
        return out

    def count(self, after: int, upto: int) -> int:
        return int(
            self._conn()
            .execute("SELECT COUNT(*) FROM records WHERE seq > ? AND seq <= ?", (after, upto))
            .fetchone()[0]
        )

    def head(self, cursor: int) -> int | None:
        row = (
            self._conn()
            .execute("SELECT ts_ns FROM records WHERE seq > ? ORDER BY seq LIMIT 1", (cursor,))
            .fetchone()
        )
        return int(row[0]) if row else None

    def prune(self, upto: int) -> tuple[int, int]:
        """Delete rows every sink has delivered (seq <= ``upto``); return (rows, bytes)."""
        db = self._conn()
        n, size = db.execute(
            "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM records WHERE seq <= ?", (upto,)
        ).fetchone()
        if n:
            db.execute("DELETE FROM records WHERE seq <= ?", (upto,))
        return int(n), int(size)
