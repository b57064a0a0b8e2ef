"""The types that flow through the gateway: Sample, Quality, AlarmEvent, Clock.

A ``Sample`` is one device's poll. Batching by device keeps the hot path cheap:
one object, one outbox row, one MQTT message, one line of line protocol.
Timestamps are taken when the read completes, never later in the pipeline.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

Value = float | int | bool | str


class Quality(StrEnum):
    """Per-point quality, OPC-style.

    ``good`` values are in ``Sample.values``. A ``bad`` point could not be
    read (timeout, exception, garbage) and carries no value. A ``fault``
    point was read but the device reports its sensor broken (e.g. a
    residual-current sensor loop open): it carries no value either, because
    a broken loop is a fault, not a zero. ``uncertain`` points carry a value
    that should be treated with care (e.g. out of the sensor's range).
    """

    GOOD = "good"
    UNCERTAIN = "uncertain"
    BAD = "bad"
    FAULT = "fault"


# Kinds of the gateway's own health records (one per device, one for the gateway).
# They travel like samples but are no poll of the device: no alarms, no availability.
HEALTH_KINDS = frozenset({"device_health", "gateway_health"})


@dataclass(slots=True)
class Sample:
    """One poll of one device.

    ``values`` holds every point that has a value (good or uncertain).
    ``quality`` lists only the points whose quality is not good; a point
    absent from it is good. A point that is bad or fault is absent from
    ``values``. ``kind`` is the profile's device kind (InfluxDB measurement),
    ``tags`` the device's site tags (area, ...). ``mono_ns`` is the
    ``Clock.mono_ns`` reading of the poll, for durations (0: not known yet;
    the alert engine stamps it); it is not exported.
    """

    device: str
    kind: str
    ts_ns: int
    values: dict[str, Value]
    quality: dict[str, Quality] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    error: str | None = None
    mono_ns: int = 0
    # The device's own timestamp per point in ns (OPC UA SourceTimestamp), when
    # it sends one; ``ts_ns`` stays the gateway's read time. None, not {}: no
    # allocation per sample for the sources that have none.
    source_ts_ns: dict[str, int] | None = None

    def is_good(self, point: str) -> bool:
        return point in self.values and self.quality.get(point, Quality.GOOD) is Quality.GOOD

    def to_json_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "device": self.device,
            "kind": self.kind,
            "ts_ns": self.ts_ns,
            "values": self.values,
            "quality": {k: str(v) for k, v in self.quality.items()},
            "tags": self.tags,
            "error": self.error,
        }
        if self.source_ts_ns:
            d["source_ts_ns"] = self.source_ts_ns
        return d

    @classmethod
    def from_json_dict(cls, d: dict[str, Any]) -> Sample:
        return cls(
            device=d["device"],
            kind=d["kind"],
            ts_ns=int(d["ts_ns"]),
            values=dict(d["values"]),
            quality={k: Quality(v) for k, v in d.get("quality", {}).items()},
            tags=dict(d.get("tags", {})),
            error=d.get("error"),
            source_ts_ns=d.get("source_ts_ns"),
        )


class Clock(Protocol):
    """Injected time. Rule and patrol tests move a fake clock; they never sleep.

    Three readings, because a wall clock can be stepped (NTP, an operator, a
    bad RTC at boot) and a replay runs the site's time fast:

    - ``now_ns``: wall time, for timestamps only (it may jump either way).
    - ``mono_ns``: site time that never steps, for the durations of the
      site's logic (on/off-delays, no-data, shelving, chatter and flood
      windows, escalation). It runs at the wall clock's rate: fast in a replay.
    - ``monotonic``: real monotonic seconds, for real durations: polling,
      I/O timeouts and the gateway's own health (backlog age, data age, loop
      lag), which a replay does not speed up.

    ``speed`` is site seconds per real second (1, or the replay's speed).
    """

    speed: float

    def now_ns(self) -> int:
        """Wall-clock time in ns since the epoch (timestamps)."""
        ...

    def mono_ns(self) -> int:
        """Monotonic site time in ns (durations of alarm and patrol logic)."""
        ...

    def monotonic(self) -> float:
        """Real monotonic seconds (polling, timeouts, the gateway's own health)."""
        ...


class SystemClock:
    """The real clock."""

    speed = 1.0

    def now_ns(self) -> int:
        return time.time_ns()

    def mono_ns(self) -> int:
        return time.monotonic_ns()

    def monotonic(self) -> float:
        return time.monotonic()


class FakeClock:
    """A clock that only moves when told to: for tests and fast simulated time.

    ``advance`` moves every reading; ``step_wall`` moves the wall clock alone,
    as NTP or an operator setting the time would.
    """

    speed = 1.0

    def __init__(self, start_ns: int = 1_767_225_600_000_000_000) -> None:
        self._ns = start_ns
        self._mono_ns = 1_000_000_000_000

    def now_ns(self) -> int:
        return self._ns

    def mono_ns(self) -> int:
        return self._mono_ns

    def monotonic(self) -> float:
        return self._mono_ns / 1e9

    def advance(self, seconds: float) -> None:
        self._ns += int(seconds * 1e9)
        self._mono_ns += int(seconds * 1e9)

    def step_wall(self, seconds: float) -> None:
        self._ns += int(seconds * 1e9)


class AlarmState(StrEnum):
    """ISA-18.2 alarm states (plus the administrative ones)."""

    NORMAL = "normal"
    UNACKED = "unacknowledged"
    ACKED = "acknowledged"
    RTN_UNACKED = "rtn_unacknowledged"
    SHELVED = "shelved"
    SUPPRESSED = "suppressed"
    OUT_OF_SERVICE = "out_of_service"


@dataclass(slots=True)
class AlarmEvent:
    """One alarm transition: what changed, when, on which value, and who did it.

    ``actor`` is ``"system"`` for transitions the rules made, otherwise the
    operator who acknowledged/shelved/reset. Every transition goes through
    the outbox to MQTT and InfluxDB, so the record proves nothing was late,
    missed or hidden.
    """

    alarm_id: str
    ts_ns: int
    state: AlarmState
    previous: AlarmState
    action: str
    severity: str
    device: str
    point: str | None
    rule: str
    message: str
    value: Value | None = None
    actor: str = "system"
    active: bool = False
    latched: bool = False
    area: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "alarm_id": self.alarm_id,
            "ts_ns": self.ts_ns,
            "state": str(self.state),
            "previous": str(self.previous),
            "action": self.action,
            "severity": self.severity,
            "device": self.device,
            "point": self.point,
            "rule": self.rule,
            "message": self.message,
            "value": self.value,
            "actor": self.actor,
            "active": self.active,
            "latched": self.latched,
            "area": self.area,
            "extra": self.extra,
        }

    @classmethod
    def from_json_dict(cls, d: dict[str, Any]) -> AlarmEvent:
        return cls(
            alarm_id=d["alarm_id"],
            ts_ns=int(d["ts_ns"]),
            state=AlarmState(d["state"]),
            previous=AlarmState(d["previous"]),
            action=d["action"],
            severity=d["severity"],
            device=d["device"],
            point=d.get("point"),
            rule=d["rule"],
            message=d["message"],
            value=d.get("value"),
            actor=d.get("actor", "system"),
            active=bool(d.get("active", False)),
            latched=bool(d.get("latched", False)),
            area=d.get("area"),
            extra=dict(d.get("extra", {})),
        )


class ScaledClock:
    """Simulated wall time: starts at ``start_ns`` and runs ``speed`` times faster.

    For demos and tests that replay a night in a minute, in step with
    ``gateway-sim --speed``. ``monotonic`` stays real, so devices are still
    polled in real time and the gateway's own health (backlog, data age)
    measures real delays; the wall clock and ``mono_ns`` (timestamps,
    on-delays, escalation, patrol rounds) run at the fast rate.
    """

    def __init__(self, start_ns: int, speed: float) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        self._start_ns = start_ns
        self.speed = speed
        self._t0 = time.monotonic()

    def _elapsed_ns(self) -> int:
        return int((time.monotonic() - self._t0) * self.speed * 1e9)

    def now_ns(self) -> int:
        return self._start_ns + self._elapsed_ns()

    def mono_ns(self) -> int:
        return self._elapsed_ns()

    def monotonic(self) -> float:
        return time.monotonic()
