"""A reload that changes the InfluxDB sink restarts that sink alone, on its outbox cursor
(real gateway, simulator, Mosquitto and InfluxDB 1.x, all processes).

The site starts with the InfluxDB sink pointed at a port where nothing listens: the
samples wait in the outbox. The URL is fixed and the config reloaded (``gateway
reload``): the sink restarts with ``sinks_restarted: [influx]`` and nothing waits for a
restart; every sample the gateway published on MQTT before the fix reaches InfluxDB.
Then the database is changed while the sink is delivering: the new database receives
everything from the sink's cursor on, so together the two hold every sample the gateway
published (a batch in flight during the swap may be written to both: at-least-once).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fixtures.servers import InfluxDB1, Mosquitto, MqttCollector
from tests.integration.test_alerting_e2e import start_gateway, stop, wait
from tests.integration.test_reload import DEVICES, INTERVAL_S, events, reload_cli
from tests.simproc import free_port, running_sim, wait_gateway_online

SITE = "reload-sinks"


def site_text(tmp: Path, mq: Mosquitto, port: int, influx: dict[str, Any]) -> str:
    return f"""site: {SITE}
sources:
  - {{id: tcp-a, type: modbus_tcp, host: 127.0.0.1, port: {port}, timeout_s: 0.2, retries: 0}}
devices:
  - {DEVICES["steady"] % INTERVAL_S}
sinks:
  mqtt: {{host: 127.0.0.1, port: {mq.port}, prefix: fsg}}
  influx: {json.dumps(influx)}
outbox: {{path: {tmp}/state/outbox.sqlite}}
local_http: {{enabled: false}}
"""


def mqtt_samples(col: MqttCollector) -> set[int]:
    msgs = [m.json() for m in col.snapshot("/steady/telemetry")]
    return {p["ts_ns"] for p in msgs if p["kind"] == "leakage"}


def influx_samples(influx: InfluxDB1, db: str) -> set[int]:
    r = httpx.post(
        f"{influx.url}/query",
        params={"db": db, "epoch": "ns"},
        # Every field: a poll that timed out on a loaded machine has only ``_error``.
        data={"q": "SELECT * FROM leakage WHERE device = 'steady'"},
        timeout=10,
    )
    r.raise_for_status()
    series = r.json()["results"][0].get("series", [])
    return {int(v[0]) for s in series for v in s["values"]}


@pytest.mark.timeout(180)
def test_a_changed_influx_sink_restarts_on_its_cursor(
    tmp_path: Path, mosquitto: Mosquitto, mqtt_collector: Any, influxdb1: InfluxDB1
) -> None:
    (tmp_path / "state").mkdir()
    port = free_port()
    good = influxdb1.sink_config(batch_size=5, flush_interval_s=0.05)
    broken = {**good, "url": f"http://127.0.0.1:{free_port()}"}
    sim_site = tmp_path / "sim.yaml"
    sim_site.write_text(site_text(tmp_path, mosquitto, port, good))
    site = tmp_path / "site.yaml"
    site.write_text(site_text(tmp_path, mosquitto, port, broken))
    col: MqttCollector = mqtt_collector(mosquitto, f"fsg/{SITE}/#")
    with running_sim(sim_site, {}):
        gw = start_gateway(site)
        try:
            wait_gateway_online(mosquitto.port, SITE)
            wait(lambda: len(mqtt_samples(col)) >= 6, 30, "samples waiting in the outbox")
            assert influx_samples(influxdb1, influxdb1.database) == set()

            # 1. The URL fixed: the sink restarts and delivers what waited.
            site.write_text(site_text(tmp_path, mosquitto, port, good))
            before = mqtt_samples(col)
            res = reload_cli(site)
            assert res.returncode == 0, res.stdout + res.stderr
            col.wait_for(lambda _: bool(events(col, "config.applied")), 30, "config.applied")
            applied = events(col, "config.applied")[0]["data"]
            assert applied["sinks_restarted"] == ["influx"], applied
            assert applied["restart_needed"] == [], applied
            wait(
                lambda: before <= influx_samples(influxdb1, influxdb1.database),
                60, "every sample that waited, in InfluxDB",
            )  # fmt: skip

            # 2. Another database while delivering: it gets everything from the cursor on.
            moved = {**good, "database": "fsg2", "create_database": True}
            site.write_text(site_text(tmp_path, mosquitto, port, moved))
            res = reload_cli(site)
            assert res.returncode == 0, res.stdout + res.stderr
            col.wait_for(lambda _: len(events(col, "config.applied")) >= 2, 30, "2nd applied")
            assert events(col, "config.applied")[1]["data"]["sinks_restarted"] == ["influx"]
            wait(lambda: len(influx_samples(influxdb1, "fsg2")) >= 4, 60, "samples in fsg2")
            # Nothing lost: every sample published on MQTT so far reaches one database or
            # the other, and the new one has every sample from its first one on.
            published = mqtt_samples(col)

            def both() -> set[int]:
                return influx_samples(influxdb1, influxdb1.database) | influx_samples(
                    influxdb1, "fsg2"
                )

            wait(lambda: published <= both(), 60, "every published sample in InfluxDB")
            second = influx_samples(influxdb1, "fsg2")
            assert {t for t in published if t >= min(second)} <= second
        finally:
            log = stop(gw)
    assert gw.returncode == 0, log[-3000:]
    assert log.count("sink influx: restarted with its new config") == 2
