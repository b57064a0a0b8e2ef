"""One local day of a site read back from InfluxDB: every device's polls, the gateway's, the alarms.

Both daily reports start from a ``DayData``: the rows of every polled
device (all its points), their ``Coverage`` (share of the day with data and
the gaps), the gateway's own coverage from ``gateway_health``, and the
day's alarm episodes. Devices that are not polled (serial-line readers such
as RFID checkpoints send when a card is tapped) have no coverage: silence is
not missing data for them, and the report says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

from gateway.config import DeviceConfig, Site
from gateway.patrol.influxql import Query
from gateway.plugins.base import DeviceProfile
from gateway.profiles.schema import SerialLineProfile
from gateway.reports.alarms import Episode, episodes
from gateway.reports.completeness import Coverage, coverage
from gateway.reports.config import ReportsConfig
from gateway.reports.queries import alarm_rows, day_bounds, device_rows, gateway_rows

NS = 1_000_000_000
GATEWAY = "gateway"
# Alarms raised this long before the day and still open in it are read too.
ALARM_LOOKBACK_NS = 2 * 86_400 * NS


@dataclass
class DeviceDay:
    config: DeviceConfig
    kind: str
    profile: DeviceProfile
    rows: list[dict[str, Any]]
    coverage: Coverage

    @property
    def id(self) -> str:
        return self.config.id


@dataclass
class DayData:
    site: str
    day: date
    tz: str
    start_ns: int
    end_ns: int
    cfg: ReportsConfig
    devices: dict[str, DeviceDay]
    gateway: Coverage
    alarms: list[Episode]
    not_polled: list[str] = field(default_factory=list)

    @property
    def coverages(self) -> list[Coverage]:
        return [d.coverage for d in self.devices.values()] + [self.gateway]

    def of_kind(self, kind: str) -> list[DeviceDay]:
        return [d for d in self.devices.values() if d.kind == kind]


def site_timezone(site: Site) -> str:
    c = site.config
    if c.timezone:
        return c.timezone
    return c.alerting.roster.timezone if c.alerting else "UTC"


def read_day(query: Query, site: Site, day: date, tz: str | None = None) -> DayData:
    """Read ``day`` (local midnight to midnight in the site's time zone) for every device."""
    cfg = site.config.reports or ReportsConfig()
    zone = tz or site_timezone(site)
    start, end = day_bounds(day, zone)
    name = site.config.site
    devices: dict[str, DeviceDay] = {}
    not_polled: list[str] = []
    for dev in site.config.devices:
        if not dev.enabled:
            continue
        prof = site.device_profiles.get(dev.id)
        if prof is None or isinstance(prof, SerialLineProfile):
            not_polled.append(dev.id)
            continue
        points = prof.point_names()
        rows = device_rows(query, name, prof.kind, dev.id, points, start, end)
        cov = coverage(dev.id, [int(r["time"]) for r in rows], start, end, dev.interval_s,
                       cfg.gap_polls)
        devices[dev.id] = DeviceDay(dev, prof.kind, prof, rows, cov)
    gw_rows = gateway_rows(query, name, start, end)
    gw = coverage(GATEWAY, [int(r["time"]) for r in gw_rows], start, end,
                  site.config.pipeline.health_interval_s, cfg.gap_polls)
    eps = episodes(
        alarm_rows(query, name, start - ALARM_LOOKBACK_NS, end),
        start,
        end,
        alerting=site.config.alerting,
        ack_late_s=cfg.ack_late_s,
    )
    return DayData(name, day, zone, start, end, cfg, devices, gw, eps, not_polled)


__all__ = ["GATEWAY", "DayData", "DeviceDay", "read_day", "site_timezone"]
