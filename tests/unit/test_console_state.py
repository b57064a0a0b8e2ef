"""The console's view of the sites, fed message by message as MQTT would deliver them."""

from __future__ import annotations

import json
from typing import Any

from gateway.console.state import TIMELINE_MAX, ConsoleState
from gateway.model import FakeClock

NS = 1_767_225_600_000_000_000


def transition(alarm_id: str, state: str, ts_s: float, **extra: Any) -> bytes:
    d = {"alarm_id": alarm_id, "state": state, "ts_ns": NS + int(ts_s * 1e9), "action": "activate",
         "severity": "high", "device": "leak-1", "area": "north-gate", "message": alarm_id,
         "actor": "system", "extra": {"raised_ns": NS}, **extra}  # fmt: skip
    return json.dumps(d).encode()


def test_active_alarms_unacknowledged_first_then_severity_then_age() -> None:
    st = ConsoleState("fsg", FakeClock(NS))
    st.handle("fsg/a/alarms/x", transition("x", "acknowledged", 1, severity="critical"))
    st.handle("fsg/a/alarms/y", transition("y", "unacknowledged", 2, severity="low"))
    st.handle("fsg/b/alarms/z", transition("z", "unacknowledged", 3, severity="critical"))
    st.handle("fsg/b/alarms/n", transition("n", "normal", 4))
    assert [(a.site, a.alarm_id) for a in st.active_alarms()] == [
        ("b", "z"), ("a", "y"), ("a", "x")
    ]  # fmt: skip
    assert [a.alarm_id for a in st.active_alarms(site="a")] == ["y", "x"]
    assert st.sites() == ["a", "b"]


def test_same_alarm_id_at_two_sites_is_two_alarms() -> None:
    st = ConsoleState("fsg", FakeClock(NS))
    st.handle("fsg/a/alarms/x", transition("x", "unacknowledged", 1))
    st.handle("fsg/b/alarms/x", transition("x", "acknowledged", 2))
    a, b = st.alarm("a", "x"), st.alarm("b", "x")
    assert a is not None and b is not None and a.state != b.state


def test_malformed_and_late_messages_change_nothing() -> None:
    st = ConsoleState("fsg", FakeClock(NS))
    st.handle("fsg/a/alarms/x", transition("x", "acknowledged", 5))
    version = st.version
    for topic, payload in (
        ("fsg/a/alarms/x", b"{not json"),
        ("fsg/a/alarms/x", b"[1, 2]"),
        ("fsg/a/events", b"\xff\xfe"),
        ("fsg/a/leak-1/availability", b"maybe"),
        ("fsg/a/gateway/status", b""),
        ("fsg/a/alarms/x", transition("x", "unacknowledged", 1)),  # older, replayed late
        ("other/a/alarms/x", transition("x", "normal", 9)),
    ):
        assert st.handle(topic, payload) is False
    x = st.alarm("a", "x")
    assert x is not None and x.state == "acknowledged" and st.version == version
    assert st.ignored == 5


def test_timeline_from_events_is_bounded_and_keeps_duplicates_out() -> None:
    st = ConsoleState("fsg", FakeClock(NS))
    ev = json.loads(transition("x", "unacknowledged", 1))
    ev["type"] = "alarm"
    st.handle("fsg/a/events", json.dumps(ev).encode())
    st.handle("fsg/a/events", json.dumps(ev).encode())  # at-least-once: delivered twice
    assert len(st.timeline("a", "x")) == 1
    for i in range(TIMELINE_MAX + 50):
        st.handle("fsg/a/events", json.dumps({**ev, "ts_ns": NS + i + 10}).encode())
    assert len(st.timeline("a", "x")) == TIMELINE_MAX


def test_devices_by_area_and_gateway_health() -> None:
    clock = FakeClock(NS)
    st = ConsoleState("fsg", clock, {"a": {"leak-1": "north-gate"}})
    st.handle("fsg/a/leak-1/availability", b"online")
    st.handle("fsg/a/boiler-1/availability", b"offline")
    st.handle("fsg/a/gateway/status", b"online")
    health = {"kind": "gateway_health", "ts_ns": NS, "values": {"backlog_mqtt": 0}}
    st.handle("fsg/a/gateway/telemetry", json.dumps(health).encode())
    by_area = st.devices_by_area()
    assert [d.device for d in by_area["north-gate"]] == ["leak-1"]
    assert by_area["(no area)"][0].online is False
    assert st.gateways["a"].status == "online" and st.gateways["a"].health == {"backlog_mqtt": 0}


async def test_waiters_wake_on_change_and_time_out_otherwise() -> None:
    st = ConsoleState("fsg", FakeClock(NS))
    v = st.version
    assert await st.wait_changed(v, 0.01) == v  # nothing changed: back after the wait
    st.handle("fsg/a/gateway/status", b"online")
    assert await st.wait_changed(v, 10) == v + 1


def test_a_notification_on_events_joins_the_timelines_of_the_alarms_it_names() -> None:
    st = ConsoleState("fsg", FakeClock(NS))
    st.handle("fsg/a/alarms/x", transition("x", "unacknowledged", 1))
    note = {"type": "event", "kind": "notification", "ts_ns": NS + 2,
            "data": {"topic": "fsg/a/notify", "title": "1 alarm", "recipients": ["wang", "li"],
                     "alarms": [{"alarm_id": "x"}, {"alarm_id": "unknown"}]}}  # fmt: skip
    assert st.handle("fsg/a/events", json.dumps(note).encode())
    assert st.timeline("a", "x")[-1] == {
        "ts_ns": NS + 2, "action": "notified", "actor": "wang, li", "message": "1 alarm"
    }  # fmt: skip
    assert st.timeline("a", "unknown") == []
