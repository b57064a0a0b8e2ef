"""The runtime of the rules: each rule bound to a device as a check of its samples.

A rule only decides whether a condition holds; the ``Detector``
(``detector.py``) debounces it (on-delay, off-delay), the limit checks add a
deadband, and the alarm book (``alarms.py``) owns the ISA-18.2 states.
Detectors are created lazily, the first time a condition holds, so a healthy
site carries almost no per-point state on the hot path. Every duration here
(delays, rate windows, staleness) is measured on the monotonic clock
(``Sample.mono_ns``), so a wall-clock step neither fires nor holds back an
alarm; only the events carry wall-clock timestamps.
"""

from __future__ import annotations

import fnmatch
from collections import deque
from dataclasses import dataclass, field

from gateway.alerting.detector import AlarmSpec, Change, Detector
from gateway.alerting.rules import (
    DeviationRule,
    HealthRule,
    Limit,
    LimitRule,
    LoadedRule,
    Operand,
    QualityRule,
    RateRule,
    StatusRule,
    _LimitsMixin,
)
from gateway.model import Quality, Sample, Value
from gateway.plugins import registry


@dataclass(frozen=True)
class DeviceInfo:
    device: str
    profile: str | None
    kind: str | None
    tags: dict[str, str]
    source: str | None = None
    interval_s: float | None = None
    units: dict[str, str] = field(default_factory=dict)

    @property
    def area(self) -> str | None:
        return self.tags.get("area")


def _area(lr: LoadedRule, info: DeviceInfo) -> str | None:
    return lr.rule.area or info.area or lr.area


def _inhibitors(patterns: list[str], device: str) -> tuple[str, ...]:
    return tuple(f"{pat}:{device}:*" for pat in patterns) + tuple(
        f"{pat}:{device}" for pat in patterns
    )


class Check:
    """One rule bound to one device: turns samples into detector changes."""

    def __init__(self, lr: LoadedRule, info: DeviceInfo, pending: set[Detector]) -> None:
        self.lr = lr
        self.info = info
        self.detectors: dict[str, Detector] = {}
        self.pending = pending
        self._match: dict[str, bool] = {}

    def emit(
        self, det: Detector, raw: bool, mono_ns: int, value: Value | None, out: list[Change]
    ) -> None:
        new = det.feed(raw, mono_ns, value)
        if new is not None:
            out.append((det, new))
        # Pending changes are fired by the engine's tick if no sample contradicts them.
        if det.since_ns is None:
            self.pending.discard(det)
        else:
            self.pending.add(det)

    def wants(self, point: str) -> bool:
        hit = self._match.get(point)
        if hit is None:
            pats: list[str] = getattr(self.lr.rule, "points", [])
            hit = any(fnmatch.fnmatchcase(point, p) for p in pats)
            self._match[point] = hit
        return hit

    def detector(
        self,
        key: str,
        point: str | None,
        limit: str | None = None,
        lim: Limit | None = None,
    ) -> Detector:
        det = self.detectors.get(key)
        if det is None:
            rule = self.lr.rule
            on = lim.on_delay_s if lim and lim.on_delay_s is not None else rule.on_delay_s
            off = lim.off_delay_s if lim and lim.off_delay_s is not None else rule.off_delay_s
            spec = AlarmSpec(
                alarm_id=key,
                rule=rule.id,
                kind=rule.kind,
                device=self.info.device,
                point=point,
                limit=limit,
                limit_value=lim.value if lim else None,
                severity=(lim.severity if lim and lim.severity else rule.severity),
                latch=(lim.latch if lim and lim.latch is not None else rule.latch),
                area=_area(self.lr, self.info),
                template=(lim.message if lim and lim.message else rule.message),
                inhibited_by=_inhibitors(
                    lim.suppressed_by if lim else rule.suppressed_by, self.info.device
                ),
                unit=self.info.units.get(point or "", ""),
                advice=self.lr.advice,
            )
            det = Detector(spec, on, off)
            self.detectors[key] = det
        return det

    def feed(self, sample: Sample, out: list[Change]) -> None:  # pragma: no cover - abstract
        raise NotImplementedError


def _deadband(rule: _LimitsMixin, lim: Limit) -> float:
    if lim.deadband is not None:
        return lim.deadband
    if lim.deadband_pct is not None:
        return abs(lim.value) * lim.deadband_pct / 100.0
    if rule.deadband:
        return rule.deadband
    return abs(lim.value) * rule.deadband_pct / 100.0


# One limit of one series, ready to compare: (detector key, limit name, limit,
# upper?, threshold, deadband).
_Plan = tuple[str, str, Limit, bool, float, float]


class _LimitEval:
    """Limit comparison with deadband; the deadband applies on the way back only."""

    def __init__(self, rule: _LimitsMixin) -> None:
        self.items: list[tuple[str, Limit, bool, float]] = [
            (name, lim, name in ("hi", "hihi"), _deadband(rule, lim))
            for name, lim in rule.limits.items()
        ]

    def plan(self, base: str) -> list[_Plan]:
        """The limits of the series ``base`` with their detector keys."""
        return [
            (f"{base}:{name}", name, lim, upper, lim.value, db)
            for name, lim, upper, db in self.items
        ]

    def run(
        self, check: Check, base: str, point: str | None, x: float, ts: int, out: list[Change]
    ) -> None:
        self.apply(check, self.plan(base), point, x, ts, out)

    @staticmethod
    def apply(
        check: Check, plan: list[_Plan], point: str | None, x: float, ts: int, out: list[Change]
    ) -> None:
        detectors = check.detectors
        for key, name, lim, upper, value, db in plan:
            det = detectors.get(key)
            if det is None:
                # The usual case: never crossed, nothing to track.
                if x >= value if upper else x <= value:
                    check.emit(check.detector(key, point, name, lim), True, ts, round(x, 6), out)
                continue
            if det.active:
                # Back only beyond the deadband: a reading at the limit (or at the
                # deadband's edge) keeps the alarm, it does not chatter.
                raw = x >= value - db if upper else x <= value + db
            else:
                raw = x >= value if upper else x <= value
            check.emit(det, raw, ts, round(x, 6), out)


def _num(v: Value | None) -> float | None:
    if v is None or isinstance(v, str):
        return None
    return float(v)


class LimitCheck(Check):
    def __init__(self, lr: LoadedRule, info: DeviceInfo, pending: set[Detector]) -> None:
        super().__init__(lr, info, pending)
        assert isinstance(lr.rule, LimitRule)
        self.limits = _LimitEval(lr.rule)
        self.prefix = f"{lr.rule.id}:{info.device}"
        # Per point: its limits with their detector keys built once ([] if the
        # rule does not watch the point). Every point of every poll passes
        # here, so no string is built per reading.
        self._plans: dict[str, list[_Plan]] = {}

    def _plan(self, point: str) -> list[_Plan]:
        plan = self.limits.plan(f"{self.prefix}:{point}") if self.wants(point) else []
        self._plans[point] = plan
        return plan

    def feed(self, sample: Sample, out: list[Change]) -> None:
        q = sample.quality
        ts = sample.mono_ns
        plans = self._plans
        for point, v in sample.values.items():
            plan = plans.get(point)
            if plan is None:
                plan = self._plan(point)
            if not plan or v is None or isinstance(v, str):
                continue
            # An uncertain value is still evidence; a bad one never reaches values.
            if q and point in q and q[point] is not Quality.UNCERTAIN:
                continue
            self.limits.apply(self, plan, point, float(v), ts, out)


_PER = {"s": 1.0, "min": 60.0, "h": 3600.0}


class RateCheck(Check):
    def __init__(self, lr: LoadedRule, info: DeviceInfo, pending: set[Detector]) -> None:
        super().__init__(lr, info, pending)
        assert isinstance(lr.rule, RateRule)
        self.rule: RateRule = lr.rule
        self.limits = _LimitEval(lr.rule)
        self.prefix = f"{lr.rule.id}:{info.device}"
        self.window_ns = int(lr.rule.window_s * 1e9)
        self.per = _PER[lr.rule.per]
        # Bounded: samples older than the window are dropped, and at most 4096 kept.
        self.history: dict[str, deque[tuple[int, float]]] = {}

    def feed(self, sample: Sample, out: list[Change]) -> None:
        ts = sample.mono_ns
        for point, v in sample.values.items():
            if not self.wants(point) or not sample.is_good(point):
                continue
            x = _num(v)
            if x is None:
                continue
            hist = self.history.get(point)
            if hist is None:
                hist = self.history[point] = deque(maxlen=4096)
            hist.append((ts, x))
            # Keep one sample at or before the window start as the reference.
            while len(hist) >= 2 and hist[1][0] <= ts - self.window_ns:
                hist.popleft()
            t0, x0 = hist[0]
            dt = (ts - t0) / 1e9
            # Less than half a window of history is too little to call a rate.
            if dt < self.rule.window_s / 2:
                continue
            rate = (x - x0) / dt * self.per
            self.limits.run(self, f"{self.prefix}:{point}", point, rate, ts, out)


class DeviationCheck(Check):
    """Same-device operands come from the sample; other devices' from ``latest``."""

    def __init__(
        self,
        lr: LoadedRule,
        info: DeviceInfo,
        pending: set[Detector],
        latest: dict[tuple[str, str], tuple[int, float]],
    ) -> None:
        super().__init__(lr, info, pending)
        assert isinstance(lr.rule, DeviationRule)
        self.rule: DeviationRule = lr.rule
        self.limits = _LimitEval(lr.rule)
        self.latest = latest
        self.base = f"{lr.rule.id}:{info.device}:{lr.rule.name}"
        self.max_age_ns = int(lr.rule.max_age_s * 1e9)

    def _operand(self, op: Operand, sample: Sample) -> float | None:
        if op.device is None or op.device == sample.device:
            if not sample.is_good(op.point):
                return None
            return _num(sample.values[op.point])
        got = self.latest.get((op.device, op.point))
        if got is None or sample.mono_ns - got[0] > self.max_age_ns:
            return None
        return got[1]

    def feed(self, sample: Sample, out: list[Change]) -> None:
        a = self._operand(self.rule.a, sample)
        b = self._operand(self.rule.b, sample)
        if a is None or b is None:
            return
        if self.rule.min_b is not None and abs(b) < self.rule.min_b:
            return
        op = self.rule.op
        if op == "difference":
            x = a - b
        elif op == "abs_difference":
            x = abs(a - b)
        elif b == 0:
            return
        elif op == "percent_of_b":
            x = a / b * 100.0
        else:
            x = (a - b) / b * 100.0
        self.limits.run(self, self.base, self.rule.name, x, sample.mono_ns, out)


class StatusCheck(Check):
    def __init__(self, lr: LoadedRule, info: DeviceInfo, pending: set[Detector]) -> None:
        super().__init__(lr, info, pending)
        assert isinstance(lr.rule, StatusRule)
        self.want = lr.rule.active_value
        self.prefix = f"{lr.rule.id}:{info.device}"

    def _on(self, v: Value) -> bool:
        w = self.want
        if isinstance(w, bool):
            return bool(v) is w if not isinstance(v, str) else v.lower() in ("1", "true", "on")
        return v == w

    def feed(self, sample: Sample, out: list[Change]) -> None:
        for point, v in sample.values.items():
            if not self.wants(point) or not sample.is_good(point):
                continue
            raw = self._on(v)
            key = f"{self.prefix}:{point}"
            det = self.detectors.get(key)
            if det is None:
                if not raw:
                    continue
                det = self.detector(key, point)
            self.emit(det, raw, sample.mono_ns, v, out)


class QualityCheck(Check):
    def __init__(self, lr: LoadedRule, info: DeviceInfo, pending: set[Detector]) -> None:
        super().__init__(lr, info, pending)
        assert isinstance(lr.rule, QualityRule)
        self.bad = frozenset(Quality(q) for q in lr.rule.qualities)
        self.prefix = f"{lr.rule.id}:{info.device}"

    def feed(self, sample: Sample, out: list[Change]) -> None:
        for point, q in sample.quality.items():
            if not self.wants(point):
                continue
            raw = q in self.bad
            # An unread point (bad, no value) says nothing about the sensor itself.
            if not raw and q is Quality.BAD:
                continue
            key = f"{self.prefix}:{point}"
            det = self.detectors.get(key)
            if det is None:
                if not raw:
                    continue
                det = self.detector(key, point)
            self.emit(det, raw, sample.mono_ns, str(q), out)
        # A point back to good is absent from ``quality``: clear its detector.
        for det in self.detectors.values():
            pt = det.spec.point
            if (
                pt is not None
                and (det.active or det.since_ns is not None)
                and pt in sample.values
                and pt not in sample.quality
            ):
                self.emit(det, False, sample.mono_ns, "good", out)


def build_check(
    lr: LoadedRule,
    info: DeviceInfo,
    pending: set[Detector],
    latest: dict[tuple[str, str], tuple[int, float]],
) -> Check | None:
    """The sample-driven check for a rule on a device (None for time-driven kinds).

    Called when rules are bound to devices, not per sample.
    """
    kind = registry().rule_kinds.get(lr.rule.kind)
    if kind is None or kind.check is None:
        return None
    check: Check = kind.check(lr, info, pending, latest)
    return check


def selects(lr: LoadedRule, info: DeviceInfo) -> bool:
    rule = lr.rule
    if not rule.enabled or isinstance(rule, HealthRule):
        return False
    if isinstance(rule, DeviationRule) and rule.select.is_empty():
        # A cross-device deviation with no select belongs to operand a's device.
        return rule.a.device == info.device
    if not rule.select.matches(info.device, info.profile, info.kind, info.tags):
        return False
    return not (
        rule.exclude and rule.exclude.matches(info.device, info.profile, info.kind, info.tags)
    )
