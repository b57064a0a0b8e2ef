"""The night patrol report, read back from InfluxDB with InfluxQL (its CLI: gateway.patrol_cli).

``collect_night`` reads the ``patrol`` measurement for one night (the
evening of DATE to the next morning, per the night window) and rebuilds:
each round (guard, start, end, duration, status, missed checkpoints, the
findings about it), the findings of the night, and the exception table per
checkpoint (taps, shortest / average / longest gap between consecutive taps,
duplicates). A tap from a reader that is no checkpoint is an exception
(an ``unknown_reader`` finding, counted in the summary), never a checkpoint
row. ``build_patrol_report`` renders it as text, CSV or HTML.

Rounds are rebuilt from the taps as well as the round records, so a round
still open when the night was read (no round record yet) is shown as open
rather than silently missing. The query is one ``SELECT *`` over the night:
a night is a few hundred points, and filtering in Python keeps the report
independent of which fields a given record happens to have.
"""

from __future__ import annotations

import csv
import html
import io
import itertools
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import httpx

from gateway.errors import GatewayError
from gateway.patrol.config import NightWindow, PatrolConfig, night_bounds
from gateway.patrol.engine import MEASUREMENT

NS = 1_000_000_000
Query = Callable[[str], list[dict[str, Any]]]
Format = Literal["text", "csv", "html"]
# Taps that were real visits by a known guard at a known checkpoint.
_VISIT_STATUSES = ("ok", "off_route")
# A tap from a reader no checkpoint has: an exception (finding), never a checkpoint row.
_UNKNOWN_READER = "unknown_reader"


class ReportError(GatewayError):
    """The report cannot be built (InfluxDB unreachable, query refused, bad arguments)."""


# --------------------------------------------------------------------------- reading InfluxDB


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


# --------------------------------------------------------------------------- the night


@dataclass
class RoundRow:
    round_id: str
    guard: str
    route: str
    start_ns: int
    end_ns: int
    status: str  # complete | abandoned | open
    visited: list[str]
    missed: list[str]
    findings: list[str] = field(default_factory=list)

    @property
    def duration_s(self) -> float:
        return (self.end_ns - self.start_ns) / NS


@dataclass
class FindingRow:
    ts_ns: int
    type: str
    checkpoint: str
    guard: str
    round_id: str
    alarm: bool
    message: str


@dataclass
class CheckpointRow:
    checkpoint: str
    place: str
    taps: int
    duplicates: int
    first_ns: int | None
    last_ns: int | None
    min_gap_s: float | None
    avg_gap_s: float | None
    max_gap_s: float | None


@dataclass
class NightReport:
    site: str | None
    night: date
    tz: str
    start_ns: int
    end_ns: int
    rounds: list[RoundRow]
    findings: list[FindingRow]
    checkpoints: list[CheckpointRow]
    tap_count: int
    summary: dict[str, int]


def night_window(night: date, config: PatrolConfig | None, tz: str | None) -> tuple[int, int, str]:
    """[start, end) of the night that begins on the evening of ``night``, and the zone used."""
    window = config.night if config else NightWindow()
    zone = tz or (config.timezone if config else "UTC")
    try:
        s, e = night_bounds(night, window, ZoneInfo(zone))
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ReportError(f"unknown time zone {zone!r}") from exc
    return s, e, zone


def collect_night(
    query: Query,
    night: date,
    *,
    config: PatrolConfig | None = None,
    tz: str | None = None,
    site: str | None = None,
) -> NightReport:
    """Read one night's patrol records and rebuild rounds, findings and the checkpoint table."""
    start, end, zone = night_window(night, config, tz)
    # Rounds may start before the window and end after it: read one longest round either side.
    longest = max((r.max_duration_s for r in config.routes), default=5400.0) if config else 5400.0
    slack = int(longest * NS)
    q = (
        f"SELECT * FROM {MEASUREMENT} WHERE time >= {start - slack} AND time < {end + slack}"
        + (f" AND site = {_quote(site)}" if site else "")
    )
    rows = sorted(query(q), key=lambda r: int(r["time"]))
    taps = [r for r in rows if r.get("record") == "tap"]
    round_recs = {str(r["round"]): r for r in rows if r.get("record") == "round" and r.get("round")}
    finding_recs = [r for r in rows if r.get("record") == "finding"]

    # Rounds: from the taps (every visit has its round id), completed by the round records.
    by_round: dict[str, list[dict[str, Any]]] = {}
    for t in taps:
        if t.get("status") == "ok" and t.get("round"):
            by_round.setdefault(str(t["round"]), []).append(t)
    routes = {r.id: r for r in config.routes} if config else {}
    rounds: list[RoundRow] = []
    for rid in sorted(set(by_round) | set(round_recs)):
        visits = by_round.get(rid, [])
        rec = round_recs.get(rid)
        if rec is not None:
            r_start, r_end = int(rec["start_ns"]), int(rec["end_ns"])
            status = str(rec.get("status") or "complete")
            route = str(rec.get("route") or "")
            visited = [c for c in str(rec.get("visited") or "").split(",") if c]
            missed = [c for c in str(rec.get("missed") or "").split(",") if c]
            guard = str(rec.get("guard") or "")
        else:
            r_start, r_end = int(visits[0]["time"]), int(visits[-1]["time"])
            status, route = "open", ""
            visited = [str(v["checkpoint"]) for v in visits]
            guard = str(visits[0].get("guard") or "")
            if config is not None:
                cfg_route = next(
                    (r for r in config.routes if r.checkpoints and visited[0] in r.checkpoints),
                    None,
                )
                route = cfg_route.id if cfg_route else ""
            todo = routes[route].checkpoints if route in routes else []
            missed = [c for c in todo if c not in visited]
        if r_end < start or r_start >= end:
            continue
        rounds.append(RoundRow(rid, guard, route, r_start, r_end, status, visited, missed))
    rounds.sort(key=lambda r: (r.start_ns, r.guard))
    by_id = {r.round_id: r for r in rounds}

    findings: list[FindingRow] = []
    for f in finding_recs:
        ts = int(f["time"])
        rid = str(f.get("round") or "")
        ftype = str(f.get("kind", "")).removeprefix("patrol.")
        in_round = rid in by_id
        if in_round:
            by_id[rid].findings.append(ftype)
        if not (start <= ts < end or in_round):
            continue
        findings.append(
            FindingRow(
                ts,
                ftype,
                str(f.get("checkpoint") or ""),
                str(f.get("guard") or ""),
                rid,
                bool(f.get("alarm")),
                str(f.get("message") or ""),
            )
        )

    # The exception table: only what happened inside the window.
    night_taps = [t for t in taps if start <= int(t["time"]) < end]
    places = {cp.id: cp.place for cp in config.checkpoints} if config else {}
    # Checkpoints the config does not name (it changed since) still get a row; unknown readers not.
    names = list(places) + sorted(
        {
            str(t["checkpoint"])
            for t in night_taps
            if t.get("checkpoint") and t.get("status") != _UNKNOWN_READER
        }
        - set(places)
    )
    checkpoints = []
    for cp_id in names:
        times = [
            int(t["time"])
            for t in night_taps
            if t.get("checkpoint") == cp_id and t.get("status") in _VISIT_STATUSES
        ]
        dups = sum(
            1 for t in night_taps if t.get("checkpoint") == cp_id and t.get("status") == "duplicate"
        )
        gaps = [(b - a) / NS for a, b in itertools.pairwise(times)]
        checkpoints.append(
            CheckpointRow(
                cp_id,
                places.get(cp_id, ""),
                len(times),
                dups,
                times[0] if times else None,
                times[-1] if times else None,
                min(gaps) if gaps else None,
                sum(gaps) / len(gaps) if gaps else None,
                max(gaps) if gaps else None,
            )
        )
    kinds = Counter(f.type for f in findings)
    tap_status = Counter(str(t.get("status") or "") for t in night_taps)
    summary = {
        "rounds": len(rounds),
        "complete": sum(r.status == "complete" for r in rounds),
        "abandoned": sum(r.status == "abandoned" for r in rounds),
        "open": sum(r.status == "open" for r in rounds),
        "suspect": sum("faked_round" in r.findings for r in rounds),
        "overdue": kinds["overdue"],
        "missed_checkpoints": sum(len(r.missed) for r in rounds if r.status != "open"),
        "unknown_cards": tap_status["unknown_card"],
        "unknown_readers": tap_status[_UNKNOWN_READER],
        "duplicates": kinds["duplicate_tap"],
        "reader_offline": kinds["reader_offline"],
    }
    return NightReport(
        site=site,
        night=night,
        tz=zone,
        start_ns=start,
        end_ns=end,
        rounds=rounds,
        findings=findings,
        checkpoints=checkpoints,
        tap_count=len(night_taps),
        summary=summary,
    )


# --------------------------------------------------------------------------- rendering


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


def site_influx(site: Any) -> tuple[str | None, str | None, str | None, str | None]:
    """(url, database, username, password) of a ``Site``'s influx sink (all None without one)."""
    sink = site.config.sinks.influx
    if sink is None:
        return None, None, None, None
    database = sink.database or (sink.bucket or "").split("/")[0] or None
    return sink.url, database, sink.username, sink.password


__all__ = [
    "CheckpointRow",
    "FindingRow",
    "NightReport",
    "ReportError",
    "RoundRow",
    "build_patrol_report",
    "collect_night",
    "influx_query",
    "night_window",
    "parse_influx_response",
    "site_influx",
]
