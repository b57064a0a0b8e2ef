"""Build the Grafana dashboards from code into the committed ``dashboards/*.json``.

    python -m dashboards.build            # rewrite dashboards/*.json
    python -m dashboards.build --check    # exit 1 if a committed file is stale

The dashboards are made with grafana-foundation-sdk, Grafana's own typed
dashboard builders. The SDK ships no InfluxDB query type, so this module adds
two small typed pieces on its extension points: ``InfluxQL`` (a
``Dataquery`` variant for panel targets) and ``InfluxAnnotation`` (an
annotation target carrying an InfluxQL query and its text/tags columns).

Every query is raw InfluxQL, so the dashboards run on InfluxDB 1.x, on 2.x
through its v1 compatibility API (a DBRP mapping, see deploy/) and on 3.x.
They read the schema the gateway writes (docs/delivery.md):

- readings: measurement = the profile kind (``leakage``, ``boiler``, ``flow``,
  ``pipe_network``, ``cold_room``, ``patrol_tap``), tags site, area, device
  (+ the device's tags, e.g. ``protection=personal``), one field per point;
- ``device_health`` / ``gateway_health``: the gateway's own counters;
- ``alarm``: one point per alarm transition (tags alarm_id, state, severity,
  rule, device, area, point; fields message, action, actor, value...);
- ``gateway_health`` also carries delivery (``backlog_<sink>``, ``evictions``)
  and the alarm book's counters (``alarm_floods``, ``alarm_chatter_episodes``,
  ``alarm_in_flood``, ``alarm_chattering_now``...);
- ``patrol``: the patrol check's records (tag ``record``: tap, round, finding;
  tags kind, checkpoint, guard, status; fields card, reader, round, route,
  message...).

All dashboards share the datasource uid ``fsg-influxdb`` (provisioned by
deploy/grafana and created by ``gateway grafana push``) and the variables
``site``, ``area`` and ``device`` (``SHOW TAG VALUES``, multi-select with All).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Self

from grafana_foundation_sdk.builders import (
    bargauge,
    stat,
    statetimeline,
    table,
    timeseries,
)
from grafana_foundation_sdk.builders import (
    common as common_b,
)
from grafana_foundation_sdk.builders.dashboard import (
    AnnotationQuery,
    Dashboard,
    QueryVariable,
    Row,
    TextBoxVariable,
    ThresholdsConfig,
)
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common, dashboard

HERE = Path(__file__).resolve().parent
DATASOURCE_UID = "fsg-influxdb"
DATASOURCE = dashboard.DataSourceRef(type_val="influxdb", uid=DATASOURCE_UID)
TAGS = ["facility-safety-gateway"]
# The site's local time zone for per-night buckets (a night spans midnight,
# so nights are grouped noon to noon in local time, not in UTC).
DEFAULT_TIMEZONE = "Asia/Shanghai"

# Filters on the template variables. Grafana expands a multi-value or "All"
# selection of an InfluxDB variable to a regex group "(a|b|c)", hence =~ /^...$/.
SITE = '"site" =~ /^$site$/'
AREA = '"area" =~ /^$area$/'
DEVICE = '"device" =~ /^$device$/'
TIME = "$timeFilter"
BY_TIME = "GROUP BY time($__interval)"


# --------------------------------------------------------------------------- typed InfluxQL pieces

ResultFormat = Literal["time_series", "table", "logs"]


@dataclass
class InfluxQLQuery(cogvariants.Dataquery):
    """A raw InfluxQL panel target, as Grafana's InfluxDB datasource stores it."""

    ref_id: str
    query: str
    result_format: ResultFormat = "time_series"
    alias: str | None = None
    hide: bool = False

    def to_json(self) -> dict[str, object]:
        d: dict[str, object] = {
            "refId": self.ref_id,
            "datasource": DATASOURCE.to_json(),
            "query": self.query,
            "rawQuery": True,
            "resultFormat": self.result_format,
        }
        if self.alias:
            d["alias"] = self.alias
        if self.hide:
            d["hide"] = True
        return d


class InfluxQL(cogbuilder.Builder[InfluxQLQuery]):
    """Builder for ``InfluxQLQuery`` (the SDK has none for InfluxDB)."""

    def __init__(self, ref_id: str, query: str) -> None:
        self._q = InfluxQLQuery(ref_id=ref_id, query=query)

    def alias(self, alias: str) -> Self:
        """Series name pattern: ``$tag_<key>``, ``$col``, ``$m``."""
        self._q.alias = alias
        return self

    def table(self) -> Self:
        self._q.result_format = "table"
        return self

    def build(self) -> InfluxQLQuery:
        return self._q


@dataclass
class InfluxAnnotationTarget(dashboard.AnnotationTarget):
    """An InfluxQL annotation: each returned row becomes an annotation."""

    query: str = ""
    text_column: str = ""
    tags_column: str = ""
    # The SDK's base fields (limit, match_any, tags, type_val) belong to the
    # built-in Grafana annotations datasource; they are set but not written.
    limit: int = 100
    match_any: bool = False
    tags: list[str] = field(default_factory=list)
    type_val: str = ""

    def to_json(self) -> dict[str, object]:
        return {
            "refId": "Anno",
            "query": self.query,
            "rawQuery": True,
            "resultFormat": "table",
            "textColumn": self.text_column,
            "tagsColumn": self.tags_column,
        }


class InfluxAnnotation(cogbuilder.Builder[dashboard.AnnotationTarget]):
    def __init__(self, query: str, text_column: str, tags_column: str) -> None:
        self._t = InfluxAnnotationTarget(
            query=query, text_column=text_column, tags_column=tags_column
        )

    def build(self) -> dashboard.AnnotationTarget:
        return self._t


# --------------------------------------------------------------------------- helpers


def where(*conds: str, area: bool = True, device: bool = True, time: str = TIME) -> str:
    parts = [SITE]
    if area:
        parts.append(AREA)
    if device:
        parts.append(DEVICE)
    parts.extend(conds)
    parts.append(time)
    return "WHERE " + " AND ".join(parts)


def eq(key: str, value: str) -> str:
    return f'"{key}" = \'{value}\''


LEAK_RULES = '"rule" =~ /^leakage/'


def means(*fields: str, fn: str = "mean") -> str:
    return ", ".join(f'{fn}("{f}") AS "{f}"' for f in fields)


def q(query: str, alias: str | None = None, ref: str = "A") -> InfluxQL:
    b = InfluxQL(ref, query)
    if alias:
        b.alias(alias)
    return b


def thresholds(base: str, *steps: tuple[float, str]) -> ThresholdsConfig:
    return (
        ThresholdsConfig()
        .mode(dashboard.ThresholdsMode.ABSOLUTE)
        .steps(
            [dashboard.Threshold(value=None, color=base)]
            + [dashboard.Threshold(value=v, color=c) for v, c in steps]
        )
    )


def _targets(queries: Sequence[InfluxQL]) -> list[cogbuilder.Builder[cogvariants.Dataquery]]:
    # The SDK's Builder is covariant in what it builds, so this is a plain upcast.
    return list(queries)


def ts_panel(
    title: str,
    queries: Sequence[InfluxQL],
    unit: str,
    *,
    description: str = "",
    span: int = 12,
    height: int = 8,
    limits: ThresholdsConfig | None = None,
    bars: bool = False,
    min_val: float | None = None,
) -> timeseries.Panel:
    p = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .targets(_targets(queries))
        .unit(unit)
        .span(span)
        .height(height)
        .legend(
            common_b.VizLegendOptions()
            .show_legend(True)
            .display_mode(common.LegendDisplayMode.TABLE)
            .placement(common.LegendPlacement.RIGHT)
            .calcs(["lastNotNull", "max"])
        )
        .span_nulls(True)
    )
    if limits is not None:
        # The limits are drawn on the graph as dashed lines.
        p.thresholds(limits).thresholds_style(
            common_b.GraphThresholdsStyleConfig().mode(common.GraphThresholdsStyleMode.DASHED)
        )
    if bars:
        p.draw_style(common.GraphDrawStyle.BARS).fill_opacity(60)
    if min_val is not None:
        p.min(min_val)
    return p


def stat_panel(
    title: str,
    queries: Sequence[InfluxQL],
    unit: str = "none",
    *,
    description: str = "",
    span: int = 6,
    height: int = 5,
    limits: ThresholdsConfig | None = None,
    calc: str = "lastNotNull",
) -> stat.Panel:
    p = (
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .targets(_targets(queries))
        .unit(unit)
        .span(span)
        .height(height)
        .reduce_options(common_b.ReduceDataOptions().calcs([calc]).values(False))
        .color_mode(common.BigValueColorMode.BACKGROUND)
        .graph_mode(common.BigValueGraphMode.AREA)
    )
    if limits is not None:
        p.thresholds(limits)
    return p


def table_panel(
    title: str,
    queries: Sequence[InfluxQL],
    *,
    description: str = "",
    span: int = 24,
    height: int = 9,
    transformations: Sequence[dashboard.DataTransformerConfig] = (),
) -> table.Panel:
    p = (
        table.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .targets(_targets([qq.table() for qq in queries]))
        .span(span)
        .height(height)
    )
    for t in transformations:
        p.with_transformation(t)
    return p


def state_panel(
    title: str,
    queries: Sequence[InfluxQL],
    *,
    description: str = "",
    span: int = 24,
    height: int = 8,
    mappings: Sequence[dashboard.ValueMapping] = (),
) -> statetimeline.Panel:
    p = (
        statetimeline.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .targets(_targets(queries))
        .span(span)
        .height(height)
        .show_value(common.VisibilityMode.NEVER)
        .merge_values(True)
    )
    if mappings:
        p.mappings(list(mappings))
    return p


def bars_panel(
    title: str,
    queries: Sequence[InfluxQL],
    unit: str = "none",
    *,
    description: str = "",
    span: int = 12,
    height: int = 8,
    limits: ThresholdsConfig | None = None,
    calc: str = "lastNotNull",
) -> bargauge.Panel:
    p = (
        bargauge.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .targets(_targets(queries))
        .unit(unit)
        .span(span)
        .height(height)
        .orientation(common.VizOrientation.HORIZONTAL)
        .display_mode(common.BarGaugeDisplayMode.GRADIENT)
        .reduce_options(common_b.ReduceDataOptions().calcs([calc]).values(False))
    )
    if limits is not None:
        p.thresholds(limits)
    return p


def bool_mapping(false_text: str, false_color: str, true_text: str, true_color: str) -> list[
    dashboard.ValueMapping
]:
    return [
        dashboard.ValueMap(
            options={
                "false": dashboard.ValueMappingResult(text=false_text, color=false_color, index=0),
                "true": dashboard.ValueMappingResult(text=true_text, color=true_color, index=1),
            }
        )
    ]


def transform(id_val: str, options: dict[str, Any]) -> dashboard.DataTransformerConfig:
    return dashboard.DataTransformerConfig(id_val=id_val, options=options)


ALL = dashboard.VariableOption(selected=True, text="All", value="$__all")


def variables(measurements: str, *, area: bool = True, device: bool = True) -> list[QueryVariable]:
    """site, then area and device chained on it; ``measurements`` is a FROM clause."""

    def var(name: str, label: str, query: str) -> QueryVariable:
        return (
            QueryVariable(name)
            .label(label)
            .datasource(DATASOURCE)
            .query(query)
            .refresh(dashboard.VariableRefresh.ON_DASHBOARD_LOAD)
            .sort(dashboard.VariableSort.ALPHABETICAL_ASC)
            .multi(True)
            .include_all(True)
            .current(ALL)
        )

    out = [var("site", "Site", 'SHOW TAG VALUES WITH KEY = "site"')]
    if area:
        out.append(
            var("area", "Area", f'SHOW TAG VALUES FROM {measurements} WITH KEY = "area" '
                f"WHERE {SITE}")
        )
    if device:
        cond = f"{SITE} AND {AREA}" if area else SITE
        out.append(
            var("device", "Device", f'SHOW TAG VALUES FROM {measurements} WITH KEY = "device" '
                f"WHERE {cond}")
        )
    return out


def alarm_annotation(*, area: bool = True, device: bool = True) -> AnnotationQuery:
    """Alarm activations of the selected site/area/devices drawn on every time panel."""
    query = (
        'SELECT "message", "severity", "device", "rule" FROM "alarm" '
        + where("\"action\" = 'activate'", area=area, device=device)
    )
    return (
        AnnotationQuery()
        .name("Alarms")
        .datasource(DATASOURCE)
        .enable(True)
        .icon_color("red")
        .target(InfluxAnnotation(query, "message", "severity,device"))
    )


def new_dashboard(uid: str, title: str, description: str) -> Dashboard:
    return (
        Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(TAGS)
        .editable()
        .time("now-6h", "now")
        .refresh("30s")
        .timezone("browser")
        .tooltip(dashboard.DashboardCursorSync.CROSSHAIR)
    )


# --------------------------------------------------------------------------- the dashboards


def leakage() -> Dashboard:
    m = '"leakage"'
    channels = [f"leak_ch{i}" for i in range(1, 5)]
    fire = where("\"protection\" != 'personal'")
    personal = where("\"protection\" = 'personal'")
    d = new_dashboard(
        "fsg-leakage",
        "Park lighting leakage",
        "Residual current per lighting circuit (IEC 60364-4-42 / GB 50116): 300 mA alarm "
        "for fire protection, 30 mA for personal-protection circuits; trips latch until reset.",
    )
    for v in variables(m):
        d.with_variable(v)
    d.annotation(alarm_annotation())
    d.with_row(Row("Residual current"))
    d.with_panel(
        ts_panel(
            "Residual current, fire-protection circuits",
            [q(f"SELECT {means(*channels)} FROM {m} {fire} {BY_TIME}, \"device\" fill(null)",
               "$tag_device $col")],
            "mA",
            description="Alarm at 300 mA (red), pre-alarm at 200 mA (orange). Natural "
            "leakage is often 100-200 mA.",
            limits=thresholds("green", (200, "orange"), (300, "red")),
            min_val=0,
        )
    )
    d.with_panel(
        ts_panel(
            "Residual current, personal-protection circuits (30 mA tier)",
            [q(f"SELECT {means(*channels)} FROM {m} {personal} {BY_TIME}, \"device\" fill(null)",
               "$tag_device $col")],
            "mA",
            description="Devices tagged protection=personal: alarm at 30 mA, pre-alarm 20 mA.",
            limits=thresholds("green", (20, "orange"), (30, "red")),
            min_val=0,
        )
    )
    d.with_panel(
        bars_panel(
            "Highest residual current in range, per circuit",
            [q(f"SELECT {means(*channels, fn='max')} FROM {m} {where()} GROUP BY \"device\"",
               "$tag_device $col")],
            "mA",
            limits=thresholds("green", (30, "yellow"), (200, "orange"), (300, "red")),
            span=12,
        )
    )
    d.with_panel(
        stat_panel(
            "Alarm threshold set in the monitors",
            [q(f'SELECT last("alarm_threshold") FROM {m} {where()} GROUP BY "device"',
               "$tag_device")],
            "mA",
            description="Read back from each monitor: a threshold changed at the device shows.",
            span=12,
            height=8,
            limits=thresholds("blue"),
        )
    )
    d.with_row(Row("Trips, pre-alarms and sensor faults"))
    bits = ", ".join(
        f'last("{kind}_ch{i}") AS "{label} ch{i}"'
        for kind, label in (("alarm", "trip"), ("prealarm", "pre-alarm"), ("fault", "fault"))
        for i in range(1, 5)
    )
    d.with_panel(
        state_panel(
            "Monitor status bits per circuit",
            [q(f"SELECT {bits} FROM {m} {where()} {BY_TIME}, \"device\" fill(previous)",
               "$tag_device $col")],
            description="The monitors' own trip (latched), pre-alarm and sensor-loop fault bits. "
            "A broken sensor loop is a fault, not a zero.",
            mappings=bool_mapping("ok", "green", "active", "red"),
            height=10,
        )
    )
    trips = where(eq("action", "activate"), LEAK_RULES)
    d.with_panel(
        ts_panel(
            "Leakage alarm activations",
            [q(f'SELECT count("message") FROM "alarm" {trips} {BY_TIME}, "device", "point" '
               "fill(none)", "$tag_device $tag_point")],
            "short",
            description="Activations of the leakage rules (pre-alarm, alarm, monitor trip) "
            "as the gateway raised them.",
            bars=True,
            span=12,
        )
    )
    d.with_panel(
        table_panel(
            "Leakage alarm log",
            [q('SELECT "device", "point", "severity", "state", "action", "value", "message", '
               f'"actor" FROM "alarm" {where(LEAK_RULES)} '
               "ORDER BY time DESC LIMIT 200")],
            span=12,
            height=8,
        )
    )
    d.with_panel(
        ts_panel(
            "Cable temperature",
            [q(f"SELECT {means(*(f'cable_temp_ch{i}' for i in range(1, 5)))} FROM {m} "
               f"{where()} {BY_TIME}, \"device\" fill(null)", "$tag_device $col")],
            "celsius",
            span=24,
        )
    )
    return d


def boiler() -> Dashboard:
    m = '"boiler"'
    w = where()
    d = new_dashboard(
        "fsg-boiler",
        "Boiler room",
        "Boiler temperatures, pressure, water level, flame and gas use (GB 50242 13.4.4 "
        "alarms: high/low water, over-temperature, over-pressure).",
    )
    for v in variables(m):
        d.with_variable(v)
    d.annotation(alarm_annotation())
    d.with_panel(
        ts_panel(
            "Supply and return temperature",
            [q(f'SELECT {means("supply_temp", "return_temp", "supply_setpoint")} FROM {m} {w} '
               f'{BY_TIME}, "device" fill(null)', "$tag_device $col")],
            "celsius",
            limits=thresholds("green", (95, "orange"), (110, "red")),
        )
    )
    d.with_panel(
        ts_panel(
            "Boiler pressure",
            [q(f'SELECT {means("pressure")} FROM {m} {w} {BY_TIME}, "device" fill(null)',
               "$tag_device")],
            "suffix: MPa",
        )
    )
    d.with_panel(
        ts_panel(
            "Water level",
            [q(f'SELECT {means("water_level")} FROM {m} {w} {BY_TIME}, "device" fill(null)',
               "$tag_device")],
            "lengthmm",
        )
    )
    d.with_panel(
        ts_panel(
            "Gas pressure",
            [q(f'SELECT {means("gas_pressure")} FROM {m} {w} {BY_TIME}, "device" fill(null)',
               "$tag_device")],
            "pressurekpa",
        )
    )
    d.with_panel(
        state_panel(
            "Flame, burner and interlocks",
            [q('SELECT last("flame") AS "flame", last("low_water") AS "low water", '
               'last("flame_failure") AS "flame failure", last("over_pressure") AS '
               '"over-pressure", last("over_temp") AS "over-temperature" '
               f'FROM {m} {w} {BY_TIME}, "device" fill(previous)', "$tag_device $col")],
            mappings=bool_mapping("off", "transparent", "on", "orange"),
        )
    )
    d.with_row(Row("Gas use"))
    d.with_panel(
        ts_panel(
            "Gas flow",
            [q(f'SELECT {means("gas_flow")} FROM {m} {w} {BY_TIME}, "device" fill(null)',
               "$tag_device")],
            "suffix: m³/h",
            span=12,
        )
    )
    d.with_panel(
        stat_panel(
            "Gas used in the time range",
            [q(f'SELECT spread("gas_total") FROM {m} {w} GROUP BY "device"', "$tag_device")],
            "suffix: m³",
            description="From the boiler's gas totaliser (difference over the range).",
            span=6,
            height=8,
        )
    )
    d.with_panel(
        ts_panel(
            "Gas used per day",
            [q(f'SELECT spread("gas_total") FROM {m} {w} GROUP BY time(1d), "device" fill(none) '
               "tz('$timezone')", "$tag_device")],
            "suffix: m³",
            description="Per local day: the figure the daily heating report asks for.",
            bars=True,
            span=6,
            height=8,
        )
    )
    d.with_variable(timezone_variable())
    return d


def pipe_network() -> Dashboard:
    m = '"pipe_network"'
    w = where()
    d = new_dashboard(
        "fsg-pipe-network",
        "Pipe network",
        "District-heating network (CJJ 34): flows, supply vs return balance, make-up water "
        "ratio (over 2 % of circulating flow means a leak) and pressures.",
    )
    for v in variables("/^(pipe_network|flow)$/"):
        d.with_variable(v)
    d.annotation(alarm_annotation())
    d.with_panel(
        ts_panel(
            "Supply, return and make-up flow",
            [q(f'SELECT {means("supply_flow", "return_flow", "makeup_flow")} FROM {m} {w} '
               f'{BY_TIME}, "device" fill(null)', "$tag_device $col"),
             q(f'SELECT {means("flow_rate")} FROM "flow" {w} {BY_TIME}, "device" fill(null)',
               "$tag_device $col", ref="B")],
            "suffix: m³/h",
            description="flow_rate comes from the ultrasonic flow meters.",
        )
    )
    d.with_panel(
        ts_panel(
            "Supply minus return flow",
            [q('SELECT mean("supply_flow") - mean("return_flow") AS "imbalance" '
               f'FROM {m} {w} {BY_TIME}, "device" fill(null)', "$tag_device $col"),
             q('SELECT (mean("supply_flow") - mean("return_flow")) / mean("supply_flow") * 100 '
               f'AS "imbalance %" FROM {m} {w} {BY_TIME}, "device" fill(null)',
               "$tag_device $col", ref="B")],
            "suffix: m³/h",
            description="Water leaving the network between the meters. It means a leak only "
            "when it clearly exceeds the meters' uncertainty.",
        )
    )
    d.with_panel(
        ts_panel(
            "Make-up water ratio",
            [q('SELECT mean("makeup_flow") / mean("supply_flow") * 100 AS "make-up %" '
               f'FROM {m} {w} {BY_TIME}, "device" fill(null)', "$tag_device $col")],
            "percent",
            description="Make-up flow as a share of circulating flow; above 2 % means a leak.",
            limits=thresholds("green", (2, "red")),
            min_val=0,
        )
    )
    d.with_panel(
        ts_panel(
            "Supply and return pressure",
            [q(f'SELECT {means("supply_pressure", "return_pressure")} FROM {m} {w} {BY_TIME}, '
               '"device" fill(null)', "$tag_device $col"),
             q('SELECT mean("supply_pressure") - mean("return_pressure") AS "differential" '
               f'FROM {m} {w} {BY_TIME}, "device" fill(null)', "$tag_device $col", ref="B")],
            "suffix: MPa",
            description="A falling pressure at the constant-pressure point, or supply and "
            "return falling together at a substation, points to a leak.",
        )
    )
    d.with_panel(
        ts_panel(
            "Supply and return temperature",
            [q(f'SELECT {means("supply_temp", "return_temp")} FROM {m} {w} {BY_TIME}, '
               '"device" fill(null)', "$tag_device $col")],
            "celsius",
        )
    )
    d.with_panel(
        ts_panel(
            "Heat power",
            [q(f'SELECT {means("heat_power")} FROM {m} {w} {BY_TIME}, "device" fill(null)',
               "$tag_device")],
            "kwatt",
        )
    )
    return d


def timezone_variable() -> TextBoxVariable:
    return (
        TextBoxVariable("timezone")
        .label("Time zone (days, nights)")
        .default_value(DEFAULT_TIMEZONE)
    )


def patrol() -> Dashboard:
    taps = '"patrol_tap"'
    ev = '"patrol"'
    night = "GROUP BY time(1d, 12h)"

    def rec(record: str, *more: str, time: str = TIME) -> str:
        return where(eq("record", record), *more, area=False, device=False, time=time)

    d = new_dashboard(
        "fsg-patrol",
        "Night patrol",
        "Patrol rounds (every checkpoint at least every 3 h at night), last tap per "
        "checkpoint, and findings: late, missed, out-of-order, too-fast rounds, unknown cards.",
    )
    for v in variables(taps):
        d.with_variable(v)
    d.with_variable(timezone_variable())
    d.annotation(alarm_annotation(area=False, device=False))
    d.with_panel(
        ts_panel(
            "Completed rounds per night",
            [q(f'SELECT count("round") FROM {ev} {rec("round", eq("status", "complete"))} '
               f"{night}, \"guard\" fill(0) tz('$timezone')", "$tag_guard")],
            "short",
            description="Rounds the patrol check closed as complete, per night (noon to noon, "
            "local time), per guard. A 22:00-06:00 night needs at least 3.",
            bars=True,
            limits=thresholds("red", (3, "green")),
            span=12,
        )
    )
    d.with_panel(
        ts_panel(
            "Findings per night",
            [q(f'SELECT count("message") FROM {ev} {rec("finding")} '
               f"{night}, \"kind\" fill(none) tz('$timezone')", "$tag_kind")],
            "short",
            description="Late, missed, out-of-order, too-fast (faked) rounds, unknown cards.",
            bars=True,
            span=12,
        )
    )
    d.with_panel(
        table_panel(
            "Last tap per checkpoint",
            [q('SELECT last("card") AS "card", "guard", "status", "reader" FROM '
               f'{ev} {rec("tap", time="time > now() - 7d")} GROUP BY "checkpoint"')],
            description="The newest tap at each checkpoint in the last 7 days, and whose "
            "card made it.",
            span=12,
            transformations=[
                transform("merge", {}),
                transform("sortBy", {"sort": [{"field": "Time", "desc": False}]}),
            ],
        )
    )
    d.with_panel(
        ts_panel(
            "Taps per reader",
            [q(f'SELECT count("card") FROM {taps} {where()} GROUP BY time(10m), "device" '
               "fill(0)", "$tag_device")],
            "short",
            description="Raw card reads from the checkpoint readers (before the patrol check).",
            bars=True,
            span=12,
        )
    )
    d.with_panel(
        table_panel(
            "Rounds",
            [q('SELECT "guard", "status", "route", "duration_s", "visited", "missed", '
               f'"out_of_order", "too_fast", "suspect", "reason" FROM {ev} {rec("round")} '
               "ORDER BY time DESC LIMIT 200")],
            span=24,
            height=8,
        )
    )
    d.with_panel(
        table_panel(
            "Findings",
            [q('SELECT "kind", "checkpoint", "guard", "severity", "message" FROM '
               f'{ev} {rec("finding")} ORDER BY time DESC LIMIT 500')],
        )
    )
    return d


def alarms() -> Dashboard:
    m = '"alarm"'
    health = where(area=False, device=False)
    d = new_dashboard(
        "fsg-alarms",
        "Alarms",
        "ISA-18.2 alarm states: active alarms, the alarm timeline, floods (> 10 alarms in "
        "10 min) and chattering alarms (>= 3 activations in 1 min).",
    )
    for v in variables(m):
        d.with_variable(v)
    d.annotation(alarm_annotation())
    d.annotation(
        AnnotationQuery()
        .name("Acknowledgements and resets")
        .datasource(DATASOURCE)
        .enable(True)
        .icon_color("blue")
        .target(
            InfluxAnnotation(
                'SELECT "message", "actor", "action", "device" FROM "alarm" '
                + where("\"action\" =~ /^(ack|reset|shelve|unshelve|out_of_service)$/"),
                "message",
                "action,actor,device",
            )
        )
    )
    d.with_panel(
        table_panel(
            "Active alarms",
            [q('SELECT last("message") AS "message", "state", "severity", "device", "point", '
               '"rule", "actor", "active", "latched" FROM "alarm" '
               f'{where(time="time > now() - 30d")} GROUP BY "alarm_id"')],
            description="The latest transition of every alarm of the last 30 days, without "
            "those back to normal.",
            height=10,
            transformations=[
                transform("merge", {}),
                transform(
                    "filterByValue",
                    {
                        "type": "exclude",
                        "match": "any",
                        "filters": [
                            {
                                "fieldName": "state",
                                "config": {"id": "equal", "options": {"value": "normal"}},
                            }
                        ],
                    },
                ),
                transform("sortBy", {"sort": [{"field": "Time", "desc": True}]}),
            ],
        )
    )
    d.with_panel(
        ts_panel(
            "Alarm activations per 10 minutes",
            [q(f'SELECT count("message") FROM {m} {where(eq("action", "activate"))} '
               'GROUP BY time(10m), "severity" fill(0)', "$tag_severity")],
            "short",
            description="An operator can handle about 1 alarm per 10 minutes; more than 10 "
            "is a flood.",
            bars=True,
            limits=thresholds("green", (2, "orange"), (10, "red")),
            span=12,
        )
    )
    d.with_panel(
        stat_panel(
            "Alarm floods and chattering",
            [q('SELECT last("alarm_floods") AS "floods", last("alarm_chatter_episodes") AS '
               '"chatter episodes", last("alarm_in_flood") AS "in flood now", '
               'last("alarm_chattering_now") AS "chattering now" FROM "gateway_health" '
               f"{health}")],
            description="From the gateway's alarm book: floods and chatter episodes since "
            "the alarm store was created, and whether one is going on now.",
            span=12,
            height=8,
            limits=thresholds("green", (1, "orange")),
        )
    )
    d.with_panel(
        table_panel(
            "Alarm log",
            [q('SELECT "severity", "state", "action", "device", "point", "value", "message", '
               f'"actor", "alarm_id" FROM {m} {where()} ORDER BY time DESC LIMIT 1000')],
            description="Every transition: what changed, when, on which value, by whom.",
            height=12,
        )
    )
    return d


def gateway_health() -> Dashboard:
    m = '"device_health"'
    w = where()
    gw = where(area=False, device=False)
    d = new_dashboard(
        "fsg-gateway-health",
        "Gateway health",
        "The gateway's own health: poll latency and errors per device, queue depth, data "
        "age, outbox backlog per sink and evictions. Falling behind is an alarm, not a silence.",
    )
    for v in variables(m):
        d.with_variable(v)
    d.with_panel(
        ts_panel(
            "Poll latency",
            [q(f'SELECT mean("latency_ms") FROM {m} {w} {BY_TIME}, "device" fill(null)',
               "$tag_device")],
            "ms",
        )
    )
    errors = ("timeouts", "exceptions", "frame_errors", "connect_errors", "decode_errors",
              "overruns")
    d.with_panel(
        ts_panel(
            "Poll errors per device",
            [q(", ".join(f'non_negative_difference(last("{e}")) AS "{e}"' for e in errors)
               .join(("SELECT ", f' FROM {m} {w} {BY_TIME}, "device" fill(null)')),
               "$tag_device $col")],
            "short",
            description="New errors per interval (the counters are cumulative).",
            bars=True,
        )
    )
    d.with_panel(
        bars_panel(
            "Errors in the time range",
            [q(", ".join(f'spread("{e}") AS "{e}"' for e in errors)
               .join(("SELECT ", f' FROM {m} {w} GROUP BY "device"')), "$tag_device $col")],
            limits=thresholds("green", (1, "orange"), (10, "red")),
        )
    )
    d.with_panel(
        state_panel(
            "Devices online",
            [q(f'SELECT last("online") FROM {m} {w} {BY_TIME}, "device" fill(previous)',
               "$tag_device")],
            mappings=bool_mapping("offline", "red", "online", "green"),
            span=12,
        )
    )
    d.with_row(Row("Pipeline and delivery"))
    d.with_panel(
        ts_panel(
            "Outbox backlog per sink",
            [q('SELECT max("backlog_mqtt") AS "mqtt", max("backlog_influx") AS "influx" '
               f'FROM "gateway_health" {gw} {BY_TIME} fill(null)')],
            "short",
            description="Records appended but not yet acknowledged by each sink. A sink that "
            "is down falls behind here while the other goes on.",
            span=12,
        )
    )
    d.with_panel(
        ts_panel(
            "Outbox evictions",
            [q('SELECT non_negative_difference(last("evictions")) AS "evicted" '
               f'FROM "gateway_health" {gw} {BY_TIME} fill(null)')],
            "short",
            description="Telemetry rows dropped oldest-first past the outbox size limit "
            "(alarm events are never evicted).",
            bars=True,
            span=12,
        )
    )
    d.with_panel(
        ts_panel(
            "Data age and queue depth",
            [q('SELECT max("data_age_max_s") AS "data age" '
               f'FROM "gateway_health" {gw} {BY_TIME} fill(null)'),
             q('SELECT max("queue_depth") AS "queue depth" '
               f'FROM "gateway_health" {gw} {BY_TIME} fill(null)', ref="B")],
            "s",
            description="How long a reading waited between its read and the outputs.",
            limits=thresholds("green", (5, "orange"), (60, "red")),
            span=12,
        )
    )
    d.with_panel(
        stat_panel(
            "Samples per minute",
            [q('SELECT non_negative_derivative(last("samples"), 1m) AS "samples/min" '
               f'FROM "gateway_health" {gw} {BY_TIME} fill(null)')],
            span=12,
            height=8,
            limits=thresholds("red", (1, "green")),
        )
    )
    return d


BUILDERS = {
    "leakage.json": leakage,
    "boiler.json": boiler,
    "pipe-network.json": pipe_network,
    "patrol.json": patrol,
    "alarms.json": alarms,
    "gateway-health.json": gateway_health,
}


def to_json(d: Dashboard) -> dict[str, Any]:
    """The dashboard as plain JSON data (what Grafana stores and provisions)."""
    data: dict[str, Any] = json.loads(json.dumps(d.build(), cls=JSONEncoder))
    return data


def build_all() -> dict[str, dict[str, Any]]:
    return {name: to_json(make()) for name, make in BUILDERS.items()}


def render(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--out", type=Path, default=HERE, help="folder for the JSON files")
    ap.add_argument("--check", action="store_true", help="fail if a committed file is stale")
    args = ap.parse_args(argv)
    stale = []
    for name, data in build_all().items():
        path = args.out / name
        text = render(data)
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
            continue
        path.write_text(text)
        print(f"wrote {path}")
    if stale:
        print(f"stale: {', '.join(stale)}; run: python -m dashboards.build", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
