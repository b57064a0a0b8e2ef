"""Alarm episodes, late acknowledgement, burner hours and the local day, as tables."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from gateway.alerting.config import AlertingConfig
from gateway.patrol.influxql import ReportError
from gateway.reports.alarms import episodes, late_after_s
from gateway.reports.heating import burner
from gateway.reports.queries import day_bounds

S = 1_000_000_000
DAY = 86_400 * S


def row(t_s: int, action: str, state: str, actor: str = "system",
        aid: str = "a1") -> dict[str, Any]:
    return {"time": t_s * S, "alarm_id": aid, "action": action, "state": state, "actor": actor,
            "device": "d", "rule": "r", "severity": "high", "area": "x", "message": "m"}


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        # raised, acked 10 min later by li, cleared
        ([row(100, "activate", "unacknowledged"), row(700, "ack", "acknowledged", "li"),
          row(900, "clear", "normal")], [(100, 700, "li", 900, False)]),
        # acked after the 900 s escalation: late
        ([row(100, "activate", "unacknowledged"), row(1100, "ack", "acknowledged", "wu")],
         [(100, 1100, "wu", None, True)]),
        # never acked
        ([row(100, "activate", "unacknowledged")], [(100, None, "", None, False)]),
        # two episodes of one alarm
        ([row(100, "activate", "unacknowledged"), row(200, "clear", "rtn_unacknowledged"),
          row(300, "ack", "normal", "li"), row(400, "activate", "unacknowledged")],
         [(100, 300, "li", 300, False), (400, None, "", None, False)]),
        # raised before the rows read: still shown, raised time unknown
        ([row(100, "ack", "acknowledged", "li")], [(None, 100, "li", None, False)]),
    ],
)
def test_episodes(rows: list[dict[str, Any]], expected: list[tuple[Any, ...]]) -> None:
    eps = episodes(rows, 0, DAY, ack_late_s=900)
    got = [(None if e.raised_ns is None else e.raised_ns // S,
            None if e.acked_ns is None else e.acked_ns // S, e.acked_by,
            None if e.cleared_ns is None else e.cleared_ns // S, e.late) for e in eps]
    assert got == expected


def test_episodes_outside_the_day_are_left_out() -> None:
    rows = [row(-500, "activate", "unacknowledged"), row(-400, "clear", "normal"),
            row(-300, "activate", "unacknowledged", aid="open")]
    assert [e.alarm_id for e in episodes(rows, 0, DAY)] == ["open"]


def test_late_means_past_the_first_escalation_of_the_matching_route() -> None:
    cfg = AlertingConfig.model_validate({
        "channels": [{"name": "c", "type": "webhook", "url": "http://127.0.0.1:9/"}],
        "routes": [
            {"name": "crit", "match": {"min_severity": "critical"}, "channels": ["c"],
             "escalation": [{"after_s": 0}, {"after_s": 300}, {"after_s": 900}]},
            {"name": "rest", "channels": ["c"], "escalation": [{"after_s": 0}]},
        ],
    })
    assert late_after_s(cfg, "critical", "x", "r", None) == 300
    assert late_after_s(cfg, "high", "x", "r", None) is None  # no escalation: not judged
    assert late_after_s(cfg, "high", "x", "r", 600) == 600  # the reports' fallback
    assert late_after_s(None, "high", "x", "r", None) is None


@pytest.mark.parametrize(
    ("states", "firing_s", "starts", "unknown_s"),
    [
        ([0, 3, 3, 3, 0], 180, 1, 0),
        ([3, 3, 0, 3, 0], 180, 1, 0),  # firing at the day's start is no start
        ([0, 1, 2, 3, 4, 0, 3], 60, 2, 0),  # purge and ignition are not firing
    ],
)
def test_burner(states: list[int], firing_s: int, starts: int, unknown_s: int) -> None:
    pts = [(i * 60 * S, float(s)) for i, s in enumerate(states)]
    assert burner(pts, 180 * S) == (firing_s, starts, unknown_s)


def test_burner_time_across_a_gap_is_not_counted() -> None:
    pts = [(0, 3.0), (60 * S, 3.0), (3660 * S, 3.0), (3720 * S, 0.0)]
    assert burner(pts, 180 * S) == (120, 0, 3600)


@pytest.mark.parametrize(
    ("day", "tz", "hours"),
    [
        (date(2026, 1, 1), "Asia/Shanghai", 24),
        (date(2026, 3, 29), "Europe/Berlin", 23),  # spring forward
        (date(2026, 10, 25), "Europe/Berlin", 25),  # fall back
    ],
)
def test_local_day(day: date, tz: str, hours: int) -> None:
    start, end = day_bounds(day, tz)
    assert (end - start) // (3600 * S) == hours


def test_unknown_zone_is_a_clear_error() -> None:
    with pytest.raises(ReportError, match="unknown time zone 'Mars/Base'"):
        day_bounds(date(2026, 1, 1), "Mars/Base")
