"""The MQTT alarm lane: after a broker outage an alarm is not queued behind the backlog.

A telemetry backlog builds up in the outbox while the broker is down, then an
alarm is raised. When the broker is back, the alarm must reach a subscriber
before the telemetry backlog has drained: it travels on its own outbox cursor
and connection. Without the lane it would arrive after every queued sample.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

from gateway.alarm_lane import lane_outbox_path
from gateway.model import AlarmEvent, AlarmState
from tests.fixtures.servers import Mosquitto, MqttCollector
from tests.integration.delivery_support import SITE, make_delivery, make_sample, running, wait_until

BACKLOG = 6000


def raised(ts_ns: int) -> AlarmEvent:
    return AlarmEvent(
        alarm_id="leakage:rcm-1:leak_ch1:hihi",
        ts_ns=ts_ns,
        state=AlarmState.UNACKED,
        previous=AlarmState.NORMAL,
        action="activate",
        severity="high",
        device="rcm-1",
        point="leak_ch1",
        rule="leakage",
        message="rcm-1 leak_ch1 450 mA >= hihi 300 mA",
        value=450.0,
    )


async def test_alarm_overtakes_the_telemetry_backlog(
    tmp_path: Path, mosquitto: Mosquitto, mqtt_collector: Callable[..., MqttCollector]
) -> None:
    col = mqtt_collector(mosquitto, f"fsg/{SITE}/#")
    await asyncio.to_thread(mosquitto.stop)
    # Both connections retry every 50-100 ms: which one gets back first after
    # the outage is then a matter of milliseconds, not of back-off jitter (at
    # the default 0.5-30 s the main connection could win by a second and
    # replay thousands of samples before the lane even reconnects).
    d = make_delivery(
        tmp_path / "ob.sqlite",
        mqtt=mosquitto.sink_config(retry_min_s=0.05, retry_max_s=0.1),
    )
    async with running(d):
        base = time.time_ns()
        for i in range(BACKLOG):
            d.append_sample(make_sample(i, base))
        d.append_alarm(raised(base + BACKLOG * 1_000_000))
        await d.flush()
        await asyncio.to_thread(mosquitto.start)
        await wait_until(lambda: d.stats().backlog == 0, 60, "the backlog to drain")
        assert d.stats().sinks["mqtt-alarms"].delivered == 1
        assert d.stats().sinks["mqtt"].delivered == BACKLOG
    msgs = col.wait_for(
        lambda ms: (
            sum(m.topic.endswith("/telemetry") for m in ms) >= BACKLOG
            and any("/alarms/" in m.topic for m in ms)
        ),
        30,
        "the backlog and the alarm",
    )
    arrival = next(i for i, m in enumerate(msgs) if "/alarms/" in m.topic)
    telemetry_before = sum(m.topic.endswith("/telemetry") for m in msgs[:arrival])
    # The alarm is in the first part of the replay, not after all 6,000 samples.
    assert telemetry_before < BACKLOG // 2, telemetry_before
    state = msgs[arrival].json()
    assert state["state"] == "unacknowledged" and state["alarm_id"] == raised(0).alarm_id


async def test_lane_alarm_survives_a_restart_while_the_broker_is_down(
    tmp_path: Path, mosquitto: Mosquitto, mqtt_collector: Callable[..., MqttCollector]
) -> None:
    """The lane commits to its own outbox file before publishing; a restart delivers it."""
    path = tmp_path / "ob.sqlite"
    cfg = mosquitto.sink_config(retry_min_s=0.05, retry_max_s=0.1)
    await asyncio.to_thread(mosquitto.stop)
    d = make_delivery(path, mqtt=cfg)
    async with running(d):
        d.append_alarm(raised(time.time_ns()))
        await d.flush()
        assert d.stats().sinks["mqtt-alarms"].delivered == 0
    lane_file = lane_outbox_path(path)
    assert lane_file.exists() and lane_file != path
    await asyncio.to_thread(mosquitto.start)
    col = mqtt_collector(mosquitto, f"fsg/{SITE}/alarms/#")
    d2 = make_delivery(path, mqtt=cfg)
    async with running(d2):
        await wait_until(
            lambda: d2.stats().sinks["mqtt-alarms"].delivered == 1, 20, "the lane's alarm"
        )
    msgs = col.wait_for(lambda ms: len(ms) >= 1, 10, "the retained alarm state")
    assert msgs[0].json()["alarm_id"] == raised(0).alarm_id


def test_lane_outbox_path_sits_next_to_the_main_one() -> None:
    assert lane_outbox_path("/var/lib/fsg/outbox.sqlite") == Path(
        "/var/lib/fsg/outbox-alarms.sqlite"
    )
    assert lane_outbox_path("gateway-outbox") == Path("gateway-outbox-alarms.sqlite")
