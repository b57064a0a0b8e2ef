"""Who hears of an alarm: the on-call roster by weekday and time of day, and the routes.

``Roster.on_call`` names the people on duty at one escalation level from
the roster's shifts (a shift that wraps midnight belongs to the weekday it
started on); ``routes_for`` picks the notification routes an alarm matches
by severity, area and rule, in order, stopping at the first that does not
``continue_matching``.
"""

from __future__ import annotations

import fnmatch
from datetime import datetime
from zoneinfo import ZoneInfo

from gateway.alerting.config import WEEKDAYS, AlertingConfig, Person, Route, Severity, parse_hhmm


class Roster:
    """Who is on call now, per escalation level, from weekday and time-of-day shifts."""

    def __init__(self, cfg: AlertingConfig) -> None:
        self.cfg = cfg.roster
        self.tz = ZoneInfo(self.cfg.timezone)

    def _on(self, shift_days: list[str], start: str, end: str, local: datetime) -> bool:
        day = WEEKDAYS[local.weekday()]
        prev_day = WEEKDAYS[(local.weekday() - 1) % 7]
        t = local.time()
        st = parse_hhmm(start)
        en = parse_hhmm(end)
        assert st is not None  # start is never 24:00 in practice; 24:00 would mean never
        if en is None or st < en:
            return day in shift_days and t >= st and (en is None or t < en)
        # A shift that wraps midnight belongs to the weekday it started on.
        return (day in shift_days and t >= st) or (prev_day in shift_days and t < en)

    def on_call(self, now_ns: int, level: int) -> list[str]:
        local = datetime.fromtimestamp(now_ns / 1e9, self.tz)
        names: list[str] = []
        for shift in self.cfg.shifts:
            if not self._on(list(shift.days), shift.start, shift.end, local):
                continue
            # Past the last level of a shift, keep telling its last level.
            for who in shift.levels[min(level, len(shift.levels) - 1)]:
                if who not in names:
                    names.append(who)
        return names

    def person(self, name: str) -> Person:
        return self.cfg.people.get(name, Person())

    def local(self, ts_ns: int) -> datetime:
        return datetime.fromtimestamp(ts_ns / 1e9, self.tz)


def route_matches(route: Route, severity: str, area: str | None, rule: str) -> bool:
    try:
        sev = Severity(severity)
    except ValueError:
        sev = Severity.HIGH
    m = route.match
    if sev.rank < m.min_severity.rank:
        return False
    if m.areas and (area or "") not in m.areas:
        return False
    return not (m.rules and not any(fnmatch.fnmatchcase(rule, p) for p in m.rules))


def routes_for(cfg: AlertingConfig, severity: str, area: str | None, rule: str) -> list[Route]:
    out: list[Route] = []
    for route in cfg.routes:
        if route_matches(route, severity, area, rule):
            out.append(route)
            if not route.continue_matching:
                break
    return out
