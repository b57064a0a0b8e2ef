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


def test_device_readings_are_timestamped_health_counters_kept_and_silence_turns_stale() -> None:
    # The payloads exactly as the MQTT sink writes them (orjson, compact).
    import orjson

    from gateway.model import Sample
    from gateway.plugins.mqtt.sink import telemetry_payload

    def wire(sample: Sample) -> bytes:
        return orjson.dumps(telemetry_payload(sample))

    clock = FakeClock(NS)
    st = ConsoleState("fsg", clock, site_intervals={"a": {"leak-1": 1.0}})
    topic = "fsg/a/leak-1/telemetry"
    reading = Sample(device="leak-1", kind="leakage", ts_ns=NS, values={"leak_ch1": 12.0})
    counters = {"polls": 9, "good_polls": 7, "timeouts": 2, "latency_ms": 3.0}
    health = Sample(device="leak-1", kind="device_health", ts_ns=NS, values=counters)
    st.handle(topic, wire(reading))
    v0 = st.version
    clock.advance(0.5)
    assert st.handle(topic, wire(reading)) is False and st.version == v0  # no reload per reading
    view = st.devices[("a", "leak-1")]
    assert view.sample_ns == clock.now_ns() and view.condition == "unknown"
    assert st.handle(topic, wire(health)) is True
    assert view.counters == {"polls": 9, "good_polls": 7, "timeouts": 2}
    assert view.sample_ns == clock.now_ns()  # a health record is not a reading
    # A failed poll is not a reading either; its age keeps growing.
    clock.advance(2.0)
    failed = Sample(device="leak-1", kind="leakage", ts_ns=NS, values={}, error="timeout")
    st.handle(topic, wire(failed))
    assert st.age_s(view.sample_ns) == 2.0
    assert st.sweep() is False  # 2 s < 3 intervals
    clock.advance(1.5)
    assert st.sweep() is True and view.condition == "stale"
    st.handle(topic, wire(reading))
    assert view.condition == "unknown" and not view.stale
    st.handle("fsg/a/leak-1/availability", b"offline")
    assert view.condition == "offline"
    # Heard of (availability) but no reading yet: stale only after 3 intervals of silence.
    st.handle("fsg/a/quiet/availability", b"online")
    assert st.sweep() is False and st.devices[("a", "quiet")].condition == "online"
    clock.advance(3.5)
    assert st.sweep() is True and st.devices[("a", "quiet")].condition == "stale"
    # A device of another site learns its interval from the gap between readings.
    other = "fsg/b/pump-1/telemetry"
    st.handle(other, wire(reading))
    clock.advance(10)
    st.handle(other, wire(reading))
    assert st.devices[("b", "pump-1")].interval_s == 10
    # Damaged health records are counted and change nothing.
    before = st.ignored
    assert st.handle(other, b'{"kind":"device_health","values":[1]}') is False
    assert st.ignored == before + 1


def test_a_sent_record_names_recipients_channel_and_level_and_replaces_the_mqtt_copy() -> None:
    st = ConsoleState("fsg", FakeClock(NS))
    st.handle("fsg/a/alarms/x", transition("x", "unacknowledged", 0))
    # An MQTT-channel message arrives first as its own "notification" event ...
    data = {"topic": "fsg/a/pager", "recipients": ["wang"], "alarms": [{"alarm_id": "x"}]}
    msg = {"type": "event", "kind": "notification", "ts_ns": NS, "data": data}
    st.handle("fsg/a/events", json.dumps(msg).encode())
    assert [t["actor"] for t in st.timeline("a", "x")] == ["wang"]
    # ... then the gateway's record of it: one line, now with channel and level.
    rec = {"type": "event", "kind": "notification.sent", "ts_ns": NS + 1,
           "data": {"alarm_ids": ["x", "unknown"], "channel": "pager", "recipients": ["wang"],
                    "level": 2, "possible_duplicate": True}}  # fmt: skip
    assert st.handle("fsg/a/events", json.dumps(rec).encode()) is True
    (line,) = st.timeline("a", "x")
    assert line["how"] == "by pager (level 2), possibly a second time" and line["actor"] == "wang"
    assert ("a", "unknown") not in st.timelines  # only alarms the console knows
    # From now on this site's "notification" events are not shown twice.
    assert st.handle("fsg/a/events", json.dumps(msg).encode()) is False
    bad = {"type": "event", "kind": "notification.sent", "data": {"alarm_ids": "x"}}
    before = st.ignored
    assert st.handle("fsg/a/events", json.dumps(bad).encode()) is False
    assert st.ignored == before + 1


def test_cleared_availability_forgets_the_device() -> None:
    st = ConsoleState("fsg", FakeClock(NS))
    st.handle("fsg/a/gone/availability", b"online")
    st.handle("fsg/a/kept/availability", b"offline")
    v = st.version
    assert st.handle("fsg/a/gone/availability", b"")  # a reload removed it
    assert [d for (_, d) in st.devices] == ["kept"] and st.version > v
    assert not st.handle("fsg/a/never/availability", b"")
    assert st.ignored == 0
