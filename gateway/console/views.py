"""What the console shows of one alarm, one device and one gateway (``ConsoleState`` keeps
them up to date from MQTT; the pages and the API read them)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# A device whose last reading is older than this many poll intervals is shown stale.
STALE_INTERVALS = 3
# Poll interval assumed for a device of another site until two readings have been seen.
DEFAULT_INTERVAL_S = 1.0


@dataclass
class AlarmView:
    site: str
    alarm_id: str
    last: dict[str, Any]

    @property
    def state(self) -> str:
        return str(self.last.get("state", "?"))

    @property
    def severity(self) -> str:
        return str(self.last.get("severity", ""))

    @property
    def unacked(self) -> bool:
        return self.state in ("unacknowledged", "rtn_unacknowledged")

    @property
    def raised_ns(self) -> int | None:
        extra = self.last.get("extra")
        raised = extra.get("raised_ns") if isinstance(extra, dict) else None
        if isinstance(raised, int):
            return raised
        ts = self.last.get("ts_ns")
        return ts if isinstance(ts, int) and self.last.get("action") == "activate" else None

    @property
    def changed_ns(self) -> int | None:
        ts = self.last.get("ts_ns")
        return ts if isinstance(ts, int) else None

    def as_json(self) -> dict[str, Any]:
        return {
            "site": self.site,
            "alarm_id": self.alarm_id,
            "state": self.state,
            "severity": self.severity,
            "unacknowledged": self.unacked,
            "raised_ns": self.raised_ns,
            "changed_ns": self.changed_ns,
            "device": self.last.get("device"),
            "area": self.last.get("area"),
            "message": self.last.get("message"),
            "actor": self.last.get("actor"),
            "active": self.last.get("active"),
            "latched": self.last.get("latched"),
            "value": self.last.get("value"),
        }


@dataclass
class DeviceView:
    site: str
    device: str
    online: bool | None = None
    area: str | None = None
    changed_ns: int | None = None
    # Console clock (ns) when the last good reading arrived; None: none seen yet.
    sample_ns: int | None = None
    # The poll interval: from the site file, else learnt from the gap between readings.
    interval_s: float | None = None
    interval_known: bool = False
    counters: dict[str, Any] = field(default_factory=dict)
    health_ns: int | None = None
    stale: bool = False
    # Console clock (ns) when this device was first heard of.
    seen_ns: int = 0

    def is_stale(self, now_ns: int) -> bool:
        """No reading for STALE_INTERVALS poll intervals (counted from when the console
        first heard of the device, if none yet: a console just started is not alarmist)."""
        last = self.sample_ns if self.sample_ns is not None else self.seen_ns
        limit = STALE_INTERVALS * (self.interval_s or DEFAULT_INTERVAL_S)
        return (now_ns - last) / 1e9 > limit

    @property
    def condition(self) -> str:
        """What the page shows: offline (the gateway says so), stale, online or unknown."""
        if self.online is False:
            return "offline"
        if self.stale:
            return "stale"
        return "online" if self.online else "unknown"

    def reading(self, now_ns: int) -> None:
        if self.sample_ns is not None and not self.interval_known:
            gap = (now_ns - self.sample_ns) / 1e9
            # A smoothed gap: one late reading must not make the device look slow.
            self.interval_s = gap if self.interval_s is None else 0.8 * self.interval_s + 0.2 * gap
        self.sample_ns = now_ns


@dataclass
class GatewayView:
    site: str
    status: str | None = None
    status_ns: int | None = None
    health: dict[str, Any] = field(default_factory=dict)
    health_ns: int | None = None
    # The last config reload's outcome (its config.applied / config.rejected event's data
    # with "kind" and "ts_ns"), and how many such events this console has seen.
    config: dict[str, Any] = field(default_factory=dict)
    config_seen: int = 0
