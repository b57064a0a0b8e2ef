"""Rule kinds as table tests with a fake clock: samples in, alarm transitions out, no sleeps.

Also the shared helpers (``make_engine``, ``sample``) other alerting tests import.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from gateway.alerting.engine import AlertEngine
from gateway.alerting.rules import RuleSet, load_rules
from gateway.config import SiteConfig
from gateway.model import AlarmEvent, AlarmState, FakeClock, Quality, Sample

KIND_OF = {"lk-": "leakage", "blr-": "boiler", "pipe-": "pipe_network", "cold-": "cold_room"}


def site_config(devices: list[dict[str, Any]] | None = None, **alerting: Any) -> SiteConfig:
    devs = devices or [
        {"id": "lk-1", "profile": "leakage-monitor", "source": "rtu-1", "unit": 1},
        {"id": "lk-2", "profile": "leakage-monitor", "source": "rtu-1", "unit": 2,
         "tags": {"protection": "personal"}},
        {"id": "blr-1", "profile": "boiler-controller", "source": "tcp-1"},
        {"id": "pipe-1", "profile": "pipe-heat-meter", "source": "rtu-1", "unit": 3},
    ]  # fmt: skip
    return SiteConfig.model_validate(
        {
            "site": "test-park",
            "sources": [
                {"id": "rtu-1", "type": "modbus_rtu", "port": "/dev/null"},
                {"id": "tcp-1", "type": "modbus_tcp", "host": "127.0.0.1"},
            ],
            "devices": devs,
            "alerting": alerting or None,
        }
    )


def rules_from(tmp_path: Path, text: str, name: str = "rules.yaml") -> RuleSet:
    p = tmp_path / name
    p.write_text(textwrap.dedent(text), encoding="utf-8")
    return load_rules([p])


def make_engine(
    tmp_path: Path,
    rules: str | RuleSet,
    clock: FakeClock | None = None,
    state: str | None = ":memory:",
    devices: list[dict[str, Any]] | None = None,
    **alerting: Any,
) -> AlertEngine:
    rs = rules_from(tmp_path, rules) if isinstance(rules, str) else rules
    eng = AlertEngine(
        site_config(devices, **alerting),
        clock or FakeClock(),
        rules=rs,
        base_dir=tmp_path,
        state_path=state if state is not None else tmp_path / "alarms.sqlite",
    )
    eng.open()
    return eng


def sample(
    clock: FakeClock,
    device: str,
    values: dict[str, Any],
    quality: dict[str, Quality] | None = None,
    tags: dict[str, str] | None = None,
) -> Sample:
    kind = next(k for prefix, k in KIND_OF.items() if device.startswith(prefix))
    return Sample(device, kind, clock.now_ns(), values, quality or {}, tags or {})


def transitions(events: list[AlarmEvent]) -> list[tuple[str, str, str]]:
    return [(e.alarm_id, e.action, str(e.state)) for e in events]


# --------------------------------------------------------------------------- limit

LIMIT = """
    rules:
      - id: leak
        kind: limit
        select: {kinds: [leakage]}
        exclude: {tags: {protection: personal}}
        points: ["leak_ch*"]
        on_delay_s: 5
        deadband: 10
        limits:
          hi: {value: 200, severity: medium}
          hihi: {value: 300, severity: high, latch: true}
"""


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        # (seconds to advance before the sample, value) ... -> transitions of leak:lk-1:leak_ch1:hi
        ([(0, 150), (1, 199)], []),
        # on-delay: 5 s above the limit before it counts
        ([(0, 210), (4, 210)], []),
        ([(0, 210), (5, 210)], [("activate", "unacknowledged")]),
        # a dip below the limit restarts the on-delay
        ([(0, 210), (3, 190), (3, 210), (3, 210)], []),
        # deadband: back below 200 is not enough; below 190 clears
        ([(0, 210), (5, 210), (1, 195), (1, 191)], [("activate", "unacknowledged")]),
        (
            [(0, 210), (5, 210), (1, 195), (1, 189)],
            [("activate", "unacknowledged"), ("clear", "rtn_unacknowledged")],
        ),
    ],
)
def test_limit_hi_on_delay_and_deadband(
    tmp_path: Path, steps: list[tuple[float, float]], expected: list[tuple[str, str]]
) -> None:
    clock = FakeClock()
    eng = make_engine(tmp_path, LIMIT, clock)
    got: list[tuple[str, str]] = []
    for dt, v in steps:
        clock.advance(dt)
        for e in eng.on_sample(sample(clock, "lk-1", {"leak_ch1": v})):
            if e.alarm_id == "leak:lk-1:leak_ch1:hi":
                got.append((e.action, str(e.state)))
    assert got == expected


def test_limit_hihi_latches_and_lo_limits(tmp_path: Path) -> None:
    clock = FakeClock()
    eng = make_engine(tmp_path, LIMIT, clock)
    eng.on_sample(sample(clock, "lk-1", {"leak_ch2": 412}))
    clock.advance(5)
    ev = eng.on_sample(sample(clock, "lk-1", {"leak_ch2": 412}))
    assert {e.alarm_id for e in ev} == {"leak:lk-1:leak_ch2:hi", "leak:lk-1:leak_ch2:hihi"}
    hihi = next(e for e in ev if e.alarm_id.endswith("hihi"))
    assert hihi.latched and hihi.severity == "high" and hihi.value == 412
    assert "412" in hihi.message and "300" in hihi.message
    clock.advance(1)
    ev = eng.on_sample(sample(clock, "lk-1", {"leak_ch2": 100}))
    # The pre-alarm clears; the latched alarm stays unacknowledged (condition gone)
    assert transitions(ev) == [
        ("leak:lk-1:leak_ch2:hi", "clear", "rtn_unacknowledged"),
        ("leak:lk-1:leak_ch2:hihi", "condition_clear", "unacknowledged"),
    ]
    # personal-protection device is excluded from this rule
    assert eng.on_sample(sample(clock, "lk-2", {"leak_ch1": 999})) == []
    clock.advance(10)
    assert eng.on_sample(sample(clock, "lk-2", {"leak_ch1": 999})) == []


def test_lo_lolo_limits_with_off_delay(tmp_path: Path) -> None:
    rules = """
        rules:
          - id: press
            kind: limit
            select: {kinds: [boiler]}
            points: [pressure]
            off_delay_s: 3
            deadband: 0.02
            limits:
              lo: {value: 0.15}
              lolo: {value: 0.10, severity: critical}
    """
    clock = FakeClock()
    eng = make_engine(tmp_path, rules, clock)
    ev = eng.on_sample(sample(clock, "blr-1", {"pressure": 0.09}))
    assert {(e.alarm_id, e.severity) for e in ev} == {
        ("press:blr-1:pressure:lo", "medium"),
        ("press:blr-1:pressure:lolo", "critical"),
    }
    clock.advance(1)
    # 0.11 is above lolo but inside its deadband (0.12): nothing clears
    assert eng.on_sample(sample(clock, "blr-1", {"pressure": 0.11})) == []
    clock.advance(1)
    # 0.20 clears both conditions, but the off-delay holds them 3 s
    assert eng.on_sample(sample(clock, "blr-1", {"pressure": 0.20})) == []
    clock.advance(2)
    assert eng.on_sample(sample(clock, "blr-1", {"pressure": 0.20})) == []
    clock.advance(1)
    ev = eng.on_sample(sample(clock, "blr-1", {"pressure": 0.20}))
    assert sorted(transitions(ev)) == [
        ("press:blr-1:pressure:lo", "clear", "rtn_unacknowledged"),
        ("press:blr-1:pressure:lolo", "clear", "rtn_unacknowledged"),
    ]


def test_on_delay_fires_from_tick_without_new_sample(tmp_path: Path) -> None:
    clock = FakeClock()
    eng = make_engine(tmp_path, LIMIT, clock)
    assert eng.on_sample(sample(clock, "lk-1", {"leak_ch1": 250})) == []
    clock.advance(4.9)
    assert eng.tick() == []
    clock.advance(0.2)
    assert transitions(eng.tick()) == [("leak:lk-1:leak_ch1:hi", "activate", "unacknowledged")]


def test_bad_and_fault_points_are_not_zero(tmp_path: Path) -> None:
    clock = FakeClock()
    eng = make_engine(tmp_path, LIMIT, clock)
    eng.on_sample(sample(clock, "lk-1", {"leak_ch1": 250}))
    clock.advance(5)
    assert eng.on_sample(sample(clock, "lk-1", {"leak_ch1": 250}))
    clock.advance(1)
    # A fault (no value) must not clear the alarm as if it read 0 mA.
    assert eng.on_sample(sample(clock, "lk-1", {}, {"leak_ch1": Quality.FAULT})) == []
    assert eng.book.get("leak:lk-1:leak_ch1:hi").active


# --------------------------------------------------------------------------- rate


def test_rate_of_change(tmp_path: Path) -> None:
    rules = """
        rules:
          - id: rise
            kind: rate
            select: {kinds: [boiler]}
            points: [supply_temp]
            window_s: 60
            per: min
            limits:
              hi: {value: 5}
              lo: {value: -5}
    """
    clock = FakeClock()
    eng = make_engine(tmp_path, rules, clock)
    events: list[AlarmEvent] = []
    # 1 °C per 10 s is 6 °C/min; the first 30 s (half a window) give no verdict.
    temps = [70, 70.5, 71, 72, 73, 74, 75, 76, 76, 76, 76, 76, 76, 76, 76, 60]
    for i, t in enumerate(temps):
        ev = eng.on_sample(sample(clock, "blr-1", {"supply_temp": t}))
        events += ev
        if i < 3:
            assert ev == []
        clock.advance(10)
    got = transitions(events)
    assert got[0] == ("rise:blr-1:supply_temp:hi", "activate", "unacknowledged")
    assert events[0].value is not None and float(events[0].value) >= 5
    assert ("rise:blr-1:supply_temp:hi", "clear", "rtn_unacknowledged") in got
    assert got[-1] == ("rise:blr-1:supply_temp:lo", "activate", "unacknowledged")


# --------------------------------------------------------------------------- deviation

DEVIATION = """
    rules:
      - id: makeup
        kind: deviation
        select: {kinds: [pipe_network]}
        name: makeup_share
        a: {point: makeup_flow}
        b: {point: supply_flow}
        op: percent_of_b
        min_b: 10
        limits:
          hi: {value: 2.0}
      - id: imbalance
        kind: deviation
        select: {kinds: [pipe_network]}
        name: flow_imbalance
        a: {point: supply_flow}
        b: {point: return_flow}
        op: difference
        limits:
          hi: {value: 5}
"""

CROSS = """
    rules:
      - id: cross
        kind: deviation
        a: {device: pipe-1, point: supply_flow}
        b: {device: flow-1, point: flow_rate}
        op: abs_difference
        max_age_s: 30
        limits:
          hi: {value: 20}
"""


@pytest.mark.parametrize(
    ("values", "active"),
    [
        ({"makeup_flow": 1.0, "supply_flow": 200, "return_flow": 199}, set()),
        ({"makeup_flow": 5.0, "supply_flow": 200, "return_flow": 199}, {"makeup"}),  # 2.5 %
        ({"makeup_flow": 4.0, "supply_flow": 200, "return_flow": 199}, {"makeup"}),  # 2.0 % = limit
        ({"makeup_flow": 3.0, "supply_flow": 5, "return_flow": 5}, set()),  # below min_b
        ({"makeup_flow": 1.0, "supply_flow": 200, "return_flow": 190}, {"imbalance"}),
        ({"makeup_flow": 1.0, "supply_flow": 200}, set()),  # return flow unread: no verdict
    ],
)
def test_deviation_same_device(tmp_path: Path, values: dict[str, float], active: set[str]) -> None:
    clock = FakeClock()
    eng = make_engine(tmp_path, DEVIATION, clock)
    ev = eng.on_sample(sample(clock, "pipe-1", values))
    assert {e.rule for e in ev if e.action == "activate"} == active


def test_deviation_between_devices_uses_fresh_values_only(tmp_path: Path) -> None:
    devices = [
        {"id": "pipe-1", "profile": "pipe-heat-meter", "source": "rtu-1", "unit": 3},
        {"id": "flow-1", "profile": "ultrasonic-flow-meter", "source": "rtu-1", "unit": 4},
    ]
    clock = FakeClock()
    eng = make_engine(tmp_path, CROSS, clock, devices=devices)
    flow = Sample("flow-1", "flow", clock.now_ns(), {"flow_rate": 150.0})
    assert eng.on_sample(flow) == []
    ev = eng.on_sample(sample(clock, "pipe-1", {"supply_flow": 200.0}))
    assert transitions(ev) == [("cross:pipe-1:deviation:hi", "activate", "unacknowledged")]
    assert ev[0].value == 50.0
    # A stale operand (older than max_age_s) gives no verdict either way.
    clock.advance(31)
    assert eng.on_sample(sample(clock, "pipe-1", {"supply_flow": 150.0})) == []


# --------------------------------------------------------------------------- status / quality


def test_status_bit_latch(tmp_path: Path) -> None:
    rules = """
        rules:
          - id: flame
            kind: status
            select: {kinds: [boiler]}
            points: [flame_failure, low_water]
            severity: critical
            latch: true
    """
    clock = FakeClock()
    eng = make_engine(tmp_path, rules, clock)
    assert eng.on_sample(sample(clock, "blr-1", {"flame_failure": False, "low_water": False})) == []
    ev = eng.on_sample(sample(clock, "blr-1", {"flame_failure": True, "low_water": False}))
    assert transitions(ev) == [("flame:blr-1:flame_failure", "activate", "unacknowledged")]
    assert ev[0].severity == "critical" and ev[0].latched
    ev = eng.on_sample(sample(clock, "blr-1", {"flame_failure": False, "low_water": False}))
    assert transitions(ev) == [("flame:blr-1:flame_failure", "condition_clear", "unacknowledged")]


def test_quality_fault_is_an_alarm_and_bad_is_not_evidence(tmp_path: Path) -> None:
    rules = """
        rules:
          - id: loop
            kind: quality
            select: {kinds: [leakage]}
            points: ["leak_ch*"]
    """
    clock = FakeClock()
    eng = make_engine(tmp_path, rules, clock)
    ev = eng.on_sample(sample(clock, "lk-1", {"leak_ch2": 10}, {"leak_ch1": Quality.FAULT}))
    assert transitions(ev) == [("loop:lk-1:leak_ch1", "activate", "unacknowledged")]
    assert ev[0].value == "fault"
    # Device offline: every point bad. That says nothing about the loop: stays active.
    assert eng.on_sample(sample(clock, "lk-1", {}, {"leak_ch1": Quality.BAD})) == []
    ev = eng.on_sample(sample(clock, "lk-1", {"leak_ch1": 120}))
    assert transitions(ev) == [("loop:lk-1:leak_ch1", "clear", "rtn_unacknowledged")]


# --------------------------------------------------------------------------- no data

NODATA = """
    rules:
      - id: silent
        kind: no_data
        select: {kinds: [leakage, pipe_network]}
        timeout_s: 30
"""


def test_no_data_device_and_source_suppression(tmp_path: Path) -> None:
    clock = FakeClock()
    eng = make_engine(tmp_path, NODATA, clock)
    clock.advance(1)
    for dev in ("lk-1", "lk-2", "pipe-1"):
        eng.on_sample(sample(clock, dev, {"leak_ch1": 1} if dev.startswith("lk") else {"x": 1}))
    clock.advance(25)
    eng.on_sample(sample(clock, "lk-1", {"leak_ch1": 1}))
    eng.on_sample(sample(clock, "pipe-1", {"x": 1}))
    clock.advance(10)
    # only lk-2 silent for > 30 s
    assert transitions(eng.tick()) == [("silent:lk-2", "activate", "unacknowledged")]
    # the whole RS-485 line goes quiet: one source alarm, the device alarms suppressed,
    # except lk-2's: silent before the line, it is no consequence of it and stays in view
    clock.advance(31)
    ev = eng.tick()
    got = transitions(ev)
    assert ("silent:source:rtu-1", "activate", "unacknowledged") in got
    assert eng.book.get("silent:lk-2").state is AlarmState.UNACKED
    assert ("silent:lk-1", "activate", "suppressed") in got
    assert ("silent:pipe-1", "activate", "suppressed") in got
    assert not [g for g in got if g[0] != "silent:source:rtu-1" and g[2] == "unacknowledged"]
    # the line comes back: the source clears, devices get a fresh timeout, nothing is presented
    clock.advance(5)
    ev = eng.on_sample(sample(clock, "pipe-1", {"x": 1}))
    got = transitions(ev)
    assert ("silent:source:rtu-1", "clear", "rtn_unacknowledged") in got
    assert not [g for g in got if g[2] == "unacknowledged"]
    assert eng.book.get("silent:lk-1").state is AlarmState.NORMAL


def test_gateway_health_alarm_with_on_delay(tmp_path: Path) -> None:
    rules = """
        rules:
          - id: sinks
            kind: health
            signals: ["sink:*"]
            severity: critical
            on_delay_s: 30
    """
    clock = FakeClock()
    eng = make_engine(tmp_path, rules, clock)
    assert eng.health("sink:mqtt", False, "connection refused") == []
    clock.advance(29)
    assert eng.tick() == []
    clock.advance(1)
    ev = eng.tick()
    assert transitions(ev) == [("gateway:sink:mqtt", "activate", "unacknowledged")]
    assert ev[0].severity == "critical" and "connection refused" in ev[0].message
    ev = eng.health("sink:mqtt", True, "connected")
    assert transitions(ev) == [("gateway:sink:mqtt", "clear", "rtn_unacknowledged")]
    # a signal no rule names still alarms, at the site's default health severity
    ev = eng.health("outbox:backlog", False, "backlog 120000 rows")
    assert ev[0].severity == "high"


# --------------------------------------------------------------------------- rule files


def test_shipped_rule_files_load_and_match_builtin_profiles() -> None:
    from gateway.alerting.rules import check_against_devices
    from gateway.profiles.registry import ProfileRegistry
    from gateway.profiles.schema import SerialLineProfile

    root = Path(__file__).resolve().parents[2] / "rules"
    names = ("park_lighting.yaml", "boilers.yaml", "pipe_network.yaml", "cold_storage.yaml")
    files = [root / n for n in names]
    rs = load_rules(files)
    registry, problems = ProfileRegistry.load([])
    assert problems == []
    devices: dict[str, tuple[str | None, str | None, dict[str, str]]] = {}
    points: dict[str, set[str]] = {}
    for name in registry.names():
        prof = registry.get(name)
        devices[f"dev-{name}"] = (name, prof.kind, {})
        devices[f"dev-{name}-p"] = (name, prof.kind, {"protection": "personal"})
        points[name] = (
            {f.name for f in prof.fields}
            if isinstance(prof, SerialLineProfile)
            else {p.name for p in prof.points}
        )
    assert check_against_devices(rs, devices, points) == []
    kinds = {lr.rule.kind for lr in rs.rules}
    assert kinds == {"limit", "rate", "deviation", "status", "no_data", "quality", "health"}
