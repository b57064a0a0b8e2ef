"""The patrol engine: taps in, rounds and findings out. Pure, no I/O but the state store.

A round starts with a guard's first tap and completes when every checkpoint
of its route was tapped. It is closed as abandoned (each checkpoint it did
not reach is a ``checkpoint_missed`` finding) when it is still open
``max_duration_s`` after its first tap, or when the guard taps a checkpoint
the round already has (that tap starts the next round).

Findings (see ``FindingType``): overdue round, checkpoint missed, out of
order, too fast (transit shorter than the minimum walking time) and the
faked round it leads to, duplicate taps (ignored and counted), unknown card,
unknown reader, off-route tap, reader offline / back online, reader sending
garbage, reader flooding (lines dropped over its rate). Overdue, faked round,
unknown card and reader flood are alarms (``alarm=True``); the rest are
records only.

Unknown cards are aggregated per reader: ONE alarm per reader
(``patrol/unknown_card/<reader>``), whatever the number of cards. The first
unknown card of a burst raises it at once; the cards after it are counted
and re-raise the same alarm with the burst's count and the last few card
ids at most every ``unknown_card_report_s``; a reader quiet for that long
ends the burst. Every tap is still a ``patrol.tap`` record, so a flood of
distinct cards costs a bounded alarm book and a bounded state.

Overdue. Inside the night window the time since the last complete round
(a suspected faked round does not count unless ``faked_rounds_count``)
(or since the window start, or since the engine first ran, whichever is
later) may not exceed ``max_gap_s``. Each missed gap is raised once, with an
alarm key of its own (``patrol/overdue/<local due time>``), at the due time;
the gaps already raised are part of the persisted state, so neither a tick
nor a restart raises one twice. The alarms clear when a round completes or
the window ends. A due time at or after the window end is not a gap.

Time: tap times are the Sample's ``ts_ns`` (stamped when the line arrived);
timeouts and the overdue clock use the injected clock. When the wall clock
steps, the gateway calls ``wall_stepped`` so durations keep counting elapsed
time. The state is saved to the store after every change, so a restart loses
no round and fires nothing twice.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from gateway.model import Clock, Sample
from gateway.outbox import Event
from gateway.patrol.config import Checkpoint, PatrolConfig, RouteConfig
from gateway.patrol.store import PatrolStore

log = logging.getLogger(__name__)

MEASUREMENT = "patrol"
TAP_KIND = "patrol_tap"
NS = 1_000_000_000
# How often an otherwise idle tick persists its position (catch-up after a restart).
_TICK_SAVE_NS = 60 * NS
# Raised overdue gaps are forgotten after this long (two nights is plenty).
_KEEP_DUES_NS = 48 * 3600 * NS
# Card ids an unknown-card alarm names (the most recent ones).
_LAST_CARDS = 5
# Bound on the duplicate-window memory; the source's line rate keeps it far below.
_MAX_LAST_TAP = 4096

Severity = Literal["info", "low", "medium", "high", "critical"]
AlarmAction = Literal["raise", "clear", "pulse"]
UNKNOWN_GUARD = "unknown"
OVERDUE_SEVERITY: Severity = "high"


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


# --------------------------------------------------------------------------- state


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


# --------------------------------------------------------------------------- engine


class PatrolEngine:
    """Turns tap Samples and the passing of time into patrol records and findings."""

    def __init__(self, config: PatrolConfig, clock: Clock, store: PatrolStore) -> None:
        self.config = config
        self.clock = clock
        self.store = store
        self._by_reader = config.checkpoint_by_reader()
        self._by_id = {cp.id: cp for cp in config.checkpoints}
        self._by_card = config.guard_by_card()
        self._routes = {r.id: r for r in config.routes}
        saved = store.load()
        if saved is not None:
            self._s = PatrolState.from_json(saved)
            # A route or checkpoint removed from the config since: drop rounds that cannot finish.
            for g, r in list(self._s.rounds.items()):
                if r.route not in self._routes:
                    log.warning("patrol: dropping open round %s (route %r is gone)", r.id, r.route)
                    del self._s.rounds[g]
        else:
            self._s = PatrolState(since_ns=clock.now_ns())
            self._save()
        for cp in config.checkpoints:
            if cp.device is not None:
                known = self._s.device_checkpoints.setdefault(cp.device, [])
                if cp.id not in known:
                    known.append(cp.id)

    # ------------------------------------------------------------------ inputs

    def on_tap_sample(self, sample: Sample) -> list[PatrolOutput]:
        """A checkpoint reader's Sample: a tap, or (values empty, ``error`` set) an outage."""
        if sample.kind != TAP_KIND:
            return []
        if sample.error is not None and not sample.values:
            return self.reader_status(sample.device, False, sample.error, ts_ns=sample.ts_ns)
        reader = sample.values.get("reader")
        card = sample.values.get("card")
        if not isinstance(reader, str) or not isinstance(card, str):
            self._count("malformed")
            self._save()
            return []
        seq = sample.values.get("seq")
        out: list[PatrolOutput] = []
        # Time-driven verdicts that fell due before this tap come first, in time order.
        out.extend(self._advance(sample.ts_ns))
        out.extend(self._set_reader(sample.device, True, "", sample.ts_ns))
        out.extend(self._tap(sample.device, reader, card.upper(), seq, sample.ts_ns))
        self._save()
        return out

    def tick(self) -> list[PatrolOutput]:
        """Call every few seconds: abandons stale rounds, raises and clears overdue gaps."""
        now = self.clock.now_ns()
        out = self._advance(now)
        prev = self._s.last_tick_ns
        self._s.last_tick_ns = now
        if out or prev is None or now - prev >= _TICK_SAVE_NS:
            self._save()
        return out

    def wall_stepped(self, step_ns: int) -> None:
        """The wall clock jumped ``step_ns`` against the monotonic clock (gateway/clockwatch.py).

        The patrol's durations (round timeout, walking times, duplicate window, the
        overdue gap since the last complete round) run between wall-clock tap times,
        so the times they count from move with the clock: elapsed time is kept, and
        what follows is stamped in the new time. The night window does not move: it
        is wall-clock by nature. Nor do the times only shown (last tap per checkpoint,
        start of an unknown-card burst).
        """
        s = self._s
        s.since_ns += step_ns
        if s.last_tick_ns is not None:
            s.last_tick_ns += step_ns
        for r in s.rounds.values():
            r.start_ns += step_ns
            for v in r.visits:
                v.ts_ns += step_ns
        s.last_tap = {k: t + step_ns for k, t in s.last_tap.items()}
        if s.last_complete is not None:
            s.last_complete["end_ns"] = int(s.last_complete["end_ns"]) + step_ns
        s.raised_dues = [d + step_ns for d in s.raised_dues]
        for due_end in s.active_overdue.values():
            due_end[0] += step_ns
        for tally in [t for h in s.readers.values() for t in (h.garbage, h.dropped)]:
            if tally.report_ns is not None:
                tally.report_ns += step_ns
        for u in s.unknown.values():
            u.last_ns += step_ns
            if u.report_ns is not None:
                u.report_ns += step_ns
        self._save()

    def reader_status(
        self, device: str, ok: bool, detail: str = "", *, ts_ns: int | None = None
    ) -> list[PatrolOutput]:
        """The app's word on a reader's port: ``ok=False`` when it went away or is silent."""
        out = self._set_reader(device, ok, detail, self.clock.now_ns() if ts_ns is None else ts_ns)
        if out:
            self._save()
        return out

    def reader_frame_errors(self, device: str, total: int) -> list[PatrolOutput]:
        """The source's running count of garbage lines; reported at most once per interval."""
        text = "reader {device} sent {new} unreadable line(s)"
        return self._reader_tally(device, total, FindingType.READER_GARBAGE, text)

    def reader_overflow(self, device: str, total: int) -> list[PatrolOutput]:
        """The source's running count of lines dropped over its rate: one alarm per reader line.

        Dropped lines were never read, so taps may be among them: an alarm, not a
        record, re-raised with the new count at most once per ``garbage_report_s``.
        """
        return self._reader_tally(
            device,
            total,
            FindingType.READER_FLOOD,
            "reader {device} floods its line: {new} line(s) dropped unread over its rate"
            " ({total} in all); taps may be among them",
        )

    def _reader_tally(
        self, device: str, total: int, ftype: FindingType, text: str
    ) -> list[PatrolOutput]:
        h = self._s.readers.setdefault(device, ReaderHealth())
        flood = ftype is FindingType.READER_FLOOD
        now = self.clock.now_ns()
        new = (h.dropped if flood else h.garbage).due(
            total, now, int(self.config.garbage_report_s * NS)
        )
        if new <= 0:
            return []
        self._count("dropped_lines" if flood else "garbage_lines", new)
        cps = self._checkpoints_of(device)
        f = Finding(
            ftype,
            now,
            text.format(device=device, new=new, total=total),
            "medium",
            checkpoint=cps[0] if len(cps) == 1 else None,
            device=device,
            alarm=flood,
            alarm_key=f"patrol/reader_flood/{device}" if flood else None,
            alarm_action="pulse" if flood else None,
            data={"count": int(new), "total": int(total), "checkpoints": ",".join(cps)},
        )
        self._save()
        return [f]

    # ------------------------------------------------------------------ status

    def state(self) -> dict[str, Any]:
        """A JSON-able snapshot for the status API."""
        now = self.clock.now_ns()
        win = self.config.window_at(now)
        rounds = []
        for r in self._s.rounds.values():
            route = self._routes[r.route]
            seen = r.visited()
            rounds.append(
                {
                    "id": r.id,
                    "guard": r.guard,
                    "route": r.route,
                    "start_ns": r.start_ns,
                    "visited": [v.checkpoint for v in r.visits],
                    "remaining": [c for c in route.checkpoints if c not in seen],
                    "deadline_ns": r.start_ns + int(route.max_duration_s * NS),
                    "suspect": r.faked,
                }
            )
        checkpoints = []
        for cp in self.config.checkpoints:
            dev = next((d for d, cps in self._s.device_checkpoints.items() if cp.id in cps), None)
            h = self._s.readers.get(dev) if dev is not None else None
            checkpoints.append(
                {
                    "id": cp.id,
                    "place": cp.place,
                    "device": dev,
                    "last_tap_ns": self._s.checkpoint_last.get(cp.id),
                    "taps": self._s.checkpoint_taps.get(cp.id, 0),
                    "reader_ok": True if h is None else h.ok,
                    "reader_detail": "" if h is None else h.detail,
                }
            )
        return {
            "night": {
                "active": win is not None,
                "start_ns": win[0] if win else None,
                "end_ns": win[1] if win else None,
                "next_due_ns": self.next_due_ns(now),
            },
            "last_complete_round": self._s.last_complete,
            "open_rounds": rounds,
            "checkpoints": checkpoints,
            "overdue_alarms": sorted(self._s.active_overdue),
            "counters": dict(self._s.counters),
        }

    def next_due_ns(self, now: int | None = None) -> int | None:
        """When the next overdue gap falls due in the current night window, if any."""
        now = self.clock.now_ns() if now is None else now
        win = self.config.window_at(now)
        if win is None:
            return None
        for due in self._dues(win):
            if due not in self._s.raised_dues and due > now:
                return due
        return None

    # ------------------------------------------------------------------ taps

    def _tap(
        self, device: str, reader: str, card: str, seq: Any, ts: int
    ) -> list[PatrolOutput]:
        cp = self._by_reader.get(reader)
        guard = self._by_card.get(card)
        gid = guard.id if guard else UNKNOWN_GUARD
        cp_id = cp.id if cp else reader
        base = {"card": card, "reader": reader, "seq": int(seq) if isinstance(seq, int) else -1}

        def tap_event(status: str, **extra: Any) -> Event:
            return Event(
                kind="patrol.tap",
                ts_ns=ts,
                data={**base, **extra},
                device=device,
                tags={"record": "tap", "checkpoint": cp_id, "guard": gid, "status": status},
                measurement=MEASUREMENT,
            )

        dup_key = f"{card}|{reader}"
        last = self._s.last_tap.get(dup_key)
        if last is not None and 0 <= ts - last < self.config.duplicate_window_s * NS:
            # Not a new visit: the card was held to the reader twice.
            self._count("duplicates")
            self._count(f"duplicates.{cp_id}")
            f = Finding(
                FindingType.DUPLICATE_TAP,
                ts,
                f"duplicate tap of {guard.id if guard else card} at {cp_id} ignored",
                "info",
                checkpoint=cp_id,
                guard=gid,
                device=device,
                data={"card": card, "elapsed_s": float((ts - last) / NS)},
            )
            return [tap_event("duplicate"), f]
        self._s.last_tap[dup_key] = ts
        self._prune_last_tap(ts)
        if len(self._s.last_tap) > _MAX_LAST_TAP:
            # Inserted in time order: the oldest go first.
            for k in list(self._s.last_tap)[: len(self._s.last_tap) - _MAX_LAST_TAP]:
                del self._s.last_tap[k]

        if cp is None:
            self._count("unknown_readers")
            return [
                tap_event("unknown_reader"),
                Finding(
                    FindingType.UNKNOWN_READER,
                    ts,
                    f"tap from unknown reader {reader!r} on device {device}",
                    "medium",
                    checkpoint=cp_id,
                    guard=gid,
                    device=device,
                    data={"card": card, "reader": reader},
                ),
            ]
        self._learn_device(device, cp.id)
        if guard is None:
            self._count("unknown_cards")
            u = self._s.unknown.get(reader)
            if u is None:
                u = UnknownCards(first_ns=ts, device=device, checkpoint=cp.id)
                self._s.unknown[reader] = u
            u.count += 1
            u.last_ns = ts
            if card in u.cards:
                u.cards.remove(card)
            u.cards = [*u.cards, card][-_LAST_CARDS:]
            out_u: list[PatrolOutput] = [tap_event("unknown_card")]
            if u.report_ns is None or ts - u.report_ns >= self._unknown_ns():
                out_u.append(self._unknown_report(reader, u, ts))
            return out_u

        out: list[PatrolOutput] = []
        self._s.checkpoint_last[cp.id] = ts
        self._s.checkpoint_taps[cp.id] = self._s.checkpoint_taps.get(cp.id, 0) + 1
        self._count("taps")
        r = self._s.rounds.get(guard.id)
        if r is not None and cp.id in r.visited():
            # Back at a checkpoint this round already has: the guard started over.
            out.extend(self._close(r, ts, "abandoned", f"{cp.id} tapped again"))
            r = None
        if r is not None and cp.id not in self._routes[r.route].checkpoints:
            self._count("off_route")
            return [
                tap_event("off_route", round=r.id),
                Finding(
                    FindingType.OFF_ROUTE,
                    ts,
                    f"{guard.id} tapped {cp.id}, not on route {r.route} of round {r.id}",
                    "low",
                    checkpoint=cp.id,
                    guard=guard.id,
                    round_id=r.id,
                    device=device,
                ),
            ]
        if r is None:
            route = self._route_for(cp.id)
            if route is None:
                self._count("off_route")
                return [
                    *out,
                    tap_event("off_route"),
                    Finding(
                        FindingType.OFF_ROUTE,
                        ts,
                        f"{guard.id} tapped {cp.id}, which is on no route",
                        "low",
                        checkpoint=cp.id,
                        guard=guard.id,
                        device=device,
                    ),
                ]
            r = Round(
                id=self._round_id(guard.id, ts),
                guard=guard.id,
                card=card,
                route=route.id,
                start_ns=ts,
            )
            self._s.rounds[guard.id] = r
            self._count("rounds_started")
        route = self._routes[r.route]
        findings: list[PatrolOutput] = []
        seen = r.visited()
        if route.ordered:
            # The next checkpoint after the previous tap, so a skipped checkpoint is one
            # out-of-order finding (plus the missed one), not one per remaining tap.
            after = route.checkpoints.index(r.visits[-1].checkpoint) if r.visits else -1
            todo = [c for c in route.checkpoints if c not in seen]
            expected = next((c for c in todo if route.checkpoints.index(c) > after), todo[0])
            if cp.id != expected:
                r.out_of_order += 1
                self._count("out_of_order")
                findings.append(
                    Finding(
                        FindingType.OUT_OF_ORDER,
                        ts,
                        f"{guard.id} tapped {cp.id} where {expected} was expected (round {r.id})",
                        "low",
                        checkpoint=cp.id,
                        guard=guard.id,
                        round_id=r.id,
                        device=device,
                        data={"expected": expected},
                    )
                )
        if r.visits:
            prev = r.visits[-1]
            min_s = self.config.min_walk_s(route, prev.checkpoint, cp.id)
            elapsed = (ts - prev.ts_ns) / NS
            if min_s > 0 and elapsed < min_s:
                r.too_fast += 1
                self._count("too_fast")
                findings.append(
                    Finding(
                        FindingType.TOO_FAST,
                        ts,
                        f"{guard.id} went {prev.checkpoint} -> {cp.id} in {elapsed:.0f} s,"
                        f" walking takes at least {min_s:.0f} s (round {r.id})",
                        "medium",
                        checkpoint=cp.id,
                        guard=guard.id,
                        round_id=r.id,
                        device=device,
                        data={
                            "from": prev.checkpoint,
                            "elapsed_s": float(elapsed),
                            "min_s": float(min_s),
                        },
                    )
                )
                if r.too_fast >= self.config.faked_min_legs and not r.faked:
                    r.faked = True
                    self._count("faked_rounds")
                    findings.append(
                        Finding(
                            FindingType.FAKED_ROUND,
                            ts,
                            f"round {r.id} of {guard.id} looks faked: {r.too_fast} leg(s)"
                            " faster than walking",
                            "high",
                            checkpoint=cp.id,
                            guard=guard.id,
                            round_id=r.id,
                            device=device,
                            alarm=True,
                            alarm_key=f"patrol/faked/{r.id}",
                            alarm_action="pulse",
                            data={"legs": int(r.too_fast)},
                        )
                    )
        r.visits.append(Visit(cp.id, ts, device))
        out.append(tap_event("ok", round=r.id, step=len(r.visits), route=r.route))
        out.extend(findings)
        if len(r.visits) == len(route.checkpoints):
            out.extend(self._close(r, ts, "complete", ""))
        return out

    def _close(self, r: Round, ts: int, status: str, why: str) -> list[PatrolOutput]:
        """End a round: its record, a missed finding per checkpoint it lacks, overdue clears."""
        del self._s.rounds[r.guard]
        route = self._routes[r.route]
        seen = r.visited()
        missed = [c for c in route.checkpoints if c not in seen]
        end = r.visits[-1].ts_ns if r.visits else r.start_ns
        out: list[PatrolOutput] = [
            Event(
                kind="patrol.round",
                ts_ns=ts,
                data={
                    "round": r.id,
                    "route": r.route,
                    "card": r.card,
                    "start_ns": int(r.start_ns),
                    "end_ns": int(end),
                    "duration_s": float((end - r.start_ns) / NS),
                    "visited": ",".join(v.checkpoint for v in r.visits),
                    "missed": ",".join(missed),
                    "missed_count": len(missed),
                    "out_of_order": int(r.out_of_order),
                    "too_fast": int(r.too_fast),
                    "suspect": r.faked,
                    "reason": why,
                },
                device=r.visits[-1].device if r.visits else None,
                tags={"record": "round", "guard": r.guard, "status": status},
                measurement=MEASUREMENT,
            )
        ]
        self._count(f"rounds_{status}")
        for c in missed:
            self._count("missed_checkpoints")
            out.append(
                Finding(
                    FindingType.CHECKPOINT_MISSED,
                    ts,
                    f"round {r.id} of {r.guard} closed without {c}" + (f" ({why})" if why else ""),
                    "medium",
                    checkpoint=c,
                    guard=r.guard,
                    round_id=r.id,
                )
            )
        if status == "complete" and (not r.faked or self.config.faked_rounds_count):
            self._s.last_complete = {"round": r.id, "guard": r.guard, "end_ns": int(end)}
            for key, (due, _wend) in sorted(self._s.active_overdue.items()):
                out.append(self._overdue_clear(key, due, ts, f"round {r.id} completed"))
            self._s.active_overdue.clear()
        return out

    # ------------------------------------------------------------------ time

    def _advance(self, now: int) -> list[PatrolOutput]:
        """Everything that fell due up to ``now``, in time order."""
        out: list[PatrolOutput] = []
        # Round timeouts first: an abandoned round must not count as complete for the gap check.
        for r in sorted(self._s.rounds.values(), key=lambda r: r.start_ns):
            deadline = r.start_ns + int(self._routes[r.route].max_duration_s * NS)
            if deadline <= now:
                out.extend(self._close(r, deadline, "abandoned", "timed out"))
        out.extend(self._overdue(now))
        for key, (due, wend) in sorted(self._s.active_overdue.items()):
            if wend <= now:
                out.append(self._overdue_clear(key, due, wend, "night window ended"))
                del self._s.active_overdue[key]
        out.extend(self._unknown_due(now))
        return out

    # ------------------------------------------------------------------ unknown cards

    def _unknown_ns(self) -> int:
        return int(self.config.unknown_card_report_s * NS)

    def _unknown_due(self, now: int) -> list[PatrolOutput]:
        """Report the cards counted since the last report; end bursts that went quiet."""
        out: list[PatrolOutput] = []
        every = self._unknown_ns()
        for reader, u in sorted(self._s.unknown.items()):
            if u.report_ns is not None and now - u.report_ns < every:
                continue
            if u.count > u.reported:
                out.append(self._unknown_report(reader, u, now))
            elif now - u.last_ns >= every:
                del self._s.unknown[reader]
        return out

    def _unknown_report(self, reader: str, u: UnknownCards, ts: int) -> Finding:
        """The reader's one unknown-card alarm, raised again with the burst's count so far."""
        new = u.count - u.reported
        u.reported, u.report_ns = u.count, ts
        cp_id = u.checkpoint or reader
        if u.count == 1:
            msg = f"1 unknown card tap at {cp_id} (reader {reader}): {u.cards[-1]}"
        else:
            msg = (
                f"{u.count} unknown card taps at {cp_id} (reader {reader})"
                f" since {self._local(u.first_ns, '%H:%M:%S')}; last: {', '.join(u.cards)}"
            )
        return Finding(
            FindingType.UNKNOWN_CARD,
            ts,
            msg,
            "high",
            checkpoint=cp_id,
            guard=UNKNOWN_GUARD,
            device=u.device,
            alarm=True,
            alarm_key=f"patrol/unknown_card/{reader}",
            alarm_action="pulse",
            data={
                "card": u.cards[-1],
                "cards": ",".join(u.cards),
                "reader": reader,
                "count": int(u.count),
                "new": int(new),
                "since_ns": int(u.first_ns),
            },
        )

    def _dues(self, win: tuple[int, int]) -> list[int]:
        """The overdue gaps' due times inside ``win`` given what is known now."""
        start, end = win
        base = max(start, self._s.since_ns)
        lc = self._s.last_complete
        if lc is not None and int(lc["end_ns"]) < end:
            base = max(base, int(lc["end_ns"]))
        gap = int(self.config.max_gap_s * NS)
        dues = []
        due = base + gap
        while due < end:
            dues.append(due)
            due += gap
        return dues

    def _overdue(self, now: int) -> list[PatrolOutput]:
        # Windows still open at the last tick (or the current one) are checked, so a
        # gateway that was down across a due time raises it on restart, but not
        # gaps of nights long gone.
        horizon = self._s.last_tick_ns if self._s.last_tick_ns is not None else now
        out: list[PatrolOutput] = []
        raised = set(self._s.raised_dues)
        for win in self.config.windows_around(now):
            start, end = win
            if start > now or end <= min(horizon, now):
                continue
            for due in self._dues(win):
                if due > now or due in raised:
                    continue
                raised.add(due)
                self._s.raised_dues.append(due)
                key = f"patrol/overdue/{self._local(due, '%Y-%m-%dT%H:%M')}"
                self._s.active_overdue[key] = [due, end]
                self._count("overdue")
                lc = self._s.last_complete
                since = f"the last complete round {lc['round']}" if lc else "the start of the night"
                out.append(
                    Finding(
                        FindingType.OVERDUE,
                        due,
                        f"no complete patrol round for {self.config.max_gap_s / 3600:g} h"
                        f" (since {since}); due {self._local(due, '%H:%M')}",
                        OVERDUE_SEVERITY,
                        alarm=True,
                        alarm_key=key,
                        alarm_action="raise",
                        data={"due_ns": int(due), "detected_ns": int(now)},
                    )
                )
        self._s.raised_dues = [d for d in self._s.raised_dues if d > now - _KEEP_DUES_NS]
        return out

    def _overdue_clear(self, key: str, due: int, ts: int, why: str) -> Finding:
        return Finding(
            FindingType.OVERDUE_CLEARED,
            ts,
            f"overdue patrol (due {self._local(due, '%H:%M')}) cleared: {why}",
            "info",
            alarm=True,
            alarm_key=key,
            alarm_action="clear",
            data={"due_ns": int(due)},
            raised_as=(FindingType.OVERDUE, OVERDUE_SEVERITY),
        )

    # ------------------------------------------------------------------ readers

    def _set_reader(self, device: str, ok: bool, detail: str, ts: int) -> list[PatrolOutput]:
        h = self._s.readers.setdefault(device, ReaderHealth())
        if h.ok == ok:
            h.detail = detail if not ok else h.detail
            return []
        h.ok = ok
        h.detail = detail
        h.since_ns = ts
        cps = self._checkpoints_of(device)
        where = ", ".join(cps) if cps else "no known checkpoint"
        if not ok:
            self._count("reader_offline")
            return [
                Finding(
                    FindingType.READER_OFFLINE,
                    ts,
                    f"checkpoint reader {device} ({where}) offline: {detail}",
                    "medium",
                    checkpoint=cps[0] if len(cps) == 1 else None,
                    device=device,
                    data={"detail": detail, "checkpoints": ",".join(cps)},
                )
            ]
        return [
            Finding(
                FindingType.READER_ONLINE,
                ts,
                f"checkpoint reader {device} ({where}) back online",
                "info",
                checkpoint=cps[0] if len(cps) == 1 else None,
                device=device,
                data={"checkpoints": ",".join(cps)},
            )
        ]

    # ------------------------------------------------------------------ helpers

    def _route_for(self, cp_id: str) -> RouteConfig | None:
        # Prefer a route that starts here, so the first tap of a round is not out of order.
        for r in self.config.routes:
            if r.checkpoints[0] == cp_id:
                return r
        for r in self.config.routes:
            if cp_id in r.checkpoints:
                return r
        return None

    def _round_id(self, guard: str, ts: int) -> str:
        # Deterministic: the same round has the same id before and after a restart.
        return f"{self._local(ts, '%Y%m%d-%H%M%S')}-{guard}"

    def _local(self, ts: int, fmt: str) -> str:
        return datetime.fromtimestamp(ts / NS, self.config.tz).strftime(fmt)

    def _learn_device(self, device: str, cp_id: str) -> None:
        known = self._s.device_checkpoints.setdefault(device, [])
        if cp_id not in known:
            known.append(cp_id)

    def _checkpoints_of(self, device: str) -> list[str]:
        if device in self._s.device_checkpoints:
            return list(self._s.device_checkpoints[device])
        cp: Checkpoint | None = self._by_reader.get(device) or self._by_id.get(device)
        return [cp.id] if cp else []

    def _prune_last_tap(self, now: int) -> None:
        horizon = now - int(self.config.duplicate_window_s * NS)
        for k in [k for k, t in self._s.last_tap.items() if t < horizon]:
            del self._s.last_tap[k]

    def _count(self, name: str, n: int = 1) -> None:
        self._s.counters[name] = self._s.counters.get(name, 0) + n

    def _save(self) -> None:
        d = self._s.to_json()
        d["saved_ns"] = self.clock.now_ns()
        self.store.save(d)
