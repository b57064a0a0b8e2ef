"""The durable outbox: an append-only SQLite log with one cursor per sink.

Everything a sink must deliver (samples, alarm events, generic events) is
appended here first. Each sink reads from its own cursor and advances it only
after the far side acknowledged, so a sink that is down falls behind without
holding the others back, and delivery resumes from the cursors after a
restart. Rows every sink has delivered are pruned. Past ``max_bytes`` of live
rows, telemetry (samples and generic events) is evicted oldest-first and every
eviction is counted (persistently); alarm events are never evicted.

A row that cannot be decoded (a damaged body, a kind this gateway does not
know) would stop every sink at that row for good. It is moved to the
``quarantine`` table instead (kept for a post-mortem, never delivered), logged
and counted (``stats().quarantined``, persistent); the gateway raises an alarm
saying how many.

A damaged outbox file is moved aside and a fresh one started
(gateway/sqlite_file.py); ``incident`` says so, and the gateway alarms.

A full disk (gateway/disk_space.py): the budget is sized against the free
space at open; when the free space falls below a floor, or a commit fails
with "disk full", the budget is cut, the oldest telemetry evicted in a
transaction of its own (never alarms), the WAL checkpointed and the freed
pages handed back to the file system (incremental vacuum), and the commit
retried. What cannot be committed stays in the in-memory batch (telemetry
dropped first, counted). ``stats().disk_full`` says why, for the alarm.

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
import dataclasses
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

from gateway.disk_space import DEFAULT_MAX_BYTES, SpaceGuard, is_disk_full
from gateway.errors import OutboxError
from gateway.model import AlarmEvent, Clock, Sample, SystemClock
from gateway.sqlite_file import FileIncident, open_sqlite

log = logging.getLogger(__name__)

T = TypeVar("T")

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
# Committed records kept in memory for the sinks' reads (see Outbox._tail): a
# few seconds of a large site's samples, about 10-30 MB at 40 points a sample.
ITEM_CACHE = 10_000
# run_checkpointer's period, and the WAL size (4 kB pages) at which a commit
# checkpoints by itself when no checkpointer runs (SQLite's default is 1000).
CHECKPOINT_EVERY_S = 1.0
BACKSTOP_CHECKPOINT_PAGES = 16_384
# One statement inserts a whole batch (a JSON array of [kind, ts_ns, body]):
# sqlite3's executemany releases and retakes the GIL for every row, and each
# retake waits behind the busy event loop (measured: 100+ ms commits at
# 50,000 points/s, delaying alarms).
_INSERT_BATCH = (
    "INSERT INTO records(kind, ts_ns, size, body)"
    " SELECT value->>0, value->>1, length(CAST(value->2 AS BLOB)) + ?, value->2"
    " FROM json_each(?) ORDER BY key"
)


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
    # When it was read, on the real monotonic clock (Clock.monotonic), for the
    # backlog age; None for a row read back from the file.
    read_s: float | None = None


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
    # Undecodable rows moved to the quarantine table: ever (persistent), and by this process.
    quarantined: int = 0
    quarantined_new: int = 0
    # Why the outbox's disk counts as full (gateway/disk_space.py), or None.
    disk_full: str | None = None

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


def _decode(kind: RecordKind, body: str | bytes) -> Item:
    # Older outboxes hold TEXT bodies, newer ones BLOBs: orjson reads both.
    d = orjson.loads(body)
    if kind is RecordKind.SAMPLE:
        return Sample.from_json_dict(d)
    if kind is RecordKind.ALARM:
        return AlarmEvent.from_json_dict(d)
    return Event.from_json_dict(d)


# What a damaged body or an unknown kind code raises on the way to an item.
_UNDECODABLE = (ValueError, KeyError, TypeError, AttributeError)


def _decode_row(code: int, body: str | bytes) -> tuple[RecordKind, Item]:
    kind = _CODE_KIND[code]
    return kind, _decode(kind, body)


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
CREATE TABLE IF NOT EXISTS quarantine (
    seq   INTEGER PRIMARY KEY,
    kind  INTEGER,
    ts_ns INTEGER,
    body  BLOB,
    error TEXT NOT NULL
);
"""


class Outbox:
    """Append-only durable log with per-sink cursors (see the module docstring).

    Use as ``async with Outbox(path, ["mqtt", "influx"]) as ob:`` and run
    ``ob.run_flusher()`` as a task. A sink name not seen before starts at
    the oldest retained row; cursors of sinks no longer listed are dropped so
    they cannot pin the log forever.

    Threads. The SQLite connection lives on one worker thread; every other
    attribute belongs to the event loop. The worker functions (``_*_sync``)
    take what they need as arguments and return what changed, so no state is
    shared between the threads. Fresh rows are read from ``_tail`` on the loop,
    without a trip to the worker: only a sink reading rows older than the tail
    (after a restart or an outage) goes to SQLite.
    """

    def __init__(
        self,
        path: str | Path,
        sinks: Sequence[str],
        *,
        max_bytes: int | None = None,
        clock: Clock | None = None,
        synchronous: Literal["normal", "full"] = "full",
        flush_interval_s: float = 0.05,
        max_pending: int = 100_000,
        lanes: Mapping[str, Iterable[RecordKind]] | None = None,
        primary: bool = True,
        space_guard: SpaceGuard | None = None,
    ) -> None:
        if len(set(sinks)) != len(sinks):
            raise OutboxError(f"duplicate sink names: {list(sinks)}")
        self.path = Path(path)
        self.sink_names = list(sinks)
        # A lane is a sink that delivers only some kinds (the main MQTT sink
        # when alarms travel on the alarm lane, gateway/alarm_lane.py). Its
        # cursor still moves over every row it scanned, so it never holds
        # pruning back.
        self._lanes: dict[str, frozenset[RecordKind]] = {
            name: frozenset(kinds) for name, kinds in (lanes or {}).items()
        }
        # None: the default, sized against the free space at open (gateway/disk_space.py).
        # The budget in force is max_bytes; it is cut when the disk fills.
        self._max_bytes_cfg = max_bytes
        self.max_bytes = max_bytes or DEFAULT_MAX_BYTES
        self._guard = space_guard or SpaceGuard(self.path, primary=primary)
        # Worker thread: rows evicted to make room outside a commit, not yet reported.
        self._room_evicted: list[tuple[int, int]] = []
        self._room_freed = 0
        self._clock = clock or SystemClock()
        self._synchronous = synchronous
        self._flush_interval_s = flush_interval_s
        self._max_pending = max_pending
        self._executor: ThreadPoolExecutor | None = None
        self._db: sqlite3.Connection | None = None  # worker thread only
        # Set by open() when the file was damaged or emptied and replaced.
        self.incident: FileIncident | None = None
        self._checkpointer: ThreadPoolExecutor | None = None
        self._ckpt_db: sqlite3.Connection | None = None  # checkpointer thread only
        # In-memory batch waiting for the next commit: (kind, ts_ns, item). Items
        # are encoded on the worker thread, off the event loop.
        self._pending: deque[tuple[RecordKind, int, Item]] = deque()
        # Rows of the batch being committed: out of _pending, not yet in the
        # backlog. stats() counts them, or a sink could look caught up while
        # the last rows were still on their way into the file.
        self._committing = 0
        self._has_pending = asyncio.Event()
        # Set when an alarm is appended: it is committed at once, not at the next interval.
        self._urgent = asyncio.Event()
        # Committed records of this process by seq, for the sinks' reads: one
        # run of consecutive seqs (holes only where rows were evicted), dropped
        # once every sink has acknowledged them, bounded (a sink that is down
        # reads from SQLite instead).
        self._tail: OrderedDict[int, Record] = OrderedDict()
        self._flush_lock = asyncio.Lock()
        self._new_data: dict[str, asyncio.Event] = {s: asyncio.Event() for s in sinks}
        # Acknowledged cursors; those moved since the last commit wait in _dirty.
        self._cursors: dict[str, int] = {}
        self._dirty: dict[str, int] = {}
        # Mirrors of database state for stats().
        self._rows = 0
        self._bytes = 0
        self._last_seq = 0
        self._backlog: dict[str, int] = {}
        self._head_ts: dict[str, int | None] = {}
        # Per sink: (head ts_ns, when it was read on the real monotonic clock).
        self._head_read: dict[str, tuple[int, float]] = {}
        self._evicted: dict[str, int] = {k.value: 0 for k in RecordKind}
        # Evictions from the in-memory batch, written to the counters table at the next commit.
        self._evicted_unsaved: dict[str, int] = {}
        self._evict_logged = False
        self._quarantined = 0
        self._quarantined_new = 0

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> Outbox:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def open(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="outbox")
        try:
            st = await self._call(self._open_sync, self.sink_names)
        except BaseException:
            self._executor.shutdown(wait=False)
            self._executor = None
            raise
        self.incident = st.incident
        self._cursors = st.cursors
        self._last_seq = st.last_seq
        self._rows, self._bytes = st.rows, st.bytes
        self._backlog = st.backlog
        self._head_ts = st.head_ts
        for kind_name, n in st.evicted.items():
            self._evicted[kind_name] = n
        self._quarantined = st.quarantined

    async def aclose(self) -> None:
        if self._executor is None:
            return
        try:
            await self.flush()
        except OutboxError as exc:
            # A disk full to the last byte: said loudly, not a crash of the stop.
            alarms = sum(1 for kind, _, _ in self._pending if kind is RecordKind.ALARM)
            log.error(
                "outbox %s: %d records (%d alarm events) could not be committed at stop"
                " and are lost: %s",
                self.path,
                len(self._pending),
                alarms,
                exc,
            )
        finally:
            if self._checkpointer is not None:
                loop = asyncio.get_running_loop()
                with contextlib.suppress(sqlite3.Error):
                    await loop.run_in_executor(self._checkpointer, self._ckpt_close_sync)
                self._checkpointer.shutdown(wait=True)
                self._checkpointer = None
            await self._call(self._close_sync)
            self._executor.shutdown(wait=True)
            self._executor = None

    async def run_checkpointer(self) -> None:
        """Checkpoint the WAL every ``CHECKPOINT_EVERY_S`` on a second thread, until cancelled.

        PASSIVE: it copies what it can without waiting for the writer, so
        commits (and the alarms in them) never wait for a checkpoint.
        """
        if self._executor is None:
            raise OutboxError("the outbox is not open")
        loop = asyncio.get_running_loop()
        if self._checkpointer is None:
            self._checkpointer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="outbox-ckpt")
        failures = 0
        while True:
            await asyncio.sleep(CHECKPOINT_EVERY_S)
            try:
                await loop.run_in_executor(self._checkpointer, self._ckpt_sync)
            except sqlite3.Error as exc:
                # Once is nothing (e.g. busy); a run of failures means the WAL grows.
                failures += 1
                if failures == 10:
                    log.warning("outbox: checkpoints keep failing (%s); the WAL grows", exc)
            else:
                failures = 0

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
        """Commit everything appended so far (and moved cursors); return the last seq."""
        async with self._flush_lock:
            if not self._pending and not self._dirty:
                return self._last_seq
            batch = list(self._pending)
            self._pending.clear()
            self._has_pending.clear()
            unsaved, self._evicted_unsaved = self._evicted_unsaved, {}
            dirty, self._dirty = self._dirty, {}
            prune_upto = min(self._cursors.values(), default=0)
            self._committing = len(batch)
            try:
                res = await self._call(
                    self._insert_sync, _Commit(batch, dirty, prune_upto, unsaved, self._bytes)
                )
            except BaseException:
                # Put the batch back in front so nothing is lost; the flusher retries.
                self._committing = 0
                self._pending.extendleft(reversed(batch))
                for kind_name, n in unsaved.items():
                    self._evicted_unsaved[kind_name] = self._evicted_unsaved.get(kind_name, 0) + n
                for sink, seq in dirty.items():
                    self._dirty.setdefault(sink, seq)
                self._has_pending.set()
                raise
            self._committed(batch, res)
            self._committing = 0
        for ev in self._new_data.values():
            ev.set()
        return self._last_seq

    def _committed(self, batch: list[tuple[RecordKind, int, Item]], res: _Inserted) -> None:
        """Bring the mirrors and the tail up to date after a commit (event loop)."""
        last = res.last_seq
        self._last_seq = last
        self._rows += len(batch) - res.pruned_rows - len(res.evicted)
        self._bytes = res.bytes
        tail = self._tail
        wall, real = self._clock.now_ns(), self._clock.monotonic()
        # One writer, one transaction: the batch got the consecutive seqs ending at ``last``.
        for seq, (kind, ts, item) in enumerate(batch, last - len(batch) + 1):
            tail[seq] = Record(seq, kind, ts, item, self._real_time_of(ts, wall, real))
        for name in self.sink_names:
            self._backlog[name] += len(batch)
        counts: dict[str, int] = {}
        for seq, code in res.evicted:
            tail.pop(seq, None)
            kind_name = _CODE_KIND[code].value
            counts[kind_name] = counts.get(kind_name, 0) + 1
            for name, cur in self._cursors.items():
                if seq > cur:
                    self._backlog[name] = max(0, self._backlog[name] - 1)
        for kind_name, n in counts.items():
            self._count_eviction(RecordKind(kind_name), n)
        if not counts:
            self._evict_logged = False
        while len(tail) > ITEM_CACHE:
            tail.popitem(last=False)
        for name in self.sink_names:
            if res.evicted or self._head_ts.get(name) is None:
                self._head_ts[name] = res.heads.get(name)

    async def run_flusher(self) -> None:
        """Commit pending appends every ``flush_interval_s`` until cancelled."""
        failing = False
        while True:
            await self._has_pending.wait()
            if not self._urgent.is_set():
                # Telemetry waits for the interval (one commit for many rows);
                # an alarm cuts the wait short: its latency is a safety figure.
                # asyncio.timeout, not wait_for: wait_for runs the wait as a
                # task of its own, two more event-loop turns on the alarm path.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._flush_interval_s):
                        await self._urgent.wait()
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
        cur = self._cursors[sink]
        if cur >= self._last_seq:
            return [], None
        kinds = self._lanes.get(sink)
        tail = self._tail
        if tail and cur + 1 >= next(iter(tail)):
            # Every row after the cursor is in the tail (a hole is an evicted row).
            end = min(cur + limit, self._last_seq)
            found = (tail.get(seq) for seq in range(cur + 1, end + 1))
            out = [r for r in found if r is not None and (kinds is None or r.kind in kinds)]
            return out, end
        cached_from = next(iter(tail)) if tail else self._last_seq + 1
        rows, scanned, bad = await self._call(self._read_sync, cur, limit, kinds, cached_from)
        if bad:
            self._drop_quarantined(bad)
        out = []
        missing = []
        for seq, kind, ts, item in rows:
            if item is None:
                # A row of the tail: its record is here already (unless trimmed meanwhile).
                rec = tail.get(seq)
                if rec is None:
                    missing.append(seq)
                    continue
                out.append(rec)
            else:
                out.append(Record(seq=seq, kind=kind, ts_ns=ts, item=item))
        if missing:
            # Trimmed while we read (the tail is bounded): read those bodies too.
            extra, bad = await self._call(self._read_bodies_sync, missing)
            if bad:
                self._drop_quarantined(bad)
            out.extend(Record(seq=q, kind=k, ts_ns=t, item=i) for q, k, t, i in extra)
            out.sort(key=lambda r: r.seq)
        return out, scanned

    def _drop_quarantined(self, bad: list[_Quarantined]) -> None:
        """Rows the worker moved to the quarantine table: out of the mirrors, logged."""
        for q in bad:
            log.error(
                "outbox %s: row %d cannot be decoded (%s): moved to its quarantine table,"
                " not delivered",
                self.path,
                q.seq,
                q.error,
            )
            self._rows -= 1
            self._bytes -= q.size
            for name, cur in self._cursors.items():
                if q.seq > cur:
                    self._backlog[name] = max(0, self._backlog[name] - 1)
        self._quarantined += len(bad)
        self._quarantined_new += len(bad)

    async def ack(self, sink: str, seq: int) -> None:
        """``sink`` delivered everything up to ``seq``: advance its cursor.

        The cursor moves at once in memory; it is written (and delivered rows
        pruned) with the next commit, at most ``flush_interval_s`` later. Group
        commit: one transaction for every sink's acks and the new rows, instead
        of one per ack. A crash in between redelivers those rows (delivery is
        at-least-once in any case: a crash between the broker's ack and ours
        does the same).
        """
        old = self._cursors[sink]
        if seq <= old:
            return
        tail = self._tail
        if tail and old + 1 >= next(iter(tail)):
            done = sum(1 for q in range(old + 1, seq + 1) if q in tail)
        else:
            done = await self._call(self._count_sync, old, seq)
        self._cursors[sink] = seq
        self._dirty[sink] = seq
        self._backlog[sink] = max(0, self._backlog[sink] - done)
        # Every sink is past these rows: nobody reads them again. (Not "read
        # past": a sink that lingers or fails reads again from its cursor.)
        low = min(self._cursors.values())
        while tail and next(iter(tail)) <= low:
            tail.popitem(last=False)
        if seq >= self._last_seq:
            self._head_ts[sink] = None
        elif (rec := tail.get(seq + 1)) is not None:
            self._head_ts[sink] = rec.ts_ns
            if rec.read_s is not None:
                self._head_read[sink] = (rec.ts_ns, rec.read_s)
        else:
            self._head_ts[sink] = await self._call(self._head_sync, seq)
        self._has_pending.set()

    async def wait_for_data(self, sink: str, max_wait_s: float) -> None:
        """Wait until new records are committed (or ``max_wait_s`` passed)."""
        ev = self._new_data[sink]
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max_wait_s):
                await ev.wait()

    def clear_new_data(self, sink: str) -> None:
        """Call before ``read``: a commit after this call wakes ``wait_for_data``."""
        self._new_data[sink].clear()

    def _real_time_of(self, ts_ns: int, wall_ns: int, real_s: float) -> float:
        """When a record stamped ``ts_ns`` was read, on the real monotonic clock.

        Taken from its wall age now, so only a wall-clock step between the read and
        this call can skew it; in a replay the site's time is scaled back to real time.
        """
        return real_s - max(0, wall_ns - ts_ns) / 1e9 / self._clock.speed

    def _head_age_s(self, name: str, head: int | None, wall_ns: int, real_s: float) -> float:
        """The real time the sink's oldest undelivered record has waited since its read.

        Backlog age is the gateway's own health: a real duration, on the real
        monotonic clock, neither stepped with the wall clock nor sped up by a replay.
        A head read back from the file is timed from its wall age when first seen.
        """
        if head is None:
            return 0.0
        got = self._head_read.get(name)
        if got is None or got[0] != head:
            got = self._head_read[name] = (head, self._real_time_of(head, wall_ns, real_s))
        return max(0.0, real_s - got[1])

    def stats(self) -> OutboxStats:
        now = self._clock.now_ns()
        real = self._clock.monotonic()
        sinks = {}
        for name in self.sink_names:
            head = self._head_ts.get(name)
            age = self._head_age_s(name, head, now, real)
            sinks[name] = SinkBacklog(
                cursor=self._cursors.get(name, 0),
                backlog=self._backlog.get(name, 0) + len(self._pending) + self._committing,
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
            pending=len(self._pending) + self._committing,
            evicted=sum(self._evicted.values()),
            evicted_by_kind=dict(self._evicted),
            sinks=sinks,
            quarantined=self._quarantined,
            quarantined_new=self._quarantined_new,
            disk_full=self._guard.full,
        )

    # ------------------------------------------------------------------ worker thread

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise OutboxError("the outbox is not open")
        return self._db

    def _open_sync(self, sink_names: list[str]) -> _Opened:
        # isolation_level=None: we issue BEGIN/COMMIT ourselves, one per batch.
        _, opened, incident = open_sqlite(
            self.path,
            "outbox",
            LOST,
            lambda db: self._prepare_sync(db, sink_names),
            now_ns=self._clock.now_ns,
            isolation_level=None,
        )
        return dataclasses.replace(opened, incident=incident)

    def _prepare_sync(self, db: sqlite3.Connection, sink_names: list[str]) -> _Opened:
        self._db = db
        # Lets a full disk get freed pages back (a no-op on files made before it).
        db.execute("PRAGMA auto_vacuum=INCREMENTAL")
        mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise OutboxError(f"outbox {self.path}: cannot enable WAL mode (got {mode})")
        db.execute(f"PRAGMA synchronous={self._synchronous.upper()}")
        # Keep the WAL from growing without bound after a long backlog is drained.
        db.execute("PRAGMA journal_size_limit=67108864")
        # Checkpoints run on their own connection and thread (run_checkpointer):
        # done by a commit, copying a few MB of WAL into the database stalled
        # that commit, and the alarm waiting for it, by 100+ ms (bench). This
        # is only the backstop for when no checkpointer runs.
        db.execute(f"PRAGMA wal_autocheckpoint={BACKSTOP_CHECKPOINT_PAGES}")
        db.executescript(_SCHEMA)
        evicted: dict[str, int] = {}
        quarantined = 0
        db.execute("BEGIN IMMEDIATE")
        try:
            known = _saved_cursors(db)
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
            _rollback(db)
            raise
        cursors = _saved_cursors(db)
        last_seq = _last_seq(db)
        self._prune_sync(min(cursors.values(), default=0))
        rows, size = db.execute("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM records").fetchone()
        in_use = sum(p.stat().st_size for p in (self.path, Path(f"{self.path}-wal")) if p.exists())
        self.max_bytes = self._guard.open(self._max_bytes_cfg, in_use)
        return _Opened(
            cursors=cursors,
            last_seq=last_seq,
            rows=int(rows),
            bytes=int(size),
            backlog={name: self._count_sync(cursors[name], last_seq) for name in sink_names},
            head_ts={name: self._head_sync(cursors[name]) for name in sink_names},
            evicted=evicted,
            quarantined=quarantined,
        )

    def _ckpt_sync(self) -> None:
        if self._ckpt_db is None:
            self._ckpt_db = sqlite3.connect(self.path, isolation_level=None)
        self._ckpt_db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()

    def _ckpt_close_sync(self) -> None:
        if self._ckpt_db is not None:
            self._ckpt_db.close()
            self._ckpt_db = None

    def _close_sync(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def _insert_sync(self, job: _Commit) -> _Inserted:
        """Commit (``_commit_sync``), making room first when the free space is low.

        On a full disk: make room and retry once.
        """
        if self._guard.due():
            why = self._guard.low()
            if why is not None:
                self._make_room_sync(why, failed=False)
            else:
                self._guard.recovered()
        try:
            res = self._commit_sync(job, job.bytes_before - self._room_freed)
        except sqlite3.OperationalError as exc:
            if not is_disk_full(exc):
                raise
            self._make_room_sync(str(exc), failed=True)
            # If this fails too, the batch waits in memory and the evictions
            # are reported with the next commit that succeeds.
            res = self._commit_sync(job, job.bytes_before - self._room_freed)
        evicted, self._room_evicted, self._room_freed = self._room_evicted, [], 0
        if not evicted:
            return res
        db = self._conn()
        return dataclasses.replace(
            res,
            evicted=evicted + res.evicted,
            heads={s: self._head_sync(c) for s, c in _saved_cursors(db).items()},
        )

    def _make_room_sync(self, why: str, *, failed: bool) -> None:
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
                evicted, freed = self._evict_sync(size, limit=ROOM_CHUNK)
                self._save_evictions_sync(evicted, {})
                db.execute("COMMIT")
            except sqlite3.Error as exc:
                _rollback(db)
                log.error("outbox %s: cannot even evict on the full disk: %s", self.path, exc)
                break
            if not evicted:
                break
            self._room_evicted += evicted
            self._room_freed += freed
            size -= freed
            try:
                _checkpoint(db)
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
                _checkpoint(db)

    def _save_evictions_sync(self, evicted: list[tuple[int, int]], unsaved: dict[str, int]) -> None:
        """Add evicted rows (and earlier unsaved evictions) to the counters (inside a txn)."""
        to_save = dict(unsaved)
        for _, code in evicted:
            kind_name = _CODE_KIND[code].value
            to_save[kind_name] = to_save.get(kind_name, 0) + 1
        for kind_name, n in to_save.items():
            self._conn().execute(
                "INSERT INTO counters(name, value) VALUES (?, ?) "
                "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
                (f"evicted.{kind_name}", n),
            )

    def _commit_sync(self, job: _Commit, bytes_before: int) -> _Inserted:
        """One transaction: the new rows, moved cursors, pruning, eviction counters."""
        batch, cursors, prune_upto, unsaved = job.batch, job.cursors, job.prune_upto, job.unsaved
        db = self._conn()
        payload = orjson.dumps([[_KIND_CODE[k], ts, item.to_json_dict()] for k, ts, item in batch])
        db.execute("BEGIN IMMEDIATE")
        try:
            before = _last_seq(db)
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
            pruned_rows, pruned_bytes = self._prune_sync(prune_upto) if cursors else (0, 0)
            size -= pruned_bytes
            evicted: list[tuple[int, int]] = []
            if size > self.max_bytes:
                evicted, freed = self._evict_sync(size)
                size -= freed
            self._save_evictions_sync(evicted, unsaved)
            db.execute("COMMIT")
        except BaseException:
            _rollback(db)
            raise
        last = before + len(batch)
        heads = {}
        if evicted:
            # The oldest rows went: where each sink now starts.
            heads = {s: self._head_sync(c) for s, c in _saved_cursors(db).items()}
        elif batch:
            heads = {s: batch[0][1] for s in self.sink_names}
        return _Inserted(
            last_seq=last,
            bytes=size,
            pruned_rows=pruned_rows,
            evicted=evicted,
            heads=heads,
        )

    def _evict_sync(self, size: int, limit: int = 0) -> tuple[list[tuple[int, int]], int]:
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
            (_ALARM_CODE,),
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
                (_ALARM_CODE, chunk),
            ).fetchall()
            if not deleted:
                break  # only alarms left: they are kept even past max_bytes
            for seq, code, row_size in deleted:
                out.append((int(seq), int(code)))
                freed += int(row_size)
        return out, freed

    def _read_sync(
        self, cur: int, limit: int, kinds: frozenset[RecordKind] | None, cached_from: int
    ) -> tuple[list[tuple[int, RecordKind, int, Item | None]], int | None, list[_Quarantined]]:
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
                kind = _CODE_KIND[code]
                if kinds is not None and kind not in kinds:
                    continue
                item = None if body is None else _decode(kind, body)
            except _UNDECODABLE as exc:
                bad.append((seq, f"{type(exc).__name__}: {exc}"))
                continue
            out.append((seq, kind, ts, item))
        return out, scanned, self._quarantine_sync(bad)

    def _read_bodies_sync(
        self, seqs: list[int]
    ) -> tuple[list[tuple[int, RecordKind, int, Item]], list[_Quarantined]]:
        db = self._conn()
        out = []
        bad: list[tuple[int, str]] = []
        for seq in seqs:
            row = db.execute(
                "SELECT kind, ts_ns, body FROM records WHERE seq = ?", (seq,)
            ).fetchone()
            if row is not None:
                try:
                    kind, item = _decode_row(row[0], row[2])
                except _UNDECODABLE as exc:
                    bad.append((seq, f"{type(exc).__name__}: {exc}"))
                    continue
                out.append((seq, kind, int(row[1]), item))
        return out, self._quarantine_sync(bad)

    def _quarantine_sync(self, bad: list[tuple[int, str]]) -> list[_Quarantined]:
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
                out.append(_Quarantined(seq=seq, size=int(size), error=error))
            db.execute(
                "INSERT INTO counters(name, value) VALUES ('quarantined', ?) "
                "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
                (len(out),),
            )
            db.execute("COMMIT")
        except BaseException:
            _rollback(db)
            raise
        return out

    def _count_sync(self, after: int, upto: int) -> int:
        return int(
            self._conn()
            .execute("SELECT COUNT(*) FROM records WHERE seq > ? AND seq <= ?", (after, upto))
            .fetchone()[0]
        )

    def _head_sync(self, cursor: int) -> int | None:
        row = (
            self._conn()
            .execute("SELECT ts_ns FROM records WHERE seq > ? ORDER BY seq LIMIT 1", (cursor,))
            .fetchone()
        )
        return int(row[0]) if row else None

    def _prune_sync(self, upto: int) -> tuple[int, int]:
        """Delete rows every sink has delivered (seq <= ``upto``); return (rows, bytes)."""
        db = self._conn()
        n, size = db.execute(
            "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM records WHERE seq <= ?", (upto,)
        ).fetchone()
        if n:
            db.execute("DELETE FROM records WHERE seq <= ?", (upto,))
        return int(n), int(size)


def _checkpoint(db: sqlite3.Connection) -> None:
    """Copy the WAL in and start it over (it is reused, not grown: the disk is full)."""
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()


def _rollback(db: sqlite3.Connection) -> None:
    """Roll back if a transaction is still open: SQLite ends some by itself (disk full)."""
    if db.in_transaction:
        db.execute("ROLLBACK")


def _saved_cursors(db: sqlite3.Connection) -> dict[str, int]:
    return {str(k): int(v) for k, v in db.execute("SELECT sink, seq FROM cursors")}


def _last_seq(db: sqlite3.Connection) -> int:
    """The last seq ever given (AUTOINCREMENT: pruned rows never lower it)."""
    row = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'records'").fetchone()
    return int(row[0]) if row else 0


@dataclass(slots=True, frozen=True)
class _Opened:
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
class _Commit:
    """What one commit writes: the batch, moved cursors, pruning, unsaved evictions."""

    batch: list[tuple[RecordKind, int, Item]]
    cursors: dict[str, int]
    prune_upto: int
    unsaved: dict[str, int]
    bytes_before: int


@dataclass(slots=True, frozen=True)
class _Quarantined:
    """A row moved to the quarantine table."""

    seq: int
    size: int
    error: str


@dataclass(slots=True, frozen=True)
class _Inserted:
    """What one commit changed, for the event loop's mirrors."""

    last_seq: int
    bytes: int
    pruned_rows: int
    evicted: list[tuple[int, int]]
    heads: dict[str, int | None]


def iter_items(records: Iterable[Record]) -> Iterable[Item]:
    """The items of ``records`` in order (a small convenience for sinks)."""
    return (r.item for r in records)
