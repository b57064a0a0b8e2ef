"""How a patrol round ends: its round record, the checkpoints it missed, the overdue it clears.

A round is closed complete when every checkpoint of its route was tapped, or
abandoned (timed out, or a checkpoint tapped twice); each checkpoint it did
not reach is a ``checkpoint_missed`` finding. A complete round (not a
suspected fake, unless ``faked_rounds_count``) clears the overdue alarms.
"""

from __future__ import annotations

from gateway.outbox import Event
from gateway.patrol.findings import MEASUREMENT, Finding, FindingType, PatrolOutput
from gateway.patrol.mixin import NS
from gateway.patrol.overdue import OverdueChecks
from gateway.patrol.state import Round


class RoundRecords(OverdueChecks):
    """Closes rounds (a part of ``PatrolEngine``)."""

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
