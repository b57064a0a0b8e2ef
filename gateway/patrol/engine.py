"""The patrol engine: taps in, rounds and findings out. Pure, no I/O but the state store.

A round starts with a guard's first tap and completes when every checkpoint
of its route was tapped. It is closed as abandoned (each checkpoint it did
not reach is a ``checkpoint_missed`` finding) when it is still open
``max_duration_s`` after its first tap, or when the guard taps a checkpoint
the round already has (that tap starts the next round).

``PatrolEngine`` owns the inputs (taps, ticks, wall-clock steps) and the
taps themselves (duplicates, unknown readers, off-route, out of order, too
fast, faked); its other parts are mixins in modules of their own (see
``mixin.py``): the overdue clock (``overdue.py``), closing rounds
(``rounds.py``), reader health and unknown-card bursts (``readers.py``) and
the status snapshot (``status.py``). What it says is in ``findings.py``,
what it remembers in ``state.py``.

Time: tap times are the Sample's ``ts_ns`` (stamped when the line arrived);
timeouts and the overdue clock use the injected clock. When the wall clock
steps, the gateway calls ``wall_stepped`` so durations keep counting elapsed
time. The state is saved to the store after every change, so a restart loses
no round and fires nothing twice.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from gateway.model import Clock, Sample
from gateway.outbox import Event
from gateway.patrol.config import Checkpoint, PatrolConfig, RouteConfig
from gateway.patrol.findings import (
    MEASUREMENT,
    UNKNOWN_GUARD,
    Finding,
    FindingType,
    PatrolOutput,
)
from gateway.patrol.mixin import NS
from gateway.patrol.readers import ReaderWatch
from gateway.patrol.rounds import RoundRecords
from gateway.patrol.state import PatrolState, Round, UnknownCards, Visit
from gateway.patrol.status import PatrolStatus
from gateway.patrol.store import PatrolStore

log = logging.getLogger(__name__)

TAP_KIND = "patrol_tap"
# How often an otherwise idle tick persists its position (catch-up after a restart).
_TICK_SAVE_NS = 60 * NS
# Card ids an unknown-card alarm names (the most recent ones).
_LAST_CARDS = 5
# Bound on the duplicate-window memory; the source's line rate keeps it far below.
_MAX_LAST_TAP = 4096


class PatrolEngine(RoundRecords, PatrolStatus, ReaderWatch):
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
        self._s.wall_stepped(step_ns)
        self._save()

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
