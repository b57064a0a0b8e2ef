"""Line protocol encoders, as tables: item in, line out (escaping, types, quality)."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.lineprotocol import (
    alarm_line,
    encode_line,
    escape_key,
    escape_measurement,
    event_line,
    format_field,
    sample_line,
)
from gateway.model import AlarmEvent, AlarmState, Quality, Sample
from gateway.outbox import Event

TS = 1_767_225_600_123_456_789


@pytest.mark.parametrize(
    ("raw", "measurement", "key"),
    [
        ("plain", "plain", "plain"),
        ("with space", r"with\ space", r"with\ space"),
        ("a,b", r"a\,b", r"a\,b"),
        ("a=b", "a=b", r"a\=b"),
        ('quo"te', 'quo"te', 'quo"te'),
        ("new\nline", "newline", "newline"),
        ("锅炉房 1", r"锅炉房\ 1", r"锅炉房\ 1"),
    ],
)
def test_escape_names(raw: str, measurement: str, key: str) -> None:
    assert escape_measurement(raw) == measurement
    assert escape_key(raw) == key


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        (True, "true"),
        (False, "false"),
        (0, "0i"),
        (-42, "-42i"),
        (2**63 - 1, "9223372036854775807i"),
        (2**64, "1.8446744073709552e+19"),
        (1.5, "1.5"),
        (3.0, "3.0"),
        (-0.001, "-0.001"),
        (float("nan"), None),
        (float("inf"), None),
        ("ok", '"ok"'),
        ('say "hi"', r'"say \"hi\""'),
        ("back\\slash", r'"back\\slash"'),
        ("two\nlines", r'"two\nlines"'),
        (None, None),
    ],
)
def test_format_field(value: Any, encoded: str | None) -> None:
    assert format_field(value) == encoded


@pytest.mark.parametrize(
    ("measurement", "tags", "fields", "line"),
    [
        ("m", {"b": "2", "a": "1"}, {"v": 1.0}, f"m,a=1,b=2 v=1.0 {TS}"),
        ("m", {"empty": "", "x": "y z"}, {"v": 1}, rf"m,x=y\ z v=1i {TS}"),
        ("m", {}, {"v": float("nan")}, None),
        ("m", {}, {"nan": float("nan"), "ok": "s"}, f'm ok="s" {TS}'),
        ("my m", {"t,1": "a=b"}, {"f x": True}, rf"my\ m,t\,1=a\=b f\ x=true {TS}"),
    ],
)
def test_encode_line(
    measurement: str, tags: dict[str, str], fields: dict[str, Any], line: str | None
) -> None:
    assert encode_line(measurement, tags, fields, TS) == line


@pytest.mark.parametrize(
    ("sample", "line"),
    [
        (
            Sample(
                "boiler-1",
                "boiler",
                TS,
                {"supply_c": 71.5, "flame": True, "starts": 12},
                tags={"area": "boiler room"},
            ),
            rf"boiler,area=boiler\ room,device=boiler-1,site=park"
            rf" supply_c=71.5,flame=true,starts=12i {TS}",
        ),
        (
            # A fault point is never written as a value (not even as 0); it is counted.
            Sample(
                "rcm-1",
                "rcm",
                TS,
                {"leak_ma": 120.0},
                quality={"leak_ma2": Quality.FAULT, "alarm": Quality.BAD},
            ),
            f"rcm,device=rcm-1,site=park leak_ma=120.0,_bad_points=2i {TS}",
        ),
        (
            # Uncertain values are written (they have a value).
            Sample("m", "meter", TS, {"flow": 1.25}, quality={"flow": Quality.UNCERTAIN}),
            f"meter,device=m,site=park flow=1.25 {TS}",
        ),
        (
            Sample("m", "meter", TS, {}, quality={"flow": Quality.BAD}, error="timeout"),
            f'meter,device=m,site=park _bad_points=1i,_error="timeout" {TS}',
        ),
        (
            Sample("m", "meter", TS, {"x": float("nan"), "s": "on"}),
            f'meter,device=m,site=park s="on",_bad_points=1i {TS}',
        ),
        (Sample("m", "meter", TS, {}), None),
    ],
)
def test_sample_line(sample: Sample, line: str | None) -> None:
    assert sample_line(sample, "park") == line


def _alarm(value: Any) -> AlarmEvent:
    return AlarmEvent(
        alarm_id="boiler-1.supply.hihi",
        ts_ns=TS,
        state=AlarmState.UNACKED,
        previous=AlarmState.NORMAL,
        action="raise",
        severity="critical",
        device="boiler-1",
        point="supply_c",
        rule="supply hihi",
        message='Supply 98 °C > 95 "hihi"',
        value=value,
        active=True,
        area="boiler-room",
    )


@pytest.mark.parametrize(
    ("value", "value_field"),
    [
        (98, "value=98.0"),
        (97.5, "value=97.5"),
        (True, "value_bool=true"),
        ("open", 'value_str="open"'),
        (None, None),
    ],
)
def test_alarm_line(value: Any, value_field: str | None) -> None:
    line = alarm_line(_alarm(value), "park")
    assert line is not None
    head = (
        r"alarm,alarm_id=boiler-1.supply.hihi,area=boiler-room,device=boiler-1,point=supply_c,"
        r"rule=supply\ hihi,severity=critical,site=park,state=unacknowledged "
    )
    assert line.startswith(head)
    assert line.endswith(f" {TS}")
    joined = line.removeprefix(head).removesuffix(f" {TS}")
    assert r'message="Supply 98 °C > 95 \"hihi\""' in joined
    assert "active=true" in joined and 'actor="system"' in joined
    if value_field:
        assert value_field in joined
    else:
        assert "value" not in joined


@pytest.mark.parametrize(
    ("event", "line"),
    [
        (
            Event(
                "patrol.round_late",
                TS,
                {"route": "north", "late_s": 600, "ok": False},
                measurement="patrol",
            ),
            f'patrol,kind=patrol.round_late,site=park route="north",late_s=600i,ok=false {TS}',
        ),
        (
            Event("gateway.started", TS, {}, device="gw"),
            f'events,device=gw,kind=gateway.started,site=park event="gateway.started" {TS}',
        ),
        (
            Event("x", TS, {"cps": ["c1", "c2"]}, tags={"route": "r 1"}),
            rf'events,kind=x,route=r\ 1,site=park cps="[\"c1\",\"c2\"]" {TS}',
        ),
    ],
)
def test_event_line(event: Event, line: str) -> None:
    assert event_line(event, "park") == line
