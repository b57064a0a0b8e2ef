"""The InfluxQL the daily reports run, and the local day they run over.

Works on InfluxDB 1.x (and 2.x/3.x through their InfluxQL endpoints): plain
``SELECT`` of fields with ``site``/``device`` tag filters and ns time bounds.
The HTTP client and the answer parsing are shared with the patrol report
(``gateway.patrol.influxql.influx_query``); this module only builds queries.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from gateway.patrol.influxql import Query, ReportError, _quote

NS = 1_000_000_000


def day_bounds(day: date, tz: str) -> tuple[int, int]:
    """[local midnight, next local midnight) of ``day`` in ``tz``, ns (23 or 25 h on DST days)."""
    try:
        zone = ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ReportError(f"unknown time zone {tz!r}") from exc
    start = datetime.combine(day, time(0), zone)
    end = datetime.combine(day + timedelta(days=1), time(0), zone)
    return int(start.timestamp()) * NS, int(end.timestamp()) * NS


def _ident(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _where(site: str, start_ns: int, end_ns: int, **tags: str) -> str:
    conds = [f"{_ident('site')} = {_quote(site)}"]
    conds += [f"{_ident(k)} = {_quote(v)}" for k, v in tags.items()]
    conds += [f"time >= {start_ns}", f"time < {end_ns}"]
    return " WHERE " + " AND ".join(conds)


def device_rows(
    query: Query,
    site: str,
    measurement: str,
    device: str,
    fields: list[str],
    start_ns: int,
    end_ns: int,
) -> list[dict[str, Any]]:
    """One row per poll of ``device`` with any of ``fields`` (sorted by time)."""
    if not fields:
        return []
    cols = ", ".join(_ident(f) for f in fields)
    q = f"SELECT {cols} FROM {_ident(measurement)}" + _where(
        site, start_ns, end_ns, device=device
    )
    return sorted(query(q), key=lambda r: int(r["time"]))


def gateway_rows(query: Query, site: str, start_ns: int, end_ns: int) -> list[dict[str, Any]]:
    """The gateway's own health records (one per ``pipeline.health_interval_s``)."""
    q = 'SELECT "samples", "queue_depth" FROM "gateway_health"' + _where(site, start_ns, end_ns)
    return sorted(query(q), key=lambda r: int(r["time"]))


def alarm_rows(query: Query, site: str, start_ns: int, end_ns: int) -> list[dict[str, Any]]:
    """Every alarm transition of the site in [start_ns, end_ns)."""
    q = "SELECT * FROM \"alarm\"" + _where(site, start_ns, end_ns)
    return sorted(query(q), key=lambda r: int(r["time"]))


def series(rows: list[dict[str, Any]], field: str) -> list[tuple[int, float]]:
    """(ts_ns, value) of one numeric field, skipping rows without it (bad points are absent)."""
    out: list[tuple[int, float]] = []
    for r in rows:
        v = r.get(field)
        if isinstance(v, bool) or v is None:
            if isinstance(v, bool):
                out.append((int(r["time"]), float(v)))
            continue
        if isinstance(v, int | float):
            out.append((int(r["time"]), float(v)))
    return out


__all__ = ["alarm_rows", "day_bounds", "device_rows", "gateway_rows", "series"]
