"""The daily safety log: patrols, leakage per circuit, cold-room excursions, outages, incidents.

For one local day of the site: the patrol night that starts on the evening
of that day (the patrol report's ``collect_night``; each night is logged
once, complete by the next morning's report), leakage alarms per circuit
(leakage-monitor channel), cold-room temperature excursions outside
``reports.cold_room_min_c``/``max_c``, every device that was offline (its
gaps) and for how long in total, the gateway's own outages (gaps in
``gateway_health``), and each alarm as a timeline of its transitions.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from gateway.config import Site
from gateway.patrol.config import resolve_patrol
from gateway.patrol.influxql import Query
from gateway.patrol.night import NightReport, collect_night
from gateway.reports.alarms import Episode
from gateway.reports.completeness import Coverage, Gap, fmt_duration
from gateway.reports.day import DayData
from gateway.reports.document import (
    Document,
    Table,
    alarm_table,
    completeness_line,
    completeness_tables,
    local,
)
from gateway.reports.queries import series

NS = 1_000_000_000


@dataclass(frozen=True)
class Excursion:
    device: str
    start_ns: int
    end_ns: int
    peak: float


def excursions(
    device: str, readings: list[tuple[int, float]], lo: float, hi: float, interval_ns: int
) -> list[Excursion]:
    """Runs of readings outside [lo, hi]: from the first such reading to the next one inside.

    A run still outside at the last reading ends one poll interval after it.
    """
    out: list[Excursion] = []
    pts = sorted(readings)
    i = 0
    while i < len(pts):
        if lo <= pts[i][1] <= hi:
            i += 1
            continue
        j = i
        while j < len(pts) and not lo <= pts[j][1] <= hi:
            j += 1
        run = pts[i:j]
        end = pts[j][0] if j < len(pts) else run[-1][0] + interval_ns
        peak = max((v for _, v in run), key=lambda v: max(v - hi, lo - v))
        out.append(Excursion(device, run[0][0], end, peak))
        i = j
    return out


@dataclass
class SafetyReport:
    site: str
    day: date
    tz: str
    coverages: list[Coverage]
    not_polled: list[str]
    night: NightReport | None
    leakage: list[Episode]
    excursions: list[Excursion]
    offline: dict[str, list[Gap]]
    gateway_outages: list[Gap]
    alarms: list[Episode]


def collect_safety(query: Query, site: Site, day: DayData) -> SafetyReport:
    patrol = resolve_patrol(site.config.patrol, site.path)
    night = (collect_night(query, day.day, config=patrol, tz=day.tz, site=day.site)
             if patrol is not None else None)
    leak_devices = {d.id for d in day.of_kind("leakage")}
    exc = [
        e
        for d in day.of_kind("cold_room")
        for e in excursions(d.id, series(d.rows, "temperature"), day.cfg.cold_room_min_c,
                            day.cfg.cold_room_max_c, int(d.config.interval_s * NS))
    ]
    return SafetyReport(
        site=day.site, day=day.day, tz=day.tz, coverages=day.coverages,
        not_polled=day.not_polled, night=night,
        leakage=[a for a in day.alarms if a.device in leak_devices],
        excursions=exc,
        offline={d.id: list(d.coverage.gaps) for d in day.devices.values() if d.coverage.gaps},
        gateway_outages=list(day.gateway.gaps),
        alarms=day.alarms,
    )


def safety_document(rep: SafetyReport) -> Document:
    tz = rep.tz
    n = rep.night
    lines = [
        completeness_line(rep.coverages),
        f"{len(rep.alarms)} incident(s), {len(rep.leakage)} leakage alarm(s),"
        f" {len(rep.excursions)} cold-room excursion(s), {len(rep.offline)} device(s) offline,"
        f" {len(rep.gateway_outages)} gateway outage(s)",
        "patrol: no patrol configured" if n is None else
        f"patrol night from {local(n.start_ns, tz, '%m-%d %H:%M')}:"
        f" {n.summary['complete']} complete round(s), {n.summary['abandoned']} abandoned,"
        f" {n.summary['open']} open, {len(n.findings)} finding(s)",
    ]
    rounds = Table("patrol rounds", ["round", "guard", "start", "end", "status", "missed",
                                     "findings"], [])
    findings = Table("patrol findings", ["time", "finding", "checkpoint", "guard", "message"], [])
    if n is not None:
        for r in n.rounds:
            rounds.rows.append([r.round_id, r.guard, local(r.start_ns, tz), local(r.end_ns, tz),
                                r.status, " ".join(r.missed) or "-", ", ".join(r.findings) or "-"])
            rounds.bad.append(r.status != "complete" or bool(r.findings))
        for f in n.findings:
            findings.rows.append([local(f.ts_ns, tz, "%m-%d %H:%M:%S"), f.type, f.checkpoint,
                                  f.guard, f.message])
            findings.bad.append(f.alarm)
    circuits = Table("leakage per circuit",
                     ["circuit", "alarms", "first raised", "acknowledged by"], [])
    leak_key = sorted({(a.device, a.point) for a in rep.leakage})
    for dev, point in leak_key:
        eps = [a for a in rep.leakage if (a.device, a.point) == (dev, point)]
        circuits.rows.append([f"{dev} {point}".strip(), str(len(eps)),
                              local(min((a.raised_ns or 0) for a in eps), tz),
                              ", ".join(sorted({a.acked_by for a in eps if a.acked_by})) or "-"])
        circuits.bad.append(True)
    cold = Table("cold-room excursions", ["cold room", "from", "to", "duration", "peak °C"], [])
    for e in rep.excursions:
        cold.rows.append([e.device, local(e.start_ns, tz), local(e.end_ns, tz),
                          fmt_duration((e.end_ns - e.start_ns) / NS), f"{e.peak:.1f}"])
        cold.bad.append(True)
    offline = Table("devices offline", ["device", "times", "total", "longest"], [])
    for dev, gaps in rep.offline.items():
        offline.rows.append([dev, str(len(gaps)), fmt_duration(sum(g.duration_s for g in gaps)),
                             fmt_duration(max(g.duration_s for g in gaps))])
        offline.bad.append(True)
    outages = Table("gateway outages", ["from", "to", "duration"], [
        [local(g.start_ns, tz), local(g.end_ns, tz), fmt_duration(g.duration_s)]
        for g in rep.gateway_outages], [True] * len(rep.gateway_outages))
    timeline = Table("incident timelines", ["alarm", "device", "timeline"], [])
    for a in rep.alarms:
        steps = " -> ".join(
            f"{local(s.ts_ns, tz, '%H:%M')} {s.action}"
            + (f" ({s.actor})" if s.actor and s.actor != "system" else "")
            for s in a.steps)
        timeline.rows.append([a.alarm_id, a.device, steps])
        timeline.bad.append(a.late or a.unacknowledged)
    return Document(
        title=f"{rep.site}: safety log for {rep.day.isoformat()} ({tz})",
        tz=tz,
        lines=lines,
        tables=[rounds, findings, circuits, cold, offline, outages,
                alarm_table(rep.alarms, tz, "incidents"), timeline,
                *completeness_tables(rep.coverages, rep.not_polled, tz)],
        complete=all(c.complete for c in rep.coverages),
    )


__all__ = ["Excursion", "SafetyReport", "collect_safety", "excursions", "safety_document"]
