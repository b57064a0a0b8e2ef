"""The heating-season daily report: boilers, pipe networks, heat meters, gas, alarms.

Per boiler (devices of kind ``boiler``): running hours and burner starts
from the controller's ``burner_hours`` / ``burner_starts`` counters, or,
where a boiler has none, from ``burner_state`` (3 = firing); supply and
return temperature min/mean/max, the pressure range, and gas used from the
``gas_total`` totaliser (``counters.counter_usage``: resets, rollovers and
meter swaps become notes). Per pipe network (kind ``pipe_network``):
make-up water as a share of circulating flow, heat delivered from the
``heat_energy`` meter, and leak alarms. Per heat meter (kind
``heat_meter``, e.g. the M-Bus ``heat-meter-mbus``): heat delivered and
volume from its totalisers. Then the site's gas use against the daily plan
and the shortfall, and every alarm of the day. A figure whose stretch
overlaps a gap in the device's data carries the gap note; running hours
never count a stretch between two polls that are a gap apart (the burner's
state there is unknown), while totalisers do (the meter kept counting).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import date

from gateway.profiles.schema import ModbusPoint, ModbusProfile
from gateway.reports.alarms import Episode
from gateway.reports.completeness import Coverage, gap_note
from gateway.reports.counters import counter_usage, rollover_of
from gateway.reports.day import DayData, DeviceDay
from gateway.reports.document import (
    Chart,
    Document,
    Series,
    Table,
    alarm_table,
    completeness_line,
    completeness_tables,
    num,
)
from gateway.reports.queries import series

NS = 1_000_000_000
FIRING = 3
# Plausible rises of the controller's counters (faster is a meter swap or reset).
MAX_FIRING_H_PER_H = 1.05
MAX_STARTS_PER_H = 360.0


@dataclass(frozen=True)
class Stats:
    min: float
    mean: float
    max: float
    n: int


def stats(values: list[float]) -> Stats | None:
    if not values:
        return None
    return Stats(min(values), sum(values) / len(values), max(values), len(values))


@dataclass
class BoilerRow:
    device: str
    area: str
    running_h: float | None
    starts: int | None
    supply: Stats | None
    return_: Stats | None
    pressure: Stats | None
    gas_m3: float | None
    notes: list[str] = field(default_factory=list)


@dataclass
class NetworkRow:
    device: str
    area: str
    makeup_pct: float | None
    heat_kwh: float | None
    leak_alarms: int
    notes: list[str] = field(default_factory=list)


@dataclass
class HeatMeterRow:
    device: str
    area: str
    heat_kwh: float | None
    volume_m3: float | None
    notes: list[str] = field(default_factory=list)


@dataclass
class HeatingReport:
    site: str
    day: date
    tz: str
    start_ns: int
    end_ns: int
    coverages: list[Coverage]
    not_polled: list[str]
    boilers: list[BoilerRow]
    networks: list[NetworkRow]
    heat_meters: list[HeatMeterRow]
    gas_m3: float
    gas_plan_m3: float | None
    alarms: list[Episode]
    # Chart data: per boiler (ts, supply, return) and the site's gas per local hour.
    temps: dict[str, list[tuple[int, float, float]]]
    gas_per_hour: list[tuple[int, float]]

    @property
    def shortfall_m3(self) -> float | None:
        """How much less gas than planned the site burned (0 when at or above plan)."""
        if self.gas_plan_m3 is None:
            return None
        return max(0.0, self.gas_plan_m3 - self.gas_m3)


def burner(states: list[tuple[int, float]], gap_ns: float) -> tuple[float, int, float]:
    """(firing seconds, starts, seconds not judged because polls were a gap apart)."""
    firing = unknown = 0.0
    starts = 0
    for (t0, s0), (t1, s1) in itertools.pairwise(states):
        dt = (t1 - t0) / NS
        if t1 - t0 > gap_ns:
            unknown += dt
        elif s0 == FIRING:
            firing += dt
        if s1 == FIRING and s0 != FIRING:
            starts += 1
    return firing, starts, unknown


def _point_rollover(dev: DeviceDay, point: str) -> tuple[float | None, float]:
    """(where the point's register wraps, its resolution) in engineering units."""
    prof = dev.profile
    points: list[ModbusPoint] = prof.points if isinstance(prof, ModbusProfile) else []
    p = next((p for p in points if p.name == point), None)
    if p is None:  # an M-Bus record or an OPC UA variable is a value, not a register
        return None, 0.0
    return rollover_of(str(p.type), p.scale), abs(p.scale)


def totaliser(d: DeviceDay, point: str, max_per_h: float, what: str, unit: str,
              notes: list[str]) -> float | None:
    """The day's use from a totaliser point (None without readings); its anomalies into notes."""
    readings = series(d.rows, point)
    if not readings:
        return None
    rollover, resolution = _point_rollover(d, point)
    u = counter_usage(readings, max_rate_per_s=max_per_h / 3600, rollover=rollover,
                      resolution=resolution)
    notes += [f"{what}: {n.text(unit)}" for n in u.notes]
    return u.used


def boiler_row(d: DeviceDay, gap_polls: int, max_gas_m3_h: float) -> BoilerRow:
    gaps, rows = d.coverage.gaps, d.rows
    notes: list[str] = []
    note = gap_note(gaps, d.coverage.start_ns, d.coverage.end_ns)
    if note:
        notes.append(f"temperatures, pressure, running hours {note}")
    states = series(rows, "burner_state")
    running_h: float | None = None
    starts: int | None = None
    if states:
        firing, starts, unknown = burner(states, gap_polls * d.config.interval_s * NS)
        running_h = firing / 3600
        if unknown:
            notes.append(f"running hours exclude {unknown / 3600:.2f} h between polls a gap apart")
    # The controller's own counters see every start and every firing minute, also
    # between polls and through gaps: they win over what the polls show.
    counted_h = totaliser(d, "burner_hours", MAX_FIRING_H_PER_H, "burner hours", "h", notes)
    if counted_h is not None:
        running_h = counted_h
    counted_starts = totaliser(d, "burner_starts", MAX_STARTS_PER_H, "burner starts", "", notes)
    if counted_starts is not None:
        starts = round(counted_starts)
    gas_m3 = totaliser(d, "gas_total", max_gas_m3_h, "gas", "m³", notes)

    def vals(f: str) -> list[float]:
        return [v for _, v in series(rows, f)]

    return BoilerRow(
        d.id, d.config.area, running_h, starts,
        stats(vals("supply_temp")), stats(vals("return_temp")), stats(vals("pressure")),
        gas_m3, notes,
    )


def network_row(d: DeviceDay, leak_rules: list[str], alarms: list[Episode],
                max_heat_kwh_h: float) -> NetworkRow:
    rows = d.rows
    notes: list[str] = []
    note = gap_note(d.coverage.gaps, d.coverage.start_ns, d.coverage.end_ns)
    if note:
        notes.append(f"make-up ratio, heat {note}")
    pairs = [(r["makeup_flow"], r["supply_flow"]) for r in rows
             if isinstance(r.get("makeup_flow"), int | float)
             and isinstance(r.get("supply_flow"), int | float)]
    circulating = sum(s for _, s in pairs)
    makeup_pct = 100 * sum(m for m, _ in pairs) / circulating if circulating > 0 else None
    heat_kwh = totaliser(d, "heat_energy", max_heat_kwh_h, "heat", "kWh", notes)
    leaks = sum(1 for a in alarms if a.device == d.id and a.rule in leak_rules
                and a.raised_ns is not None)
    return NetworkRow(d.id, d.config.area, makeup_pct, heat_kwh, leaks, notes)


def heat_meter_row(d: DeviceDay, max_heat_kwh_h: float) -> HeatMeterRow:
    notes: list[str] = []
    heat = totaliser(d, "energy", max_heat_kwh_h, "heat", "kWh", notes)
    # Volume: as plausible as the heat it carries (1 kWh per m³ at least, at ΔT ~1 K).
    volume = totaliser(d, "volume", max_heat_kwh_h, "volume", "m³", notes)
    note = gap_note(d.coverage.gaps, d.coverage.start_ns, d.coverage.end_ns)
    if note and (heat is not None or volume is not None):
        notes.append(f"meter readings span {note}; the totaliser counted on")
    return HeatMeterRow(d.id, d.config.area, heat, volume, notes)


def gas_per_hour(day: DayData, max_gas_m3_h: float) -> list[tuple[int, float]]:
    """The site's gas use per hour of the day (local hours, by the later reading of each pair)."""
    hours = list(range(day.start_ns, day.end_ns, 3600 * NS))
    totals = [0.0] * len(hours)
    for d in day.of_kind("boiler"):
        gas = series(d.rows, "gas_total")
        rollover, resolution = _point_rollover(d, "gas_total")
        for i, h in enumerate(hours):
            before = [g for g in gas if g[0] < h][-1:]
            inside = [g for g in gas if h <= g[0] < h + 3600 * NS]
            totals[i] += counter_usage(before + inside, max_rate_per_s=max_gas_m3_h / 3600,
                                       rollover=rollover, resolution=resolution).used
    return list(zip(hours, totals, strict=True))


def collect_heating(day: DayData) -> HeatingReport:
    cfg = day.cfg
    boilers = [boiler_row(d, cfg.gap_polls, cfg.max_gas_m3_h) for d in day.of_kind("boiler")]
    networks = [network_row(d, cfg.leak_rules, day.alarms, cfg.max_heat_kwh_h)
                for d in day.of_kind("pipe_network")]
    temps = {
        d.id: [(int(r["time"]), float(r["supply_temp"]), float(r["return_temp"]))
               for r in d.rows
               if isinstance(r.get("supply_temp"), int | float)
               and isinstance(r.get("return_temp"), int | float)]
        for d in day.of_kind("boiler")
    }
    return HeatingReport(
        site=day.site, day=day.day, tz=day.tz, start_ns=day.start_ns, end_ns=day.end_ns,
        coverages=day.coverages, not_polled=day.not_polled,
        boilers=boilers, networks=networks,
        heat_meters=[heat_meter_row(d, cfg.max_heat_kwh_h) for d in day.of_kind("heat_meter")],
        gas_m3=sum(b.gas_m3 or 0.0 for b in boilers),
        gas_plan_m3=cfg.gas_plan.daily_m3,
        alarms=day.alarms,
        temps=temps,
        gas_per_hour=gas_per_hour(day, cfg.max_gas_m3_h),
    )




def heating_document(rep: HeatingReport) -> Document:
    """The report as a ``Document`` (head lines, tables, charts) for every format."""
    tz = rep.tz
    late = sum(a.late for a in rep.alarms)
    unacked = sum(a.unacknowledged for a in rep.alarms)
    complete = all(c.complete for c in rep.coverages)
    lines = [
        completeness_line(rep.coverages),
        f"gas used {rep.gas_m3:.1f} m³"
        + (f" against a plan of {rep.gas_plan_m3:.1f} m³, shortfall {rep.shortfall_m3:.1f} m³"
           if rep.gas_plan_m3 is not None else " (no daily plan configured)"),
        f"{len(rep.alarms)} alarm(s): {late} acknowledged late, {unacked} unacknowledged",
    ]
    boilers = Table("boilers", ["boiler", "area", "running h", "burner starts",
                                "supply min/mean/max °C", "return min/mean/max °C",
                                "pressure MPa", "gas m³", "notes"], [])
    for b in rep.boilers:
        def mmm(s: Stats | None) -> str:
            return "-" if s is None else f"{s.min:.1f} / {s.mean:.1f} / {s.max:.1f}"
        pressure = "-" if b.pressure is None else f"{b.pressure.min:.3f} - {b.pressure.max:.3f}"
        boilers.rows.append([
            b.device, b.area, num(b.running_h, 2), "-" if b.starts is None else str(b.starts),
            mmm(b.supply), mmm(b.return_), pressure, num(b.gas_m3, 1), "; ".join(b.notes) or "-",
        ])
        boilers.bad.append(bool(b.notes))
    nets = Table("pipe networks", ["network", "area", "make-up water % of circulating",
                                   "heat delivered kWh", "leak alarms", "notes"], [])
    for n in rep.networks:
        nets.rows.append([n.device, n.area, num(n.makeup_pct, 2), num(n.heat_kwh, 1),
                          str(n.leak_alarms), "; ".join(n.notes) or "-"])
        nets.bad.append(bool(n.notes) or n.leak_alarms > 0)
    gaps = {c.name: c.gaps for c in rep.coverages}
    meters = Table("heat meters", ["heat meter", "area", "heat delivered kWh", "volume m³",
                                   "notes"], [])
    for h in rep.heat_meters:
        meters.rows.append([h.device, h.area, num(h.heat_kwh, 1), num(h.volume_m3, 2),
                            "; ".join(h.notes) or "-"])
        meters.bad.append(bool(h.notes))
    charts = [
        Chart(f"{dev}: supply and return temperature", "°C", "line", rep.start_ns, rep.end_ns,
              [Series("supply", [(t, s) for t, s, _ in pts]),
               Series("return", [(t, r) for t, _, r in pts])],
              gaps=[(g.start_ns, g.end_ns) for g in gaps.get(dev, ())])
        for dev, pts in rep.temps.items()
    ]
    charts.append(Chart("gas use per hour", "m³", "bar", rep.start_ns, rep.end_ns,
                        [Series("gas", rep.gas_per_hour)]))
    return Document(
        title=f"{rep.site}: heating report for {rep.day.isoformat()} ({tz})",
        tz=tz,
        lines=lines,
        tables=[boilers, nets, meters, alarm_table(rep.alarms, tz),
                *completeness_tables(rep.coverages, rep.not_polled, tz)],
        charts=charts,
        complete=complete,
        tables_before_charts=3,
    )


__all__ = [
    "BoilerRow", "HeatMeterRow", "HeatingReport", "NetworkRow", "Stats", "burner",
    "collect_heating", "heating_document",
]
