"""The alarm book: each alarm's ISA-18.2 state, its transitions, flood and chatter counters.

An alarm's state is derived from a few facts, so no transition can leave
it inconsistent:

    out of service  > shelved > suppressed by design > (active or latched, acknowledged)

    active   acked   state
    yes      no      unacknowledged
    yes      yes     acknowledged
    no       no      rtn_unacknowledged
    no       yes     normal

A latched alarm counts as active until an operator resets it, and a reset
is refused while the condition is still present. Every change returns
``AlarmEvent``s (who, what, when, on which value) for the outbox; the book
itself does no I/O: ``dirty`` tells the store what to write.

Times. Operations take wall-clock times (the events' timestamps, also what
is stored: ack time, shelve deadline, recent activations). Durations
(shelve expiry, re-alarm, chatter and flood windows) run on the monotonic
clock: ``offset_ns`` (wall minus monotonic, set by the engine from its clock)
maps each wall time onto it when it is recorded, and the book keeps those
monotonic times in memory, so a wall-clock step changes no duration. After a
restart the stored wall times are mapped with the new offset: monotonic time
does not survive a reboot, so a duration that spans a restart is measured by
the wall clock. A step the gateway notices is handed to ``wall_stepped``,
which moves the stored times with it, so they still mean the same moment.
"""

from __future__ import annotations

import fnmatch
from collections import deque
from typing import Any

from gateway.alerting.alarm import Alarm
from gateway.alerting.config import AlertingConfig, Severity
from gateway.alerting.detector import AlarmSpec
from gateway.errors import AlarmError
from gateway.model import AlarmEvent, AlarmState, Value

FLOOD_ALARM = "gateway:alarm_flood"


class AlarmBook:
    """All alarms of the site, keyed by alarm id."""

    def __init__(self, cfg: AlertingConfig) -> None:
        self.cfg = cfg
        self.alarms: dict[str, Alarm] = {}
        self.dirty: set[str] = set()
        # Annunciated activations (into unacknowledged) for flood detection.
        self.flood_recent: deque[int] = deque(maxlen=max(1000, cfg.flood.count * 10))
        self.in_flood = False
        # Wall minus monotonic time (module docstring); 0: durations on the wall times given.
        self.offset_ns = 0
        # Monotonic mirrors of the stored wall times, in memory only (seeded on first use).
        self._recent_mono: dict[str, deque[int]] = {}
        self._flood_mono: deque[int] | None = None
        # (what, alarm id) -> (stored wall time, its monotonic time): ack, shelve and
        # out-of-service deadlines.
        self._anchors: dict[tuple[str, str], tuple[int, int]] = {}
        self.counters: dict[str, int] = {
            "activations": 0,
            "acks": 0,
            "resets": 0,
            "shelves": 0,
            "realarms": 0,
            "chatter_episodes": 0,
            "floods": 0,
            "suppressed": 0,
        }

    # ------------------------------------------------------------------ helpers

    def get(self, alarm_id: str) -> Alarm:
        a = self.alarms.get(alarm_id)
        if a is None:
            near = [k for k in self.alarms if alarm_id in k][:5]
            hint = f" (did you mean: {', '.join(near)})" if near else ""
            raise AlarmError(f"unknown alarm {alarm_id!r}{hint}")
        return a

    def ensure(self, spec: AlarmSpec) -> Alarm:
        a = self.alarms.get(spec.alarm_id)
        if a is None:
            a = Alarm(spec=spec)
            a.suppressed = self._inhibited(a)
            self.alarms[spec.alarm_id] = a
        else:
            # Rule files may have changed severity or message since the alarm was stored.
            a.spec = spec
            if a.suppressed and not self._inhibited(a):
                # ... or no longer name the suppressor that hides it.
                a.suppressed = False
        return a

    def _track(self, a: Alarm) -> None:
        """Map the alarm's stored ack time and deadlines onto the monotonic clock, once."""
        for what, wall in (
            ("ack", a.acked_ns),
            ("shelve", a.shelved_until_ns),
            ("oos", a.out_of_service_until_ns),
        ):
            if wall is not None:
                got = self._anchors.get((what, a.alarm_id))
                if got is None or got[0] != wall:
                    self._anchors[(what, a.alarm_id)] = (wall, wall - self.offset_ns)

    def _recent(self, a: Alarm) -> deque[int]:
        """The alarm's recent activations in monotonic time."""
        got = self._recent_mono.get(a.alarm_id)
        if got is None:
            got = deque((t - self.offset_ns for t in a.recent), maxlen=a.recent.maxlen)
            self._recent_mono[a.alarm_id] = got
        return got

    def _flood_times(self) -> deque[int]:
        """Annunciated activations in monotonic time."""
        if self._flood_mono is None:
            self._flood_mono = deque(
                (t - self.offset_ns for t in self.flood_recent), maxlen=self.flood_recent.maxlen
            )
        return self._flood_mono

    def _event(
        self,
        a: Alarm,
        previous: AlarmState,
        action: str,
        ts_ns: int,
        actor: str = "system",
        **extra: Any,
    ) -> AlarmEvent:
        # Every change passes here, at the time it happens: the moment to map its times.
        self._track(a)
        a.changed_ns = ts_ns
        self.dirty.add(a.alarm_id)
        return a.event(previous, action, ts_ns, actor, **extra)

    def _inhibited(self, a: Alarm) -> bool:
        pats = a.spec.inhibited_by
        if not pats:
            return False
        return any(
            other.on
            and other is not a
            and any(fnmatch.fnmatchcase(other.alarm_id, p) for p in pats)
            for other in self.alarms.values()
        )

    @staticmethod
    def _hideable(a: Alarm) -> bool:
        """Suppression starts only at normal: an alarm standing (or unacknowledged) before
        its cause came is no consequence of it, and hiding it would conceal it."""
        return not a.on and a.acked

    def _propagate(self, cause: Alarm, ts_ns: int) -> list[AlarmEvent]:
        """Suppression by design: re-derive the alarms that ``cause`` may inhibit."""
        out: list[AlarmEvent] = []
        for a in self.alarms.values():
            if a is cause or not a.spec.inhibited_by:
                continue
            if not any(fnmatch.fnmatchcase(cause.alarm_id, p) for p in a.spec.inhibited_by):
                continue
            want = self._inhibited(a)
            if want and not a.suppressed and not self._hideable(a):
                continue
            if want != a.suppressed:
                prev = a.state
                a.suppressed = want
                if want:
                    self.counters["suppressed"] += 1
                elif not a.on:
                    # Never presented and already over: nothing left for anyone to acknowledge.
                    a.acked = True
                action = "suppress" if want else "unsuppress"
                out.append(self._event(a, prev, action, ts_ns, cause=cause.alarm_id))
        return out

    # ------------------------------------------------------------------ process side

    def set_active(
        self, spec: AlarmSpec, active: bool, value: Value | None, ts_ns: int, detail: str = ""
    ) -> list[AlarmEvent]:
        """The debounced condition changed (or was re-asserted after a restart)."""
        a = self.ensure(spec)
        a.value = value
        if active == a.active:
            return []
        prev = a.state
        out: list[AlarmEvent] = []
        if active:
            if not a.suppressed and self._hideable(a) and self._inhibited(a):
                # From normal while its cause stands (e.g. acknowledged under it): a consequence.
                a.suppressed = True
            a.active = True
            a.acked = False
            a.raised_ns = ts_ns
            a.cleared_ns = None
            a.comment = None
            a.message = spec.render(value, detail)
            if spec.latch:
                a.latched_on = True
            a.activation_count += 1
            self.counters["activations"] += 1
            self._recent(a).append(ts_ns - self.offset_ns)
            a.recent.append(ts_ns)
            chatter_started = self._chatter_check(a, ts_ns)
            out.append(self._event(a, prev, "activate", ts_ns))
            if chatter_started:
                out.append(self._event(a, a.state, "chatter_start", ts_ns, recent=len(a.recent)))
            if a.state is AlarmState.UNACKED:
                out.extend(self._flood_note(ts_ns))
        else:
            a.active = False
            a.cleared_ns = ts_ns
            action = "clear" if not a.latched_on else "condition_clear"
            out.append(self._event(a, prev, action, ts_ns))
        out.extend(self._propagate(a, ts_ns))
        return out

    def _chatter_check(self, a: Alarm, ts_ns: int) -> bool:
        win = int(self.cfg.chatter.window_s * 1e9)
        since = ts_ns - self.offset_ns - win
        n = sum(1 for t in self._recent(a) if t > since)
        if not a.chattering and n >= self.cfg.chatter.count:
            a.chattering = True
            a.chatter_count += 1
            self.counters["chatter_episodes"] += 1
            return True
        return False

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

    # ------------------------------------------------------------------ operator side

    def ack(
        self, alarm_id: str, actor: str, ts_ns: int, comment: str | None = None
    ) -> list[AlarmEvent]:
        a = self.get(alarm_id)
        if a.acked:
            raise AlarmError(f"alarm {alarm_id!r} is {a.state}: nothing to acknowledge")
        prev = a.state
        a.acked, a.acked_ns, a.acked_by, a.comment = True, ts_ns, actor, comment
        self.counters["acks"] += 1
        return [self._event(a, prev, "ack", ts_ns, actor, comment=comment)]

    def reset(
        self, alarm_id: str, actor: str, ts_ns: int, comment: str | None = None
    ) -> list[AlarmEvent]:
        a = self.get(alarm_id)
        if not a.spec.latch:
            raise AlarmError(f"alarm {alarm_id!r} does not latch: nothing to reset")
        if not a.latched_on:
            raise AlarmError(f"alarm {alarm_id!r} is not latched: nothing to reset")
        if a.active:
            raise AlarmError(
                f"alarm {alarm_id!r} cannot be reset while its condition is present"
                f" ({a.message}); clear the cause first"
            )
        prev = a.state
        a.latched_on = False
        # A reset is a deliberate act by someone who has seen the alarm: it acknowledges it.
        if not a.acked:
            a.acked, a.acked_ns, a.acked_by = True, ts_ns, actor
        a.comment = comment
        self.counters["resets"] += 1
        out = [self._event(a, prev, "reset", ts_ns, actor, comment=comment)]
        out.extend(self._propagate(a, ts_ns))
        return out

    def shelve(
        self, alarm_id: str, duration_s: float, actor: str, ts_ns: int, comment: str | None = None
    ) -> list[AlarmEvent]:
        a = self.get(alarm_id)
        if not duration_s > 0:  # also NaN
            raise AlarmError("shelve duration must be positive")
        if duration_s > self.cfg.max_shelve_s:
            raise AlarmError(
                f"shelve duration {duration_s:g} s exceeds the site's limit of"
                f" {self.cfg.max_shelve_s:g} s"
            )
        if a.out_of_service:
            raise AlarmError(f"alarm {alarm_id!r} is out of service; return it to service first")
        prev = a.state
        a.shelved_until_ns = ts_ns + int(duration_s * 1e9)
        a.shelved_by, a.comment = actor, comment
        self.counters["shelves"] += 1
        return [
            self._event(a, prev, "shelve", ts_ns, actor, comment=comment, duration_s=duration_s)
        ]

    def unshelve(
        self, alarm_id: str, actor: str, ts_ns: int, action: str = "unshelve"
    ) -> list[AlarmEvent]:
        a = self.get(alarm_id)
        if a.shelved_until_ns is None:
            raise AlarmError(f"alarm {alarm_id!r} is not shelved")
        prev = a.state
        a.shelved_until_ns = None
        a.shelved_by = None
        if not a.on:
            a.acked = True  # ISA-18.2: an unshelved alarm whose condition is gone is normal
        return [self._event(a, prev, action, ts_ns, actor)]

    def out_of_service(
        self,
        alarm_id: str,
        actor: str,
        ts_ns: int,
        comment: str | None = None,
        duration_s: float | None = None,
    ) -> list[AlarmEvent]:
        """Take an alarm out of service; with ``duration_s`` it returns to service by itself."""
        a = self.get(alarm_id)
        if duration_s is not None:
            if not duration_s > 0:
                raise AlarmError("out-of-service duration must be positive")
            if duration_s > self.cfg.max_out_of_service_s:
                raise AlarmError(
                    f"out-of-service duration {duration_s:g} s exceeds the site's limit of"
                    f" {self.cfg.max_out_of_service_s:g} s"
                )
        if a.out_of_service:
            raise AlarmError(f"alarm {alarm_id!r} is already out of service")
        prev = a.state
        a.out_of_service = True
        a.out_of_service_until_ns = (
            None if duration_s is None else ts_ns + int(duration_s * 1e9)
        )
        a.shelved_until_ns = None
        a.comment = comment
        extra: dict[str, Any] = {"comment": comment}
        if a.out_of_service_until_ns is not None:
            extra["until_ns"] = a.out_of_service_until_ns
        return [self._event(a, prev, "out_of_service", ts_ns, actor, **extra)]

    def in_service(
        self,
        alarm_id: str,
        actor: str,
        ts_ns: int,
        comment: str | None = None,
        action: str = "in_service",
    ) -> list[AlarmEvent]:
        a = self.get(alarm_id)
        if not a.out_of_service:
            raise AlarmError(f"alarm {alarm_id!r} is not out of service")
        prev = a.state
        a.out_of_service = False
        a.out_of_service_until_ns = None
        if not a.on:
            a.acked = True
        a.comment = comment
        return [self._event(a, prev, action, ts_ns, actor, comment=comment)]

    # ------------------------------------------------------------------ time

    def tick(self, now_ns: int, mono_ns: int | None = None) -> list[AlarmEvent]:
        """Shelve expiry, re-alarm, chatter end, flood end.

        ``mono_ns``: the monotonic time the durations run on (default: the wall time given).
        """
        if mono_ns is not None:
            self.offset_ns = now_ns - mono_ns
        mono = now_ns - self.offset_ns
        out: list[AlarmEvent] = []
        chatter_win = int(self.cfg.chatter.window_s * 1e9)
        realarm = int(self.cfg.realarm_s * 1e9) if self.cfg.realarm_s else None
        for a in self.alarms.values():
            self._track(a)  # restored alarms: their stored times are mapped at the first tick
            if a.shelved_until_ns is not None and mono >= self._anchors[("shelve", a.alarm_id)][1]:
                out.extend(self.unshelve(a.alarm_id, "system", now_ns, action="shelve_expired"))
            if (
                a.out_of_service_until_ns is not None
                and mono >= self._anchors[("oos", a.alarm_id)][1]
            ):
                out.extend(
                    self.in_service(a.alarm_id, "system", now_ns, action="out_of_service_expired")
                )
            if a.chattering and not any(t > mono - chatter_win for t in self._recent(a)):
                a.chattering = False
                out.append(self._event(a, a.state, "chatter_end", now_ns))
            if (
                realarm is not None
                and a.active
                and a.acked
                and a.acked_ns is not None
                and mono - self._anchors[("ack", a.alarm_id)][1] >= realarm
                and a.state is AlarmState.ACKED
            ):
                prev = a.state
                a.acked = False
                self.counters["realarms"] += 1
                out.append(self._event(a, prev, "realarm", now_ns))
        if self.in_flood:
            n = self._flood_n(now_ns)
            if n < self.cfg.flood.end_below:
                self.in_flood = False
                out.extend(self._flood_alarm(False, n, now_ns))
        return out

    def wall_stepped(self, step_ns: int) -> None:
        """The wall clock jumped ``step_ns``: move the stored wall times durations count from.

        Running durations are on the monotonic clock already; this keeps what is
        stored (and shown) meaning the same deadline, so a restart after the step
        neither ends a shelve or an out-of-service period early nor holds it an hour
        longer, nor stretches a chatter or flood window. Event timestamps (raised,
        acknowledged) stay.
        """
        for a in self.alarms.values():
            for what, attr in (("shelve", "shelved_until_ns"), ("oos", "out_of_service_until_ns")):
                wall = getattr(a, attr)
                if wall is not None:
                    setattr(a, attr, wall + step_ns)
                    got = self._anchors.get((what, a.alarm_id))
                    if got is not None:
                        self._anchors[(what, a.alarm_id)] = (wall + step_ns, got[1])
            if a.recent:
                a.recent = deque((t + step_ns for t in a.recent), maxlen=a.recent.maxlen)
            self.dirty.add(a.alarm_id)
        recent = [t + step_ns for t in self.flood_recent]
        self.flood_recent.clear()
        self.flood_recent.extend(recent)
        self.offset_ns += step_ns

    def snapshot(self) -> list[dict[str, Any]]:
        return [a.to_json_dict() for a in sorted(self.alarms.values(), key=lambda a: a.alarm_id)]

    def retire(self, alarm_id: str, ts_ns: int, note: str) -> list[AlarmEvent]:
        """The alarm's rule, limit or device left the config (a reload): back to normal, with why.

        Nothing can clear, reset or unshelve it any more, so it returns to normal
        whatever it was (latched, shelved, out of service, unacknowledged); the
        event carries ``note`` and the alarm keeps it as its comment.
        """
        a = self.alarms.get(alarm_id)
        if a is None or a.state is AlarmState.NORMAL:
            return []
        prev = a.state
        a.active = a.latched_on = a.out_of_service = a.suppressed = False
        a.shelved_until_ns = a.shelved_by = a.out_of_service_until_ns = None
        a.acked = True
        if a.cleared_ns is None:
            a.cleared_ns = ts_ns
        a.comment = note
        out = [self._event(a, prev, "retire", ts_ns, note=note)]
        out.extend(self._propagate(a, ts_ns))
        return out
