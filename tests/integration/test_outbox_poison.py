"""An undecodable outbox row is quarantined, counted and alarmed; delivery goes on.

The real gateway runs on the demo site with the simulators while the broker
is down, so a backlog builds up in its outbox; it is stopped, a garbage row
is written into the real outbox file behind the backlog, and it is started
again with the real Mosquitto up. The backlog and every later sample must
reach the broker, the garbage row must sit in the quarantine table, and an
alarm must say how many rows were quarantined.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.fixtures.servers import Mosquitto, MqttCollector, Received
from tests.integration.gateway_proc import GatewayProcess, demo_env, demo_site, outbox_rows
from tests.simproc import running_sim


def rows(path: Path, sql: str) -> list[tuple[object, ...]]:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


def quarantine_alarms(msgs: list[Received]) -> list[dict[str, object]]:
    out = []
    for m in msgs:
        if "/alarms/" in m.topic and m.payload:
            d = m.json()
            if "quarantin" in str(d.get("alarm_id")):
                out.append(d)
    return out


@pytest.mark.timeout(180)
def test_garbage_row_is_quarantined_and_later_samples_are_delivered(
    tmp_path: Path, mosquitto: Mosquitto, mqtt_collector: Callable[..., MqttCollector]
) -> None:
    state = tmp_path / "state"
    site = demo_site(tmp_path, state, mosquitto.port)
    env = demo_env(tmp_path)
    outbox = state / "outbox.sqlite"
    mosquitto.stop()
    with running_sim(site, env):
        first = GatewayProcess(site, env)
        try:
            first.wait_for(
                lambda: outbox_rows(outbox) >= 20,
                60,
                "a backlog of 20 rows",
            )
        finally:
            rc = first.stop()
        assert rc == 0, first.log[-3000:]
        db = sqlite3.connect(outbox)
        db.execute(
            "INSERT INTO records(kind, ts_ns, size, body) VALUES (1, ?, 50, '{not json')",
            (time.time_ns(),),
        )
        db.commit()
        db.close()
        # Samples only: the main MQTT connection publishes those on the telemetry topics.
        backlog = rows(outbox, "SELECT COUNT(*) FROM records WHERE kind = 1")[0][0] - 1

        mosquitto.start()
        col = mqtt_collector(mosquitto, "fsg/demo-park/#")
        restarted_ns = time.time_ns()
        second = GatewayProcess(site, env)
        try:

            def later(ms: list[Received]) -> int:
                return sum(
                    1
                    for m in ms
                    if m.topic.endswith("/telemetry") and m.json()["ts_ns"] > restarted_ns
                )

            second.wait_for(lambda: later(col.snapshot()) >= 20, 60, "20 samples after restart")
            second.wait_for(
                lambda: bool(quarantine_alarms(col.snapshot())), 30, "the quarantine alarm"
            )
        finally:
            rc = second.stop()
        assert rc == 0, second.log[-3000:]

    telemetry = [m for m in col.snapshot() if m.topic.endswith("/telemetry")]
    # The whole backlog got through (the garbage row aside), then the new samples.
    assert len(telemetry) - later(telemetry) >= backlog > 0
    alarm = quarantine_alarms(col.snapshot())[0]
    assert "1 " in str(alarm["message"]) and "quarantine" in str(alarm["message"])
    kept = rows(outbox, "SELECT body FROM quarantine")
    assert kept == [("{not json",)]
    assert rows(outbox, "SELECT value FROM counters WHERE name = 'quarantined'") == [(1,)]
    assert "moved to its quarantine table" in second.log
