"""The whole way: boiler PLC simulator -> OPC UA source (Basic256Sha256 SignAndEncrypt,
user and password) -> in-process Gateway -> outbox -> real Mosquitto and InfluxDB 1.x,
through a restart of the PLC.

Mosquitto and influxd are started by tests/fixtures/servers.py on free ports.
"""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gateway.app import Gateway
from gateway.loader import load_site
from gateway.plugins.opcua.sim import OpcUaSimServer
from gateway.plugins.opcua.tests.conftest import DEVICE, PROFILE, secure_plc
from tests.fixtures.servers import InfluxDB1, Mosquitto, MqttCollector
from tests.sitebuilder import site, write_site

pytestmark = pytest.mark.timeout(90)


def site_file(tmp_path: Path, sim: OpcUaSimServer, certs: dict[str, Path], **sinks: Any) -> Path:
    source = {
        "id": "plc",
        "type": "opcua",
        "endpoint": sim.endpoint,
        "security": {
            "policy": "Basic256Sha256",
            "mode": "SignAndEncrypt",
            "certificate": str(certs["client_cert"]),
            "private_key": str(certs["client_key"]),
            "server_certificate": str(certs["server_cert"]),
        },
        "username": "operator",
        "password": "s3cret",
        "publishing_interval_s": 0.1,
    }
    device = {"id": DEVICE, "profile": PROFILE, "source": "plc", "interval_s": 0.5,
              "tags": {"area": "boiler-room"}}  # fmt: skip
    doc = site("plant", folder=tmp_path, sources=[source], devices=[device], sinks=sinks)
    doc["outbox"]["synchronous"] = "normal"
    return write_site(tmp_path, doc)


async def wait_in_thread(check: Callable[[], Any], what: str, limit_s: float = 30.0) -> Any:
    """Poll a blocking check off the event loop (the gateway runs on it meanwhile)."""
    deadline = time.monotonic() + limit_s
    while True:
        got = await asyncio.to_thread(check)
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)


async def test_boiler_plc_over_opcua_reaches_mqtt_and_influxdb(
    tmp_path: Path,
    certs: dict[str, Path],
    mosquitto: Mosquitto,
    influxdb1: InfluxDB1,
    mqtt_collector: Callable[..., MqttCollector],
) -> None:
    sim = secure_plc(certs)
    path = site_file(
        tmp_path,
        sim,
        certs,
        mqtt=mosquitto.sink_config(),
        influx=influxdb1.sink_config(flush_interval_s=0.2),
    )
    collector = mqtt_collector(mosquitto, f"fsg/plant/{DEVICE}/telemetry")
    async with sim:
        gw = Gateway(load_site(path), out=io.StringIO())
        stop = asyncio.Event()
        task = asyncio.create_task(gw.run(stop))
        try:

            def good_message() -> Any:
                for m in collector.snapshot():
                    d = m.json()
                    if len(d["values"]) == 5 and not d["quality"]:
                        return d
                return None

            msg = await wait_in_thread(good_message, "a telemetry message with every point")

            def influx_rows() -> list[dict[str, Any]]:
                return influxdb1.rows(f"SELECT * FROM boiler WHERE device = '{DEVICE}'")

            rows = await wait_in_thread(influx_rows, "boiler rows in InfluxDB")

            # The PLC restarts: bad points (no values) on MQTT while it is down, then values.
            await sim.stop()
            seen = len(collector.snapshot())

            def after(pred: Callable[[dict[str, Any]], bool]) -> Callable[[], Any]:
                return lambda: next(
                    (m.json() for m in collector.snapshot()[seen:] if pred(m.json())), None
                )

            down = await wait_in_thread(
                after(lambda d: not d["values"] and len(d["quality"]) == 5), "all-bad telemetry"
            )
            await sim.start()
            seen = len(collector.snapshot())
            back = await wait_in_thread(
                after(lambda d: len(d["values"]) == 5 and not d["quality"]), "values again"
            )
        finally:
            stop.set()
            await asyncio.wait_for(task, 30)
    assert msg["kind"] == "boiler" and msg["tags"]["area"] == "boiler-room"
    assert msg["values"]["flame"] is True
    assert msg["units"]["supply_temp"] == "°C"
    # The PLC's timestamp per point rides along with the gateway's read time.
    assert set(msg["source_ts_ns"]) == set(msg["values"])
    assert all(abs(ts - msg["ts_ns"]) < 30e9 for ts in msg["source_ts_ns"].values())
    assert set(down["quality"].values()) == {"bad"} and "error" in down
    assert back["values"]["flame"] is True
    row = rows[-1]
    assert row["flame"] is True and 72 <= row["supply_temp"] <= 78
    assert row["site"] == "plant"
