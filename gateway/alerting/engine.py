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

Durations (delays, no-data silence, shelving, chatter and flood windows) run
on the clock's monotonic ``mono_ns``; events carry wall-clock timestamps.
"""

from __future__ import annotations

import fnmatch
import logging
import sqlite3
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from types import TracebackType
from typing import Any

from gateway.alerting.alarm import Alarm
from gateway.alerting.alarms import AlarmBook
from gateway.alerting.channels import Publish
from gateway.alerting.checks import Check, DeviceInfo, build_check, selects
from gateway.alerting.commands import (
    AckCmd,
    InServiceCmd,
    ListCmd,
    OutOfServiceCmd,
    ResetCmd,
    ShelveCmd,
    UnshelveCmd,
    actor_of,
    parse_command,
)
from gateway.alerting.config import AlertingConfig, Severity
from gateway.alerting.detector import AlarmSpec, Change, Detector
from gateway.alerting.notify import Notifier, SentHook
from gateway.alerting.rules import (
    DeviationRule,
    HealthRule,
    LoadedRule,
    NoDataRule,
    RuleSet,
    check_against_devices,
    load_rules,
)
from gateway.alerting.store import AlertStore
from gateway.config import Site, SiteConfig
from gateway.crashpoints import crash_point
from gateway.disk_space import is_disk_full
from gateway.errors import AlarmError, ConfigError
from gateway.model import AlarmEvent, AlarmState, Clock, Sample
from gateway.reports.gasplan import with_shedding_advice

log = logging.getLogger(__name__)
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


class AlertEngine:
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

    # ------------------------------------------------------------------ health

    def _health_detector(self, name: str, severity: Severity | None = None) -> Detector:
        det = self._health.get(name)
        if det is None:
            rule: HealthRule | None = None
            for lr in self._health_rules:
                assert isinstance(lr.rule, HealthRule)
                if lr.rule.enabled and any(fnmatch.fnmatchcase(name, p) for p in lr.rule.signals):
                    rule = lr.rule
                    break
            spec = AlarmSpec(
                alarm_id=f"gateway:{name}",
                rule=rule.id if rule else "gateway",
                kind="health",
                device="gateway",
                point=name,
                limit=None,
                limit_value=None,
                severity=rule.severity if rule else severity or self.cfg.health_severity,
                latch=False,
                area=rule.area if rule else None,
                template=rule.message if rule else None,
            )
            det = Detector(
                spec, rule.on_delay_s if rule else 0.0, rule.off_delay_s if rule else 0.0
            )
            self._health[name] = det
        return det

    def _real_ns(self) -> int:
        # Microseconds: a float of seconds does not hold nanoseconds exactly.
        return round(self.clock.monotonic() * 1e6) * 1000

    def health(
        self, name: str, ok: bool, detail: str, severity: Severity | None = None
    ) -> list[AlarmEvent]:
        """A gateway health signal (``sink:mqtt``, ``outbox:backlog``, ``source:rtu-1``...).

        Its delays are real durations (the real monotonic clock, also in a replay).
        ``severity`` applies when no health rule names the signal (default: the site's).
        """
        det = self._health_detector(name, severity)
        now = self._now()
        new = det.feed(not ok, self._real_ns(), detail)
        if det.since_ns is None:
            self.pending.discard(det)
        else:
            self.pending.add(det)
        if new is None:
            return []
        events = self.book.set_active(det.spec, new, detail, now, detail)
        return self._flush(events)

    def external(
        self,
        alarm_id: str,
        active: bool,
        *,
        severity: str,
        device: str,
        message: str,
        rule: str,
        kind: str = "external",
        point: str | None = None,
        area: str | None = None,
        ts_ns: int | None = None,
    ) -> list[AlarmEvent]:
        """An alarm decided outside the rule engine (the patrol check), in the same book.

        ``active`` True raises it, False clears it; a one-off finding is raised
        and cleared at once, so it waits return-to-normal-unacknowledged for an
        operator. Persisted, notified, escalated like any other alarm. A clear
        keeps the rule and severity the alarm was raised with: they are its
        identity (InfluxDB tags, the retained state), not the clearing caller's.
        """
        known = self.book.alarms.get(alarm_id)
        if not active and known is not None and known.on:
            rule, severity = known.spec.rule, str(known.spec.severity)
        spec = AlarmSpec(
            alarm_id=alarm_id,
            rule=rule,
            kind=kind,
            device=device,
            point=point,
            limit=None,
            limit_value=None,
            severity=Severity(severity),
            latch=False,
            area=area,
            template="{detail}",
        )
        now = self._now()
        if ts_ns is not None:
            now = ts_ns
        return self._flush(self.book.set_active(spec, active, None, now, message))

    def _notifier_health(self, name: str, ok: bool, detail: str) -> None:
        events = self.health(name, ok, detail)
        if not events:
            return
        if self.emit is not None:
            self.emit(events)
        else:
            self._later.extend(events)

    def drain_events(self) -> list[AlarmEvent]:
        """Events made outside a call (notifier health) when no ``emit`` hook is set."""
        out, self._later = self._later, []
        return out

    # ------------------------------------------------------------------ commands

    def command(
        self, cmd: dict[str, Any] | str | bytes, actor: str
    ) -> tuple[list[AlarmEvent], dict[str, Any]]:
        """Apply an operator command; CommandError / AlarmError leave everything unchanged."""
        c = parse_command(cmd)
        self._need_store()
        who = actor_of(c, actor)
        now = self._now()
        reply: dict[str, Any] = {"ok": True, "cmd": c.cmd, "request_id": c.request_id}
        if isinstance(c, ListCmd):
            reply["alarms"] = [
                self.describe(a)
                for a in sorted(self.book.alarms.values(), key=lambda a: a.alarm_id)
                if c.all or a.state is not AlarmState.NORMAL
            ]
            return [], reply
        b = self.book
        if isinstance(c, AckCmd):
            events = b.ack(c.alarm_id, who, now, c.comment)
        elif isinstance(c, ShelveCmd):
            events = b.shelve(c.alarm_id, c.duration, who, now, c.note)
        elif isinstance(c, UnshelveCmd):
            events = b.unshelve(c.alarm_id, who, now)
        elif isinstance(c, ResetCmd):
            events = b.reset(c.alarm_id, who, now, c.comment)
        elif isinstance(c, OutOfServiceCmd):
            events = b.out_of_service(c.alarm_id, who, now, c.note, c.duration)
        else:
            assert isinstance(c, InServiceCmd)
            events = b.in_service(c.alarm_id, who, now, c.comment)
        self._flush(events)
        a = b.alarms[c.alarm_id]
        reply.update({"alarm_id": c.alarm_id, "state": str(a.state), "actor": who})
        return events, reply

    # ------------------------------------------------------------------ state

    def _facts(self, alarm_id: str) -> AlarmEvent | None:
        a = self.book.alarms.get(alarm_id)
        if a is None:
            return None
        s = a.spec
        return AlarmEvent(
            alarm_id=a.alarm_id,
            ts_ns=a.changed_ns,
            state=a.state,
            previous=a.state,
            action="facts",
            severity=str(s.severity),
            device=s.device,
            point=s.point,
            rule=s.rule,
            message=a.message,
            value=a.value,
            active=a.on,
            latched=a.latched_on,
            area=s.area,
        )

    def _flush(self, events: list[AlarmEvent]) -> list[AlarmEvent]:
        """Persist changed alarms and plan notifications in one transaction."""
        store = self.store
        if store is None:
            return events
        if not events and not self.book.dirty and not self._unsaved:
            return events
        todo = self._unsaved + events
        try:
            with store.transaction():
                if self.book.dirty:
                    store.save_alarms(
                        [self.book.alarms[i].to_json_dict() for i in sorted(self.book.dirty)]
                    )
                    store.set_meta("counters", self.book.counters)
                    store.set_meta(
                        "flood",
                        {
                            "in_flood": self.book.in_flood,
                            "recent": list(self.book.flood_recent)[-1000:],
                        },
                    )
                if todo:
                    # With the state, not after it: a crash before the outbox commits
                    # leaves the transition here, and the restart publishes it.
                    store.journal([e.to_json_dict() for e in todo])
                if todo and self.notifier is not None:
                    self.notifier.on_events(todo)
        except sqlite3.OperationalError as exc:
            if not is_disk_full(exc):
                raise
            # A full disk must not stop alarming: the transitions still go to the
            # outboxes (the caller appends them); state, journal and notifications
            # are written with the next change that fits (gateway/disk_space.py
            # makes room).
            if self.state_error is None:
                log.error("alarm state %s cannot be saved: %s; kept in memory", store.path, exc)
            self.state_error = f"alarm state {store.path} cannot be saved: {exc}"
            self._unsaved = todo
            return events
        self.book.dirty.clear()
        self._unsaved = []
        if self.state_error is not None:
            log.warning("alarm state %s saved again", store.path)
            self.state_error = None
        if events:
            crash_point("alarm-state-saved")
        return events

    def unpublished(self) -> tuple[list[AlarmEvent], int]:
        """Journaled transitions the outbox has not confirmed, and the journal head.

        Every public call appends (through its caller) the events it returns
        before the caller yields, so once the outbox has committed what was
        appended so far, everything up to ``journal_head()`` is in it.
        """
        store = self._need_store()
        return [AlarmEvent.from_json_dict(d) for d in store.journaled()], store.journal_head()

    def journal_head(self) -> int:
        return self._need_store().journal_head()

    def confirm_published(self, upto: int) -> None:
        """The outbox committed every transition journaled up to ``upto``."""
        if self.store is not None:
            self.store.confirm_journal(upto)

    @staticmethod
    def describe(a: Alarm) -> dict[str, Any]:
        """One alarm as the ``list`` command and ``gateway alarms list --json`` show it."""
        return {
            "alarm_id": a.alarm_id,
            "state": str(a.state),
            "severity": str(a.spec.severity),
            "area": a.spec.area,
            "device": a.spec.device,
            "point": a.spec.point,
            "rule": a.spec.rule,
            "message": a.message,
            "value": a.value,
            "latched": a.latched_on,
            "raised_ns": a.raised_ns,
            "acked_by": a.acked_by,
            "shelved_until_ns": a.shelved_until_ns,
            "activations": a.activation_count,
            "chattering": a.chattering,
        }

    def alarms(self, include_normal: bool = False) -> list[dict[str, Any]]:
        return [
            self.describe(a)
            for a in sorted(self.book.alarms.values(), key=lambda a: a.alarm_id)
            if include_normal or a.state is not AlarmState.NORMAL
        ]

    def counters(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.book.counters)
        out["in_flood"] = self.book.in_flood
        out["chattering_now"] = sum(1 for a in self.book.alarms.values() if a.chattering)
        if self.store is not None:
            out["notifications"] = self.store.counts()
        return out

    # ------------------------------------------------------------------ notifier

    async def run_notifier(self, poll_s: float = 1.0) -> None:
        """Long-lived task: deliver queued notifications with durable retry."""
        self._need_store()
        assert self.notifier is not None
        await self.notifier.run(poll_s)
