"""Alarm specs and the detector that debounces one alarm condition.

An ``AlarmSpec`` is the static identity of one alarm (rule, device, point,
limit, severity, message template) and renders its message. A ``Detector``
debounces the condition a check reports (on-delay, off-delay) on the
monotonic clock; a ``Change`` is a detector whose debounced verdict flipped,
for the alarm book (``alarms.py``) to turn into ISA-18.2 transitions.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.alerting.config import Severity
from gateway.model import Value


@dataclass(slots=True)
class AlarmSpec:
    """The static identity of one alarm: which rule, device, point and limit raise it."""

    alarm_id: str
    rule: str
    kind: str
    device: str
    point: str | None
    limit: str | None
    limit_value: float | None
    severity: Severity
    latch: bool
    area: str | None
    template: str | None
    # Alarm-id glob patterns whose activity suppresses this alarm (suppression by design).
    inhibited_by: tuple[str, ...] = ()
    unit: str = ""
    advice: str = ""

    def render(self, value: Value | None, detail: str = "") -> str:
        text = self._render(value, detail)
        return f"{text}; {self.advice}" if self.advice else text

    def _render(self, value: Value | None, detail: str) -> str:
        fields = {
            "device": self.device,
            "point": self.point or "",
            "value": _fmt(value),
            "limit": self.limit or "",
            "limit_value": _fmt(self.limit_value),
            "rule": self.rule,
            "area": self.area or "",
            "unit": self.unit,
            "detail": detail,
        }
        if self.template:
            try:
                return self.template.format_map(fields)
            except (KeyError, ValueError, IndexError, AttributeError):
                pass
        return _default_message(self, fields)


def _fmt(v: Value | float | None) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _default_message(spec: AlarmSpec, f: dict[str, str]) -> str:
    where = f"{spec.device} {spec.point}" if spec.point else spec.device
    unit = f" {spec.unit}" if spec.unit else ""
    if spec.kind in ("limit", "rate", "deviation"):
        sign = ">=" if spec.limit in ("hi", "hihi") else "<="
        what = {"rate": " rate", "deviation": ""}.get(spec.kind, "")
        return f"{where}{what} {f['value']}{unit} {sign} {spec.limit} {f['limit_value']}{unit}"
    if spec.kind == "status":
        return f"{where} status {f['value']}"
    if spec.kind == "no_data":
        return f"{where}: no data for {f['value']} s"
    if spec.kind == "quality":
        return f"{where}: sensor {f['value']}"
    return f"{where}: {f['detail'] or f['value']}"


class Detector:
    """Debounces one alarm condition: on-delay before activating, off-delay before clearing.

    ``raw`` is what the latest evidence says; ``active`` the debounced verdict.
    ``since_ns`` is when ``raw`` started to differ from ``active`` (None when
    they agree), so ``due`` can fire the change later without a new sample.
    Its times are monotonic (``Clock.mono_ns``), never wall clock.
    """

    __slots__ = ("active", "last_value", "off_ns", "on_ns", "since_ns", "spec")

    def __init__(self, spec: AlarmSpec, on_delay_s: float, off_delay_s: float) -> None:
        self.spec = spec
        self.on_ns = int(on_delay_s * 1e9)
        self.off_ns = int(off_delay_s * 1e9)
        self.active = False
        self.since_ns: int | None = None
        self.last_value: Value | None = None

    def feed(self, raw: bool, mono_ns: int, value: Value | None) -> bool | None:
        """Take new evidence; return the new debounced state when it changes, else None."""
        self.last_value = value
        if raw == self.active:
            self.since_ns = None
            return None
        if self.since_ns is None:
            self.since_ns = mono_ns
        delay = self.on_ns if raw else self.off_ns
        if mono_ns - self.since_ns >= delay:
            self.active = raw
            self.since_ns = None
            return raw
        return None

    def due(self, mono_ns: int) -> bool | None:
        """Fire a pending change whose delay has run out (the condition was not contradicted)."""
        if self.since_ns is None:
            return None
        delay = self.off_ns if self.active else self.on_ns
        if mono_ns - self.since_ns >= delay:
            self.active = not self.active
            self.since_ns = None
            return self.active
        return None


Change = tuple[Detector, bool]
