"""What operators do and see through the alert engine: commands, alarm lists, counters.

``command`` applies one operator command (acknowledge, shelve, unshelve,
reset, out of service, in service, list) to the alarm book; a bad or refused
command changes nothing. ``describe`` is one alarm as the ``list`` command
and ``gateway alarms list --json`` show it; ``_facts`` an alarm's current
facts for the notifier.
"""

from __future__ import annotations

from typing import Any

from gateway.alerting.alarm import Alarm
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
from gateway.alerting.journal import StateJournal
from gateway.model import AlarmEvent, AlarmState


class OperatorViews(StateJournal):
    """Commands and views of the alarms (a part of ``AlertEngine``)."""

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
