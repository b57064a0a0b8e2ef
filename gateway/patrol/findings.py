"""What the patrol engine says: findings (its verdicts) and the records that go with them.

Findings (see ``FindingType``): overdue round, checkpoint missed, out of
order, too fast (transit shorter than the minimum walking time) and the
faked round it leads to, duplicate taps (ignored and counted), unknown card,
unknown reader, off-route tap, reader offline / back online, reader sending
garbage, reader flooding (lines dropped over its rate). Overdue, faked round,
unknown card and reader flood are alarms (``alarm=True``); the rest are
records only. Every output of the engine is a ``PatrolOutput``: an outbox
``Event`` (a tap or round record) or a ``Finding``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal

from gateway.outbox import Event

MEASUREMENT = "patrol"
Severity = Literal["info", "low", "medium", "high", "critical"]
AlarmAction = Literal["raise", "clear", "pulse"]
UNKNOWN_GUARD = "unknown"


class FindingType(StrEnum):
    OVERDUE = "overdue"
    OVERDUE_CLEARED = "overdue_cleared"
    CHECKPOINT_MISSED = "checkpoint_missed"
    OUT_OF_ORDER = "out_of_order"
    TOO_FAST = "too_fast"
    FAKED_ROUND = "faked_round"
    DUPLICATE_TAP = "duplicate_tap"
    UNKNOWN_CARD = "unknown_card"
    UNKNOWN_READER = "unknown_reader"
    OFF_ROUTE = "off_route"
    READER_OFFLINE = "reader_offline"
    READER_ONLINE = "reader_online"
    READER_GARBAGE = "reader_garbage"
    READER_FLOOD = "reader_flood"


@dataclass(slots=True)
class Finding:
    """One patrol verdict.

    Every finding goes to the outbox as ``event()``. When ``alarm`` is true it
    also drives the alarm book under ``alarm_key``: ``alarm_action`` is
    ``raise`` (condition became active), ``clear`` (condition gone) or
    ``pulse`` (a one-off event: raise, then clear at once, so it stays
    return-to-normal-unacknowledged until an operator acknowledges it).
    ``raised_as`` names, on a clear, the finding that raised the alarm: the
    alarm keeps that rule and severity for its whole life (``alarm_identity``),
    while the record itself says what happened (``overdue_cleared``, info).
    """

    type: FindingType
    ts_ns: int
    message: str
    severity: Severity = "low"
    checkpoint: str | None = None
    guard: str | None = None
    round_id: str | None = None
    device: str | None = None
    alarm: bool = False
    alarm_key: str | None = None
    alarm_action: AlarmAction | None = None
    data: dict[str, Any] = field(default_factory=dict)
    raised_as: tuple[FindingType, Severity] | None = None

    def alarm_identity(self) -> tuple[str, Severity]:
        """(rule, severity) of the alarm this finding drives: the raise's, for raise and clear."""
        ftype, severity = self.raised_as or (self.type, self.severity)
        return f"patrol_{ftype}", severity

    def event(self) -> Event:
        tags = {"record": "finding"}
        if self.checkpoint:
            tags["checkpoint"] = self.checkpoint
        if self.guard:
            tags["guard"] = self.guard
        data: dict[str, Any] = {
            "message": self.message,
            "severity": self.severity,
            "alarm": self.alarm,
            **self.data,
        }
        if self.round_id:
            data["round"] = self.round_id
        if self.alarm_key:
            data["alarm_key"] = self.alarm_key
        if self.alarm_action:
            data["alarm_action"] = self.alarm_action
        return Event(
            kind=f"patrol.{self.type}",
            ts_ns=self.ts_ns,
            data=data,
            device=self.device,
            tags=tags,
            measurement=MEASUREMENT,
        )


PatrolOutput = Event | Finding


def to_events(outputs: list[PatrolOutput]) -> list[Event]:
    """Everything the engine returned, as outbox Events (in order)."""
    return [o.event() if isinstance(o, Finding) else o for o in outputs]


def alarms_of(outputs: list[PatrolOutput]) -> list[Finding]:
    """The findings that must go to the alarm book."""
    return [o for o in outputs if isinstance(o, Finding) and o.alarm]
