"""Shipped profiles and rule files end to end: people counters and a fire panel raise alarms.

The simulator (its own process) serves three entrance people counters (profile
people-counter) and a fire panel's contacts on a DI module (profile
fire-panel-di8) on a Modbus RTU line (a pty); the gateway (its own process)
polls them with the shipped rules/crowding.yaml and rules/fire_panel.yaml. The
occupancy each counter is given follows from its simulated in/out totals and
capacity: below 80 % stays quiet, between 80 % and 100 % raises the high
alarm, at or over 100 % the critical one as well; zone 1's fire contact raises a
critical latched alarm and zone 2, quiet, raises nothing. Alarms are read
back from the real broker's retained alarm topics.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.servers import Mosquitto, MqttCollector
from tests.integration.test_alerting_e2e import start_gateway, stop, wait
from tests.simproc import bin_path, running_sim

ROOT = Path(__file__).resolve().parents[2]
CAPACITY = 1000
# device -> (people in, people out): occupancy in percent of CAPACITY follows.
COUNTERS = {"shop-quiet": (700, 100), "shop-busy": (950, 100), "shop-full": (1120, 100)}


def occupancy_pct(device: str) -> float:
    ins, outs = COUNTERS[device]
    return (ins - outs) * 100 / CAPACITY


def site_yaml(tmp: Path, mq: Mosquitto) -> Path:
    counters = "\n".join(
        f"""  - id: {dev}
    profile: people-counter
    source: rs485
    unit: {i}
    interval_s: 0.5
    sim:
      in_count: {{kind: constant, value: {ins}}}
      out_count: {{kind: constant, value: {outs}}}
      capacity: {{kind: constant, value: {CAPACITY}}}"""
        for i, (dev, (ins, outs)) in enumerate(COUNTERS.items(), start=1)
    )
    text = f"""
site: e2e-shop
sources:
  - {{id: rs485, type: modbus_rtu, port: {tmp}/rs485, baudrate: 19200, timeout_s: 0.3,
     retries: 0}}
devices:
{counters}
  - id: fire-1
    profile: fire-panel-di8
    source: rs485
    unit: 9
    interval_s: 0.5
    sim:
      fire_z1: {{kind: constant, value: 1}}
sinks:
  mqtt: {{host: 127.0.0.1, port: {mq.port}, prefix: fsg}}
outbox: {{path: {tmp}/outbox.sqlite}}
rules: [{ROOT / "rules" / "crowding.yaml"}, {ROOT / "rules" / "fire_panel.yaml"}]
alerting:
  state_db: {tmp}/alarms.sqlite
  group_window_s: 0.5
"""
    path = tmp / "site.yaml"
    path.write_text(text)
    return path


def active(col: MqttCollector) -> dict[str, dict[str, Any]]:
    """The last retained state of every alarm, by alarm id, that is active now."""
    last: dict[str, dict[str, Any]] = {}
    for m in col.snapshot():
        if "/alarms/" not in m.topic or not m.payload:
            continue
        state = m.json()
        last[state["alarm_id"]] = state
    return {k: v for k, v in last.items() if v["state"] in ("unacknowledged", "acknowledged")}


@pytest.mark.timeout(180)
def test_people_counters_and_fire_panel_raise_the_shipped_alarms(
    tmp_path: Path, mosquitto: Mosquitto, mqtt_collector: Any
) -> None:
    site = site_yaml(tmp_path, mosquitto)
    check = subprocess.run(
        [bin_path("gateway"), "check", str(site)], capture_output=True, text=True, timeout=60
    )
    assert check.returncode == 0, check.stdout + check.stderr
    col: MqttCollector = mqtt_collector(mosquitto, "fsg/#")
    with running_sim(site, {}):
        gw = start_gateway(site)
        try:
            # Each limit is its own alarm: a full shop is over 80 % as well.
            wanted = {
                "crowding:shop-busy:occupancy_pct:hi",
                "crowding:shop-full:occupancy_pct:hi",
                "crowding:shop-full:occupancy_pct:hihi",
                "fire-alarm:fire-1:fire_z1",
            }
            # crowding's on-delay is 10 s; the fire alarm has none.
            wait(lambda: wanted <= set(active(col)), 60, f"alarms {sorted(wanted)}")
            alarms = active(col)
            fire = alarms["fire-alarm:fire-1:fire_z1"]
            assert fire["severity"] == "critical" and fire["latched"]
            assert "FIRE" in fire["message"]
            busy = alarms["crowding:shop-busy:occupancy_pct:hi"]
            assert busy["severity"] == "high"
            assert f"{occupancy_pct('shop-busy'):g}" in busy["message"]
            assert alarms["crowding:shop-full:occupancy_pct:hihi"]["severity"] == "critical"
            # The telemetry carries the computed points the rules used.
            telemetry = [m.json() for m in col.snapshot("/shop-quiet/telemetry")]
            assert telemetry and telemetry[-1]["values"]["occupancy_pct"] == pytest.approx(
                occupancy_pct("shop-quiet")
            )
            # Nothing else: the quiet shop (60 %), the busy shop's critical limit and
            # zone 2 raise nothing, and no contact of the panel reads as a fault.
            assert set(active(col)) == wanted, sorted(active(col))
            assert gw.poll() is None
        finally:
            err = stop(gw)
    assert "Traceback" not in err, err
