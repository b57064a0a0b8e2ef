"""The outbox's event-loop side: appends, the commit batch, sink cursors, reads, stats.

See the package docstring (gateway/outbox/__init__.py) for what the outbox
promises; the SQLite side is gateway/outbox/store.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal, TypeVar

from gateway.disk_space import DEFAULT_MAX_BYTES, SpaceGuard
from gateway.errors import OutboxError
from gateway.model import AlarmEvent, Clock, Sample, SystemClock
from gateway.outbox.ages import HeadAges
from gateway.outbox.checkpoint import Checkpointer
from gateway.outbox.pending import drop_oldest_telemetry, keep_within
from gateway.outbox.records import (
    CODE_KIND,
    Event,
    Item,
    OutboxStats,
    Record,
    RecordKind,
    SinkBacklog,
    kind_of,
)
from gateway.outbox.schema import Commit, Inserted, Quarantined
from gateway.outbox.store import LOW_WATER, OutboxStore
from gateway.sqlite_file import FileIncident

# The outbox's one logger, whichever half logs.
log = logging.getLogger("gateway.outbox")

T = TypeVar("T")

# Committed records kept in memory for the sinks' reads (see Outbox._tail): a
# few seconds of a large site's samples, about 10-30 MB at 40 points a sample.
ITEM_CACHE = 10_000


class Outbox:
    """Append-only durable log with per-sink cursors (see the module docstring).

    Use as ``async with Outbox(path, ["mqtt", "influx"]) as ob:`` and run
    ``ob.run_flusher()`` as a task. A sink name not seen before starts at
    the oldest retained row; cursors of sinks no longer listed are dropped so
    they cannot pin the log forever.

    Threads. The SQLite connection lives on one worker thread (``_store``,
    gateway/outbox/store.py); every other attribute belongs to the event loop.
    The worker's methods take what they need as arguments and return what
    changed, so no state is shared between the threads. Fresh rows are read
    from ``_tail`` on the loop, without a trip to the worker: only a sink
    reading rows older than the tail (after a restart or an outage) goes to
    SQLite.
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
        self._guard = space_guard or SpaceGuard(self.path, primary=primary)
        self._clock = clock or SystemClock()
        # The SQLite side, used on the worker thread only. max_bytes None: the
        # default, sized against the free space at open (gateway/disk_space.py).
        self._store = OutboxStore(
            self.path,
            self.sink_names,
            max_bytes=max_bytes,
            default_max_bytes=max_bytes or DEFAULT_MAX_BYTES,
            guard=self._guard,
            clock=self._clock,
            synchronous=synchronous,
        )
        self._flush_interval_s = flush_interval_s
        self._max_pending = max_pending
        self._executor: ThreadPoolExecutor | None = None
        # Set by open() when the file was damaged or emptied and replaced.
        self.incident: FileIncident | None = None
        self._checkpointer = Checkpointer(self.path)
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
        self._ages = HeadAges(self._clock)
        self._evicted: dict[str, int] = {k.value: 0 for k in RecordKind}
        # Evictions from the in-memory batch, written to the counters table at the next commit.
        self._evicted_unsaved: dict[str, int] = {}
        self._evict_logged = False
        self._quarantined = 0
        self._quarantined_new = 0

    @property
    def max_bytes(self) -> int:
        """The budget in force: it is cut when the disk fills."""
        return self._store.max_bytes

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> Outbox:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def open(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="outbox")
        try:
            st = await self._call(self._store.open, self.sink_names)
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
            await self._checkpointer.aclose()
            await self._call(self._store.close)
            self._executor.shutdown(wait=True)
            self._executor = None

    async def run_checkpointer(self) -> None:
        """Checkpoint the WAL on a second thread until cancelled (gateway/outbox/checkpoint.py)."""
        if self._executor is None:
            raise OutboxError("the outbox is not open")
        await self._checkpointer.run()

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
        kind = kind_of(item)
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
        kind = drop_oldest_telemetry(self._pending)
        if kind is not None:  # only alarms pending: keep them all (rare, never dropped)
            self._evict_unsaved(kind, 1)

    def _trim_pending_to_budget(self) -> None:
        """On a full disk, keep the alarms and only the newest telemetry the budget holds:
        a batch too big for the disk, committed whole, would hold its alarms back for ever."""
        kept, dropped = keep_within(self._pending, int(self.max_bytes * LOW_WATER))
        if dropped:
            self._pending = kept
            for kind, n in dropped.items():
                self._evict_unsaved(kind, n)

    def _evict_unsaved(self, kind: RecordKind, n: int) -> None:
        """Count ``n`` items dropped from memory; saved to the counters at the next commit."""
        self._count_eviction(kind, n)
        self._evicted_unsaved[kind.value] = self._evicted_unsaved.get(kind.value, 0) + n

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
            if self._guard.full is not None:
                self._trim_pending_to_budget()
            batch = list(self._pending)
            self._pending.clear()
            self._has_pending.clear()
            unsaved, self._evicted_unsaved = self._evicted_unsaved, {}
            dirty, self._dirty = self._dirty, {}
            prune_upto = min(self._cursors.values(), default=0)
            self._committing = len(batch)
            try:
                res = await self._call(
                    self._store.insert, Commit(batch, dirty, prune_upto, unsaved, self._bytes)
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

    def _committed(self, batch: list[tuple[RecordKind, int, Item]], res: Inserted) -> None:
        """Bring the mirrors and the tail up to date after a commit (event loop)."""
        last = res.last_seq
        self._last_seq = last
        self._rows += len(batch) - res.pruned_rows - len(res.evicted)
        self._bytes = res.bytes
        tail = self._tail
        wall, real = self._clock.now_ns(), self._clock.monotonic()
        # One writer, one transaction: the batch got the consecutive seqs ending at ``last``.
        for seq, (kind, ts, item) in enumerate(batch, last - len(batch) + 1):
            tail[seq] = Record(seq, kind, ts, item, self._ages.real_time_of(ts, wall, real))
        for name in self.sink_names:
            self._backlog[name] += len(batch)
        counts: dict[str, int] = {}
        for seq, code in res.evicted:
            tail.pop(seq, None)
            kind_name = CODE_KIND[code].value
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
        rows, scanned, bad = await self._call(self._store.read, cur, limit, kinds, cached_from)
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
            extra, bad = await self._call(self._store.read_bodies, missing)
            if bad:
                self._drop_quarantined(bad)
            out.extend(Record(seq=q, kind=k, ts_ns=t, item=i) for q, k, t, i in extra)
            out.sort(key=lambda r: r.seq)
        return out, scanned

    def _drop_quarantined(self, bad: list[Quarantined]) -> None:
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
            done = await self._call(self._store.count, old, seq)
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
                self._ages.seen(sink, rec.ts_ns, rec.read_s)
        else:
            self._head_ts[sink] = await self._call(self._store.head, seq)
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

    def stats(self) -> OutboxStats:
        now = self._clock.now_ns()
        real = self._clock.monotonic()
        sinks = {}
        for name in self.sink_names:
            head = self._head_ts.get(name)
            age = self._ages.age_s(name, head, now, real)
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
