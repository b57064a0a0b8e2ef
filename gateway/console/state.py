"""What the console knows about the sites it watches, fed by MQTT messages.

``ConsoleState.handle(topic, payload)`` takes any message under the watched
prefix and updates: alarms (the retained last transition of each), each
alarm's timeline (transitions seen on ``events``, and the gateway's
``notification.sent`` record of each message it delivered on any channel:
recipients, channel, escalation level; bounded),
devices (online/offline, area, when their last reading arrived, their poll
error counters from the gateway's ``device_health`` record; a device whose
retained availability its gateway cleared is forgotten), gateways (status,
their health record and the outcome of their last config reload).

Device telemetry can arrive at a high rate, so a reading is not decoded: its
arrival time is recorded from the topic (and a byte search tells a failed
poll, which carries ``"error"``, or an all-bad one, ``"values":{}``, from a
reading). Only payloads whose bytes say ``"kind":"device_health"`` are parsed.
A reading does not change ``version`` (pages would reload at the sample
rate); a device turning stale or fresh does, checked by ``sweep``.
A malformed message is counted and ignored. Every change bumps ``version``
and wakes the waiters of ``changed`` (the pages' server-sent events).

Timestamps shown come from the messages (wall clock, ns); "how long ago" is
computed against the injected clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import deque
from typing import Any

from gateway.console.patrol_board import PatrolBoard
from gateway.console.views import AlarmView, DeviceView, GatewayView
from gateway.model import Clock

SEVERITY_RANK = {"critical": 0, "high": 1, "medium": 2, "low": 3, "info": 4}
# Transitions kept per alarm; a chattering alarm must not grow the console without bound.
TIMELINE_MAX = 200
# Counters of the device_health record the console shows (gateway/app.py health_samples).
DEVICE_COUNTERS = (
    "polls", "good_polls", "timeouts", "exceptions", "frame_errors", "connect_errors",
    "decode_errors", "overruns", "consecutive_failures",
)  # fmt: skip
_HEALTH_MARK = b'"kind":"device_health"'
# The events that say how a gateway's config reload ended.
CONFIG_EVENTS = ("config.applied", "config.rejected")
# Alarms whose last state is normal are forgotten after this many (oldest first).
NORMAL_KEEP = 500


def _json(payload: bytes) -> Any:
    try:
        return json.loads(payload)
    except (ValueError, RecursionError):
        return None


class ConsoleState:
    """Alarms, timelines, devices and gateways of every watched site."""

    def __init__(
        self,
        prefix: str,
        clock: Clock,
        site_areas: dict[str, dict[str, str]] | None = None,
        site_intervals: dict[str, dict[str, float]] | None = None,
    ):
        self.prefix = prefix.rstrip("/")
        self.clock = clock
        self.alarms: dict[tuple[str, str], AlarmView] = {}
        self.timelines: dict[tuple[str, str], deque[dict[str, Any]]] = {}
        self.devices: dict[tuple[str, str], DeviceView] = {}
        self.gateways: dict[str, GatewayView] = {}
        # Areas known from site files (device -> area), for devices no alarm has named yet.
        self.site_areas = site_areas or {}
        self.site_intervals = site_intervals or {}
        # Sites whose gateways report every delivered notification (notification.sent).
        self._reports_sends: set[str] = set()
        self.patrol = PatrolBoard()
        self.version = 0
        self.ignored = 0
        self.broker_connected = False
        self.broker_since_ns: int | None = None
        # Set (and replaced) at each change: waiters hold the one that was current.
        self._flag = asyncio.Event()

    # ------------------------------------------------------------------ reading

    def alarm(self, site: str, alarm_id: str) -> AlarmView | None:
        return self.alarms.get((site, alarm_id))

    def timeline(self, site: str, alarm_id: str) -> list[dict[str, Any]]:
        return list(self.timelines.get((site, alarm_id), ()))

    def active_alarms(self, site: str | None = None, area: str | None = None) -> list[AlarmView]:
        """Not normal, unacknowledged first, then by severity, then oldest raised first."""
        shown = [
            a
            for a in self.alarms.values()
            if a.state != "normal"
            and (site is None or a.site == site)
            and (area is None or a.last.get("area") == area)
        ]

        def key(a: AlarmView) -> tuple[int, int, int]:
            return (
                0 if a.unacked else 1,
                SEVERITY_RANK.get(a.severity, 9),
                a.raised_ns or a.changed_ns or 0,
            )

        return sorted(shown, key=key)

    def sites(self) -> list[str]:
        names = {s for s, _ in self.alarms} | {s for s, _ in self.devices} | set(self.gateways)
        return sorted(names)

    def areas(self) -> list[str]:
        return sorted({str(a.last["area"]) for a in self.alarms.values() if a.last.get("area")})

    def devices_by_area(self, site: str | None = None) -> dict[str, list[DeviceView]]:
        out: dict[str, list[DeviceView]] = {}
        for d in sorted(self.devices.values(), key=lambda d: (d.site, d.device)):
            if site is None or d.site == site:
                out.setdefault(d.area or "(no area)", []).append(d)
        return dict(sorted(out.items()))

    def age_s(self, ts_ns: int | None) -> float | None:
        return None if ts_ns is None else max(0.0, (self.clock.now_ns() - ts_ns) / 1e9)

    # ------------------------------------------------------------------ feeding

    def set_broker(self, connected: bool) -> None:
        if connected != self.broker_connected:
            self.broker_connected = connected
            self.broker_since_ns = self.clock.now_ns()
            self._bump()

    def handle(self, topic: str, payload: bytes) -> bool:
        """Apply one message; True when it changed what the console shows."""
        head = self.prefix + "/"
        if not topic.startswith(head):
            return False
        parts = topic[len(head) :].split("/")
        if len(parts) < 2:
            return False
        site, rest = parts[0], parts[1:]
        if rest[0] == "alarms" and len(rest) >= 2:
            changed = self._alarm(site, payload)
        elif rest == ["events"]:
            changed = self._event(site, payload)
        elif rest == ["gateway", "status"]:
            changed = self._status(site, payload)
        elif rest == ["gateway", "telemetry"]:
            changed = self._health(site, payload)
        elif len(rest) == 2 and rest[1] == "telemetry":
            changed = self._telemetry(site, rest[0], payload)
        elif len(rest) == 2 and rest[1] == "availability":
            changed = self._availability(site, rest[0], payload)
        else:
            return False
        if changed:
            self._bump()
        return changed

    def _bump(self) -> None:
        self.version += 1
        flag, self._flag = self._flag, asyncio.Event()
        flag.set()

    async def wait_changed(self, version: int, wait_s: float) -> int:
        """Return the version once it differs from ``version``, or after ``wait_s``."""
        if self.version != version:
            return self.version
        flag = self._flag
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait_s):
                await flag.wait()
        return self.version

    def _bad(self) -> bool:
        self.ignored += 1
        return False

    def _alarm(self, site: str, payload: bytes) -> bool:
        if not payload:  # a retained alarm cleared by its publisher
            return False
        d = _json(payload)
        if not isinstance(d, dict) or not isinstance(d.get("alarm_id"), str):
            return self._bad()
        key = (site, d["alarm_id"])
        old = self.alarms.get(key)
        if old is not None and isinstance(old.changed_ns, int):
            ts = d.get("ts_ns")
            if isinstance(ts, int) and ts < old.changed_ns:
                return False  # an older transition arriving late (a replay) changes nothing
        self.alarms[key] = AlarmView(site, d["alarm_id"], d)
        self._remember_device(site, d)
        self._forget_old_normals()
        return True

    def _remember_device(self, site: str, d: dict[str, Any]) -> None:
        dev, area = d.get("device"), d.get("area")
        if isinstance(dev, str) and isinstance(area, str) and area:
            view = self.devices.get((site, dev))
            if view is not None and view.area is None:
                view.area = area

    def _forget_old_normals(self) -> None:
        normals = [a for a in self.alarms.values() if a.state == "normal"]
        if len(normals) <= NORMAL_KEEP:
            return
        normals.sort(key=lambda a: a.changed_ns or 0)
        for a in normals[: len(normals) - NORMAL_KEEP]:
            del self.alarms[(a.site, a.alarm_id)]
            self.timelines.pop((a.site, a.alarm_id), None)

    def _event(self, site: str, payload: bytes) -> bool:
        d = _json(payload)
        if not isinstance(d, dict):
            return self._bad()
        if d.get("type") == "alarm" and isinstance(d.get("alarm_id"), str):
            entry = {
                k: d.get(k)
                for k in ("ts_ns", "action", "state", "previous", "actor", "message", "value")
            }
            extra = d.get("extra")
            if isinstance(extra, dict) and extra.get("comment"):
                entry["comment"] = extra["comment"]
            self._append(site, d["alarm_id"], entry)
            # The events stream also refreshes the alarm itself (same transition).
            return self._alarm(site, payload) or True
        if d.get("type") == "event" and str(d.get("kind")).startswith("patrol."):
            return self.patrol.apply(site, d)
        if d.get("type") == "event" and d.get("kind") in CONFIG_EVENTS:
            return self._config(site, d)
        if d.get("type") == "event" and d.get("kind") == "notification.sent":
            data = d.get("data")
            return self._sent(site, d.get("ts_ns"), data) if isinstance(data, dict) else False
        if d.get("type") == "event" and d.get("kind") == "notification":
            if site in self._reports_sends:
                return False  # its notification.sent records say it (with the channel)
            data = d.get("data") if isinstance(d.get("data"), dict) else {}
            assert isinstance(data, dict)
            alarm_ids = [a for a in _alarm_ids_of(data) if (site, a) in self.alarms]
            people = data.get("recipients")
            told = ", ".join(map(str, people)) if isinstance(people, list) and people else None
            for alarm_id in alarm_ids:
                entry = {
                    "ts_ns": d.get("ts_ns"),
                    "action": "notified",
                    "actor": told or data.get("topic"),
                    "message": data.get("title"),
                }
                self._append(site, alarm_id, entry)
            return bool(alarm_ids)
        return False

    def _config(self, site: str, d: dict[str, Any]) -> bool:
        data = d.get("data")
        if not isinstance(data, dict):
            return self._bad()
        gw = self.gateways.setdefault(site, GatewayView(site))
        gw.config = {"kind": d["kind"], "ts_ns": d.get("ts_ns"), **data}
        gw.config_seen += 1
        return True

    async def next_config(self, site: str, seen: int, wait_s: float) -> dict[str, Any] | None:
        """The outcome of the first reload of ``site`` after ``seen`` config events (its
        ``config_seen`` before the reload was asked for); None if none came in ``wait_s``."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait_s):
                while True:
                    gw = self.gateways.get(site)
                    if gw is not None and gw.config_seen > seen:
                        return gw.config
                    await self.wait_changed(self.version, wait_s)
        return None

    def _sent(self, site: str, ts_ns: Any, data: dict[str, Any]) -> bool:
        """A gateway's record of one delivered message (any channel): who, how, which level."""
        ids = data.get("alarm_ids")
        people = data.get("recipients")
        if not isinstance(ids, list) or not isinstance(people, list):
            return self._bad()
        self._reports_sends.add(site)
        told = ", ".join(map(str, people)) or "nobody on duty"
        how = f"by {data.get('channel')}"
        if isinstance(data.get("level"), int):
            how += f" (level {data['level']})"
        if data.get("possible_duplicate"):
            how += ", possibly a second time"
        changed = False
        for alarm_id in (a for a in ids if isinstance(a, str) and (site, a) in self.alarms):
            line = self.timelines.get((site, alarm_id), ())
            # The same MQTT-channel message may already be there from its "notification"
            # event (sent before its record): this line replaces it.
            for old in [e for e in line if e.get("action") == "notified" and "how" not in e]:
                if old.get("actor") == told:
                    line.remove(old)  # type: ignore[union-attr]
            entry = {"ts_ns": ts_ns, "action": "notified", "actor": told, "how": how,
                     "channel": data.get("channel"), "level": data.get("level"),
                     "message": data.get("title")}  # fmt: skip
            self._append(site, alarm_id, entry)
            changed = True
        return changed

    def _append(self, site: str, alarm_id: str, entry: dict[str, Any]) -> None:
        line = self.timelines.setdefault((site, alarm_id), deque(maxlen=TIMELINE_MAX))
        if entry in line:  # at-least-once delivery: the same transition twice is one line
            return
        line.append(entry)

    def _status(self, site: str, payload: bytes) -> bool:
        text = payload.decode("utf-8", "replace").strip()
        if text not in ("online", "offline"):
            return self._bad()
        gw = self.gateways.setdefault(site, GatewayView(site))
        if gw.status == text:
            return False
        gw.status, gw.status_ns = text, self.clock.now_ns()
        return True

    def _health(self, site: str, payload: bytes) -> bool:
        d = _json(payload)
        if not isinstance(d, dict) or d.get("kind") != "gateway_health":
            return False
        values = d.get("values")
        if not isinstance(values, dict):
            return self._bad()
        gw = self.gateways.setdefault(site, GatewayView(site))
        gw.health = values
        gw.health_ns = d.get("ts_ns") if isinstance(d.get("ts_ns"), int) else self.clock.now_ns()
        return True

    def _device(self, site: str, device: str) -> DeviceView:
        view = self.devices.get((site, device))
        if view is None:
            area = self.site_areas.get(site, {}).get(device) or self._area_from_alarms(site, device)
            interval = self.site_intervals.get(site, {}).get(device)
            view = self.devices[(site, device)] = DeviceView(
                site,
                device,
                area=area,
                interval_s=interval,
                interval_known=interval is not None,
                seen_ns=self.clock.now_ns(),
            )
        return view

    def _telemetry(self, site: str, device: str, payload: bytes) -> bool:
        now = self.clock.now_ns()
        if _HEALTH_MARK in payload:
            return self._device_health(site, device, payload, now)
        if b'"error":' in payload or b'"values":{}' in payload:
            return False  # a failed or all-bad poll is not a reading; availability says so
        view = self._device(site, device)
        view.reading(now)
        if view.stale:
            view.stale = False
            return True
        return False

    def _device_health(self, site: str, device: str, payload: bytes, now: int) -> bool:
        d = _json(payload)
        if not isinstance(d, dict) or d.get("kind") != "device_health":
            return self._bad()
        values = d.get("values")
        if not isinstance(values, dict):
            return self._bad()
        view = self._device(site, device)
        view.counters = {k: values[k] for k in DEVICE_COUNTERS if k in values}
        view.health_ns = d.get("ts_ns") if isinstance(d.get("ts_ns"), int) else now
        view.stale = view.is_stale(now)
        return True

    def sweep(self) -> bool:
        """Mark devices whose readings stopped as stale (and back); True when any changed."""
        now, changed = self.clock.now_ns(), False
        for view in self.devices.values():
            stale = view.is_stale(now)
            if stale != view.stale:
                view.stale, changed = stale, True
        if changed:
            self._bump()
        return changed

    def _availability(self, site: str, device: str, payload: bytes) -> bool:
        if not payload:  # cleared by the gateway: a reload removed the device
            return self.devices.pop((site, device), None) is not None
        text = payload.decode("utf-8", "replace").strip()
        if text not in ("online", "offline"):
            return self._bad()
        view = self._device(site, device)
        online = text == "online"
        if view.online == online:
            return False
        view.online, view.changed_ns = online, self.clock.now_ns()
        return True

    def _area_from_alarms(self, site: str, device: str) -> str | None:
        for a in self.alarms.values():
            if a.site == site and a.last.get("device") == device and a.last.get("area"):
                return str(a.last["area"])
        return None


def _alarm_ids_of(data: dict[str, Any]) -> list[str]:
    """Alarm ids a notification payload names (one alarm, or a grouped burst)."""
    ids: list[str] = []
    if isinstance(data.get("alarm_id"), str):
        ids.append(data["alarm_id"])
    for item in data.get("alarms") or ():
        if isinstance(item, dict) and isinstance(item.get("alarm_id"), str):
            ids.append(item["alarm_id"])
        elif isinstance(item, str):
            ids.append(item)
    return ids
