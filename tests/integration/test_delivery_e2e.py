"""Delivery against real servers: completeness, content, TLS, credentials, outbox full.

Mosquitto, InfluxDB 1.x (v1 mode) and VictoriaMetrics (influxdb-client v2
path) are started by the fixtures in tests/fixtures/servers.py.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.config import InfluxSinkConfig
from gateway.model import AlarmEvent, AlarmState
from gateway.outbox import Event
from gateway.plugins.influx.sink import InfluxSink
from tests.fixtures.servers import (
    InfluxDB1,
    Mosquitto,
    MqttCollector,
    Victoria,
    free_port,
    start_influxdb1,
    start_mosquitto,
)
from tests.integration.delivery_support import (
    DEVICES,
    SITE,
    make_delivery,
    make_sample,
    running,
    wait_until,
)

pytestmark = pytest.mark.timeout(90)


def alarm(i: int, ts_ns: int) -> AlarmEvent:
    return AlarmEvent(
        alarm_id=f"rcm-1.leak.hi{i}",
        ts_ns=ts_ns,
        state=AlarmState.UNACKED,
        previous=AlarmState.NORMAL,
        action="raise",
        severity="high",
        device="rcm-1",
        point="leak_ma",
        rule="leak hi",
        message=f"leak {i} over 300 mA",
        value=310.0 + i,
        active=True,
        area="north",
    )


async def test_n_samples_arrive_complete_at_mosquitto_influxdb_and_victoria(
    tmp_path: Path,
    mosquitto: Mosquitto,
    influxdb1: InfluxDB1,
    victoria: Victoria,
    mqtt_collector: Callable[..., MqttCollector],
) -> None:
    n = 600
    base = time.time_ns() - 60_000_000_000
    col = mqtt_collector(mosquitto, f"fsg/{SITE}/#")
    # A third sink on the same outbox: the influxdb-client v2 path, to VictoriaMetrics.
    vm_sink = InfluxSink(
        InfluxSinkConfig(**victoria.sink_config(flush_interval_s=0.1)), SITE, name="victoria"
    )
    d = make_delivery(
        tmp_path / "ob.sqlite",
        mqtt=mosquitto.sink_config(),
        influx=influxdb1.sink_config(),
        extra_sinks=[vm_sink],
    )
    async with running(d):
        for i in range(n):
            d.append_sample(make_sample(i, base))
        d.append_alarm(alarm(1, base + n * 1_000_000))
        d.append_event(
            Event(
                "patrol.round_late",
                base + n * 1_000_000 + 1,
                {"route": "north", "late_s": 120},
                measurement="patrol",
            )
        )
        await wait_until(lambda: d.stats().backlog == 0, 30, "every sink to catch up")
        st = d.stats()
        # MQTT: telemetry and events on the main connection, the alarm on the alarm lane.
        assert st.sinks["mqtt"].delivered == n + 1
        assert st.sinks["mqtt-alarms"].delivered == 1
        assert st.sinks["influx"].delivered == n + 2
        assert st.sinks["victoria"].delivered == n + 2

    # MQTT: count and content, per device in order.
    # The alarm comes on its own connection (the alarm lane): wait for it too.
    msgs = col.wait_for(
        lambda ms: (
            sum(m.topic.endswith("/telemetry") for m in ms) >= n
            and sum(m.topic == f"fsg/{SITE}/events" for m in ms) >= 2
        ),
        10,
        "telemetry and events",
    )
    tele = [m for m in msgs if m.topic.endswith("/telemetry")]
    assert len(tele) == n
    for dev in DEVICES:
        seqs = [m.json()["values"]["seq"] for m in tele if m.topic == f"fsg/{SITE}/{dev}/telemetry"]
        assert seqs == [i for i in range(n) if DEVICES[i % 3] == dev]
    first = tele[0].json()
    assert first["device"] == "rcm-1" and first["ts_ns"] == base
    assert first["values"] == {"seq": 0, "temp_c": 20.0, "on": True, "mode": "m0"}
    assert first["quality"] == {"sensor2": "fault"}
    assert first["ts"].endswith("Z") and first["tags"] == {"area": "north park"}
    retained_alarm = [m for m in msgs if m.topic == f"fsg/{SITE}/alarms/rcm-1.leak.hi1"]
    assert retained_alarm and retained_alarm[0].json()["state"] == "unacknowledged"
    events = [m.json() for m in msgs if m.topic == f"fsg/{SITE}/events"]
    # Two connections: the alarm and the generic event may arrive in either order.
    assert sorted(e["type"] for e in events) == ["alarm", "event"]
    avail = {m.topic: m.payload for m in msgs if m.topic.endswith("/availability")}
    assert avail == {f"fsg/{SITE}/{dev}/availability": b"online" for dev in DEVICES}
    status = [m.payload for m in msgs if m.topic == f"fsg/{SITE}/gateway/status"]
    assert status[0] == b"online" and status[-1] == b"offline"  # clean shutdown says offline

    # InfluxDB 1.x: one row per sample, typed fields, bad points absent.
    rows = influxdb1.rows('SELECT * FROM testdev GROUP BY "device"')
    assert len(rows) == n
    by_seq = {r["seq"]: r for r in rows}
    assert sorted(by_seq) == list(range(n))
    r0 = by_seq[0]
    assert r0["time"] == base and r0["device"] == "rcm-1" and r0["area"] == "north park"
    assert r0["site"] == SITE and r0["temp_c"] == 20.0 and r0["on"] is True
    assert r0["mode"] == "m0" and r0["_bad_points"] == 1 and "sensor2" not in r0
    assert by_seq[1]["_bad_points"] is None
    alarms = influxdb1.rows("SELECT * FROM alarm")
    assert len(alarms) == 1 and alarms[0]["value"] == 311.0
    assert alarms[0]["severity"] == "high" and alarms[0]["message"] == "leak 1 over 300 mA"
    patrol = influxdb1.rows("SELECT * FROM patrol")
    assert patrol[0]["route"] == "north" and patrol[0]["late_s"] == 120

    # VictoriaMetrics via influxdb-client: numeric fields as <measurement>_<field>.
    series = victoria.export('{__name__="testdev_seq"}')
    assert sorted(v for s in series for v in s["values"]) == list(range(n))
    devices = {s["metric"]["device"] for s in series}
    assert devices == set(DEVICES)
    assert all(s["metric"]["site"] == SITE for s in series)
    ts = sorted(t for s in series for t in s["timestamps"])
    assert ts[0] == base // 1_000_000


async def test_tls_broker_with_client_certificate(
    tmp_path: Path, mosquitto_tls: Mosquitto, mqtt_collector: Callable[..., MqttCollector]
) -> None:
    col = mqtt_collector(mosquitto_tls, f"fsg/{SITE}/+/telemetry")
    base = time.time_ns()
    d = make_delivery(tmp_path / "ob.sqlite", mqtt=mosquitto_tls.sink_config(protocol="5"))
    async with running(d):
        for i in range(30):
            d.append_sample(make_sample(i, base))
        await wait_until(lambda: d.stats().backlog == 0, 20, "TLS delivery")
    msgs = col.wait_for(lambda ms: len(ms) >= 30, 10, "30 telemetry messages")
    assert sorted(m.json()["values"]["seq"] for m in msgs) == list(range(30))


async def test_tls_without_client_certificate_is_refused_and_retried(
    tmp_path: Path, mosquitto_tls: Mosquitto, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = mosquitto_tls.sink_config()
    cfg["tls"] = {"ca_file": cfg["tls"]["ca_file"]}
    d = make_delivery(tmp_path / "ob.sqlite", mqtt=cfg)
    with caplog.at_level(logging.INFO, logger="gateway.delivery"):
        async with running(d):
            d.append_sample(make_sample(0, time.time_ns()))
            await wait_until(lambda: d.stats().sinks["mqtt"].attempts >= 3, 15, "3 attempts")
            st = d.stats()
            assert st.backlog == 1 and not st.sinks["mqtt"].connected
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    # One line per outage and connection: the telemetry one and the alarm lane.
    assert sorted(e.split(":")[0] for e in errors) == ["sink mqtt", "sink mqtt-alarms"], errors
    assert all("certificate required" in e for e in errors)


async def test_wrong_credentials_logged_once_then_fixed_data_flows(
    tmp_path: Path,
    mosquitto_auth: Mosquitto,
    mqtt_collector: Callable[..., MqttCollector],
    caplog: pytest.LogCaptureFixture,
) -> None:
    col = mqtt_collector(mosquitto_auth, f"fsg/{SITE}/+/telemetry")
    base = time.time_ns()
    bad = make_delivery(tmp_path / "ob.sqlite", mqtt=mosquitto_auth.sink_config(password="wrong"))
    with caplog.at_level(logging.INFO, logger="gateway.delivery"):
        async with running(bad):
            for i in range(20):
                bad.append_sample(make_sample(i, base))
            await wait_until(lambda: bad.stats().sinks["mqtt"].attempts >= 3, 15, "retries")
            st = bad.stats().sinks["mqtt"]
            assert st.delivered == 0 and st.down_since_ns is not None
            assert "credentials" in (st.last_error or "")
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    # One line per outage and connection: the telemetry one and the alarm lane.
    assert sorted(e.split(":")[0] for e in errors) == ["sink mqtt", "sink mqtt-alarms"], errors
    assert all("refused the credentials" in e and "check username/password" in e for e in errors)
    assert col.snapshot() == []
    # The operator fixes the password; the gateway restarts and the outbox delivers.
    good = make_delivery(tmp_path / "ob.sqlite", mqtt=mosquitto_auth.sink_config())
    async with running(good):
        await wait_until(lambda: good.stats().backlog == 0, 20, "delivery after the fix")
    msgs = col.wait_for(lambda ms: len(ms) >= 20, 10, "20 messages")
    assert sorted(m.json()["values"]["seq"] for m in msgs) == list(range(20))


async def test_unreachable_servers_retry_until_they_come_up(
    tmp_path: Path,
    mqtt_collector: Callable[..., MqttCollector],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Nothing listens on the ports yet: clear errors, retries, no crash; then they start."""
    mqtt_port, influx_port = free_port(), free_port()
    # The collector's persistent session is made first, so it receives what
    # the sink sends the moment the broker is up; then the broker goes down.
    mq = start_mosquitto(tmp_path / "mq", port=mqtt_port)
    col = mqtt_collector(mq, f"fsg/{SITE}/+/telemetry")
    mq.stop()
    d = make_delivery(
        tmp_path / "ob.sqlite",
        mqtt={"host": "127.0.0.1", "port": mqtt_port},
        influx={"mode": "v1", "url": f"http://127.0.0.1:{influx_port}", "database": "fsg"},
    )
    base = time.time_ns()
    db: InfluxDB1 | None = None
    with caplog.at_level(logging.INFO, logger="gateway.delivery"):
        try:
            async with running(d):
                for i in range(10):
                    d.append_sample(make_sample(i, base))
                await wait_until(
                    lambda: all(s.attempts >= 3 for s in d.stats().sinks.values()), 15, "retries"
                )
                errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
                assert len(errors) == 3, errors  # one per sink (mqtt, its alarm lane, influx)
                assert any(
                    f"sink mqtt: cannot deliver: mqtt 127.0.0.1:{mqtt_port}" in e for e in errors
                )
                assert any(
                    "sink influx: cannot deliver" in e and "unreachable" in e for e in errors
                )
                assert d.stats().backlog == 10
                # The servers come up on those ports: data flows without a restart.
                await asyncio.to_thread(mq.start)
                db = await asyncio.to_thread(start_influxdb1, tmp_path / "db", influx_port)
                await wait_until(lambda: d.stats().backlog == 0, 20, "delivery after start")
                warnings = [
                    m for r in caplog.records if "delivering again" in (m := r.getMessage())
                ]
                assert len(warnings) == 2, warnings
            rows = db.rows("SELECT seq FROM testdev")
            assert sorted(r["seq"] for r in rows) == list(range(10))
            msgs = col.wait_for(lambda ms: len(ms) >= 10, 10, "10 messages")
            assert sorted(m.json()["values"]["seq"] for m in msgs) == list(range(10))
        finally:
            mq.stop()
            if db is not None:
                db.stop()


async def test_influx_rejection_skips_only_the_bad_point(
    tmp_path: Path, influxdb1: InfluxDB1, caplog: pytest.LogCaptureFixture
) -> None:
    """A field type conflict (HTTP 400) must not stall the sink: bisect, skip one, go on."""
    base = time.time_ns()
    samples = [make_sample(i, base) for i in range(40)]
    samples[17].values["mode"] = 17  # was a string field: InfluxDB refuses this point
    d = make_delivery(tmp_path / "ob.sqlite", influx=influxdb1.sink_config())
    with caplog.at_level(logging.INFO, logger="gateway.delivery"):
        async with running(d):
            for s in samples:
                d.append_sample(s)
            await wait_until(lambda: d.stats().backlog == 0, 20, "delivery")
            st = d.stats().sinks["influx"]
            assert (st.delivered, st.rejected) == (39, 1)
    rows = influxdb1.rows("SELECT seq FROM testdev")
    assert sorted(r["seq"] for r in rows) == [i for i in range(40) if i != 17]
    assert any("rejected for good" in r.getMessage() for r in caplog.records)


async def test_influx_v1_can_create_its_database(tmp_path: Path, influxdb1: InfluxDB1) -> None:
    cfg = influxdb1.sink_config(database="demo db", create_database=True)
    d = make_delivery(tmp_path / "ob.sqlite", influx=cfg)
    async with running(d):
        d.append_sample(make_sample(0, time.time_ns()))
        await wait_until(lambda: d.stats().backlog == 0, 20, "delivery")
    demo = InfluxDB1(url=influxdb1.url, database="demo db", server=influxdb1.server)
    assert [r["seq"] for r in demo.rows("SELECT seq FROM testdev")] == [0]
