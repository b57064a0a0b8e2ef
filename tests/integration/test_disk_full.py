"""The real gateway on a full disk: it keeps polling and alarming, and catches up afterwards.

The outbox, the alarm lane's outbox, the alarm state and the patrol state
live on a 2 MB tmpfs (mounted by the test: it must run as root) with the
real broker down. The simulators feed the demo site, the TCP devices polled
fast so the disk fills within a minute, and unknown cards are tapped all
along (the patrol state and the alarm state are saved on the same disk).
The process must warn at start that the default max_bytes cannot fit, keep
running, raise the disk-full alarm, evict telemetry (counted), and once the
broker is back deliver that alarm, the unknown-card alarms and the newest
telemetry; SIGTERM must end it cleanly.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from gateway.alerting.store import read_alarms
from tests.fixtures.disks import fill, small_disk  # noqa: F401 - a fixture
from tests.fixtures.servers import Mosquitto, MqttCollector, Received
from tests.integration.gateway_proc import GatewayProcess, demo_env, demo_site
from tests.simproc import running_sim

DISK_ALARM = "gateway:outbox:disk"


def fast_site(site: Path) -> None:
    """Poll the TCP devices every 0.1 s, and tap unknown cards every 2 s from 8 s on."""
    data = yaml.safe_load(site.read_text())
    tcp = next(s for s in data["sources"] if s["id"] == "plant-tcp")
    tcp.update(timeout_s=0.05, retries=0)
    for d in data["devices"]:
        if d["source"] == "plant-tcp":
            d["interval_s"] = 0.1
    taps = [
        {"at_s": 8 + 2 * i, "reader": "lakeside", "card": f"0BADCAFE{i:02d}"} for i in range(60)
    ]
    data["simulation"]["scenarios"]["disk-full"] = {
        "description": "unknown cards while the disk fills",
        "serial": {"rfid-gate": {"taps": taps}},
    }
    site.write_text(yaml.safe_dump(data, sort_keys=False))


def alarm_ids(msgs: list[Received]) -> dict[str, dict[str, object]]:
    out = {}
    for m in msgs:
        if "/alarms/" in m.topic and m.payload:
            d = m.json()
            out.setdefault(str(d["alarm_id"]), d)
    return out


def raised_alarms(path: Path) -> set[str]:
    """Alarms of the alarm book raised at least once."""
    try:
        return {a["spec"]["alarm_id"] for a in read_alarms(path) if a["activation_count"]}
    except Exception:  # the file may be mid-write: poll again
        return set()


@pytest.mark.timeout(300)
def test_full_disk_is_an_alarm_and_delivery_resumes(
    tmp_path: Path,
    small_disk: Path,  # noqa: F811 - the fixture
    mosquitto: Mosquitto,
    mqtt_collector: Callable[..., MqttCollector],
) -> None:
    site = demo_site(tmp_path, small_disk, mosquitto.port)
    fast_site(site)
    env = demo_env(tmp_path)
    fill(small_disk, leave=1200 * 1024)  # other files on the disk: it fills sooner
    mosquitto.stop()
    with running_sim(site, env, "--scenario", "disk-full"):
        gw = GatewayProcess(site, env)
        try:
            # The default max_bytes (256 MB) cannot fit on 2 MB: said at start.
            gw.wait_log("cannot fit", 30)
            gw.wait_for(
                lambda: DISK_ALARM in raised_alarms(small_disk / "alarms.sqlite"),
                120,
                "the disk-full alarm in the alarm state",
            )
            # Polls and taps of unknown cards go on on the full disk.
            gw.wait_log("evicting the oldest undelivered telemetry", 30)
            full_since = time.monotonic()
            gw.wait_for(lambda: time.monotonic() - full_since > 10, 30, "10 s on a full disk")

            mosquitto.start()
            col = mqtt_collector(mosquitto, "fsg/demo-park/#")
            back_ns = time.time_ns()
            gw.wait_for(
                lambda: DISK_ALARM in alarm_ids(col.snapshot()), 60, "the disk-full alarm on MQTT"
            )
            gw.wait_for(
                lambda: any(
                    m.topic.endswith("/telemetry") and m.json()["ts_ns"] > back_ns
                    for m in col.snapshot()
                ),
                60,
                "telemetry read after the broker came back",
            )
        finally:
            rc = gw.stop()
    assert rc == 0, gw.log[-3000:]
    assert "Traceback" not in gw.log, gw.log[-3000:]
    alarm = alarm_ids(col.snapshot())[DISK_ALARM]
    assert "full" in str(alarm["message"])
    # Telemetry made way (oldest first, counted); the unknown cards were alarmed all along.
    db = sqlite3.connect(f"file:{small_disk / 'outbox.sqlite'}?mode=ro", uri=True)
    try:
        evicted = db.execute("SELECT SUM(value) FROM counters WHERE name LIKE 'evicted.%'")
        assert (evicted.fetchone()[0] or 0) > 0
    finally:
        db.close()
    assert any("unknown" in a for a in alarm_ids(col.snapshot())), alarm_ids(col.snapshot())
