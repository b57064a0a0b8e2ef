"""The real gateway starts on a damaged outbox, alarm state and patrol state file.

A first run of the gateway (demo site, simulators, broker down) writes all
three files; they are then damaged on disk (garbage, cut in half, or
truncated to 0 bytes) and the gateway is started again with the real
Mosquitto up. It must start (no exit 2, no crash loop), poll, and publish
one alarm per file naming the saved copy, which must exist.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.fixtures.servers import Mosquitto, MqttCollector, Received
from tests.integration.gateway_proc import GatewayProcess, demo_env, demo_site, outbox_rows
from tests.simproc import running_sim
from tests.unit.test_damaged_files import DAMAGE

FILES = ("outbox.sqlite", "alarms.sqlite", "patrol-state.sqlite")


def file_alarms(msgs: list[Received]) -> dict[str, str]:
    """alarm_id -> message of every file alarm raised (not its clearing)."""
    out = {}
    for m in msgs:
        if "/alarms/" in m.topic and m.payload:
            d = m.json()
            if str(d["alarm_id"]).startswith("gateway:file:") and d["action"] != "clear":
                out[d["alarm_id"]] = d["message"]
    return out


@pytest.mark.timeout(180)
@pytest.mark.parametrize("damage", DAMAGE)
def test_gateway_starts_on_damaged_files_and_alarms(
    tmp_path: Path,
    mosquitto: Mosquitto,
    mqtt_collector: Callable[..., MqttCollector],
    damage: str,
) -> None:
    state = tmp_path / "state"
    site = demo_site(tmp_path, state, mosquitto.port)
    env = demo_env(tmp_path)
    mosquitto.stop()
    with running_sim(site, env):
        first = GatewayProcess(site, env)
        try:
            first.wait_for(
                lambda: outbox_rows(state / "outbox.sqlite") >= 20,
                60,
                "a backlog in the outbox",
            )
        finally:
            rc = first.stop()
        assert rc == 0, first.log[-3000:]
        for name in FILES:
            assert (state / name).stat().st_size > 0, name
            DAMAGE[damage](state / name)

        mosquitto.start()
        col = mqtt_collector(mosquitto, "fsg/demo-park/#")
        restarted_ns = time.time_ns()
        second = GatewayProcess(site, env)
        try:
            second.wait_for(
                lambda: (
                    sum(
                        m.topic.endswith("/telemetry") and m.json()["ts_ns"] > restarted_ns
                        for m in col.snapshot()
                    )
                    >= 10
                ),
                60,
                "samples polled after the restart",
            )
            second.wait_for(
                lambda: len(file_alarms(col.snapshot())) >= len(FILES), 30, "one alarm per file"
            )
        finally:
            rc = second.stop()
        assert rc == 0, second.log[-3000:]

    alarms = file_alarms(col.snapshot())
    for name in FILES:
        message = alarms[f"gateway:file:{name}"]
        saved = re.search(r"saved as (\S+);", message)
        assert saved, message
        copy = Path(saved[1])
        assert copy.parent == state and copy.name.startswith(f"{name}.damaged-"), copy
        assert copy.exists(), copy
        assert str(copy) in second.log
        assert "Lost:" in message
