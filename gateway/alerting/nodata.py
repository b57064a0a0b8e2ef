"""The no-data detectors: a device or point silent too long, and a whole source silent.

A ``no_data`` rule has no sample-driven check: each good value a device
sends resets its silence (the engine's hot path notes the time), and the
engine's tick compares the silence with the rule's timeout (``timeout_s``, or
``missed_polls`` x the device's poll interval). When every selected device of
one source is silent (``source_alarm``), one alarm for the source suppresses
the per-device alarms behind it; when the line is back each device gets a
fresh timeout. Silence runs on the monotonic clock.
"""

from __future__ import annotations

from gateway.alerting.checks import Check, DeviceInfo
from gateway.alerting.detector import AlarmSpec, Change, Detector
from gateway.alerting.parts import EngineMixin
from gateway.alerting.rules import LoadedRule, NoDataRule
from gateway.model import AlarmEvent

DEFAULT_INTERVAL_S = 60.0


class _NoData:
    """One no_data rule on one device: silence of the device, or of named points."""

    def __init__(
        self, lr: LoadedRule, info: DeviceInfo, pending: set[Detector], check: Check
    ) -> None:
        assert isinstance(lr.rule, NoDataRule)
        self.lr = lr
        self.rule: NoDataRule = lr.rule
        self.info = info
        self.check = check
        timeout = self.rule.timeout_s
        if timeout is None:
            timeout = self.rule.missed_polls * (info.interval_s or DEFAULT_INTERVAL_S)
        self.timeout_ns = int(timeout * 1e9)
        self.pending = pending
        self.inhibit: tuple[str, ...] = ()
        if info.source:
            self.inhibit = (f"{self.rule.id}:source:{info.source}", f"gateway:source:{info.source}")

    def detector(self, point: str | None) -> Detector:
        key = f"{self.rule.id}:{self.info.device}" + (f":{point}" if point else "")
        det = self.check.detectors.get(key)
        if det is None:
            det = self.check.detector(key, point)
            det.spec.inhibited_by = det.spec.inhibited_by + self.inhibit
        return det

class NoDataWatch(EngineMixin):
    """The engine's no-data evaluation (a part of ``AlertEngine``)."""

    _nodata: dict[str, list[_NoData]]
    # Monotonic times (Clock.mono_ns) of the last good value per device / point.
    last_seen: dict[str, int]
    last_point: dict[tuple[str, str], int]
    _source_dets: dict[tuple[str, str], Detector]
    _started_mono: int

    def _nodata_eval(self, mono: int) -> list[Change]:
        changes: list[Change] = []
        for dev, nds in self._nodata.items():
            for nd in nds:
                if not nd.rule.points:
                    last = self.last_seen.get(dev, self._started_mono)
                    self._nodata_feed(nd, None, f"{nd.rule.id}:{dev}", mono, last, changes)
                    continue
                for p in nd.rule.points:
                    last = self.last_point.get((dev, p), self._started_mono)
                    self._nodata_feed(nd, p, f"{nd.rule.id}:{dev}:{p}", mono, last, changes)
        return changes

    def _nodata_feed(
        self, nd: _NoData, point: str | None, key: str, mono: int, last: int, changes: list[Change]
    ) -> None:
        silent = mono - last > nd.timeout_ns
        det = nd.detector(point) if silent else nd.check.detectors.get(key)
        if det is not None:
            nd.check.emit(det, silent, mono, round((mono - last) / 1e9), changes)

    def _source_eval(self, now: int, mono: int) -> list[AlarmEvent]:
        """A source whose every selected device is silent gets one alarm that suppresses theirs.

        ``now`` is the wall time for the events, ``mono`` the monotonic time for the silence.
        """
        by_source: dict[tuple[str, str], list[bool]] = {}
        rules: dict[str, NoDataRule] = {}
        for nds in self._nodata.values():
            for nd in nds:
                if not nd.rule.source_alarm or not nd.info.source or nd.rule.points:
                    continue
                last = self.last_seen.get(nd.info.device, self._started_mono)
                silent = mono - last > nd.timeout_ns
                by_source.setdefault((nd.rule.id, nd.info.source), []).append(silent)
                rules[nd.rule.id] = nd.rule
        events: list[AlarmEvent] = []
        for (rule_id, src), flags in by_source.items():
            rule = rules[rule_id]
            raw = len(flags) >= rule.source_min_devices and all(flags)
            key = (rule_id, src)
            det = self._source_dets.get(key)
            if det is None:
                if not raw:
                    continue
                spec = AlarmSpec(
                    alarm_id=f"{rule_id}:source:{src}",
                    rule=rule_id,
                    kind="no_data",
                    device=f"source:{src}",
                    point=None,
                    limit=None,
                    limit_value=None,
                    severity=rule.severity,
                    latch=False,
                    area=rule.area,
                    template=None,
                )
                det = Detector(spec, 0.0, 0.0)
                stored = self.book.alarms.get(spec.alarm_id)
                det.active = bool(stored and stored.active)
                self._source_dets[key] = det
            if raw != det.active:
                if not raw:
                    # The line is back: give each device behind it a fresh timeout to answer
                    # and clear their silence while still suppressed, instead of presenting
                    # every one of them the moment the source alarm stops suppressing them.
                    for nds in self._nodata.values():
                        for nd in nds:
                            if nd.info.source != src or nd.rule.id != rule_id:
                                continue
                            dev = nd.info.device
                            self.last_seen[dev] = max(self.last_seen.get(dev, 0), mono)
                            for d in nd.check.detectors.values():
                                if d.active and d.spec.point is None:
                                    d.active, d.since_ns = False, None
                                    self.pending.discard(d)
                                    events.extend(self.book.set_active(d.spec, False, 0, now))
                det.active = raw
                det.last_value = len(flags)
                events.extend(
                    self.book.set_active(
                        det.spec, raw, len(flags), now, f"all {len(flags)} devices silent"
                    )
                )
        return events
