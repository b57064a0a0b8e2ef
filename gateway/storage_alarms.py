"""Alarms about the gateway's own files: rows quarantined, damaged files replaced, a full disk.

The stores only report what happened (the outbox's quarantine counts, the
file incidents of ``gateway.sqlite_file``); this module turns each report
into an alarm in the one alarm book, so it is persisted, published and
notified like any other. A one-off report is a pulse (raised and cleared at
once): it waits, return-to-normal-unacknowledged, until an operator
acknowledges it, and a second report raises it again.
"""

from __future__ import annotations

import logging

from gateway.alerting.engine import AlertEngine
from gateway.delivery import Delivery, DeliveryStats
from gateway.model import AlarmEvent
from gateway.patrol import PatrolEngine

DISK_SIGNAL = "outbox:disk"
PATROL_STATE_SIGNAL = "patrol:state"
ALARM_STATE_SIGNAL = "alarm:state"

log = logging.getLogger(__name__)

QUARANTINE_ALARM = "gateway:outbox:quarantine"


class StorageAlarms:
    """Turns storage reports into alarms of ``alerts`` (see the module docstring)."""

    def __init__(self, alerts: AlertEngine | None) -> None:
        self.alerts = alerts
        self._quarantined_seen = 0

    def pulse(self, alarm_id: str, rule: str, message: str) -> list[AlarmEvent]:
        """Raise and clear ``alarm_id`` at once (a one-off finding an operator must see)."""
        if self.alerts is None:
            log.error("%s (no alerting configured: not raised as an alarm)", message)
            return []
        events: list[AlarmEvent] = []
        for active in (True, False):
            events += self.alerts.external(
                alarm_id,
                active,
                severity="high",
                device="gateway",
                message=message,
                rule=rule,
                kind="storage",
                area="gateway",
            )
        return events

    def opened(self, delivery: Delivery, patrol: PatrolEngine | None) -> list[AlarmEvent]:
        """One alarm per state file found damaged or emptied at start, naming the saved copy."""
        found = delivery.file_incidents()
        store = self.alerts.store if self.alerts is not None else None
        for incident in (
            store.incident if store else None,
            patrol.store.incident if patrol else None,
        ):
            if incident is not None:
                found.append(incident)
        events: list[AlarmEvent] = []
        for incident in found:
            alarm_id = f"gateway:file:{incident.path.name}"
            events += self.pulse(alarm_id, "state_file_lost", incident.message)
        return events

    def signals(
        self, stats: DeliveryStats, patrol: PatrolEngine | None
    ) -> list[tuple[str, bool, str]]:
        """Health signals (name, ok, detail): the outbox's disk, the state files' saves."""
        out: list[tuple[str, bool, str]] = []
        if self.alerts is not None:
            error = self.alerts.state_error
            out.append((ALARM_STATE_SIGNAL, error is None, error or "saved"))
        if stats.outbox is not None:
            full = stats.outbox.disk_full
            out.append((DISK_SIGNAL, full is None, f"disk full: {full}" if full else "room"))
        if patrol is not None:
            error = patrol.store.save_error
            out.append((PATROL_STATE_SIGNAL, error is None, error or "saved"))
        return out

    def check(self, stats: DeliveryStats) -> list[AlarmEvent]:
        """Alarms for what the outbox reported since the last check."""
        ob = stats.outbox
        if ob is None or ob.quarantined_new <= self._quarantined_seen:
            return []
        n = ob.quarantined_new - self._quarantined_seen
        self._quarantined_seen = ob.quarantined_new
        rows = "row" if n == 1 else "rows"
        return self.pulse(
            QUARANTINE_ALARM,
            "outbox_quarantine",
            f"{n} undecodable outbox {rows} quarantined ({ob.quarantined} in total):"
            " kept in the outbox's quarantine table, not delivered",
        )
