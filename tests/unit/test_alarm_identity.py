"""An alarm keeps its rule and severity for its whole life, whatever source raised it.

Every source of alarms (rule kinds, no-data of a device and of a whole line,
gateway health, alarm flood, the patrol check through the real ``Gateway``
wiring) is driven through a raise and a clear with an injected clock; every
event of one alarm id must carry the same rule and severity, or InfluxDB
(rule and severity are tags) splits it into series that never clear.
"""

from __future__ import annotations

import io
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from gateway.alerting.engine import AlertEngine
from gateway.app import Gateway
from gateway.loader import load_site
from gateway.model import AlarmEvent, FakeClock, Quality, Sample
from tests.unit.test_patrol_engine import NS, ROUTE, WANG, at
from tests.unit.test_rules import make_engine, sample


def assert_same_identity(events: list[AlarmEvent], min_alarms: int = 1) -> None:
    """Every alarm id raised and cleared; one (rule, severity) across all its events."""
    by_id: dict[str, list[AlarmEvent]] = defaultdict(list)
    for e in events:
        by_id[e.alarm_id].append(e)
    lifecycles = {
        i: evs
        for i, evs in by_id.items()
        if {"activate"} <= {e.action for e in evs}
        and {e.action for e in evs} & {"clear", "condition_clear"}
    }
    assert len(lifecycles) >= min_alarms, sorted(by_id)
    for alarm_id, evs in by_id.items():
        identities = {(e.rule, e.severity) for e in evs}
        assert len(identities) == 1, (alarm_id, [(e.action, e.rule, e.severity) for e in evs])


# --------------------------------------------------------------------------- rule engine


def _limit(eng: AlertEngine, clock: FakeClock) -> list[AlarmEvent]:
    out = eng.on_sample(sample(clock, "lk-1", {"leak_ch1": 350}))
    clock.advance(1)
    out += eng.on_sample(sample(clock, "lk-1", {"leak_ch1": 100}))
    out += eng.command({"cmd": "reset", "alarm_id": "r:lk-1:leak_ch1:hihi"}, "op")[0]
    return out


def _rate(eng: AlertEngine, clock: FakeClock) -> list[AlarmEvent]:
    out: list[AlarmEvent] = []
    for v in (1.0, 1.0, 30.0, 30.0, 30.0, 30.0):
        out += eng.on_sample(sample(clock, "blr-1", {"supply_pressure": v}))
        clock.advance(10)
    return out


def _status(eng: AlertEngine, clock: FakeClock) -> list[AlarmEvent]:
    out = eng.on_sample(sample(clock, "blr-1", {"flame": False}))
    clock.advance(1)
    return out + eng.on_sample(sample(clock, "blr-1", {"flame": True}))


def _quality(eng: AlertEngine, clock: FakeClock) -> list[AlarmEvent]:
    out = eng.on_sample(sample(clock, "lk-1", {}, {"leak_ch1": Quality.FAULT}))
    clock.advance(1)
    return out + eng.on_sample(sample(clock, "lk-1", {"leak_ch1": 10}))


def _deviation(eng: AlertEngine, clock: FakeClock) -> list[AlarmEvent]:
    out = eng.on_sample(sample(clock, "pipe-1", {"supply_flow": 100.0, "return_flow": 80.0}))
    clock.advance(1)
    return out + eng.on_sample(sample(clock, "pipe-1", {"supply_flow": 100.0, "return_flow": 99.0}))


def _no_data(eng: AlertEngine, clock: FakeClock) -> list[AlarmEvent]:
    clock.advance(1)
    for dev in ("lk-1", "lk-2", "pipe-1"):
        eng.on_sample(sample(clock, dev, {"x": 1}))
    clock.advance(25)
    eng.on_sample(sample(clock, "lk-1", {"x": 1}))
    eng.on_sample(sample(clock, "pipe-1", {"x": 1}))
    clock.advance(10)
    out = eng.tick()  # lk-2 silent
    clock.advance(31)
    out += eng.tick()  # the whole line silent: the source alarm
    clock.advance(5)
    for dev in ("lk-1", "lk-2", "pipe-1"):
        out += eng.on_sample(sample(clock, dev, {"x": 1}))
    return out + eng.tick()


def _health(eng: AlertEngine, clock: FakeClock) -> list[AlarmEvent]:
    out = eng.health("sink:mqtt", False, "refused")
    clock.advance(1)
    out += eng.health("sink:mqtt", True, "connected")
    out += eng.health("outbox:backlog", False, "behind")  # no rule: default health severity
    clock.advance(1)
    return out + eng.health("outbox:backlog", True, "caught up")


def _flood(eng: AlertEngine, clock: FakeClock) -> list[AlarmEvent]:
    out: list[AlarmEvent] = []
    for i in range(12):
        out += eng.health(f"source:s{i}", False, "down")
        clock.advance(1)
    for i in range(12):
        out += eng.health(f"source:s{i}", True, "up")
    clock.advance(700)
    return out + eng.tick()


RULES = """
    rules:
      - id: r
        kind: limit
        select: {kinds: [leakage]}
        points: [leak_ch1]
        limits:
          hi: {value: 200, severity: medium}
          hihi: {value: 300, severity: critical, latch: true}
      - id: rate
        kind: rate
        select: {kinds: [boiler]}
        points: [supply_pressure]
        window_s: 20
        limits:
          hi: {value: 1.0, severity: high}
      - id: flame
        kind: status
        select: {kinds: [boiler]}
        points: [flame]
        active_value: false
        severity: critical
      - id: loop
        kind: quality
        select: {kinds: [leakage]}
        points: [leak_ch1]
        severity: low
      - id: leak
        kind: deviation
        select: {kinds: [pipe_network]}
        a: {point: supply_flow}
        b: {point: return_flow}
        op: percent_difference
        limits:
          hi: {value: 5, severity: high}
      - id: sinks
        kind: health
        signals: ["sink:*"]
        severity: critical
"""

NODATA = """
    rules:
      - id: silent
        kind: no_data
        select: {kinds: [leakage, pipe_network]}
        severity: high
        timeout_s: 30
"""


@pytest.mark.parametrize(
    ("rules", "drive"),
    [
        (RULES, _limit),
        (RULES, _rate),
        (RULES, _status),
        (RULES, _quality),
        (RULES, _deviation),
        (NODATA, _no_data),
        (RULES, _health),
        (RULES, _flood),
    ],
    ids=["limit", "rate", "status", "quality", "deviation", "no_data", "health", "flood"],
)
def test_rule_engine_alarms_keep_rule_and_severity(
    tmp_path: Path, rules: str, drive: Callable[[AlertEngine, FakeClock], list[AlarmEvent]]
) -> None:
    clock = FakeClock()
    eng = make_engine(tmp_path, rules, clock)
    assert_same_identity(drive(eng, clock))


def test_external_clear_keeps_the_raise_rule_and_severity(tmp_path: Path) -> None:
    """A caller that clears under another rule or severity cannot rename the alarm."""
    clock = FakeClock()
    eng = make_engine(tmp_path, RULES, clock)
    common = {"device": "patrol", "message": "m", "kind": "patrol"}
    out = eng.external("x", True, severity="high", rule="patrol_overdue", **common)
    out += eng.external("x", False, severity="info", rule="patrol_overdue_cleared", **common)
    assert [(e.action, e.rule, e.severity) for e in out] == [
        ("activate", "patrol_overdue", "high"),
        ("clear", "patrol_overdue", "high"),
    ]
    assert eng.describe(eng.book.get("x"))["severity"] == "high"


# --------------------------------------------------------------------------- patrol, wired


class AlarmCollector(Gateway):
    """The real gateway wiring (patrol findings -> alarm book), alarm events captured."""

    def __init__(self, *a: object, **kw: object) -> None:
        super().__init__(*a, **kw)  # type: ignore[arg-type]
        self.alarm_events: list[AlarmEvent] = []

    def _append_alarms(self, events: list[AlarmEvent]) -> None:
        self.alarm_events.extend(events)
        super()._append_alarms(events)


def patrol_gateway(tmp_path: Path, clock: FakeClock) -> AlarmCollector:
    site = {
        "site": "identity",
        "sources": [{"id": "rfid-gate", "type": "serial_line", "port": str(tmp_path / "pty")}],
        "devices": [
            {"id": "rfid-gate", "profile": "rfid-checkpoint-reader", "source": "rfid-gate"}
        ],
        "outbox": {"path": str(tmp_path / "outbox.sqlite")},
        "alerting": {"state_db": str(tmp_path / "alarms.sqlite")},
        "patrol": {
            "timezone": "UTC",
            "night": {"start": "22:00", "end": "06:00"},
            "max_gap_s": 3 * 3600,
            "checkpoints": [{"id": c, "device": "rfid-gate"} for c in ROUTE],
            "guards": [{"id": "wang", "card": WANG}],
            "routes": [{"id": "night", "checkpoints": ROUTE, "default_min_walk_s": 60}],
        },
    }
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(site), encoding="utf-8")
    gw = AlarmCollector(load_site(path), clock, out=io.StringIO())
    assert gw.alerts is not None
    gw.alerts.open()
    return gw


def test_patrol_overdue_alarm_keeps_rule_and_severity_when_it_clears(tmp_path: Path) -> None:
    clock = FakeClock(at(21))
    gw = patrol_gateway(tmp_path, clock)
    ts = at(21)
    # No round from 22:00: overdue at 01:00 and 04:00, cleared at the 06:00 window end.
    while ts <= at(7, day=2):
        clock.advance((ts - clock.now_ns()) / NS)
        gw.tick()
        ts += 60 * NS
    overdue = [e for e in gw.alarm_events if e.alarm_id.startswith("patrol/overdue/")]
    assert [e.action for e in overdue] == ["activate", "activate", "clear", "clear"]
    assert {(e.rule, e.severity) for e in overdue} == {("patrol_overdue", "high")}
    assert_same_identity(gw.alarm_events, min_alarms=2)
    assert gw.alerts is not None
    for e in overdue:
        assert gw.alerts.describe(gw.alerts.book.get(e.alarm_id))["severity"] == "high"


def test_patrol_overdue_cleared_by_a_round_keeps_rule_and_severity(tmp_path: Path) -> None:
    clock = FakeClock(at(21))
    gw = patrol_gateway(tmp_path, clock)
    clock.advance((at(1, day=2) - clock.now_ns()) / NS)
    gw.tick()
    for i, cp in enumerate(ROUTE):
        clock.advance(0 if i == 0 else 300)
        gw._process(Sample("rfid-gate", "patrol_tap", clock.now_ns(), {"reader": cp, "card": WANG}))
    actions = [(e.action, e.rule, e.severity) for e in gw.alarm_events]
    assert actions == [
        ("activate", "patrol_overdue", "high"),
        ("clear", "patrol_overdue", "high"),
    ]
