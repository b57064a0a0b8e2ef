"""What the outbox drops from its in-memory batch when it must: telemetry, never alarms.

Pure functions over the batch of (kind, ts_ns, item) waiting for a commit, so
the rule is one place: alarms are kept whatever it costs (they are rare), and
telemetry goes oldest first.
"""

from __future__ import annotations

from collections import deque

import orjson

from gateway.outbox.records import Item, RecordKind
from gateway.outbox.store import ROW_OVERHEAD

Pending = deque[tuple[RecordKind, int, Item]]


def drop_oldest_telemetry(pending: Pending) -> RecordKind | None:
    """Remove the oldest telemetry item; its kind, or None when only alarms wait."""
    for i, (kind, _, _) in enumerate(pending):
        if kind is not RecordKind.ALARM:
            del pending[i]
            return kind
    return None


def keep_within(pending: Pending, room: int) -> tuple[Pending, dict[RecordKind, int]]:
    """The alarms and the newest telemetry that fits in ``room`` bytes; what was dropped.

    Sized from the newest item back, so a long batch costs only what the room
    holds to measure.
    """
    kept: list[tuple[RecordKind, int, Item]] = []
    dropped: dict[RecordKind, int] = {}
    for entry in reversed(pending):
        kind, _, item = entry
        if kind is not RecordKind.ALARM:
            if room <= 0:
                dropped[kind] = dropped.get(kind, 0) + 1
                continue
            room -= len(orjson.dumps(item.to_json_dict())) + ROW_OVERHEAD
        kept.append(entry)
    return deque(reversed(kept)), dropped
