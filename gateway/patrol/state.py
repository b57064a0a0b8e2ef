"""The patrol engine's memory: open rounds, readers, unknown-card bursts, overdue gaps.

``PatrolState`` is everything the engine must remember across a restart,
saved as JSON through the patrol store after every change (``to_json`` /
``from_json``, which also reads the older saved forms). ``wall_stepped``
moves the stored wall-clock times that durations count from when the clock
steps.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(slots=True)
class Visit:
    checkpoint: str
    ts_ns: int
    device: str | None


@dataclass(slots=True)
class Round:
    id: str
    guard: str
    card: str
    route: str
    start_ns: int
    visits: list[Visit] = field(default_factory=list)
    out_of_order: int = 0
    too_fast: int = 0
    faked: bool = False

    def visited(self) -> set[str]:
        return {v.checkpoint for v in self.visits}

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "guard": self.guard,
            "card": self.card,
            "route": self.route,
            "start_ns": self.start_ns,
            "visits": [[v.checkpoint, v.ts_ns, v.device] for v in self.visits],
            "out_of_order": self.out_of_order,
            "too_fast": self.too_fast,
            "faked": self.faked,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Round:
        return cls(
            id=d["id"],
            guard=d["guard"],
            card=d["card"],
            route=d["route"],
            start_ns=int(d["start_ns"]),
            visits=[Visit(str(c), int(t), dev) for c, t, dev in d["visits"]],
            out_of_order=int(d["out_of_order"]),
            too_fast=int(d["too_fast"]),
            faked=bool(d["faked"]),
        )


@dataclass(slots=True)
class Tally:
    """A source's running count (garbage lines, dropped lines) and how much was reported."""

    total: int = 0
    reported: int = 0
    report_ns: int | None = None

    def due(self, total: int, now: int, interval_ns: int) -> int:
        """How many to report now: 0 when nothing is new or the last report is too recent."""
        if total < self.total:  # the source restarted and its counter with it
            self.reported = 0
        self.total = total
        new = total - self.reported
        if new <= 0 or (self.report_ns is not None and now - self.report_ns < interval_ns):
            return 0
        self.reported, self.report_ns = total, now
        return new


@dataclass(slots=True)
class ReaderHealth:
    ok: bool = True
    detail: str = ""
    since_ns: int | None = None
    garbage: Tally = field(default_factory=Tally)
    dropped: Tally = field(default_factory=Tally)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ReaderHealth:
        h = cls(ok=bool(d.get("ok", True)), detail=str(d.get("detail", "")))
        h.since_ns = d.get("since_ns")
        if "garbage" in d:
            h.garbage = Tally(**d["garbage"])
        else:  # saved before the tallies had their own records
            h.garbage = Tally(
                int(d.get("frame_errors", 0)),
                int(d.get("reported_errors", 0)),
                d.get("last_garbage_report_ns"),
            )
        if "dropped" in d:
            h.dropped = Tally(**d["dropped"])
        return h


@dataclass(slots=True)
class UnknownCards:
    """The unknown-card taps of one reader's current burst."""

    count: int = 0
    reported: int = 0
    cards: list[str] = field(default_factory=list)  # the last few, oldest first
    first_ns: int = 0
    last_ns: int = 0
    report_ns: int | None = None
    device: str | None = None
    checkpoint: str = ""  # kept: the reader may be gone from the config after a restart


@dataclass(slots=True)
class PatrolState:
    """Everything the engine must remember across a restart."""

    since_ns: int
    last_tick_ns: int | None = None
    rounds: dict[str, Round] = field(default_factory=dict)  # by guard id
    # (card|reader) -> ts of the last accepted tap, for the duplicate window.
    last_tap: dict[str, int] = field(default_factory=dict)
    checkpoint_last: dict[str, int] = field(default_factory=dict)
    checkpoint_taps: dict[str, int] = field(default_factory=dict)
    last_complete: dict[str, Any] | None = None
    raised_dues: list[int] = field(default_factory=list)
    # alarm key -> [due ns, window end ns]
    active_overdue: dict[str, list[int]] = field(default_factory=dict)
    readers: dict[str, ReaderHealth] = field(default_factory=dict)
    device_checkpoints: dict[str, list[str]] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)
    # reader id -> its current burst of unknown cards (readers are configured: bounded)
    unknown: dict[str, UnknownCards] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "since_ns": self.since_ns,
            "last_tick_ns": self.last_tick_ns,
            "rounds": {g: r.to_json() for g, r in self.rounds.items()},
            "last_tap": self.last_tap,
            "checkpoint_last": self.checkpoint_last,
            "checkpoint_taps": self.checkpoint_taps,
            "last_complete": self.last_complete,
            "raised_dues": self.raised_dues,
            "active_overdue": self.active_overdue,
            "readers": {k: asdict(h) for k, h in self.readers.items()},
            "device_checkpoints": self.device_checkpoints,
            "counters": self.counters,
            "unknown": {k: asdict(u) for k, u in self.unknown.items()},
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> PatrolState:
        return cls(
            since_ns=int(d["since_ns"]),
            last_tick_ns=d.get("last_tick_ns"),
            rounds={g: Round.from_json(r) for g, r in d.get("rounds", {}).items()},
            last_tap={k: int(v) for k, v in d.get("last_tap", {}).items()},
            checkpoint_last={k: int(v) for k, v in d.get("checkpoint_last", {}).items()},
            checkpoint_taps={k: int(v) for k, v in d.get("checkpoint_taps", {}).items()},
            last_complete=d.get("last_complete"),
            raised_dues=[int(x) for x in d.get("raised_dues", [])],
            active_overdue={
                k: [int(a), int(b)] for k, (a, b) in d.get("active_overdue", {}).items()
            },
            readers={k: ReaderHealth.from_json(h) for k, h in d.get("readers", {}).items()},
            device_checkpoints={k: list(v) for k, v in d.get("device_checkpoints", {}).items()},
            counters={k: int(v) for k, v in d.get("counters", {}).items()},
            unknown={k: UnknownCards(**u) for k, u in d.get("unknown", {}).items()},
        )

    def wall_stepped(self, step_ns: int) -> None:
        """Move the stored times durations count from (``PatrolEngine.wall_stepped``)."""
        self.since_ns += step_ns
        if self.last_tick_ns is not None:
            self.last_tick_ns += step_ns
        for r in self.rounds.values():
            r.start_ns += step_ns
            for v in r.visits:
                v.ts_ns += step_ns
        self.last_tap = {k: t + step_ns for k, t in self.last_tap.items()}
        if self.last_complete is not None:
            self.last_complete["end_ns"] = int(self.last_complete["end_ns"]) + step_ns
        self.raised_dues = [d + step_ns for d in self.raised_dues]
        for due_end in self.active_overdue.values():
            due_end[0] += step_ns
        for tally in [t for h in self.readers.values() for t in (h.garbage, h.dropped)]:
            if tally.report_ns is not None:
                tally.report_ns += step_ns
        for u in self.unknown.values():
            u.last_ns += step_ns
            if u.report_ns is not None:
                u.report_ns += step_ns
