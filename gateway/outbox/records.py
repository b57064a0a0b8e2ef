"""What the outbox holds: the record kinds, Event, Record, the stats, and the row codec.

A row is ``(kind code, ts_ns, JSON body)``; ``decode_row`` turns it back into
an item, raising one of ``UNDECODABLE`` for a damaged body or unknown kind.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import orjson

from gateway.model import AlarmEvent, Sample


class RecordKind(StrEnum):
    SAMPLE = "sample"
    ALARM = "alarm"
    EVENT = "event"


KIND_CODE: dict[RecordKind, int] = {RecordKind.SAMPLE: 1, RecordKind.ALARM: 2, RecordKind.EVENT: 3}
CODE_KIND = {v: k for k, v in KIND_CODE.items()}
ALARM_CODE = KIND_CODE[RecordKind.ALARM]


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


def kind_of(item: Item) -> RecordKind:
    if isinstance(item, Sample):
        return RecordKind.SAMPLE
    if isinstance(item, AlarmEvent):
        return RecordKind.ALARM
    return RecordKind.EVENT


def decode(kind: RecordKind, body: str | bytes) -> Item:
    # Older outboxes hold TEXT bodies, newer ones BLOBs: orjson reads both.
    d = orjson.loads(body)
    if kind is RecordKind.SAMPLE:
        return Sample.from_json_dict(d)
    if kind is RecordKind.ALARM:
        return AlarmEvent.from_json_dict(d)
    return Event.from_json_dict(d)


# What a damaged body or an unknown kind code raises on the way to an item.
UNDECODABLE = (ValueError, KeyError, TypeError, AttributeError)


def decode_row(code: int, body: str | bytes) -> tuple[RecordKind, Item]:
    kind = CODE_KIND[code]
    return kind, decode(kind, body)


def iter_items(records: Iterable[Record]) -> Iterable[Item]:
    """The items of ``records`` in order (a small convenience for sinks)."""
    return (r.item for r in records)
