"""Operator commands: valid ones act, bad payloads get a clear message and change nothing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gateway.alerting.commands import (
    AckCmd,
    ShelveCmd,
    build_command,
    error_reply,
    parse_command,
    parse_duration,
)
from gateway.errors import AlarmError, CommandError
from gateway.model import FakeClock
from tests.unit.test_rules import make_engine, sample

RULES = """
    rules:
      - id: trip
        kind: status
        select: {kinds: [leakage]}
        points: ["alarm_ch*"]
        latch: true
"""
ALARM = "trip:lk-1:alarm_ch1"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [(90, 90.0), ("90", 90.0), ("90s", 90.0), ("30m", 1800.0), ("2h", 7200.0),
     ("1h30m", 5400.0), ("1d", 86400.0), ("1.5h", 5400.0)],
)  # fmt: skip
def test_durations(text: str | int, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"\xff\xfe", "not UTF-8"),
        ("{not json", "not JSON"),
        ("[1, 2]", "must be a JSON object"),
        ('"ack"', "must be a JSON object"),
        ({}, "cmd: missing"),
        ({"cmd": "delete", "alarm_id": ALARM}, "unknown command 'delete'"),
        ({"cmd": "ack"}, "alarm_id: Field required"),
        ({"cmd": "ack", "alarm_id": ""}, "alarm_id: String should have at least 1 character"),
        ({"cmd": "ack", "alarm_id": ALARM, "who": "x"}, "who: Extra inputs are not permitted"),
        ({"cmd": "shelve", "alarm_id": ALARM, "reason": "x"}, "duration: Field required"),
        ({"cmd": "shelve", "alarm_id": ALARM, "duration": "soon"}, "'soon' is not understood"),
        ({"cmd": "shelve", "alarm_id": ALARM, "duration": -5}, "duration must be positive"),
        ({"cmd": "shelve", "alarm_id": ALARM, "duration": [1]}, "duration must be seconds"),
        ({"cmd": "ack", "alarm_id": ALARM, "by": "a b"}, "by: String should match"),
        ("x" * 20000, "the limit is"),
    ],
)
def test_bad_payloads_are_refused_clearly(payload: Any, message: str) -> None:
    with pytest.raises(CommandError) as info:
        parse_command(payload)
    assert message in str(info.value)
    reply = error_reply(payload, info.value)
    assert reply["ok"] is False and reply["error"] == "bad_command" and message in reply["message"]


def test_valid_payloads() -> None:
    c = parse_command(json.dumps({"cmd": "shelve", "alarm_id": ALARM, "duration": "2h",
                                  "reason": "new sensor", "by": "wang",
                                  "request_id": "r1"}))  # fmt: skip
    assert isinstance(c, ShelveCmd) and c.duration == 7200.0 and c.by == "wang"
    assert isinstance(parse_command(b'{"cmd":"ack","alarm_id":"x:y"}'), AckCmd)
    assert build_command("shelve", ALARM, duration="30m", reason="swap", by="li") == {
        "cmd": "shelve", "alarm_id": ALARM, "duration": "30m", "reason": "swap", "by": "li",
    }  # fmt: skip
    with pytest.raises(CommandError):
        build_command("shelve", ALARM)


def test_bad_command_changes_nothing_in_the_engine(tmp_path: Path) -> None:
    clock = FakeClock()
    eng = make_engine(tmp_path, RULES, clock, state=None)
    eng.on_sample(sample(clock, "lk-1", {"alarm_ch1": True}))
    before = eng.book.snapshot()
    store = eng.store
    assert store is not None
    rows_before = store.load_alarms()
    bad: list[Any] = [
        '{"cmd": "ack"}',
        {"cmd": "shelve", "alarm_id": ALARM, "duration": "forever", "reason": "x"},
        {"cmd": "reset", "alarm_id": ALARM},  # condition still present
        {"cmd": "ack", "alarm_id": "trip:lk-9:alarm_ch1"},  # unknown alarm
        {"cmd": "shelve", "alarm_id": ALARM, "duration": "3d", "reason": "x"},  # over 24 h
    ]
    for payload in bad:
        with pytest.raises((CommandError, AlarmError)) as info:
            eng.command(payload, "mqtt")
        reply = error_reply(payload, info.value)
        assert reply["ok"] is False and reply["message"]
    assert eng.book.snapshot() == before
    assert store.load_alarms() == rows_before
    # and a good one still works afterwards
    events, reply = eng.command({"cmd": "ack", "alarm_id": ALARM, "request_id": "42"}, "mqtt")
    assert reply == {
        "ok": True, "cmd": "ack", "request_id": "42", "alarm_id": ALARM,
        "state": "acknowledged", "actor": "mqtt",
    }  # fmt: skip
    assert [e.action for e in events] == ["ack"]


def test_unknown_alarm_suggests_near_ids(tmp_path: Path) -> None:
    clock = FakeClock()
    eng = make_engine(tmp_path, RULES, clock)
    eng.on_sample(sample(clock, "lk-1", {"alarm_ch1": True}))
    with pytest.raises(AlarmError, match="did you mean: trip:lk-1:alarm_ch1"):
        eng.command({"cmd": "ack", "alarm_id": "lk-1:alarm_ch1"}, "cli")


def test_list_command(tmp_path: Path) -> None:
    clock = FakeClock()
    eng = make_engine(tmp_path, RULES, clock)
    eng.on_sample(sample(clock, "lk-1", {"alarm_ch1": True, "alarm_ch2": False}))
    events, reply = eng.command({"cmd": "list"}, "cli")
    assert events == []
    assert [a["alarm_id"] for a in reply["alarms"]] == [ALARM]
    assert reply["alarms"][0]["state"] == "unacknowledged"
