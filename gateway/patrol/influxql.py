"""The InfluxQL client the night patrol report and the daily reports (gateway.reports) share.

``influx_query`` runs InfluxQL over InfluxDB 1.x HTTP (``/query``) and
returns rows as dicts with ns times (``parse_influx_response`` merges each
series' tags into its rows); a ``Query`` is any such callable, so tests pass
rows of their own. ``site_influx`` finds a site's InfluxDB sink settings.
``ReportError`` is every report's failure: InfluxDB unreachable, a query
refused, bad arguments.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from gateway.errors import GatewayError

Query = Callable[[str], list[dict[str, Any]]]


class ReportError(GatewayError):
    """The report cannot be built (InfluxDB unreachable, query refused, bad arguments)."""


def influx_query(
    url: str,
    database: str,
    *,
    username: str | None = None,
    password: str | None = None,
    timeout_s: float = 10.0,
) -> Query:
    """A ``Query`` running InfluxQL over InfluxDB 1.x HTTP (``/query``), rows as dicts, ns times."""

    def run(q: str) -> list[dict[str, Any]]:
        auth = (username, password or "") if username else None
        try:
            r = httpx.get(
                url.rstrip("/") + "/query",
                params={"db": database, "q": q, "epoch": "ns"},
                auth=auth,
                timeout=timeout_s,
            )
        except httpx.HTTPError as exc:
            raise ReportError(f"influx {url}: unreachable: {exc!r}") from exc
        if r.status_code != 200:
            raise ReportError(f"influx {url}: HTTP {r.status_code}: {r.text.strip()[:300]}")
        return parse_influx_response(r.json())

    return run


def parse_influx_response(body: Any) -> list[dict[str, Any]]:
    """Rows of every series of an InfluxQL JSON answer (series tags merged into each row)."""
    rows: list[dict[str, Any]] = []
    for result in body.get("results", []):
        if "error" in result:
            raise ReportError(f"influx query failed: {result['error']}")
        for series in result.get("series", []):
            cols = series["columns"]
            tags = series.get("tags", {})
            for values in series.get("values", []):
                row = dict(zip(cols, values, strict=True))
                row.update(tags)
                rows.append(row)
    return rows


def _quote(s: str) -> str:
    return "'" + s.replace("\\", "\\\\").replace("'", "\\'") + "'"


def site_influx(site: Any) -> tuple[str | None, str | None, str | None, str | None]:
    """(url, database, username, password) of a ``Site``'s influx sink (all None without one)."""
    sink = site.config.sinks.influx
    if sink is None:
        return None, None, None, None
    database = sink.database or (sink.bucket or "").split("/")[0] or None
    return sink.url, database, sink.username, sink.password
