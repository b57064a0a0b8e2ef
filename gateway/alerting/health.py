"""Alarms the gateway raises itself: its health signals, and alarms decided outside the rules.

A health signal (``sink:mqtt``, ``outbox:backlog``, ``source:rtu-1``...)
becomes the alarm ``gateway:<signal>``, with the severity and delays of the
first ``health`` rule whose ``signals`` match it (else the site's
``health_severity``); its delays run on real time, also in a replay. An
external alarm (the patrol's) is raised and cleared in the same book and
keeps the rule and severity it was raised with. A notification channel's
health alarm, made outside any call, goes to ``emit`` (or waits for
``drain_events``).
"""

from __future__ import annotations

import fnmatch

from gateway.alerting.config import Severity
from gateway.alerting.detector import AlarmSpec, Detector
from gateway.alerting.journal import StateJournal
from gateway.alerting.rules import HealthRule, LoadedRule
from gateway.model import AlarmEvent


class HealthSignals(StateJournal):
    """Health and external alarms (a part of ``AlertEngine``)."""

    _health: dict[str, Detector]
    _health_rules: list[LoadedRule]

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
