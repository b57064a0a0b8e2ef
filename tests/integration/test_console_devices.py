"""The console's devices page over a real socket: last reading age and the poll error counters
from the gateway's device_health records, and a unit that stops answering shown offline."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fixtures.servers import Mosquitto
from tests.integration.console_support import (
    add_user,
    login,
    running_console,
    running_gateway,
    site_doc,
    wait,
)
from tests.simproc import running_sim
from tests.sitebuilder import write_site

SITE = "devices-park"


def two_unit_site(tmp: Path, mq: Mosquitto) -> Path:
    """The console test site plus leak-2 (unit 2) and a scenario in which leak-2 goes silent."""
    doc = site_doc(tmp, SITE, mq)
    leak_2 = {"id": "leak-2", "profile": "leakage-monitor", "source": "tcp-1", "unit": 2}
    doc["devices"].append(leak_2 | {"interval_s": 0.5, "tags": {"area": "north-gate"}})
    doc["pipeline"] = {"health_interval_s": 1}
    silent = {"devices": {"leak-2": {"fault": {"kind": "no_answer"}}}}
    doc["simulation"] = {"scenarios": {"dead": silent}}
    return write_site(tmp / SITE, doc)


def device(client: httpx.Client, name: str) -> dict[str, Any] | None:
    for d in client.get("/api/devices").json():
        if d["site"] == SITE and d["device"] == name:
            return dict(d)
    return None


def fresh(client: httpx.Client, name: str) -> dict[str, Any] | None:
    d = device(client, name)
    ok = (
        d is not None
        and d["condition"] == "online"
        and d["last_sample_age_s"] is not None
        and d["last_sample_age_s"] < 3 * 0.5
        and d["counters"].get("good_polls", 0) > 0
    )
    return d if ok else None


@pytest.mark.timeout(240)
def test_devices_show_reading_age_and_counters_and_a_silent_unit_goes_offline(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    site = two_unit_site(tmp_path, mosquitto)
    db = tmp_path / "console.sqlite"
    add_user(db, "viewer1", "viewer")
    with running_gateway(site) as gw, running_console(site, db, "--heartbeat", "0.5") as base:
        client = login(base, "viewer1")
        with running_sim(site, {}):
            for name in ("leak-1", "leak-2"):
                d = wait(lambda n=name: fresh(client, n), 60, f"{name} fresh with counters")
                assert d["counters"]["timeouts"] == 0 and d["interval_s"] == 0.5
            page = client.get("/devices").text
            assert "last sample" in page and "timeouts 0" in page and "STALE" not in page
        # The simulator comes back with leak-2 silent: its timeouts climb, it is offline.
        with running_sim(site, {}, "--scenario", "dead"):
            wait(lambda: fresh(client, "leak-1"), 60, "leak-1 answering again")
            first = wait(
                lambda: (
                    (d := device(client, "leak-2"))
                    and d["condition"] == "offline"
                    and d["counters"]["timeouts"] > 0
                    and d
                ),
                60,
                "leak-2 offline with timeouts",
            )
            wait(
                lambda: (
                    device(client, "leak-2")["counters"]["timeouts"]  # type: ignore[index]
                    > first["counters"]["timeouts"]
                ),
                30,
                "leak-2's timeouts rising",
            )
            wait(lambda: fresh(client, "leak-1"), 30, "leak-1 still fresh beside the silent unit")
            page = client.get("/devices").text
            row = page[page.index('data-device="leak-2"') :].split("</tr>")[0]
            assert "OFFLINE" in row and "timeouts 0" not in row and "timeouts" in row
            # The gateway loses power: leak-1's retained availability still says online,
            # but no reading comes any more, and the console says STALE without a message.
            gw.kill()
            gw.wait(timeout=20)
            stale = wait(
                lambda: (d := device(client, "leak-1")) and d["condition"] == "stale" and d,
                30,
                "leak-1 stale once its gateway is gone",
            )
            assert stale["online"] is True and stale["last_sample_age_s"] > 3 * 0.5
            assert "STALE" in client.get("/devices").text
