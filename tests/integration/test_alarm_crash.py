"""Kill -9 right after an alarm is saved: after a restart every saved transition is published.

The gateway and the simulator are real processes; the broker is a real
Mosquitto and the database a real InfluxDB. A kill from outside would land
at a random moment, and the dangerous one (the alarm state committed, the
outbox not yet) lasts microseconds, so the gateway is made to SIGKILL itself
exactly there with the test-only crash point ``GATEWAY_CRASH_AT=alarm-state-saved``
(gateway/crashpoints.py). It is then restarted without it, and the alarm book
(the state database, as ``gateway alarms list`` reads it) is compared with
what reached MQTT (retained state and the events topic) and InfluxDB.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

from gateway.alerting.store import read_alarms
from gateway.crashpoints import ENV as CRASH_ENV
from gateway.plugins.mqtt.sink import topic_level
from tests.fixtures.servers import InfluxDB1, Mosquitto, MqttCollector
from tests.integration.receivers import Mailbox, WebhookReceiver
from tests.integration.test_alerting_e2e import site_yaml, stop, wait
from tests.simproc import bin_path, running_sim

SITE = "e2e-park"


def start_gateway(site: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [bin_path("gateway"), "run", str(site)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **env},
    )


def book(tmp: Path) -> dict[str, dict[str, Any]]:
    """The saved alarm book: alarm id -> stored alarm."""
    return {d["spec"]["alarm_id"]: d for d in read_alarms(tmp / "alarms.sqlite")}


def activations(col: MqttCollector) -> set[str]:
    return {
        e["alarm_id"]
        for e in (m.json() for m in col.snapshot("/events"))
        if e.get("type") == "alarm" and e.get("action") == "activate"
    }


def retained(col: MqttCollector) -> set[str]:
    return {m.topic.rsplit("/", 1)[1] for m in col.snapshot() if "/alarms/" in m.topic}


def in_influx(influx: InfluxDB1) -> set[str]:
    return {r["alarm_id"] for r in influx.rows("SELECT * FROM alarm WHERE action = 'activate'")}


@pytest.mark.timeout(180)
def test_sigkill_right_after_the_alarm_state_is_saved_loses_no_alarm(
    tmp_path: Path,
    mosquitto: Mosquitto,
    influxdb1: InfluxDB1,
    mqtt_collector: Any,
    mailbox: tuple[Mailbox, int],
    webhook: WebhookReceiver,
) -> None:
    site = site_yaml(tmp_path, mosquitto, influxdb1, mailbox[1], webhook.port)
    col: MqttCollector = mqtt_collector(mosquitto, f"fsg/{SITE}/#")
    with running_sim(site, {}):
        gw = start_gateway(site, {CRASH_ENV: "alarm-state-saved"})
        try:
            gw.wait(timeout=60)  # the on-delay is 5 s; then it kills itself
        finally:
            err = stop(gw)
        assert gw.returncode == -signal.SIGKILL, err
        saved = book(tmp_path)
        raised = {i for i, d in saved.items() if d["active"] or not d["acked"]}
        assert raised, "the crash point fires after an alarm was saved"

        gw = start_gateway(site, {})
        try:
            # Every transition in the saved book is published after the restart:
            # on the events topic, as retained state and in InfluxDB.
            wait(lambda: raised <= activations(col), 30, f"activations of {raised} on MQTT")
            wait(
                lambda: {topic_level(i) for i in raised} <= retained(col),
                10,
                "retained alarm states",
            )
            wait(lambda: raised <= in_influx(influxdb1), 30, f"{raised} in InfluxDB")
            assert gw.poll() is None
        finally:
            err = stop(gw)
    assert "Traceback" not in err, err
    # Published no more often than the book says it was raised.
    counts = [
        e["alarm_id"]
        for e in (m.json() for m in col.snapshot("/events"))
        if e.get("type") == "alarm" and e.get("action") == "activate"
    ]
    for alarm_id in raised:
        assert counts.count(alarm_id) == book(tmp_path)[alarm_id]["activation_count"]
