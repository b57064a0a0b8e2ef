"""A report as a format-neutral document: head lines, tables, charts; and the completeness part.

Each report (heating, safety) builds a ``Document``; ``render`` turns it into
text, CSV, HTML (inline SVG charts) or PDF. Every document starts with its
completeness verdict and ends with the completeness tables (share of the day
per source, and every gap), so no format can show a report without them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

from gateway.reports.alarms import Episode
from gateway.reports.completeness import Coverage, fmt_duration, verdict

NS = 1_000_000_000


@dataclass
class Table:
    title: str
    header: list[str]
    rows: list[list[str]]
    # Rows to highlight (late acknowledgement, a gap, an excursion...).
    bad: list[bool] = field(default_factory=list)

    def is_bad(self, i: int) -> bool:
        return i < len(self.bad) and self.bad[i]


@dataclass
class Series:
    name: str
    points: list[tuple[int, float]]


@dataclass
class Chart:
    title: str
    unit: str
    kind: str  # "line" | "bar"
    start_ns: int
    end_ns: int
    series: list[Series]
    # Stretches without data: shaded, and no line is drawn across them.
    gaps: list[tuple[int, int]] = field(default_factory=list)

    def segments(self, s: Series) -> list[list[tuple[int, float]]]:
        """The series' points split wherever two neighbours have a gap between them."""
        out: list[list[tuple[int, float]]] = []
        for p in s.points:
            if out and not any(out[-1][-1][0] <= a and b <= p[0] for a, b in self.gaps):
                out[-1].append(p)
            else:
                out.append([p])
        return out


@dataclass
class Document:
    title: str
    tz: str
    lines: list[str]
    tables: list[Table]
    charts: list[Chart] = field(default_factory=list)
    complete: bool = True
    # How many tables come before the charts (the key figures first).
    tables_before_charts: int = 0


def local(ns: int | None, tz: str, fmt: str = "%H:%M:%S") -> str:
    if ns is None:
        return "-"
    return datetime.fromtimestamp(ns / NS, ZoneInfo(tz)).strftime(fmt)


def num(v: float | None, digits: int = 1) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def completeness_tables(coverages: list[Coverage], not_polled: list[str], tz: str) -> list[Table]:
    share = Table(
        "completeness",
        ["source", "poll interval", "samples", "share of day", "gaps", "without data"],
        [],
    )
    for c in coverages:
        share.rows.append([c.name, f"{c.interval_s:g} s", str(c.samples),
                           f"{c.share * 100:.1f} %", str(len(c.gaps)), fmt_duration(c.missing_s)])
        share.bad.append(not c.complete)
    for name in not_polled:
        share.rows.append([name, "event-driven", "-", "not polled", "-", "-"])
        share.bad.append(False)
    gaps = Table("gaps", ["source", "from", "to", "duration"], [])
    for c in coverages:
        for g in c.gaps:
            gaps.rows.append([c.name, local(g.start_ns, tz, "%m-%d %H:%M:%S"),
                              local(g.end_ns, tz, "%m-%d %H:%M:%S"), fmt_duration(g.duration_s)])
            gaps.bad.append(True)
    return [share, gaps]


def alarm_table(episodes: list[Episode], tz: str, title: str = "alarms") -> Table:
    """Every alarm episode: raised, acknowledged (delay, by whom; late ones flagged), cleared."""
    t = Table(title, ["raised", "device", "rule", "severity", "message", "acknowledged",
                      "after", "by", "cleared", "flag"], [])
    for e in episodes:
        flag = "LATE ACK" if e.late else ("UNACKNOWLEDGED" if e.unacknowledged else "")
        d = e.ack_delay_s
        t.rows.append([
            local(e.raised_ns, tz) if e.raised_ns is not None else "before",
            e.device, e.rule, e.severity, e.message, local(e.acked_ns, tz),
            "-" if d is None else fmt_duration(d), e.acked_by or "-", local(e.cleared_ns, tz), flag,
        ])
        t.bad.append(bool(flag))
    return t


def completeness_line(coverages: list[Coverage]) -> str:
    return verdict(coverages)


__all__ = ["Chart", "Document", "Series", "Table", "completeness_line", "completeness_tables",
           "local", "num"]
