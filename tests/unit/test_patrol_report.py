"""The night report's logic on a simulated night (rows shaped as InfluxDB returns them).

``as_influx_rows`` stands in for InfluxDB here (it is the one thing that does
not run in a unit test); tests/integration/test_patrol_report.py runs the same
night through a real influxd.
"""

from __future__ import annotations

import argparse
import csv
import io
import itertools
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from gateway.model import FakeClock, Sample
from gateway.outbox import Event
from gateway.patrol import MemoryPatrolStore, PatrolEngine, load_patrol, to_events
from gateway.patrol.influxql import ReportError, parse_influx_response
from gateway.patrol.night import collect_night
from gateway.patrol.report import build_patrol_report
from gateway.patrol_cli import register_cli

REPO = Path(__file__).resolve().parents[2]
NS = 1_000_000_000
TZ = ZoneInfo("Asia/Shanghai")
WANG, LI, STRANGER = "04A1B2C3D4", "04E5F60718", "0BADC0DE99"
ROUTE = ["gate-north", "lakeside", "playground", "boiler-house", "east-gate"]
NIGHT = date(2026, 1, 1)
SITE = "demo-park"


def local(h: int, m: int = 0, s: int = 0, day: int = 1) -> int:
    return int(datetime(2026, 1, day, h, m, s, tzinfo=TZ).timestamp()) * NS


@dataclass
class SimNight:
    """What was sent (the taps) and what the engine recorded (the events)."""

    taps: list[tuple[int, str, str]] = field(default_factory=list)  # (ts, reader, card)
    events: list[Event] = field(default_factory=list)


def simulate_night() -> SimNight:
    """A night at the demo park, with every kind of trouble the report must show.

    wang: 22:10 round (honest), 23:55 round over midnight, 02:30 faked round
    (10 s legs), 03:30 round skipping playground (abandoned at 05:00).
    li: 00:30 honest round. A stranger's card at 23:00, wang's card at an
    unknown reader R09 at 01:30, a double tap at 22:10:30, the reader line
    down 04:10-04:20, and taps outside the night (20:00 and 07:00) that the
    night's tables must not count. The last
    honest complete round (li's) ends 00:50, and the faked one does not
    count, so a gap falls due at 03:50; the next (06:50) is past the night.
    """
    cfg = load_patrol(REPO / "rules" / "patrol.yaml")
    clock = FakeClock(local(19))
    engine = PatrolEngine(cfg, clock, MemoryPatrolStore())
    sim = SimNight()
    plan: list[tuple[int, str, str]] = []

    def walk(start: int, card: str, walk_s: int, skip: tuple[str, ...] = ()) -> None:
        for i, cp in enumerate(ROUTE):
            if cp not in skip:
                plan.append((start + i * walk_s * NS, cp, card))

    walk(local(20), WANG, 240)  # before the night
    walk(local(22, 10), WANG, 240)
    plan.append((local(22, 10, 30), "gate-north", WANG))  # double tap
    plan.append((local(23), "lakeside", STRANGER))
    plan.append((local(1, 30, day=2), "R09", WANG))  # a reader that is no checkpoint
    walk(local(23, 55), WANG, 240)
    walk(local(0, 30, day=2), LI, 300)
    walk(local(2, 30, day=2), WANG, 10)
    walk(local(3, 30, day=2), WANG, 240, skip=("playground",))
    walk(local(7, day=2), WANG, 240)  # the morning after
    plan.sort()
    outages = [(local(4, 10, day=2), False), (local(4, 20, day=2), True)]
    seq = itertools.count(1)
    t = clock.now_ns()
    end = local(8, day=2)
    while t <= end:
        # One tick per 30 s, taps and outages in between, all in time order.
        nxt = t + 30 * NS
        while plan and plan[0][0] < nxt:
            ts, reader, card = plan.pop(0)
            clock.advance((ts - clock.now_ns()) / NS)
            sim.taps.append((ts, reader, card))
            s = Sample("rfid-gate", "patrol_tap", ts, {"reader": reader, "card": card,
                                                       "seq": next(seq)})
            sim.events += to_events(engine.on_tap_sample(s))
        while outages and outages[0][0] < nxt:
            ts, ok = outages.pop(0)
            clock.advance((ts - clock.now_ns()) / NS)
            detail = "" if ok else "port gone"
            sim.events += to_events(engine.reader_status("rfid-gate", ok, detail))
        clock.advance((nxt - clock.now_ns()) / NS)
        sim.events += to_events(engine.tick())
        t = nxt
    return sim


def as_influx_rows(events: list[Event], site: str) -> list[dict[str, Any]]:
    """Events as ``SELECT *`` rows: time, tags (site, kind, device, ...) and fields."""
    points: dict[tuple[Any, ...], dict[str, Any]] = {}
    for ev in events:
        tags = {**ev.tags, "site": site, "kind": ev.kind, "device": ev.device or None}
        key = (ev.ts_ns, tuple(sorted((k, str(v)) for k, v in tags.items())))
        points[key] = {"time": ev.ts_ns, **tags, **ev.data}  # same key overwrites, as in Influx
    return list(points.values())


def fake_query(rows: list[dict[str, Any]]) -> Any:
    def run(q: str) -> list[dict[str, Any]]:
        # Honour the time range of the query the report sends.
        lo = int(q.split("time >= ")[1].split()[0])
        hi = int(q.split("time < ")[1].split()[0])
        return [r for r in rows if lo <= r["time"] < hi]

    return run


def expected_checkpoint_stats(sim: SimNight) -> dict[str, tuple[int, float | None, float | None]]:
    """(taps, shortest gap, longest gap) per checkpoint, from the taps that were SENT."""
    start, end = local(22), local(6, day=2)
    out: dict[str, tuple[int, float | None, float | None]] = {}
    for cp in ROUTE:
        times: list[int] = []
        for ts, reader, card in sim.taps:
            if reader != cp or card == STRANGER or not start <= ts < end:
                continue
            if times and ts - times[-1] < 60 * NS and card == WANG and ts == local(22, 10, 30):
                continue  # the double tap
            times.append(ts)
        gaps = [(b - a) / NS for a, b in itertools.pairwise(times)]
        out[cp] = (len(times), min(gaps) if gaps else None, max(gaps) if gaps else None)
    return out


def check_report_matches_taps(rep: Any, sim: SimNight) -> None:
    """Shared by the unit and the influxd test: the report tells the story of the taps sent."""
    rounds = {r.round_id: r for r in rep.rounds}
    assert sorted(rounds) == [
        "20260101-221000-keeper-wang",
        "20260101-235500-keeper-wang",
        "20260102-003000-keeper-li",
        "20260102-023000-keeper-wang",
        "20260102-033000-keeper-wang",
    ]
    honest = rounds["20260101-221000-keeper-wang"]
    assert (honest.start_ns, honest.end_ns) == (local(22, 10), local(22, 26))
    assert honest.status == "complete"
    assert honest.missed == [] and honest.findings == []
    midnight = rounds["20260101-235500-keeper-wang"]
    assert (midnight.start_ns, midnight.end_ns) == (local(23, 55), local(0, 11, day=2))
    assert midnight.duration_s == 16 * 60 and midnight.status == "complete"
    li = rounds["20260102-003000-keeper-li"]
    assert li.guard == "keeper-li" and li.duration_s == 20 * 60
    faked = rounds["20260102-023000-keeper-wang"]
    assert faked.duration_s == 40 and faked.status == "complete"
    assert faked.findings.count("too_fast") == 4 and "faked_round" in faked.findings
    skipped = rounds["20260102-033000-keeper-wang"]
    assert skipped.status == "abandoned" and skipped.missed == ["playground"]
    assert skipped.findings.count("out_of_order") == 1  # boiler-house where playground was due
    assert "checkpoint_missed" in skipped.findings

    s = rep.summary
    assert (s["complete"], s["abandoned"], s["open"]) == (4, 1, 0)
    assert (s["overdue"], s["suspect"], s["unknown_cards"], s["duplicates"]) == (1, 1, 1, 1)
    assert s["missed_checkpoints"] == 1 and s["reader_offline"] == 1
    (od,) = [f for f in rep.findings if f.type == "overdue"]
    assert od.ts_ns == local(3, 50, day=2) and od.alarm
    (uc,) = [f for f in rep.findings if f.type == "unknown_card"]
    assert uc.checkpoint == "lakeside" and uc.alarm and STRANGER in uc.message
    # The unknown reader is an exception, not a checkpoint.
    assert s["unknown_readers"] == 1
    (ur,) = [f for f in rep.findings if f.type == "unknown_reader"]
    assert ur.ts_ns == local(1, 30, day=2) and "R09" in ur.message

    want = expected_checkpoint_stats(sim)
    got = {c.checkpoint: c for c in rep.checkpoints}
    assert list(got) == ROUTE
    for cp, (n, shortest, longest) in want.items():
        assert (got[cp].taps, got[cp].min_gap_s, got[cp].max_gap_s) == (n, shortest, longest), cp
    assert got["gate-north"].duplicates == 1
    assert got["gate-north"].taps == 5  # 22:10, 23:55, 00:30 (li), 02:30, 03:30


@pytest.fixture(scope="module")
def night() -> SimNight:
    return simulate_night()


def test_report_matches_the_taps_sent(night: SimNight) -> None:
    rep = collect_night(fake_query(as_influx_rows(night.events, SITE)), NIGHT,
                        config=load_patrol(REPO / "rules" / "patrol.yaml"), site=SITE)
    assert rep.start_ns == local(22) and rep.end_ns == local(6, day=2)
    check_report_matches_taps(rep, night)


def test_round_without_a_round_record_is_shown_open(night: SimNight) -> None:
    rows = as_influx_rows(night.events, SITE)
    li_id = "20260102-003000-keeper-li"
    rows = [r for r in rows if not (r["record"] == "round" and r["round"] == li_id)]
    rep = collect_night(fake_query(rows), NIGHT, config=load_patrol(REPO / "rules" / "patrol.yaml"))
    (li,) = [r for r in rep.rounds if r.guard == "keeper-li"]
    assert li.status == "open" and li.visited == ROUTE and li.missed == []


def test_formats(night: SimNight) -> None:
    q = fake_query(as_influx_rows(night.events, SITE))
    cfg = load_patrol(REPO / "rules" / "patrol.yaml")
    text = build_patrol_report(q, NIGHT, fmt="text", config=cfg, site=SITE)
    assert "night of 2026-01-01 (2026-01-01 22:00 to 2026-01-02 06:00 Asia/Shanghai)" in text
    assert "4 complete round(s), 1 abandoned" in text
    assert "20260102-023000-keeper-wang" in text and "too_fast x4, faked_round" in text
    assert "1 tap(s) from unknown reader(s)" in text
    (cp_table,) = [part for part in text.split("\n\n") if part.startswith("CHECKPOINTS")]
    assert "R09" not in cp_table
    (fnd_table,) = [part for part in text.split("\n\n") if part.startswith("FINDINGS")]
    assert "unknown_reader" in fnd_table and "R09" in fnd_table
    rows = list(csv.reader(io.StringIO(build_patrol_report(q, NIGHT, fmt="csv", config=cfg))))
    rounds = [r for r in rows if r and r[0] == "rounds"]
    assert len(rounds) == 5
    assert rounds[0][3] == "2026-01-01T22:10:00+08:00" and rounds[0][5] == "960"
    cps = {r[1]: r for r in rows if r and r[0] == "checkpoints"}
    assert cps["gate-north"][3] == "5"
    assert list(cps) == ROUTE  # no row for R09
    assert [r[2] for r in rows if r and r[0] == "findings" and "R09" in r[-1]] == ["unknown_reader"]
    page = build_patrol_report(q, NIGHT, fmt="html", config=cfg)
    assert page.startswith("<!DOCTYPE html>") and page.count('<tr class="bad">') == 2
    assert '<table id="checkpoints">' in page


def test_unknown_reader_is_no_checkpoint_without_a_config_either(night: SimNight) -> None:
    rep = collect_night(fake_query(as_influx_rows(night.events, SITE)), NIGHT, tz="Asia/Shanghai")
    assert sorted(c.checkpoint for c in rep.checkpoints) == sorted(ROUTE)
    assert rep.summary["unknown_readers"] == 1
    text = build_patrol_report(fake_query(as_influx_rows(night.events, SITE)), NIGHT,
                               tz="Asia/Shanghai", fmt="csv")
    assert not [r for r in csv.reader(io.StringIO(text)) if r and r[0] == "checkpoints"
                and r[1] == "R09"]


def test_report_without_config_uses_the_default_window_and_tz() -> None:
    rep = collect_night(lambda q: [], NIGHT, tz="UTC")
    assert rep.rounds == [] and rep.checkpoints == []
    assert rep.start_ns == int(datetime(2026, 1, 1, 22, tzinfo=ZoneInfo("UTC")).timestamp()) * NS
    with pytest.raises(ReportError, match="time zone"):
        collect_night(lambda q: [], NIGHT, tz="Nowhere/Else")


def test_influx_errors_become_report_errors() -> None:
    with pytest.raises(ReportError, match="database not found"):
        parse_influx_response({"results": [{"statement_id": 0, "error": "database not found: x"}]})
    rows = parse_influx_response({"results": [{"series": [
        {"name": "patrol", "tags": {"checkpoint": "a"}, "columns": ["time", "n"],
         "values": [[1, 2]]}]}]})
    assert rows == [{"time": 1, "n": 2, "checkpoint": "a"}]
    with pytest.raises(ReportError, match="unreachable"):
        build_patrol_report("http://127.0.0.1:9", NIGHT, database="fsg")


def test_cli_registers_report_patrol() -> None:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="command", required=True)
    register_cli(sub)
    args = ap.parse_args(["report", "patrol", "--date", "2026-01-01", "--format", "csv",
                          "--influx-url", "http://x:8086", "--database", "fsg"])
    assert args.date == NIGHT and args.format == "csv" and callable(args.func)
    with pytest.raises(SystemExit):
        ap.parse_args(["report", "patrol", "--date", "01/01/2026"])
