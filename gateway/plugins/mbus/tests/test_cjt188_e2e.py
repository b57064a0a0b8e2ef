"""End to end: CJ/T 188 heat meters on a pty -> the real Gateway -> Mosquitto and InfluxDB.

The gateway runs in-process from a site file (the built-in heat-meter-cjt188
profile, an ``mbus`` source with ``protocol: cjt188``); the broker and the
database are the real servers of tests/fixtures/servers.py. On one line: a
meter that answers, one whose answers carry a bad checksum (refused and
counted as frame errors, shown in its device_health over MQTT) with noise
injected on the line, and a dead one; none of them stalls the good meter.
"""

from __future__ import annotations

import asyncio
import io
import random
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gateway.app import Gateway
from gateway.errors import ConfigError
from gateway.loader import load_site
from gateway.model import SystemClock
from gateway.plugins import registry as plugin_registry
from gateway.plugins.base import BoundDevice, SimContext, SourceContext
from gateway.plugins.mbus.cjt188_sim import Cjt188LineSim
from gateway.plugins.mbus.cjt188_source import Cjt188Source
from gateway.plugins.mbus.config import MBusSourceConfig
from gateway.plugins.mbus.source import build
from gateway.plugins.mbus.tests.test_e2e import (
    LINE,
    good,
    influx_wait,
    line_sim,
    meters,
    telemetry,
)
from gateway.plugins.mbus.tests.test_source import Samples
from tests import sitebuilder
from tests.fixtures.servers import InfluxDB1, Mosquitto, MqttCollector, Received

pytestmark = pytest.mark.timeout(90)


def write_site(tmp: Path, mq: Mosquitto, influx: InfluxDB1) -> Path:
    addresses = {"heat-1": "20260000000001", "heat-bad": "20260000000002"}
    source = LINE | {"id": "cj-1", "protocol": "cjt188", "port": f"{tmp}/ttyCJ",
                     "addresses": addresses}  # fmt: skip
    devices = meters("cj-1", "heat-meter-cjt188", ("heat-1", 1), ("heat-bad", 2), ("heat-dead", 3))
    doc = sitebuilder.site(
        "heat-net", folder=tmp, mq=mq, influx=influx, sources=[source], devices=devices,
        pipeline={"health_interval_s": 1},
    )  # fmt: skip
    return sitebuilder.write_site(tmp, doc)


def health(msgs: list[Received], device: str) -> list[dict[str, Any]]:
    return [
        p
        for p in (m.json() for m in msgs if m.topic == f"fsg/heat-net/{device}/telemetry")
        if p.get("kind") == "device_health"
    ]


async def test_cjt188_meters_to_mqtt_and_influxdb_with_bad_and_dead_neighbours(
    tmp_path: Path,
    mosquitto: Mosquitto,
    influxdb1: InfluxDB1,
    mqtt_collector: Callable[..., MqttCollector],
) -> None:
    site = load_site(write_site(tmp_path, mosquitto, influxdb1))
    sim = line_sim(site, Cjt188LineSim)
    assert isinstance(sim, Cjt188LineSim)
    sim.cj_meters[1].garble = True
    sim.cj_meters[2].no_answer = True
    col = mqtt_collector(mosquitto, "fsg/heat-net/#")

    def done(msgs: list[Received]) -> bool:
        counted = any(h["values"].get("frame_errors", 0) >= 1 for h in health(msgs, "heat-bad"))
        return counted and sum(good(p) for p in telemetry(msgs, "heat-1")) >= 4

    rng = random.Random(5)
    async with sim:
        gw = Gateway(site, out=io.StringIO())
        stop = asyncio.Event()
        run = asyncio.create_task(gw.run(stop, duration=60))
        try:
            sim.inject(bytes(rng.randrange(256) for _ in range(64)))
            await asyncio.to_thread(col.wait_for, done, 45, "good samples and a counted bad frame")
            influx_rows = await asyncio.to_thread(influx_wait, influxdb1, 30, frozenset({"heat-1"}))
        finally:
            stop.set()
            await asyncio.wait_for(run, 30)

    msgs = col.snapshot()
    last = [p for p in telemetry(msgs, "heat-1") if good(p)][-1]
    values = last["values"]
    assert isinstance(values, dict)
    assert set(values) == {
        "energy", "energy_settled", "power", "flow", "volume", "supply_temp", "return_temp",
        "working_hours", "meter_time", "status",
    }  # fmt: skip
    assert 1_250_000 <= float(values["energy"]) < 1_260_000
    assert values["energy_settled"] == 1_200_000.0 and values["status"] == 0
    assert 70 < float(values["supply_temp"]) < 80 and 45 < float(values["return_temp"]) < 55
    for dev in ("heat-bad", "heat-dead"):
        samples = telemetry(msgs, dev)
        assert samples, f"{dev} is still reported"
        for p in samples:
            quality = p["quality"]
            assert not p["values"] and isinstance(quality, dict)
            assert set(quality.values()) == {"bad"}
    assert "garbage answer" in str(telemetry(msgs, "heat-bad")[0].get("error"))
    assert any(h["values"]["timeouts"] >= 1 for h in health(msgs, "heat-dead"))

    by_dev = {r["device"] for r in influx_rows if r.get("energy") is not None}
    assert by_dev == {"heat-1"}
    assert all(70 < r["supply_temp"] < 80 for r in influx_rows if r["device"] == "heat-1")


@pytest.mark.parametrize(
    ("source", "profile", "why"),
    [
        ("protocol: cjt188", "heat-meter-mbus", "has no meter_type, which CJ/T 188 source"),
        ("", "heat-meter-cjt188", "is for CJ/T 188 (meter_type set); source 'cj-1' is en13757"),
        ('protocol: cjt188, addresses: {heat-1: "12"}', "heat-meter-cjt188", "want 14 digits"),
        ('protocol: cjt188, addresses: {ghost: "20260000000001"}', "heat-meter-cjt188",
         "addresses: device 'ghost' is not a device of this source"),
        ('addresses: {heat-1: "20260000000001"}', "heat-meter-cjt188",
         "'addresses' are CJ/T 188 addresses; set protocol: cjt188"),
        ('protocol: cjt188, secondary: {heat-1: "12345678"}', "heat-meter-cjt188",
         "'secondary' is EN 13757 addressing"),
        ("protocol: dlt645", "heat-meter-cjt188", "protocol"),
    ],
)  # fmt: skip
def test_site_errors_name_the_problem(tmp_path: Path, source: str, profile: str, why: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        f"""
site: bad
sources:
  - {{id: cj-1, type: mbus, port: {tmp_path}/cj{", " + source if source else ""}}}
devices:
  - {{id: heat-1, profile: {profile}, source: cj-1, interval_s: 5}}
"""
    )
    with pytest.raises(ConfigError) as err:
        load_site(path)
    assert why in "\n".join(err.value.problems)


def test_readme_sample_loads(tmp_path: Path) -> None:
    text = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    (sample,) = [b for b in re.findall(r"```yaml\n(.*?)```", text, re.S) if "cjt188" in b]
    path = tmp_path / "site.yaml"
    path.write_text("site: sample\n" + sample)
    site = load_site(path)
    src = site.config.sources[0]
    assert isinstance(src, MBusSourceConfig) and src.protocol == "cjt188"
    assert src.cjt188_address("flat-102", 102) == bytes.fromhex("02 01 00 00 00 00 00")


async def test_gateway_sim_starts_the_cjt188_line(tmp_path: Path) -> None:
    """The plugin's simulator entry (what gateway-sim calls) serves a protocol: cjt188 source."""
    source = LINE | {"id": "cj-1", "protocol": "cjt188", "port": f"{tmp_path}/ttyCJ"}
    devices = meters("cj-1", "heat-meter-cjt188", ("heat-7", 7))
    doc = sitebuilder.site("sim", sources=[source], devices=devices)
    site = load_site(sitebuilder.write_site(tmp_path, doc))
    src = site.config.sources[0]
    assert isinstance(src, MBusSourceConfig)
    ctx = SimContext(site=site, scenario=None, clock=None, wire_time=True, seed=0)
    started = await plugin_registry().source("mbus").start_sim(src, ctx)
    assert started is not None
    part, line = started
    try:
        assert "(CJ/T 188)" in line and isinstance(part, Cjt188LineSim)
        got = Samples()
        bound = [BoundDevice(site.config.devices[0], site.device_profiles["heat-7"])]
        gw_source = build(src, bound, SourceContext(emit=got, clock=SystemClock(), site_tags={}))
        assert isinstance(gw_source, Cjt188Source)
        async with gw_source:
            await gw_source.poll_meter(gw_source.devices[0])
        (s,) = got.of("heat-7")
        assert s.error is None and 1_250_000 <= float(s.values["energy"]) < 1_260_000
    finally:
        await part.aclose()
