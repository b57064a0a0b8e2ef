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

The package: ``records`` (what a row holds and its codec), ``schema`` (the
tables and the worker's messages), ``store`` (the SQLite worker:
transactions, eviction, full disk, quarantine, damaged files),
``checkpoint`` (WAL checkpoints on their own thread) and ``log``
(``Outbox``, the event loop's side).
"""

from gateway.outbox.log import Outbox
from gateway.outbox.records import (
    Event,
    Item,
    OutboxStats,
    Record,
    RecordKind,
    SinkBacklog,
    iter_items,
)

__all__ = [
    "Event",
    "Item",
    "Outbox",
    "OutboxStats",
    "Record",
    "RecordKind",
    "SinkBacklog",
    "iter_items",
]
