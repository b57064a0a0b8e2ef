"""A simulated unit's topics on a real Mosquitto: availability follows the polls, values
carry no float noise.

The simulator (its own process) stops answering for one unit for a while,
then answers again; the gateway (its own process) runs with a short health
interval, so the device's health record, which carries values, is published
on its telemetry topic several times while the unit is dead. Availability
must not turn ``online`` for any of them, and must turn ``online`` when the
unit answers again. MQTT keeps the order of one publisher's messages to one
subscriber, so each ``online`` can be checked against the record it follows.

The unit's temperature register holds 204 at scale 0.1: the JSON says 20.4.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.servers import Mosquitto, MqttCollector, Received
from tests.integration.test_alerting_e2e import start_gateway, stop
from tests.simproc import free_port, running_sim
from tests.sitebuilder import mqtt_sink, site, write_site

DEVICE = "cold-1"
HEALTH_INTERVAL_S = 1.0  # the schema's lowest
DEAD_AFTER_S = 4
DEAD_FOR_S = 8


def site_yaml(tmp: Path, mq: Mosquitto) -> Path:
    doc = site(
        "avail-park",
        folder=tmp,
        sources=[{"id": "tcp-1", "type": "modbus_tcp", "host": "127.0.0.1", "port": free_port(),
                  "timeout_s": 0.3, "retries": 0}],
        devices=[{"id": DEVICE, "profile": "cold-room-thermometer", "source": "tcp-1", "unit": 1,
                  "interval_s": 0.5, "sim": {"temperature": {"kind": "constant", "value": 20.4}}}],
        sinks={"console": {"enabled": False}, "mqtt": mqtt_sink(mq)},
        pipeline={"health_interval_s": HEALTH_INTERVAL_S},
        simulation={"scenarios": {"dead-then-back": {"devices": {DEVICE: {"fault": {
            "kind": "no_answer", "after_s": DEAD_AFTER_S, "duration_s": DEAD_FOR_S,
        }}}}}},
    )  # fmt: skip
    return write_site(tmp, doc)


def device_stream(msgs: list[Received]) -> list[tuple[str, Any]]:
    """The device's records in arrival order: ("avail", payload) / ("health"|"poll", json)."""
    out: list[tuple[str, Any]] = []
    for m in msgs:
        if m.topic == f"fsg/avail-park/{DEVICE}/availability":
            out.append(("avail", m.payload.decode()))
        elif m.topic == f"fsg/avail-park/{DEVICE}/telemetry":
            rec = json.loads(m.payload)
            out.append(("health" if rec["kind"] == "device_health" else "poll", rec))
    return out


def returned(msgs: list[Received]) -> bool:
    """An ``offline`` followed by an ``online`` that a good poll earned."""
    seen_offline = False
    last: tuple[str, Any] | None = None
    for item in device_stream(msgs):
        if item == ("avail", "offline"):
            seen_offline = True
        elif item == ("avail", "online") and seen_offline and last and last[0] == "poll":
            return True
        if item[0] != "avail":
            last = item
    return False


def run_until(
    tmp: Path,
    mq: Mosquitto,
    make_collector: Any,
    until: Callable[[list[Received]], bool],
    what: str,
    *sim_args: str,
) -> list[Received]:
    """Simulator and gateway, each its own process, until the broker has seen ``until``."""
    site = site_yaml(tmp, mq)
    col: MqttCollector = make_collector(mq, "fsg/#")
    with running_sim(site, {}, *sim_args):
        gw = start_gateway(site)
        try:
            return col.wait_for(until, 90, what)
        finally:
            stop(gw)


@pytest.mark.timeout(180)
def test_dead_unit_stays_offline_through_health_records(
    tmp_path: Path, mosquitto: Mosquitto, mqtt_collector: Any
) -> None:
    msgs = run_until(
        tmp_path, mosquitto, mqtt_collector, returned, "offline, then online again",
        "--scenario", "dead-then-back",
    )  # fmt: skip
    stream = device_stream(msgs)
    first_off = stream.index(("avail", "offline"))
    # Every "online" follows a poll that read the unit, never a health record.
    last: tuple[str, Any] | None = None
    for item in stream:
        if item == ("avail", "online"):
            assert last is not None and last[0] == "poll", (last, stream)
            assert last[1]["values"] and "error" not in last[1], last
        if item[0] != "avail":
            last = item
    # The dead spell spanned several health intervals, each a chance to flap.
    back = stream.index(("avail", "online"), first_off)
    dead = stream[first_off:back]
    assert sum(1 for kind, _ in dead if kind == "health") >= 3, dead
    polls = [rec for kind, rec in dead if kind == "poll"]
    # Silent throughout, up to the poll that earned the "online".
    assert all(rec.get("error") for rec in polls[:-1]) and not polls[-1].get("error"), polls


@pytest.mark.timeout(120)
def test_scaled_value_is_published_without_float_noise(
    tmp_path: Path, mosquitto: Mosquitto, mqtt_collector: Any
) -> None:
    topic = f"fsg/avail-park/{DEVICE}/telemetry"

    def polled(msgs: list[Received]) -> bool:
        return any(m.topic == topic and b'"temperature"' in m.payload for m in msgs)

    msgs = run_until(tmp_path, mosquitto, mqtt_collector, polled, "a poll of the unit")
    payload = next(m.payload for m in msgs if m.topic == topic and b'"temperature"' in m.payload)
    assert b'"temperature":20.4,' in payload or b'"temperature":20.4}' in payload, payload
    assert json.loads(payload)["values"]["temperature"] == 20.4
