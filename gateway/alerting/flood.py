"""Alarm floods (ISA-18.2): too many alarms annunciated in too short a time.

More than ``flood.count`` activations into unacknowledged within
``flood.window_s`` start a flood: the alarm ``gateway:alarm_flood`` is raised
(it does not count toward the flood itself), and while it lasts only high and
critical alarms page (``notify.py``). The flood ends when the count in the
window falls below ``flood.end_below`` (``AlarmBook.tick``). The window runs
on the monotonic clock, like the book's other durations.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any

from gateway.alerting.alarm import Alarm
from gateway.alerting.config import AlertingConfig, Severity
from gateway.alerting.detector import AlarmSpec
from gateway.model import AlarmEvent, AlarmState

FLOOD_ALARM = "gateway:alarm_flood"


class FloodWatch:
    """Flood detection of the alarm book (a part of ``AlarmBook``, which defines what follows)."""

    cfg: AlertingConfig
    offset_ns: int
    flood_recent: deque[int]
    in_flood: bool
    counters: dict[str, int]
    _flood_mono: deque[int] | None

    if TYPE_CHECKING:

        def ensure(self, spec: AlarmSpec) -> Alarm: ...

        def _event(
            self, a: Alarm, previous: AlarmState, action: str, ts_ns: int, **extra: Any
        ) -> AlarmEvent: ...

    def _flood_times(self) -> deque[int]:
        """Annunciated activations in monotonic time."""
        if self._flood_mono is None:
            self._flood_mono = deque(
                (t - self.offset_ns for t in self.flood_recent), maxlen=self.flood_recent.maxlen
            )
        return self._flood_mono

    def _flood_note(self, ts_ns: int) -> list[AlarmEvent]:
        self._flood_times().append(ts_ns - self.offset_ns)
        self.flood_recent.append(ts_ns)
        n = self._flood_n(ts_ns)
        if not self.in_flood and n > self.cfg.flood.count:
            self.in_flood = True
            self.counters["floods"] += 1
            return self._flood_alarm(True, n, ts_ns)
        return []

    def _flood_n(self, ts_ns: int) -> int:
        since = ts_ns - self.offset_ns - int(self.cfg.flood.window_s * 1e9)
        return sum(1 for t in self._flood_times() if t > since)

    def _flood_alarm(self, on: bool, n: int, ts_ns: int) -> list[AlarmEvent]:
        spec = AlarmSpec(
            alarm_id=FLOOD_ALARM,
            rule="gateway",
            kind="flood",
            device="gateway",
            point=None,
            limit=None,
            limit_value=None,
            severity=Severity.HIGH,
            latch=False,
            area=None,
            template=None,
        )
        minutes = self.cfg.flood.window_s / 60
        detail = f"alarm flood: {n} alarms in {minutes:g} min"
        if on:
            # The flood alarm itself does not count toward the flood.
            a = self.ensure(spec)
            prev = a.state
            a.active, a.acked, a.raised_ns, a.value = True, False, ts_ns, n
            a.message = detail
            a.activation_count += 1
            return [self._event(a, prev, "flood_start", ts_ns, count=n)]
        a = self.ensure(spec)
        prev = a.state
        a.active, a.value, a.cleared_ns = False, n, ts_ns
        return [self._event(a, prev, "flood_end", ts_ns, count=n)]
