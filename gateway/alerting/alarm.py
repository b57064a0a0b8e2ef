"""One alarm: its identity (spec), the live facts its state derives from, its stored form.

``Alarm.state`` derives the ISA-18.2 state from the facts (the table is in
``alarms.py``, whose ``AlarmBook`` changes them); ``to_json_dict`` and
``from_json_dict`` are what the alarm state database keeps; ``event`` is one
transition of the alarm as the ``AlarmEvent`` the outbox carries.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from gateway.alerting.config import Severity
from gateway.alerting.detector import AlarmSpec
from gateway.model import AlarmEvent, AlarmState, Value


@dataclass
class Alarm:
    """One alarm: its identity (spec) and its live facts."""

    spec: AlarmSpec
    active: bool = False
    latched_on: bool = False
    acked: bool = True
    shelved_until_ns: int | None = None
    shelved_by: str | None = None
    out_of_service: bool = False
    # When an out-of-service alarm returns to service by itself (None: only by command).
    out_of_service_until_ns: int | None = None
    suppressed: bool = False
    value: Value | None = None
    message: str = ""
    raised_ns: int | None = None
    cleared_ns: int | None = None
    acked_ns: int | None = None
    acked_by: str | None = None
    changed_ns: int = 0
    activation_count: int = 0
    chattering: bool = False
    chatter_count: int = 0
    # Recent activation times for chatter detection, bounded by the chatter count.
    recent: deque[int] = field(default_factory=lambda: deque(maxlen=64))
    comment: str | None = None

    @property
    def alarm_id(self) -> str:
        return self.spec.alarm_id

    @property
    def on(self) -> bool:
        return self.active or self.latched_on

    @property
    def state(self) -> AlarmState:
        if self.out_of_service:
            return AlarmState.OUT_OF_SERVICE
        if self.shelved_until_ns is not None:
            return AlarmState.SHELVED
        if self.suppressed:
            return AlarmState.SUPPRESSED
        if self.on:
            return AlarmState.ACKED if self.acked else AlarmState.UNACKED
        return AlarmState.NORMAL if self.acked else AlarmState.RTN_UNACKED

    def to_json_dict(self) -> dict[str, Any]:
        s = self.spec
        return {
            "spec": {
                "alarm_id": s.alarm_id,
                "rule": s.rule,
                "kind": s.kind,
                "device": s.device,
                "point": s.point,
                "limit": s.limit,
                "limit_value": s.limit_value,
                "severity": str(s.severity),
                "latch": s.latch,
                "area": s.area,
                "template": s.template,
                "inhibited_by": list(s.inhibited_by),
                "unit": s.unit,
            },
            "active": self.active,
            "latched_on": self.latched_on,
            "acked": self.acked,
            "shelved_until_ns": self.shelved_until_ns,
            "shelved_by": self.shelved_by,
            "out_of_service": self.out_of_service,
            "out_of_service_until_ns": self.out_of_service_until_ns,
            "suppressed": self.suppressed,
            "value": self.value,
            "message": self.message,
            "raised_ns": self.raised_ns,
            "cleared_ns": self.cleared_ns,
            "acked_ns": self.acked_ns,
            "acked_by": self.acked_by,
            "changed_ns": self.changed_ns,
            "activation_count": self.activation_count,
            "chattering": self.chattering,
            "chatter_count": self.chatter_count,
            "recent": list(self.recent),
            "comment": self.comment,
            "state": str(self.state),
        }

    @classmethod
    def from_json_dict(cls, d: dict[str, Any]) -> Alarm:
        s = dict(d["spec"])
        s["severity"] = Severity(s["severity"])
        s["inhibited_by"] = tuple(s.get("inhibited_by", ()))
        spec = AlarmSpec(**s)
        a = cls(spec=spec)
        for key in (
            "active", "latched_on", "acked", "shelved_until_ns", "shelved_by", "out_of_service",
            "suppressed", "value", "message", "raised_ns", "cleared_ns", "acked_ns", "acked_by",
            "changed_ns", "activation_count", "chattering", "chatter_count", "comment",
            "out_of_service_until_ns",
        ):  # fmt: skip
            if key in d:
                setattr(a, key, d[key])
        a.recent = deque(d.get("recent", []), maxlen=64)
        return a

    def event(
        self, previous: AlarmState, action: str, ts_ns: int, actor: str = "system", **extra: Any
    ) -> AlarmEvent:
        """The transition from ``previous`` that ``actor`` made at ``ts_ns``, as an event."""
        s = self.spec
        ex: dict[str, Any] = {"kind": s.kind}
        if s.limit:
            ex["limit"] = s.limit
            ex["limit_value"] = s.limit_value
        if self.chattering:
            ex["chattering"] = True
        if self.shelved_until_ns is not None:
            ex["shelved_until_ns"] = self.shelved_until_ns
        ex["activations"] = self.activation_count
        if self.raised_ns is not None:
            # A console that sees only the retained last transition still shows its age.
            ex["raised_ns"] = self.raised_ns
        ex.update(extra)
        return AlarmEvent(
            alarm_id=self.alarm_id,
            ts_ns=ts_ns,
            state=self.state,
            previous=previous,
            action=action,
            severity=str(s.severity),
            device=s.device,
            point=s.point,
            rule=s.rule,
            message=self.message,
            value=self.value,
            actor=actor,
            active=self.on,
            latched=self.latched_on,
            area=s.area,
            extra=ex,
        )
