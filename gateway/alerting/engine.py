"""The alerting facade the app calls: samples and time in, alarm events out.

``AlertEngine`` binds the site's rules to its devices, feeds samples to the
checks (hot path: a dict lookup per device and a few comparisons per point;
I/O only when an alarm changes), runs the time-driven parts in ``tick``
(no-data, delay expiry, shelve expiry, re-alarm, escalation, flood end),
applies operator commands, turns the gateway's own health signals into
alarms, and owns the notifier task. Every transition comes back as an
``AlarmEvent`` for the outbox; state, queued notifications and the alarm
journal (the transitions until the outbox has them, ``unpublished``) are
written to SQLite in the same transaction, so a restart neither forgets,
repeats nor leaves a saved transition unpublished.

The engine keeps binding and dispatch; its other parts are mixins in
modules of their own (see ``parts.py``): the no-data detectors
(``nodata.py``), health and external alarms (``health.py``), the state
journal (``journal.py``), operator commands and views (``operator.py``).

Durations (delays, no-data silence, shelving, chatter and flood windows) run
on the clock's monotonic ``mono_ns``; events carry wall-clock timestamps.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from types import TracebackType

from gateway.alerting.alarm import Alarm
from gateway.alerting.alarms import AlarmBook
from gateway.alerting.channels import Publish
from gateway.alerting.checks import Check, DeviceInfo, build_check, selects
from gateway.alerting.config import AlertingConfig
from gateway.alerting.detector import Change, Detector
from gateway.alerting.health import HealthSignals
from gateway.alerting.nodata import NoDataWatch, _NoData
from gateway.alerting.notify import Notifier, SentHook
from gateway.alerting.operator import OperatorViews
from gateway.alerting.rules import (
    DeviationRule,
    HealthRule,
    NoDataRule,
    RuleSet,
    check_against_devices,
    load_rules,
)
from gateway.alerting.store import AlertStore
from gateway.config import Site, SiteConfig
from gateway.errors import AlarmError, ConfigError
from gateway.model import AlarmEvent, AlarmState, Clock, Sample
from gateway.reports.gasplan import with_shedding_advice

log = logging.getLogger(__name__)


class AlertEngine(NoDataWatch, HealthSignals, OperatorViews):
    """Rules, alarm book, state store and notifier for one site.

    ``site`` is a loaded ``Site`` (preferred: it knows each device's profile
    and kind) or a bare ``SiteConfig`` plus ``base_dir`` for relative paths.
    ``rules`` overrides the rule files named in the site; ``alerting``
    overrides its ``alerting:`` block; ``state_path`` its state database
    (``":memory:"`` for tests). ``publish(topic, payload)`` delivers MQTT
    notifications (the app wires it to the outbox); ``on_sent(record)`` hears of
    every message delivered on any channel (notify.sent_record); ``emit(events)`` receives
    events produced outside a call, e.g. a notification channel's health alarm.
    """

    def __init__(
        self,
        site: Site | SiteConfig,
        clock: Clock,
        *,
        rules: RuleSet | None = None,
        alerting: AlertingConfig | None = None,
        base_dir: str | Path | None = None,
        state_path: str | Path | None = None,
        publish: Publish | None = None,
        emit: Callable[[list[AlarmEvent]], None] | None = None,
        on_sent: SentHook | None = None,
    ) -> None:
        if isinstance(site, Site):
            self.config = site.config
            base = Path(base_dir) if base_dir is not None else site.path.parent
            profiles = dict(site.device_profiles)
        else:
            self.config = site
            base = Path(base_dir) if base_dir is not None else Path.cwd()
            profiles = {}
        self.clock = clock
        self.cfg = alerting or self.config.alerting or AlertingConfig()
        self.emit = emit
        self.devices: dict[str, DeviceInfo] = {}
        point_names: dict[str, set[str]] = {}
        for dev in self.config.devices:
            if not dev.enabled:
                continue
            prof = profiles.get(dev.id)
            units: dict[str, str] = {}
            if prof is not None:
                units = prof.point_units()
                point_names[prof.name] = set(prof.point_names())
            self.devices[dev.id] = DeviceInfo(
                device=dev.id,
                profile=dev.profile,
                kind=prof.kind if prof is not None else None,
                tags=dict(dev.tags),
                source=dev.source,
                interval_s=dev.interval_s,
                units=units,
            )
        # A loaded site's rules were checked against its devices by gateway.loader.
        checked = site.rules if isinstance(site, Site) else None
        if rules is None:
            rules = checked or load_rules([base / p for p in self.config.rules])
        if rules is not checked:
            problems = check_against_devices(
                rules,
                {d.device: (d.profile, d.kind, d.tags) for d in self.devices.values()},
                point_names,
            )
            if problems:
                raise ConfigError(problems[0], problems)
        if self.config.reports is not None:
            rules = with_shedding_advice(rules, self.config.reports.gas_plan)
        self.rules = rules
        state = state_path if state_path is not None else self.cfg.state_db
        self.state_path = str(state) if str(state) == ":memory:" else str(base / Path(state))
        self.book = AlarmBook(self.cfg)
        self.store: AlertStore | None = None
        self.notifier: Notifier | None = None
        self._publish = publish
        self._on_sent = on_sent
        self.pending: set[Detector] = set()
        self.latest: dict[tuple[str, str], tuple[int, float]] = {}
        self._watched = {
            (op.device, op.point)
            for lr in rules.of_kind("deviation")
            if isinstance(lr.rule, DeviationRule)
            for op in (lr.rule.a, lr.rule.b)
            if op.device is not None
        }
        self._checks: dict[str, list[Check]] = {}
        self._nodata: dict[str, list[_NoData]] = {}
        self._point_nodata: set[str] = set()
        self._kinds_known: set[str] = {d.device for d in self.devices.values() if d.kind}
        self._health: dict[str, Detector] = {}
        self._health_rules = [lr for lr in rules.rules if isinstance(lr.rule, HealthRule)]
        # Monotonic times (Clock.mono_ns) of the last good value per device / point.
        self.last_seen: dict[str, int] = {}
        self.last_point: dict[tuple[str, str], int] = {}
        self._source_dets: dict[tuple[str, str], Detector] = {}
        self._started_mono = clock.mono_ns()
        self._later: list[AlarmEvent] = []
        # A full disk: why the state cannot be saved, and the transitions not yet
        # journaled and planned for notification (saved with the next change).
        self.state_error: str | None = None
        self._unsaved: list[AlarmEvent] = []

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> AlertEngine:
        self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def open(self) -> None:
        """Open the state store and restore alarms, counters and pending escalations."""
        self.store = AlertStore(self.state_path)
        for doc in self.store.load_alarms():
            a = Alarm.from_json_dict(doc)
            self.book.alarms[a.alarm_id] = a
        counters = self.store.get_meta("counters")
        if isinstance(counters, dict):
            self.book.counters.update({k: int(v) for k, v in counters.items()})
        flood = self.store.get_meta("flood")
        if isinstance(flood, dict):
            self.book.in_flood = bool(flood.get("in_flood"))
            self.book.flood_recent.extend(int(t) for t in flood.get("recent", []))
        self.notifier = Notifier(
            self.cfg,
            self.store,
            self.clock,
            site=self.config.site,
            publish=self._publish,
            health=self._notifier_health,
            facts=self._facts,
            in_flood=lambda: self.book.in_flood,
            on_sent=self._on_sent,
        )
        self._started_mono = self.clock.mono_ns()
        for info in self.devices.values():
            self._bind(info)
        # Health alarms that were active stay active until the signal says ok.
        for a in self.book.alarms.values():
            if a.spec.kind == "health" and a.active:
                self._health_detector(a.spec.alarm_id.removeprefix("gateway:")).active = True

    def close(self) -> None:
        if self.store is not None:
            self._flush([])
            self.store.close()
            self.store = None

    def _need_store(self) -> AlertStore:
        if self.store is None:
            raise AlarmError("the alert engine is not open (use 'async with AlertEngine(...)')")
        return self.store

    # ------------------------------------------------------------------ binding

    def _bind(self, info: DeviceInfo) -> list[Check]:
        checks: list[Check] = []
        nodata: list[_NoData] = []
        for lr in self.rules.rules:
            if not selects(lr, info):
                continue
            check = build_check(lr, info, self.pending, self.latest)
            if check is not None:
                checks.append(check)
            elif isinstance(lr.rule, NoDataRule):
                nodata.append(_NoData(lr, info, self.pending, Check(lr, info, self.pending)))
        self._checks[info.device] = checks
        self._nodata[info.device] = nodata
        if any(nd.rule.points for nd in nodata):
            self._point_nodata.add(info.device)
        # After a restart: alarms that were active keep their detectors active,
        # so the same condition does not fire twice.
        prefix = f":{info.device}"
        for a in self.book.alarms.values():
            if not a.active or not a.alarm_id.startswith(a.spec.rule + prefix):
                continue
            for check in checks:
                if check.lr.rule.id == a.spec.rule:
                    lim = (
                        getattr(check.lr.rule, "limits", {}).get(a.spec.limit)
                        if a.spec.limit
                        else None
                    )
                    check.detector(a.alarm_id, a.spec.point, a.spec.limit, lim).active = True
            for nd in nodata:
                if nd.rule.id == a.spec.rule:
                    nd.detector(a.spec.point).active = True
        return checks

    def _learn_kind(self, sample: Sample) -> list[Check]:
        """A device configured without a resolved profile learns its kind from its first sample."""
        self._kinds_known.add(sample.device)
        info = self.devices[sample.device]
        if info.kind is None and sample.kind:
            info = replace(info, kind=sample.kind)
            self.devices[sample.device] = info
            return self._bind(info)
        return self._checks[sample.device]

    def _info_from_sample(self, sample: Sample) -> DeviceInfo:
        return DeviceInfo(
            device=sample.device, profile=None, kind=sample.kind, tags=dict(sample.tags)
        )

    # ------------------------------------------------------------------ hot path

    def on_sample(self, sample: Sample) -> list[AlarmEvent]:
        """Evaluate one device poll; returns the alarm transitions it caused (usually none)."""
        dev = sample.device
        checks = self._checks.get(dev)
        if checks is None:
            info = self._info_from_sample(sample)
            self.devices[dev] = info
            self._kinds_known.add(dev)
            checks = self._bind(info)
        elif dev not in self._kinds_known:
            checks = self._learn_kind(sample)
        if not sample.mono_ns:
            sample.mono_ns = self.clock.mono_ns()
        ts = sample.mono_ns
        changes: list[Change] = []
        if sample.values:
            self.last_seen[dev] = ts
            if dev in self._point_nodata:
                for point in sample.values:
                    self.last_point[(dev, point)] = ts
            if self._watched:
                for point, v in sample.values.items():
                    if (
                        (dev, point) in self._watched
                        and sample.is_good(point)
                        and not isinstance(v, str)
                    ):
                        self.latest[(dev, point)] = (ts, float(v))
            for nd in self._nodata.get(dev, ()):
                for det in nd.check.detectors.values():
                    if det.active or det.since_ns is not None:
                        pt = det.spec.point
                        if pt is None or pt in sample.values:
                            nd.check.emit(det, False, ts, 0.0, changes)
        for check in checks:
            check.feed(sample, changes)
        if not changes:
            return []
        now = self._now()
        events = self._apply(changes, sample.ts_ns)
        if self.info_source(dev):
            events.extend(self._source_eval(now, self.clock.mono_ns()))
        return self._flush(events)

    def info_source(self, dev: str) -> str | None:
        info = self.devices.get(dev)
        return info.source if info else None

    def _apply(self, changes: list[Change], ts: int) -> list[AlarmEvent]:
        events: list[AlarmEvent] = []
        for det, new in changes:
            detail = "" if det.last_value is None else str(det.last_value)
            events.extend(self.book.set_active(det.spec, new, det.last_value, ts, detail))
        return events

    # ------------------------------------------------------------------ time

    def _now(self) -> int:
        """Wall time for timestamps; tells the book how wall time maps onto monotonic time."""
        now = self.clock.now_ns()
        self.book.offset_ns = now - self.clock.mono_ns()
        return now

    def tick(self) -> list[AlarmEvent]:
        """Time-driven work; call about once a second."""
        now = self.clock.now_ns()
        mono = self.clock.mono_ns()
        self.book.offset_ns = now - mono
        real = self._real_ns()
        changes: list[Change] = []
        for det in list(self.pending):
            new = det.due(real if det.spec.kind == "health" else mono)
            if det.since_ns is None:
                self.pending.discard(det)
            if new is not None:
                changes.append((det, new))
        events: list[AlarmEvent] = []
        events.extend(self._source_eval(now, mono))
        changes.extend(self._nodata_eval(mono))
        events.extend(self._apply(changes, now))
        events.extend(self.book.tick(now, mono))
        flushed = self._flush(events)
        if self.notifier is not None and self.store is not None:
            self.notifier.fire_due()
        later, self._later = self._later, []
        return later + flushed

    def wall_stepped(self, step_ns: int) -> None:
        """The wall clock jumped ``step_ns`` (gateway/clockwatch.py): keep stored deadlines true.

        Stored shelve deadlines and notification timers are wall-clock times (they
        must survive a reboot); moving them with the step keeps them meaning the
        same moment, so a restart after a step does not change them.
        """
        self.book.wall_stepped(step_ns)
        if self.notifier is not None:
            self.notifier.wall_stepped(step_ns)
        self._flush([])

    # ------------------------------------------------------------------ notifier

    async def run_notifier(self, poll_s: float = 1.0) -> None:
        """Long-lived task: deliver queued notifications with durable retry."""
        self._need_store()
        assert self.notifier is not None
        await self.notifier.run(poll_s)

    # ------------------------------------------------------------------ reload

    def reconfigure(self, site: Site) -> list[AlarmEvent]:
        """A reloaded site (gateway/reloader.py): its rules bound to its devices, every alarm kept.

        The alarm book, the store and the notifier with its queue stay as they
        are; the checks are bound again as at a start, so an active alarm keeps
        its detector active and a changed threshold clears or raises it on the
        next sample. Alarms whose rule, limit, device or source left the
        config, or whose rule no longer selects the device, return to normal
        with a note (AlarmBook.retire). The ``alerting:`` block is not swapped.
        """
        fresh = AlertEngine(site, self.clock, alerting=self.cfg, state_path=":memory:")
        old_rules = {lr.rule.id for lr in self.rules.rules}
        for checks in self._checks.values():
            for c in checks:
                self.pending.difference_update(c.detectors.values())
        for nds in self._nodata.values():
            for nd in nds:
                self.pending.difference_update(nd.check.detectors.values())
        self.config = fresh.config
        self.devices, self.rules, self._watched = fresh.devices, fresh.rules, fresh._watched
        self._kinds_known, self._health_rules = fresh._kinds_known, fresh._health_rules
        self._checks, self._nodata, self._point_nodata = {}, {}, set()
        self._source_dets = {}
        self.pending.difference_update(self._health.values())
        self._health = {}
        for info in self.devices.values():
            self._bind(info)
        for a in self.book.alarms.values():
            if a.spec.kind == "health" and a.active:
                self._health_detector(a.spec.alarm_id.removeprefix("gateway:")).active = True
        now = self._now()
        events: list[AlarmEvent] = []
        for a in list(self.book.alarms.values()):
            why = self._orphaned(a, old_rules)
            if why is not None:
                events.extend(self.book.retire(a.alarm_id, now, f"{why} (config reload)"))
        return self._flush(events)

    def _orphaned(self, a: Alarm, old_rules: set[str]) -> str | None:
        """Why a rule alarm has nothing left to clear it after a reload (None: it has)."""
        s = a.spec
        if a.state is AlarmState.NORMAL or s.kind in ("health", "flood", "patrol"):
            return None
        rules = {lr.rule.id: lr for lr in self.rules.rules}
        if s.rule not in rules:
            return f"rule {s.rule!r} removed" if s.rule in old_rules else None
        if s.device.startswith("source:"):
            src = s.device.removeprefix("source:")
            gone = not any(d.source == src for d in self.devices.values())
            return f"source {src!r} removed" if gone else None
        if s.device not in self.devices:
            return f"device {s.device!r} removed"
        bound = [c.lr.rule.id for c in self._checks.get(s.device, [])]
        bound += [nd.rule.id for nd in self._nodata.get(s.device, [])]
        if s.rule not in bound:
            return f"rule {s.rule!r} no longer applies to {s.device!r}"
        limits = getattr(rules[s.rule].rule, "limits", None)
        if s.limit and isinstance(limits, dict) and s.limit not in limits:
            return f"limit {s.limit!r} removed from rule {s.rule!r}"
        return None
