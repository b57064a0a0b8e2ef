"""The day's alarms as episodes: raised, acknowledged (when, by whom, late or not), cleared.

Pure: alarm transition rows (the ``alarm`` measurement) in, one
``Episode`` per activation out, with its timeline. An acknowledgement is
late when it came after the alarm's escalation had to move past its first
level: the first ``escalation[i].after_s > 0`` (i >= 1) of the routes the
alarm matches (``gateway.alerting.roster.routes_for``); where no route
says, ``reports.ack_late_s``; otherwise lateness is not judged. An alarm
still unacknowledged at the end of the day is flagged as such.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gateway.alerting.config import AlertingConfig
from gateway.alerting.roster import routes_for

NS = 1_000_000_000
_START_ACTIONS = ("activate",)


@dataclass
class Step:
    ts_ns: int
    action: str
    state: str
    actor: str
    message: str


@dataclass
class Episode:
    alarm_id: str
    device: str
    rule: str
    severity: str
    area: str
    point: str
    message: str
    raised_ns: int | None
    acked_ns: int | None = None
    acked_by: str = ""
    cleared_ns: int | None = None
    late_after_s: float | None = None
    steps: list[Step] = field(default_factory=list)

    @property
    def ack_delay_s(self) -> float | None:
        if self.acked_ns is None or self.raised_ns is None:
            return None
        return (self.acked_ns - self.raised_ns) / NS

    @property
    def late(self) -> bool:
        """Acknowledged after the escalation deadline, or not acknowledged past it."""
        if self.late_after_s is None:
            return False
        d = self.ack_delay_s
        return d is not None and d > self.late_after_s

    @property
    def unacknowledged(self) -> bool:
        return self.acked_ns is None


def late_after_s(
    alerting: AlertingConfig | None,
    severity: str,
    area: str | None,
    rule: str,
    fallback_s: float | None,
) -> float | None:
    """Seconds after raising past which an acknowledgement is late for this alarm."""
    if alerting is not None:
        deadlines = [
            lvl.after_s
            for route in routes_for(alerting, severity, area or None, rule)
            for lvl in route.escalation[1:]
            if lvl.after_s > 0
        ]
        if deadlines:
            return min(deadlines)
    return fallback_s


def episodes(
    rows: list[dict[str, Any]],
    start_ns: int,
    end_ns: int,
    *,
    alerting: AlertingConfig | None = None,
    ack_late_s: float | None = None,
) -> list[Episode]:
    """Episodes with a transition in [start_ns, end_ns), or still open at start_ns."""
    open_: dict[str, Episode] = {}
    done: list[Episode] = []
    for r in sorted(rows, key=lambda r: int(r["time"])):
        ts = int(r["time"])
        if ts >= end_ns:
            break
        aid = str(r.get("alarm_id") or "")
        action = str(r.get("action") or "")
        state = str(r.get("state") or "")
        ep = open_.get(aid)
        if ep is None or action in _START_ACTIONS:
            if ep is not None:
                done.append(ep)
            severity, area, rule = (str(r.get(k) or "") for k in ("severity", "area", "rule"))
            ep = Episode(
                alarm_id=aid,
                device=str(r.get("device") or ""),
                rule=rule,
                severity=severity,
                area=area,
                point=str(r.get("point") or ""),
                message=str(r.get("message") or ""),
                # A first transition that is no activation: raised before the rows we read.
                raised_ns=ts if action in _START_ACTIONS else None,
                late_after_s=late_after_s(alerting, severity, area, rule, ack_late_s),
            )
            open_[aid] = ep
        ep.steps.append(
            Step(ts, action, state, str(r.get("actor") or ""), str(r.get("message") or ""))
        )
        if action == "ack" and ep.acked_ns is None:
            ep.acked_ns, ep.acked_by = ts, str(r.get("actor") or "")
        if state == "normal":
            ep.cleared_ns = ts
            done.append(open_.pop(aid))
    done.extend(open_.values())
    keep = [
        e for e in done
        if any(start_ns <= s.ts_ns < end_ns for s in e.steps)
        or (e.cleared_ns is None and e.steps[0].ts_ns < start_ns)
    ]
    return sorted(keep, key=lambda e: (e.steps[0].ts_ns, e.alarm_id))


__all__ = ["Episode", "Step", "episodes", "late_after_s"]
