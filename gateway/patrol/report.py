"""The night patrol report as text, CSV or HTML (its CLI: gateway.patrol_cli).

``build_patrol_report`` reads one night (``night.collect_night``, over the
InfluxQL client of ``influxql``) and renders it: the rounds, the checkpoint
exception table and the findings, as aligned text, one CSV with a section
column, or an HTML page with the bad rounds marked.
"""

from __future__ import annotations

import csv
import html
import io
from collections import Counter
from datetime import date, datetime
from typing import Literal
from zoneinfo import ZoneInfo

from gateway.patrol.config import PatrolConfig
from gateway.patrol.influxql import Query, ReportError, influx_query
from gateway.patrol.night import NS, NightReport, collect_night

Format = Literal["text", "csv", "html"]


def _t(ns: int | None, tz: str, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
    if ns is None:
        return ""
    return datetime.fromtimestamp(ns / NS, ZoneInfo(tz)).strftime(fmt)


def _dur(s: float | None) -> str:
    if s is None:
        return "-"
    s = round(s)
    h, rest = divmod(int(s), 3600)
    m, sec = divmod(rest, 60)
    return f"{h}h{m:02d}m{sec:02d}s" if h else f"{m}m{sec:02d}s"


def _findings_text(names: list[str]) -> str:
    return ", ".join(f"{k} x{n}" if n > 1 else k for k, n in Counter(names).items())


def _tables(rep: NightReport, machine: bool) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, header, rows): machine=True gives ISO times and plain seconds (CSV)."""
    tz = rep.tz

    def t(ns: int | None) -> str:
        if machine:
            return "" if ns is None else datetime.fromtimestamp(ns / NS, ZoneInfo(tz)).isoformat()
        return _t(ns, tz, "%m-%d %H:%M:%S")

    def d(s: float | None) -> str:
        if machine:
            return "" if s is None else f"{s:.0f}"
        return _dur(s)

    rounds = [
        [
            r.round_id,
            r.guard,
            t(r.start_ns),
            t(r.end_ns),
            d(r.duration_s),
            r.status,
            " ".join(r.missed) or ("" if machine else "-"),
            _findings_text(r.findings) or ("" if machine else "-"),
        ]
        for r in rep.rounds
    ]
    cps = [
        [
            c.checkpoint,
            c.place,
            str(c.taps),
            str(c.duplicates),
            t(c.first_ns),
            t(c.last_ns),
            d(c.min_gap_s),
            d(c.avg_gap_s),
            d(c.max_gap_s),
        ]
        for c in rep.checkpoints
    ]
    fnd = [
        [t(f.ts_ns), f.type, f.checkpoint, f.guard, f.round_id, "yes" if f.alarm else "", f.message]
        for f in rep.findings
    ]
    return [
        ("rounds", ["round", "guard", "start", "end", "duration", "status", "missed", "findings"],
         rounds),
        ("checkpoints", ["checkpoint", "place", "taps", "duplicates", "first", "last",
                         "shortest gap", "average gap", "longest gap"], cps),
        ("findings", ["time", "finding", "checkpoint", "guard", "round", "alarm", "message"], fnd),
    ]


def _title(rep: NightReport) -> str:
    site = f"{rep.site}: " if rep.site else ""
    return (
        f"{site}patrol report for the night of {rep.night.isoformat()}"
        f" ({_t(rep.start_ns, rep.tz, '%Y-%m-%d %H:%M')} to"
        f" {_t(rep.end_ns, rep.tz, '%Y-%m-%d %H:%M')} {rep.tz})"
    )


def _summary_line(rep: NightReport) -> str:
    s = rep.summary
    return (
        f"{s['complete']} complete round(s), {s['abandoned']} abandoned, {s['open']} open;"
        f" {s['overdue']} overdue gap(s); {s['suspect']} suspected fake(s);"
        f" {s['missed_checkpoints']} missed checkpoint(s);"
        f" {s['unknown_cards']} unknown card tap(s);"
        f" {s['unknown_readers']} tap(s) from unknown reader(s);"
        f" {s['duplicates']} duplicate tap(s) ignored; {rep.tap_count} tap record(s)"
    )


def render_text(rep: NightReport) -> str:
    out = [_title(rep), _summary_line(rep), ""]
    for title, header, rows in _tables(rep, machine=False):
        out.append(f"{title.upper()}")
        if not rows:
            out += ["  (none)", ""]
            continue
        widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
        for r in [header, ["-" * w for w in widths], *rows]:
            cells = (c.ljust(w) for c, w in zip(r, widths, strict=True))
            out.append(("  " + "  ".join(cells)).rstrip())
        out.append("")
    return "\n".join(out)


def render_csv(rep: NightReport) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["# " + _title(rep)])
    for i, (title, header, rows) in enumerate(_tables(rep, machine=True)):
        if i:
            w.writerow([])
        w.writerow(["section", *header])
        for r in rows:
            w.writerow([title, *r])
    return buf.getvalue()


def render_html(rep: NightReport) -> str:
    e = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{e(_title(rep))}</title>",
        "<style>body{font-family:sans-serif;margin:1.5em}"
        "table{border-collapse:collapse;margin-bottom:1.5em}"
        "th,td{border:1px solid #bbb;padding:.25em .5em;text-align:left}"
        "th{background:#eee}tr.bad td{background:#fde8e8}</style>",
        "</head><body>",
        f"<h1>{e(_title(rep))}</h1>",
        f"<p>{e(_summary_line(rep))}</p>",
    ]
    for title, header, rows in _tables(rep, machine=False):
        parts.append(f"<h2>{e(title.capitalize())}</h2>")
        if not rows:
            parts.append("<p>(none)</p>")
            continue
        parts.append(
            f'<table id="{e(title)}"><thead><tr>'
            + "".join(f"<th>{e(h)}</th>" for h in header)
            + "</tr></thead><tbody>"
        )
        for r in rows:
            bad = title == "rounds" and (r[5] != "complete" or r[7] != "-")
            cls = ' class="bad"' if bad else ""
            parts.append(f"<tr{cls}>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>")
        parts.append("</tbody></table>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def build_patrol_report(
    query: Query | str,
    night: date,
    *,
    fmt: Format = "text",
    config: PatrolConfig | None = None,
    tz: str | None = None,
    site: str | None = None,
    database: str | None = None,
) -> str:
    """The report for the night starting on the evening of ``night``.

    ``query`` is a ``Query`` callable, or an InfluxDB 1.x URL (then ``database`` is needed).
    """
    if isinstance(query, str):
        if not database:
            raise ReportError("an InfluxDB URL needs a database")
        query = influx_query(query, database)
    rep = collect_night(query, night, config=config, tz=tz, site=site)
    if fmt == "text":
        return render_text(rep)
    if fmt == "csv":
        return render_csv(rep)
    if fmt == "html":
        return render_html(rep)
    raise ReportError(f"unknown report format {fmt!r} (text, csv, html)")



__all__ = ["build_patrol_report", "render_csv", "render_html", "render_text"]
