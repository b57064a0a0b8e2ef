"""The patrol engine's status snapshot for the status API and the console.

The night window and the next due time, the last complete round, the open
rounds with what they still lack and their deadline, every checkpoint with
its reader's health and last tap, the active overdue alarms and the counters.
"""

from __future__ import annotations

from typing import Any

from gateway.patrol.mixin import NS
from gateway.patrol.overdue import OverdueChecks


class PatrolStatus(OverdueChecks):
    """``state()`` (a part of ``PatrolEngine``)."""

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
