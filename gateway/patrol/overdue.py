"""The overdue clock of the patrol engine: gaps without a complete round in the night.

Inside the night window the time since the last complete round (a suspected
faked round does not count unless ``faked_rounds_count``) (or since the
window start, or since the engine first ran, whichever is later) may not
exceed ``max_gap_s``. Each missed gap is raised once, with an alarm key of
its own (``patrol/overdue/<local due time>``), at the due time; the gaps
already raised are part of the persisted state, so neither a tick nor a
restart raises one twice. A due time at or after the window end is not a gap.
"""

from __future__ import annotations

from gateway.patrol.findings import Finding, FindingType, PatrolOutput, Severity
from gateway.patrol.mixin import NS, EngineMixin

# Raised overdue gaps are forgotten after this long (two nights is plenty).
_KEEP_DUES_NS = 48 * 3600 * NS
OVERDUE_SEVERITY: Severity = "high"


class OverdueChecks(EngineMixin):
    """Raises each overdue gap once and clears it (a part of ``PatrolEngine``)."""

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
