"""The console's patrol status: rounds in progress, the last tap per checkpoint, overdue.

Fed by the patrol records each gateway publishes on its ``events`` topic
(``patrol.tap``, ``patrol.round``, ``patrol.overdue``, ``patrol.overdue_cleared``);
the checkpoints of the console's own site come from its site file, so one
never tapped shows as such. Events are not retained: after a console restart
the taps show again from the next one, while overdue also shows from the
retained ``patrol_overdue`` alarms (``ConsoleState`` has them).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Checkpoints and rounds a site may have on the board (a flood of bogus readers
# must not grow the console without bound).
MAX_PER_SITE = 500


@dataclass
class Checkpoint:
    site: str
    id: str
    place: str = ""
    last_ns: int | None = None
    guard: str | None = None
    status: str | None = None
    round: str | None = None


@dataclass
class RoundView:
    site: str
    id: str
    guard: str
    route: str | None
    start_ns: int
    last_ns: int
    visited: list[str] = field(default_factory=list)
    planned: int | None = None


@dataclass
class Overdue:
    site: str
    since_ns: int
    message: str


@dataclass
class SitePlan:
    """What the console's own site file says: checkpoints (id -> place), routes (id -> ids)."""

    checkpoints: dict[str, str] = field(default_factory=dict)
    routes: dict[str, list[str]] = field(default_factory=dict)


class PatrolBoard:
    """Per site: checkpoints with their last tap, open rounds by guard, overdue."""

    def __init__(self, plans: dict[str, SitePlan] | None = None) -> None:
        self.plans = plans or {}
        self.checkpoints: dict[tuple[str, str], Checkpoint] = {}
        self.rounds: dict[tuple[str, str], RoundView] = {}
        self.overdue: dict[str, Overdue] = {}
        self.last_closed: dict[str, dict[str, Any]] = {}
        for site, plan in self.plans.items():
            for cp, place in plan.checkpoints.items():
                self.checkpoints[(site, cp)] = Checkpoint(site, cp, place)

    def sites(self) -> list[str]:
        return sorted({s for s, _ in self.checkpoints} | set(self.overdue))

    def apply(self, site: str, d: dict[str, Any]) -> bool:
        """One ``type: event`` message whose kind starts with ``patrol.``; True if shown."""
        kind = d.get("kind")
        ts = d.get("ts_ns")
        data = d.get("data") if isinstance(d.get("data"), dict) else {}
        tags = d.get("tags") if isinstance(d.get("tags"), dict) else {}
        assert isinstance(data, dict) and isinstance(tags, dict)
        if not isinstance(ts, int):
            return False
        if kind == "patrol.tap":
            return self._tap(site, ts, data, tags)
        if kind == "patrol.round":
            rid = data.get("round")
            guard = str(tags.get("guard", ""))
            open_round = self.rounds.get((site, guard))
            if open_round is not None and open_round.id == rid:
                del self.rounds[(site, guard)]
            self.last_closed[site] = {
                "round": rid,
                "guard": guard,
                "status": tags.get("status"),
                "missed": data.get("missed") or "",
                "end_ns": ts,
            }
            return True
        if kind == "patrol.overdue":
            self.overdue[site] = Overdue(site, ts, str(data.get("message", "patrol overdue")))
            return True
        if kind == "patrol.overdue_cleared":
            return self.overdue.pop(site, None) is not None
        return False

    def _tap(self, site: str, ts: int, data: dict[str, Any], tags: dict[str, Any]) -> bool:
        cp_id = tags.get("checkpoint")
        if not isinstance(cp_id, str):
            return False
        key = (site, cp_id)
        cp = self.checkpoints.get(key)
        if cp is None:
            if sum(1 for s, _ in self.checkpoints if s == site) >= MAX_PER_SITE:
                return False
            cp = self.checkpoints[key] = Checkpoint(site, cp_id)
        if cp.last_ns is not None and ts < cp.last_ns:
            return False  # an older tap arriving late changes nothing
        guard = str(tags.get("guard", ""))
        rid = data.get("round")
        cp.last_ns, cp.guard, cp.status = ts, guard, str(tags.get("status", ""))
        cp.round = rid if isinstance(rid, str) else None
        if isinstance(rid, str) and tags.get("status") == "ok":
            r = self.rounds.get((site, guard))
            if r is None or r.id != rid:
                route = data.get("route") if isinstance(data.get("route"), str) else None
                plan = self.plans.get(site)
                planned = len(plan.routes[route]) if plan and route in plan.routes else None
                r = self.rounds[(site, guard)] = RoundView(
                    site, rid, guard, route, ts, ts, planned=planned
                )
            r.last_ns = ts
            if cp_id not in r.visited:
                r.visited.append(cp_id)
        return True

    def view(self, site: str | None = None) -> dict[str, Any]:
        """Everything the page and ``/api/patrol`` show, per site."""
        out: dict[str, Any] = {}
        for s in self.sites() if site is None else [site]:
            cps = [c for c in self.checkpoints.values() if c.site == s]  # the site file's order
            out[s] = {
                "rounds": [vars(r) for r in self.rounds.values() if r.site == s],
                "checkpoints": [vars(c) for c in cps],
                "overdue": vars(self.overdue[s]) if s in self.overdue else None,
                "last_closed": self.last_closed.get(s),
            }
        return out
