"""The durable outbox: an append-only SQLite log with one cursor per sink.

Everything a sink must deliver (samples, alarm events, generic events) is
appended here first. Each sink reads from its own cursor and advances it only
after the far side acknowledged, so a sink that is down falls behind without
holding the others back, and delivery resumes from the cursors after a
restart. Rows every sink has delivered are pruned. Past ``max_bytes`` of live
rows, telemetry (samples and generic events) is evicted oldest-first and every
eviction is counted (persistently); alarm events are never evicted.

Durability. The database runs in WAL mode. A transaction is atomic whatever
``synchronous`` says, so ``kill -9`` at any moment leaves either the whole
batch or none of it, never a torn row. With ``synchronous=NORMAL`` a commit is
written to the WAL file (the OS page cache) but not fsynced: it survives the
process being killed, not a power cut. ``FULL`` (the default) fsyncs the WAL
on every commit, so it survives a power cut too; because commits are batched
(one per flush interval, one per sink acknowledgement) the fsync cost is paid
a few dozen times a second, not per sample.

Threading. SQLite calls block, and an fsync on an SD card can take tens of
milliseconds, so every database call runs on ONE dedicated worker thread
(a single-thread executor owns the connection; that also serialises access
without locks). ``append_*`` never touches the database: it adds to a bounded
in-memory batch that ``run_flusher`` commits every ``flush_interval_s``;
``await flush()`` returns once everything appended so far is committed (a
caller that must know a record is durable awaits it). If the batch is full
because the disk stalls, the oldest pending telemetry is dropped and counted
as evicted, exactly like telemetry past ``max_bytes``; alarms are always kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal, TypeVar

import orjson

from gateway.errors import OutboxError
from gateway.model import AlarmEvent, Clock, Sample, SystemClock

log = logging.getLogger(__name__)

T = TypeVar("T")

# Accounted per row on top of the JSON body: rowid, kind, ts, size and b-tree
# overhead. It keeps ``max_bytes`` close to the real file size.
ROW_OVERHEAD = 40
# Eviction frees down to this fraction of max_bytes, so a full outbox does not
# run a DELETE on every flush.
LOW_WATER = 0.9
# Decoded items kept for the sinks' reads (see Outbox._items): a few seconds of
# a large site's samples, about 10-30 MB at 40 points a sample.
ITEM_CACHE = 10_000


class RecordKind(StrEnum):
    SAMPLE = "sample"
    ALARM = "alarm"
    EVENT = "event"


_KIND_CODE: dict[RecordKind, int] = {RecordKind.SAMPLE: 1, RecordKind.ALARM: 2, RecordKind.EVENT: 3}
_CODE_KIND = {v: k for k, v in _KIND_CODE.items()}
_ALARM_CODE = _KIND_CODE[RecordKind.ALARM]


@dataclass(slots=True)
class Event:
    """A generic gateway or patrol event (not a reading, not an alarm transition).

    ``kind`` names it (``patrol.round_late``, ``gateway.started``...);
    ``data`` holds its JSON-able details. MQTT publishes it on the site's
    events topic; InfluxDB writes it to ``measurement`` with tags site, kind,
    device (if any) and ``tags``, and one field per scalar in ``data``.
    """

    kind: str
    ts_ns: int
    data: dict[str, Any] = field(default_factory=dict)
    device: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    measurement: str = "events"

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "ts_ns": self.ts_ns,
            "data": self.data,
            "device": self.device,
            "tags": self.tags,
            "measurement": self.measurement,
        }

    @classmethod
    def from_json_dict(cls, d: dict[str, Any]) -> Event:
        return cls(
            kind=d["kind"],
            ts_ns=int(d["ts_ns"]),
            data=dict(d.get("data", {})),
            device=d.get("device"),
            tags=dict(d.get("tags", {})),
            measurement=d.get("measurement", "events"),
        )


Item = Sample | AlarmEvent | Event


@dataclass(slots=True, frozen=True)
class Record:
    """One outbox row as a sink sees it: its sequence number and the item."""

    seq: int
    kind: RecordKind
    ts_ns: int
    item: Item


@dataclass(slots=True, frozen=True)
class SinkBacklog:
    """Where one sink stands: its cursor, what is left, and how old the oldest is."""

    cursor: int
    backlog: int
    oldest_ts_ns: int | None
    oldest_age_s: float


@dataclass(slots=True, frozen=True)
class OutboxStats:
    """Health figures: the gateway exports them and alarms when it falls behind."""

    rows: int
    bytes: int
    max_bytes: int
    file_bytes: int
    last_seq: int
    pending: int
    evicted: int
    evicted_by_kind: dict[str, int]
    sinks: dict[str, SinkBacklog]

    @property
    def oldest_undelivered_age_s(self) -> float:
        return max((s.oldest_age_s for s in self.sinks.values()), default=0.0)

    @property
    def max_backlog(self) -> int:
        return max((s.backlog for s in self.sinks.values()), default=0)


def _kind_of(item: Item) -> RecordKind:
    if isinstance(item, Sample):
        return RecordKind.SAMPLE
    if isinstance(item, AlarmEvent):
        return RecordKind.ALARM
    return RecordKind.EVENT


def _encode(item: Item) -> bytes:
    return orjson.dumps(item.to_json_dict())


def _decode(kind: RecordKind, body: str | bytes) -> Item:
    # Older outboxes hold TEXT bodies, newer ones BLOBs: orjson reads both.
    d = orjson.loads(body)
    if kind is RecordKind.SAMPLE:
        return Sample.from_json_dict(d)
    if kind is RecordKind.ALARM:
        return AlarmEvent.from_json_dict(d)
    return Event.from_json_dict(d)


_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    seq   INTEGER PRIMARY KEY AUTOINCREMENT,  -- AUTOINCREMENT: a seq is never reused after pruning
    kind  INTEGER NOT NULL,
    ts_ns INTEGER NOT NULL,
    size  INTEGER NOT NULL,
    body  TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS cursors (sink TEXT PRIMARY KEY, seq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


class Outbox:
    """Append-only durable log with per-sink cursors (see the module docstring).

    Use as ``async with Outbox(path, ["mqtt", "influx"]) as ob:`` and run
    ``ob.run_flusher()`` as a task. A sink name not seen before starts at
    the oldest retained row; cursors of sinks no longer listed are dropped so
    they cannot pin the log forever.
    """

    def __init__(
        self,
        path: str | Path,
        sinks: Sequence[str],
        *,
        max_bytes: int = 256 * 1024 * 1024,
        clock: Clock | None = None,
        synchronous: Literal["normal", "full"] = "full",
        flush_interval_s: float = 0.05,
        max_pending: int = 100_000,
        lanes: Mapping[str, Iterable[RecordKind]] | None = None,
    ) -> None:
        if len(set(sinks)) != len(sinks):
            raise OutboxError(f"duplicate sink names: {list(sinks)}")
        self.path = Path(path)
        self.sink_names = list(sinks)
        # A lane is a sink that delivers only some kinds (the MQTT alarm lane:
        # alarms only, on their own connection, so an alarm never waits behind
        # a telemetry backlog). Its cursor still moves over every row it
        # scanned, so it never holds pruning back.
        self._lanes: dict[str, frozenset[int]] = {
            name: frozenset(_KIND_CODE[k] for k in kinds) for name, kinds in (lanes or {}).items()
        }
        self.max_bytes = max_bytes
        self._clock = clock or SystemClock()
        self._synchronous = synchronous
        self._flush_interval_s = flush_interval_s
        self._max_pending = max_pending
        self._executor: ThreadPoolExecutor | None = None
        self._db: sqlite3.Connection | None = None
        # In-memory batch waiting for the next commit: (kind, ts_ns, item). Items
        # are encoded on the worker thread, off the event loop.
        self._pending: deque[tuple[RecordKind, int, Item]] = deque()
        # Set by ack(): a cursor moved and is not yet written (see _ack_sync).
        self._cursors_dirty = False
        self._has_pending = asyncio.Event()
        # Set when an alarm is appended: it is committed at once, not at the next interval.
        self._urgent = asyncio.Event()
        # Worker thread only: the records of recently committed rows by seq, so
        # sinks reading them moments later skip SQLite and the JSON decode
        # (profiling: reading rows back was the outbox's main cost). One run of
        # consecutive seqs (holes only where rows were evicted); dropped once
        # every sink has read past them; bounded, so a sink that is down costs
        # no memory (it reads from SQLite).
        self._items: OrderedDict[int, Record] = OrderedDict()
        self._read_upto: dict[str, int] = {}
        self._flush_lock = asyncio.Lock()
        self._new_data: dict[str, asyncio.Event] = {s: asyncio.Event() for s in sinks}
        # Mirrors of database state, kept by the worker thread, read by stats().
        self._rows = 0
        self._bytes = 0
        self._last_seq = 0
        self._cursors: dict[str, int] = {}
        # Worker thread only: rows evicted in the running transaction.
        self._evicted_seqs: set[int] = set()
        # Worker thread only: sinks whose cursor moved since the last commit.
        self._unsaved_cursors: set[str] = set()
        self._backlog: dict[str, int] = {}
        self._head_ts: dict[str, int | None] = {}
        self._evicted: dict[str, int] = {k.value: 0 for k in RecordKind}
        # Evictions from the in-memory batch, written to the counters table at the next commit.
        self._evicted_unsaved: dict[str, int] = {}
        self._evict_logged = False

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> Outbox:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def open(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="outbox")
        try:
            await self._call(self._open_sync)
        except BaseException:
            self._executor.shutdown(wait=False)
            self._executor = None
            raise

    async def aclose(self) -> None:
        if self._executor is None:
            return
        try:
            await self.flush()
        finally:
            await self._call(self._close_sync)
            self._executor.shutdown(wait=True)
            self._executor = None

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        if self._executor is None:
            raise OutboxError("the outbox is not open")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, fn, *args)
        except sqlite3.Error as exc:
            raise OutboxError(f"outbox {self.path}: {exc}") from exc

    # ------------------------------------------------------------------ appending

    def append(self, item: Item) -> None:
        """Queue one item for the next commit. Never blocks; see the module docstring."""
        kind = _kind_of(item)
        if len(self._pending) >= self._max_pending:
            self._drop_pending_telemetry()
        self._pending.append((kind, item.ts_ns, item))
        self._has_pending.set()
        if kind is RecordKind.ALARM:
            self._urgent.set()

    def append_sample(self, sample: Sample) -> None:
        self.append(sample)

    def append_alarm(self, event: AlarmEvent) -> None:
        self.append(event)

    def append_event(self, event: Event) -> None:
        self.append(event)

    def _drop_pending_telemetry(self) -> None:
        for i, (kind, _, _) in enumerate(self._pending):
            if kind is not RecordKind.ALARM:
                del self._pending[i]
                self._count_eviction(kind, 1)
                self._evicted_unsaved[kind.value] = self._evicted_unsaved.get(kind.value, 0) + 1
                return
        # Only alarms pending: keep them all (they are rare and never dropped).

    def _count_eviction(self, kind: RecordKind, n: int) -> None:
        self._evicted[kind.value] += n
        if not self._evict_logged:
            # One line per overflow episode, not per row; stats() has the count.
            log.warning(
                "outbox %s is full: evicting the oldest undelivered telemetry (alarms are kept)",
                self.path,
            )
            self._evict_logged = True

    async def flush(self) -> int:
        """Commit everything appended so far; return the last committed seq."""
        async with self._flush_lock:
            if not self._pending and not self._cursors_dirty:
                return self._last_seq
            batch = list(self._pending)
            self._pending.clear()
            self._has_pending.clear()
            self._cursors_dirty = False
            unsaved, self._evicted_unsaved = self._evicted_unsaved, {}
            try:
                last = await self._call(self._insert_sync, batch, unsaved)
            except BaseException:
                # Put the batch back in front so nothing is lost; the flusher retries.
                self._pending.extendleft(reversed(batch))
                self._cursors_dirty = True
                for kind_name, n in unsaved.items():
                    self._evicted_unsaved[kind_name] = self._evicted_unsaved.get(kind_name, 0) + n
                self._has_pending.set()
                raise
        for ev in self._new_data.values():
            ev.set()
        return last

    async def run_flusher(self) -> None:
        """Commit pending appends every ``flush_interval_s`` until cancelled."""
        failing = False
        while True:
            await self._has_pending.wait()
            if not self._urgent.is_set():
                # Telemetry waits for the interval (one commit for many rows);
                # an alarm cuts the wait short: its latency is a safety figure.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._urgent.wait(), self._flush_interval_s)
            self._urgent.clear()
            try:
                await self.flush()
            except OutboxError as exc:
                if not failing:
                    log.error("outbox: cannot commit (%s); keeping the batch, retrying", exc)
                    failing = True
                await asyncio.sleep(1.0)
            else:
                if failing:
                    log.warning("outbox: committing again")
                    failing = False

    # ------------------------------------------------------------------ sinks

    async def read(self, sink: str, limit: int) -> list[Record]:
        """Up to ``limit`` records after ``sink``'s cursor, oldest first."""
        records, _ = await self.read_batch(sink, limit)
        return records

    async def read_batch(self, sink: str, limit: int) -> tuple[list[Record], int | None]:
        """Records for ``sink`` among the next ``limit`` rows, and the last seq scanned.

        For a lane the records are only its kinds; acknowledge up to the last
        seq scanned (None: nothing new) even when no record was for it.
        """
        return await self._call(self._read_sync, sink, limit)

    async def ack(self, sink: str, seq: int) -> None:
        """``sink`` delivered everything up to ``seq``: advance its cursor.

        The cursor moves at once in memory; it is written (and delivered rows
        pruned) with the next commit, at most ``flush_interval_s`` later. Group
        commit: one transaction for every sink's acks and the new rows, instead
        of one per ack. A crash in between redelivers those rows (delivery is
        at-least-once in any case: a crash between the broker's ack and ours
        does the same).
        """
        if await self._call(self._ack_sync, sink, seq):
            self._cursors_dirty = True
            self._has_pending.set()

    async def wait_for_data(self, sink: str, max_wait_s: float) -> None:
        """Wait until new records are committed (or ``max_wait_s`` passed)."""
        ev = self._new_data[sink]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(ev.wait(), max_wait_s)

    def clear_new_data(self, sink: str) -> None:
        """Call before ``read``: a commit after this call wakes ``wait_for_data``."""
        self._new_data[sink].clear()

    def stats(self) -> OutboxStats:
        now = self._clock.now_ns()
        sinks = {}
        for name in self.sink_names:
            head = self._head_ts.get(name)
            age = max(0.0, (now - head) / 1e9) if head is not None else 0.0
            sinks[name] = SinkBacklog(
                cursor=self._cursors.get(name, 0),
                backlog=self._backlog.get(name, 0) + len(self._pending),
                oldest_ts_ns=head,
                oldest_age_s=age,
            )
        file_bytes = 0
        for p in (self.path, Path(f"{self.path}-wal")):
            with contextlib.suppress(OSError):
                file_bytes += p.stat().st_size
        return OutboxStats(
            rows=self._rows,
            bytes=self._bytes,
            max_bytes=self.max_bytes,
            file_bytes=file_bytes,
            last_seq=self._last_seq,
            pending=len(self._pending),
            evicted=sum(self._evicted.values()),
            evicted_by_kind=dict(self._evicted),
            sinks=sinks,
        )

    # ------------------------------------------------------------------ worker thread

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise OutboxError("the outbox is not open")
        return self._db

    def _open_sync(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: we issue BEGIN/COMMIT ourselves, one per batch.
        db = sqlite3.connect(self.path, isolation_level=None)
        self._db = db
        mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise OutboxError(f"outbox {self.path}: cannot enable WAL mode (got {mode})")
        db.execute(f"PRAGMA synchronous={self._synchronous.upper()}")
        # Keep the WAL from growing without bound after a long backlog is drained.
        db.execute("PRAGMA journal_size_limit=67108864")
        db.executescript(_SCHEMA)
        db.execute("BEGIN IMMEDIATE")
        try:
            known = dict(db.execute("SELECT sink, seq FROM cursors").fetchall())
            for stale in set(known) - set(self.sink_names):
                log.warning("outbox: dropping the cursor of sink %r (no longer configured)", stale)
                db.execute("DELETE FROM cursors WHERE sink = ?", (stale,))
            for name in self.sink_names:
                if name not in known:
                    db.execute("INSERT INTO cursors(sink, seq) VALUES (?, 0)", (name,))
            for name, value in db.execute("SELECT name, value FROM counters"):
                if name.startswith("evicted."):
                    self._evicted[name.removeprefix("evicted.")] = int(value)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        self._cursors = dict(db.execute("SELECT sink, seq FROM cursors").fetchall())
        row = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'records'").fetchone()
        self._last_seq = int(row[0]) if row else 0
        self._rows, self._bytes = db.execute(
            "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM records"
        ).fetchone()
        for name in self.sink_names:
            self._backlog[name] = db.execute(
                "SELECT COUNT(*) FROM records WHERE seq > ?", (self._cursors[name],)
            ).fetchone()[0]
        n, size = self._prune_sync(min(self._cursors.values(), default=0))
        self._rows -= n
        self._bytes -= size
        self._refresh_heads()

    def _close_sync(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def _insert_sync(
        self, batch: list[tuple[RecordKind, int, Item]], unsaved: dict[str, int]
    ) -> int:
        """One transaction: the new rows, moved cursors, pruning, eviction counters."""
        db = self._conn()
        bodies = [_encode(item) for _, _, item in batch]
        rows = [
            (_KIND_CODE[kind], ts, len(body) + ROW_OVERHEAD, body)
            for (kind, ts, _), body in zip(batch, bodies, strict=True)
        ]
        db.execute("BEGIN IMMEDIATE")
        try:
            last = self._last_seq
            if rows:
                db.executemany(
                    "INSERT INTO records(kind, ts_ns, size, body) VALUES (?, ?, ?, ?)", rows
                )
                last = int(db.execute("SELECT MAX(seq) FROM records").fetchone()[0])
                self._rows += len(rows)
                self._bytes += sum(r[2] for r in rows)
            saved = {s: self._cursors[s] for s in self._unsaved_cursors}
            db.executemany(
                "UPDATE cursors SET seq = ? WHERE sink = ?", [(q, s) for s, q in saved.items()]
            )
            pruned = self._prune_sync(min(self._cursors.values(), default=0)) if saved else (0, 0)
            evicted = self._evict_sync() if self._bytes > self.max_bytes else {}
            to_save = dict(unsaved)
            for kind_name, n in evicted.items():
                to_save[kind_name] = to_save.get(kind_name, 0) + n
            for kind_name, n in to_save.items():
                db.execute(
                    "INSERT INTO counters(name, value) VALUES (?, ?) "
                    "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
                    (f"evicted.{kind_name}", n),
                )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            # Resync the mirrors: the transaction did not happen.
            self._rows, self._bytes = db.execute(
                "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM records"
            ).fetchone()
            raise
        self._unsaved_cursors.difference_update(saved)
        self._rows -= pruned[0]
        self._bytes -= pruned[1]
        for kind_name, n in evicted.items():
            self._count_eviction(RecordKind(kind_name), n)
        if not evicted:
            self._evict_logged = False
        self._last_seq = last
        for name in self.sink_names:
            self._backlog[name] += len(rows)
        # One writer, one transaction: the batch got the consecutive seqs ending at ``last``.
        items = self._items
        evicted_now = self._evicted_seqs
        for seq, (kind, ts, item) in enumerate(batch, last - len(batch) + 1):
            if seq not in evicted_now:
                items[seq] = Record(seq=seq, kind=kind, ts_ns=ts, item=item)
        evicted_now.clear()
        while len(items) > ITEM_CACHE:
            items.popitem(last=False)
        self._refresh_heads()
        return last

    def _evict_sync(self) -> dict[str, int]:
        """Delete the oldest telemetry until below the low-water mark (inside a txn)."""
        db = self._conn()
        counts: dict[str, int] = {}
        target = int(self.max_bytes * LOW_WATER)
        while self._bytes > target:
            # Rows are ~200 B-2 kB; delete in chunks sized to the excess.
            chunk = max(16, min(5000, (self._bytes - target) // 200 + 1))
            deleted = db.execute(
                "DELETE FROM records WHERE seq IN ("
                " SELECT seq FROM records WHERE kind != ? ORDER BY seq LIMIT ?"
                ") RETURNING seq, kind, size",
                (_ALARM_CODE, chunk),
            ).fetchall()
            if not deleted:
                break  # only alarms left: they are kept even past max_bytes
            for seq, code, size in deleted:
                self._items.pop(seq, None)
                self._evicted_seqs.add(seq)
                self._rows -= 1
                self._bytes -= size
                kind_name = _CODE_KIND[code].value
                counts[kind_name] = counts.get(kind_name, 0) + 1
                for name, cur in self._cursors.items():
                    if seq > cur:
                        self._backlog[name] -= 1
        return counts

    def _read_sync(self, sink: str, limit: int) -> tuple[list[Record], int | None]:
        cur = self._cursors[sink]
        items = self._items
        kinds = self._lanes.get(sink)
        if items and cur + 1 >= next(iter(items)):
            # The next rows are all in the cache (a hole is an evicted row).
            end = min(cur + limit, self._last_seq)
            if end <= cur:
                return [], None
            found = (items.get(seq) for seq in range(cur + 1, end + 1))
            out = [
                r for r in found if r is not None and (kinds is None or _KIND_CODE[r.kind] in kinds)
            ]
            scanned: int | None = end
        else:
            out, scanned = self._read_db(cur, limit, kinds)
        if scanned is not None:
            self._read_upto[sink] = scanned
            low = min(self._read_upto.get(s, 0) for s in self.sink_names)
            while items and next(iter(items)) <= low:
                items.popitem(last=False)
        return out, scanned

    def _read_db(
        self, cur: int, limit: int, kinds: frozenset[int] | None
    ) -> tuple[list[Record], int | None]:
        """Rows after ``cur`` from SQLite (a sink behind the cache, or after a restart)."""
        db = self._conn()
        scanned: int | None = None
        out = []
        items = self._items
        # Rows from the cache's first seq on need no body (saves copying ~1 kB a row).
        cached_from = next(iter(items)) if items else self._last_seq + 1
        for seq, code, ts, body in db.execute(
            "SELECT seq, kind, ts_ns, CASE WHEN seq >= ? THEN NULL ELSE body END"
            " FROM records WHERE seq > ? ORDER BY seq LIMIT ?",
            (cached_from, cur, limit),
        ):
            scanned = seq
            if kinds is not None and code not in kinds:
                continue
            record = items.get(seq) if body is None else None
            if record is None:
                if body is None:
                    # Not expected (the cache is one run), but never guess: read it.
                    body = db.execute("SELECT body FROM records WHERE seq = ?", (seq,)).fetchone()[
                        0
                    ]
                kind = _CODE_KIND[code]
                record = Record(seq=seq, kind=kind, ts_ns=ts, item=_decode(kind, body))
            out.append(record)
        return out, scanned

    def _ack_sync(self, sink: str, seq: int) -> bool:
        """Move the cursor in memory; the next commit writes it. True if it moved."""
        old = self._cursors[sink]
        if seq <= old:
            return False
        done = (
            self._conn()
            .execute("SELECT COUNT(*) FROM records WHERE seq > ? AND seq <= ?", (old, seq))
            .fetchone()[0]
        )
        self._cursors[sink] = seq
        self._unsaved_cursors.add(sink)
        self._backlog[sink] = max(0, self._backlog[sink] - done)
        self._refresh_heads(sink)
        return True

    def _prune_sync(self, upto: int) -> tuple[int, int]:
        """Delete rows every sink has delivered (seq <= ``upto``); return (rows, bytes)."""
        db = self._conn()
        n, size = db.execute(
            "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM records WHERE seq <= ?", (upto,)
        ).fetchone()
        if n:
            db.execute("DELETE FROM records WHERE seq <= ?", (upto,))
        return int(n), int(size)

    def _refresh_heads(self, only: str | None = None) -> None:
        db = self._conn()
        items = self._items
        first_cached = next(iter(items)) if items else None
        for name in self.sink_names if only is None else (only,):
            cur = self._cursors[name]
            if cur >= self._last_seq:
                self._head_ts[name] = None
                continue
            cached = first_cached is not None and cur + 1 >= first_cached
            head = items.get(cur + 1) if cached else None
            if head is not None:
                self._head_ts[name] = head.ts_ns
                continue
            row = db.execute(
                "SELECT ts_ns FROM records WHERE seq > ? ORDER BY seq LIMIT 1", (cur,)
            ).fetchone()
            self._head_ts[name] = int(row[0]) if row else None


def iter_items(records: Iterable[Record]) -> Iterable[Item]:
    """The items of ``records`` in order (a small convenience for sinks)."""
    return (r.item for r in records)
