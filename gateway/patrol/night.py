"""One night of patrol read back from InfluxDB: rounds, findings and the checkpoint table.

``collect_night`` reads the ``patrol`` measurement for one night (the
evening of DATE to the next morning, per the night window) and rebuilds:
each round (guard, start, end, duration, status, missed checkpoints, the
findings about it), the findings of the night, and the exception table per
checkpoint (taps, shortest / average / longest gap between consecutive taps,
duplicates). A tap from a reader that is no checkpoint is an exception
(an ``unknown_reader`` finding, counted in the summary), never a checkpoint
row. ``report.py`` renders a ``NightReport``.

Rounds are rebuilt from the taps as well as the round records, so a round
still open when the night was read (no round record yet) is shown as open
rather than silently missing. The query is one ``SELECT *`` over the night:
a night is a few hundred points, and filtering in Python keeps the report
independent of which fields a given record happens to have.
"""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass, field
from datetime import date
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from gateway.patrol.config import NightWindow, PatrolConfig, night_bounds
from gateway.patrol.findings import MEASUREMENT
from gateway.patrol.influxql import Query, ReportError, _quote

NS = 1_000_000_000
# Taps that were real visits by a known guard at a known checkpoint.
_VISIT_STATUSES = ("ok", "off_route")
# A tap from a reader no checkpoint has: an exception (finding), never a checkpoint row.
_UNKNOWN_READER = "unknown_reader"


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
