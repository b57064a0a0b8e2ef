"""Wall-clock steps: noticing when the wall clock jumps against the monotonic clock.

Durations never run on the wall clock (see ``gateway.model.Clock``), but
timestamps, rosters and the patrol's night do, so a step (NTP correcting a
bad RTC after boot, an operator setting the time) shifts everything stamped
after it. ``WallStepWatch`` compares the two clocks at every tick: a change
of their difference beyond a tolerance is a step, logged once and kept for
the gateway's health (how many steps, the size of the last, and a health
signal that stays bad for a while after each step). Comparing consecutive
ticks, not the start, keeps NTP's slow slewing (at most 0.5 ms/s) from ever
adding up to a step.
"""

from __future__ import annotations

import logging

from gateway.model import Clock

log = logging.getLogger(__name__)

# A jump of the wall clock against the monotonic clock beyond this is a step.
STEP_TOLERANCE_S = 2.0
# How long after a step its health signal stays bad (real seconds), so an
# operator sees it even if a health rule gives it an on-delay.
STEP_SIGNAL_S = 60.0
SIGNAL = "clock:wall_step"


class WallStepWatch:
    """Detects wall-clock steps of ``clock``; call ``check`` about once a second."""

    def __init__(self, clock: Clock, tolerance_s: float = STEP_TOLERANCE_S) -> None:
        self._clock = clock
        self._tolerance_ns = int(tolerance_s * 1e9)
        self._offset_ns = self._offset()
        self.steps = 0
        self.last_step_s = 0.0
        self._last_step_at: float | None = None  # real monotonic seconds

    def _offset(self) -> int | None:
        """Wall minus monotonic time, or None if the thread was held up between the reads.

        A replay scales both clocks, so a few ms of preemption between two reads
        would look like seconds: the wall clock is read between two monotonic
        readings that must lie close together.
        """
        for _ in range(3):
            m0 = self._clock.mono_ns()
            wall = self._clock.now_ns()
            m1 = self._clock.mono_ns()
            if m1 - m0 < self._tolerance_ns // 4:
                return wall - (m0 + m1) // 2
        return None

    def check(self) -> int | None:
        """The size of a step since the last check in ns (+ forward), else None."""
        offset = self._offset()
        if offset is None:
            return None
        last, self._offset_ns = self._offset_ns, offset
        delta = offset - (offset if last is None else last)
        if abs(delta) <= self._tolerance_ns:
            return None
        self.steps += 1
        self.last_step_s = delta / 1e9
        self._last_step_at = self._clock.monotonic()
        log.warning(
            "wall clock stepped %+.1f s: alarm delays, timeouts and shelving run on the"
            " monotonic clock and are unaffected; timestamps from now on follow the new time",
            self.last_step_s,
        )
        return delta

    def signal(self) -> tuple[str, bool, str]:
        """(signal, ok, detail) for the gateway's health alarms: bad for a while after a step."""
        at = self._last_step_at
        if at is None or self._clock.monotonic() - at > STEP_SIGNAL_S:
            return SIGNAL, True, "wall clock steady"
        return SIGNAL, False, f"wall clock stepped {self.last_step_s:+.1f} s"
