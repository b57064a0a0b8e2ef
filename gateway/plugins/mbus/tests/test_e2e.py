"""End to end: simulated heat meters on a pty -> the real Gateway -> Mosquitto and InfluxDB.

The gateway runs in-process from a site file (the built-in heat-meter-mbus
profile); the broker and the database are the real servers of
tests/fixtures/servers.py. Two meters answer, one by primary and one by
secondary address, and a third on the same line is dead.
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
from gateway.config import Site
from gateway.errors import ConfigError
from gateway.loader import load_site
from gateway.model import HEALTH_KINDS
from gateway.plugins.mbus.config import MBusSourceConfig
from gateway.plugins.mbus.sim import MBusLineSim
from tests import sitebuilder
from tests.fixtures.servers import InfluxDB1, Mosquitto, MqttCollector, Received

pytestmark = pytest.mark.timeout(90)


# The line every M-Bus end-to-end test reads: 38400 baud, short timeouts, dead after one
# miss. The back-off is short: on a loaded machine a live meter's answer can miss its
# 0.2 s once, and a long back-off would then hide it for the rest of the test.
LINE = {"type": "mbus", "baudrate": 38400, "timeout_s": 0.2, "retries": 0, "dead_after": 1,
        "dead_meter_backoff_s": 2}  # fmt: skip


def meters(source: str, profile: str, *devices: tuple[str, int]) -> list[dict[str, object]]:
    return [
        {"id": d, "profile": profile, "source": source, "unit": unit, "interval_s": 0.5}
        for d, unit in devices
    ]


def write_site(tmp: Path, mq: Mosquitto, influx: InfluxDB1) -> Path:
    source = LINE | {"id": "mbus-1", "port": f"{tmp}/ttyMBUS", "secondary": {"heat-2": "20000002"}}
    devices = meters("mbus-1", "heat-meter-mbus", ("heat-1", 1), ("heat-2", 0), ("heat-dead", 3))
    doc = sitebuilder.site(
        "heat-net", folder=tmp, mq=mq, influx=influx, sources=[source], devices=devices
    )
    return sitebuilder.write_site(tmp, doc)


def line_sim(site: Site, kind: type[MBusLineSim]) -> MBusLineSim:
    """The simulated meters of the site's first source, on its pty, with wire timing."""
    src = site.config.sources[0]
    assert isinstance(src, MBusSourceConfig)
    return kind.for_site(src, site.devices_of(src.id), site.device_profiles, wire_time=True)


def telemetry(msgs: list[Received], device: str) -> list[dict[str, object]]:
    """The device's readings (its health records share the topic and are left out)."""
    return [
        p
        for p in (m.json() for m in msgs if m.topic == f"fsg/heat-net/{device}/telemetry")
        if p.get("kind") not in HEALTH_KINDS
    ]


def influx_wait(
    influx: InfluxDB1, within_s: float, live: frozenset[str] = frozenset({"heat-1", "heat-2"})
) -> list[dict[str, Any]]:
    """The heat_meter rows once every live meter has some (InfluxDB sinks batch)."""
    deadline = time.monotonic() + within_s
    while True:
        rows = influx.rows('SELECT energy, supply_temp FROM heat_meter GROUP BY "device"')
        if live <= {r["device"] for r in rows} or time.monotonic() > deadline:
            return rows
        time.sleep(0.2)


def good(payload: dict[str, object]) -> bool:
    return not payload.get("quality") and bool(payload.get("values"))


async def test_two_meters_to_mqtt_and_influxdb_with_a_dead_neighbour(
    tmp_path: Path,
    mosquitto: Mosquitto,
    influxdb1: InfluxDB1,
    mqtt_collector: Callable[..., MqttCollector],
) -> None:
    site = load_site(write_site(tmp_path, mosquitto, influxdb1))
    sim = line_sim(site, MBusLineSim)
    sim.meters[2].no_answer = True
    col = mqtt_collector(mosquitto, "fsg/heat-net/#")

    def done(msgs: list[Received]) -> bool:
        return all(sum(good(p) for p in telemetry(msgs, d)) >= 3 for d in ("heat-1", "heat-2"))

    async with sim:
        gw = Gateway(site, out=io.StringIO())
        stop = asyncio.Event()
        run = asyncio.create_task(gw.run(stop, duration=60))
        try:
            await asyncio.to_thread(col.wait_for, done, 45, "3 good samples of each meter")
            influx_rows = await asyncio.to_thread(influx_wait, influxdb1, 30)
        finally:
            stop.set()
            await asyncio.wait_for(run, 30)

    msgs = col.snapshot()
    for dev in ("heat-1", "heat-2"):
        last = [p for p in telemetry(msgs, dev) if good(p)][-1]
        values = last["values"]
        assert isinstance(values, dict)
        assert set(values) == {
            "energy", "volume", "power", "flow", "supply_temp", "return_temp", "temp_diff",
            "error_flags",
        }  # fmt: skip
        assert 1_250_000 <= float(values["energy"]) < 1_260_000
        assert 70 < float(values["supply_temp"]) < 80 and 45 < float(values["return_temp"]) < 55
        assert values["temp_diff"] == 25.0 and values["error_flags"] == 0
    dead = telemetry(msgs, "heat-dead")
    assert dead, "the dead meter is still reported"
    for p in dead:
        quality = p["quality"]
        assert not p["values"] and isinstance(quality, dict)
        assert set(quality.values()) == {"bad"}

    by_dev = {r["device"] for r in influx_rows if r.get("energy") is not None}
    assert {"heat-1", "heat-2"} <= by_dev
    assert "heat-dead" not in by_dev
    assert all(70 < r["supply_temp"] < 80 for r in influx_rows if r["device"] != "heat-dead")


def test_site_errors_name_the_problem(tmp_path: Path) -> None:
    """An M-Bus profile on a Modbus source, and a secondary address for a foreign device."""
    path = tmp_path / "bad.yaml"
    path.write_text(
        f"""
site: bad
sources:
  - {{id: rtu, type: modbus_rtu, port: {tmp_path}/rtu}}
  - {{id: mbus-1, type: mbus, port: {tmp_path}/mbus, secondary: {{ghost: "12345678"}}}}
devices:
  - {{id: heat-1, profile: heat-meter-mbus, source: rtu, unit: 1, interval_s: 5}}
"""
    )
    with pytest.raises(ConfigError) as err:
        load_site(path)
    text = "\n".join(err.value.problems)
    assert "profile 'heat-meter-mbus' speaks mbus but source 'rtu' is modbus_rtu" in text
    assert "secondary: device 'ghost' is not a device of this source" in text


@pytest.mark.parametrize(
    ("extra", "why"),
    [
        ("host: 10.0.0.5", "either 'port'"),
        ("baudrate: 2401", "baudrate"),
        ("timeout_s: 0.01", "timeout_s"),
        ('secondary: {heat-1: "1234"}', "secondary address"),
        ("parity: X", "parity"),
    ],
)
def test_bad_source_config_is_refused(tmp_path: Path, extra: str, why: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        f"""
site: bad
sources:
  - {{id: mbus-1, type: mbus, port: {tmp_path}/mbus, {extra}}}
devices:
  - {{id: heat-1, profile: heat-meter-mbus, source: mbus-1, unit: 1, interval_s: 5}}
"""
    )
    with pytest.raises(ConfigError, match=why):
        load_site(path)
