"""One console, three sites on one broker (three simulators, three gateways, each its own
process; the same device and alarm ids at every site, as a city's identical stations have):
the alarms of all three appear, and an acknowledgement reaches only the site it names."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.servers import Mosquitto, MqttCollector
from tests.integration.console_support import (
    ALARM,
    add_user,
    console_alarm,
    login,
    running_console,
    running_gateway,
    site_yaml,
    wait,
)
from tests.simproc import running_sim

SITES = ("park-a", "park-b", "park-c")


@pytest.mark.timeout(240)
def test_three_sites_one_console_ack_reaches_only_its_site(
    tmp_path: Path, mosquitto: Mosquitto, mqtt_collector: Any
) -> None:
    sites = [site_yaml(tmp_path, name, mosquitto) for name in SITES]
    db = tmp_path / "console.sqlite"
    add_user(db, "wang", "operator")
    col: MqttCollector = mqtt_collector(mosquitto, "fsg/#")
    with ExitStack() as stack:
        for site in sites:
            stack.enter_context(running_sim(site, {}))
            stack.enter_context(running_gateway(site))
        base = stack.enter_context(running_console(sites[0], db, "--all-sites"))
        wang = login(base, "wang")
        for name in SITES:
            wait(lambda n=name: console_alarm(wang, n), 90, f"the alarm of {name}")
        assert {a["site"] for a in wang.get("/api/alarms").json()} >= set(SITES)
        only_c = wang.get("/api/alarms", params={"site": "park-c"}).json()
        assert only_c and {a["site"] for a in only_c} == {"park-c"}

        r = wang.post("/api/actions", json={"site": "park-b", "alarm_id": ALARM, "action": "ack"})
        assert r.status_code == 200, r.text
        assert r.json()["state"] == "acknowledged"
        wait(lambda: console_alarm(wang, "park-b")["state"] == "acknowledged", 15, "park-b acked")  # type: ignore[index]
        # Only park-b's command topic carried it; the other sites' alarms stand unacknowledged.
        commands = [m.topic for m in col.snapshot() if m.topic.endswith("/commands")]
        assert commands == ["fsg/park-b/commands"], commands
        for other in ("park-a", "park-c"):
            assert console_alarm(wang, other)["state"] == "unacknowledged"  # type: ignore[index]
            retained = [m.json() for m in col.snapshot(f"fsg/{other}/alarms/{ALARM}")]
            assert all(s["state"] == "unacknowledged" for s in retained), retained
        acked = [m.json() for m in col.snapshot(f"fsg/park-b/alarms/{ALARM}")][-1]
        assert acked["state"] == "acknowledged" and acked["actor"] == "wang via console"

        # The list page filters by site; the alarm of park-b links to park-b.
        page = wang.get("/", params={"site": "park-a"}).text
        assert "park-a" in page and "site=park-b&amp;id" not in page
        assert "site=park-b&amp;id" in wang.get("/").text
        # Gateways of all three sites are listed with their status.
        wait(
            lambda: {g["site"] for g in wang.get("/api/gateways").json()} >= set(SITES),
            30,
            "three gateways",
        )
