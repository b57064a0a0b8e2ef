"""The console's patrol page from what a real gateway publishes: an RFID simulator on a
pty taps three of the route's five checkpoints, the gateway (its clock 300x, from 22:00)
publishes the taps, the round and the overdue finding on MQTT, and the console shows the
round in progress, the last tap per checkpoint (two never tapped) and then the overdue."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.fixtures.servers import Mosquitto
from tests.integration.console_support import add_user, login, running_console, wait
from tests.integration.test_alerting_e2e import stop
from tests.simproc import ROOT, bin_path, running_sim, wait_gateway_online

SITE = "patrol-console"
SPEED = 300
ROUTE = ["gate-north", "lakeside", "playground", "boiler-house", "east-gate"]
CARD = "04A1B2C3D4"  # keeper-wang in rules/patrol.yaml


def patrol_site(tmp: Path, mq: Mosquitto) -> Path:
    partial = [{"route": ROUTE[:3], "card": CARD, "start_s": [600], "walk_s": 240}]
    site = {
        "site": SITE,
        "sources": [{"id": "rfid-gate", "type": "serial_line", "port": str(tmp / "run" / "rfid"),
                     "reconnect_min_s": 0.05, "reconnect_max_s": 0.1}],
        "devices": [{"id": "rfid-gate", "profile": "rfid-checkpoint-reader",
                     "source": "rfid-gate", "tags": {"area": "park"}}],
        "sinks": {"mqtt": {"host": "127.0.0.1", "port": mq.port, "prefix": "fsg"}},
        "outbox": {"path": str(tmp / "outbox.sqlite")},
        "alerting": {"state_db": str(tmp / "alarms.sqlite")},
        "patrol": str(ROOT / "rules" / "patrol.yaml"),
        "simulation": {"scenarios": {"partial": {"serial": {"rfid-gate": {"rounds": partial}}}}},
    }  # fmt: skip
    path = tmp / "site.yaml"
    path.write_text(yaml.safe_dump(site, sort_keys=False))
    return path


@pytest.mark.timeout(180)
def test_patrol_page_shows_the_round_the_last_taps_and_the_overdue(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    site = patrol_site(tmp_path, mosquitto)
    db = tmp_path / "console.sqlite"
    add_user(db, "vera", "viewer")
    with running_console(site, db) as base:
        vera = login(base, "vera")
        # Before anything is tapped: every checkpoint of the site file, never tapped.
        board = vera.get("/api/patrol").json()[SITE]
        assert [c["id"] for c in board["checkpoints"]] == ROUTE
        assert all(c["last_ns"] is None for c in board["checkpoints"])
        gw = subprocess.Popen(
            [bin_path("gateway"), "run", str(site), "--sim-clock-start",
             "2026-11-26T22:00:00+08:00", "--sim-clock-speed", str(SPEED)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            wait_gateway_online(mosquitto.port, SITE)  # the first taps come 2 s after the sim
            with running_sim(site, {}, "--scenario", "partial", "--speed", str(SPEED)):

                def in_progress() -> dict[str, Any] | None:
                    b = vera.get("/api/patrol").json()[SITE]
                    rounds = [r for r in b["rounds"] if len(r["visited"]) == 3]
                    return b if rounds else None

                # The round stays open 5400 simulated seconds (18 s real) after its first tap.
                board = wait(in_progress, 15, "a round in progress with three taps")
                (r,) = board["rounds"]
                assert (r["guard"], r["route"], r["planned"]) == ("keeper-wang", "park-night", 5)
                assert r["visited"] == ROUTE[:3]
                taps = {c["id"]: c for c in board["checkpoints"]}
                assert all(taps[c]["last_ns"] and taps[c]["guard"] == "keeper-wang"
                           for c in ROUTE[:3])  # fmt: skip
                assert taps["boiler-house"]["last_ns"] is None
                page = vera.get("/patrol")
                assert page.status_code == 200 and "keeper-wang" in page.text
                assert "3/5 checkpoints" in page.text and "never" in page.text

                # No complete round three hours into the night: overdue, on the page too.
                def overdue() -> dict[str, Any] | None:
                    b = vera.get("/api/patrol").json()[SITE]
                    return b if b["overdue"] and b.get("overdue_alarm") else None

                board = wait(overdue, 90, "the overdue patrol on the console")
                assert board["rounds"] == []  # closed unfinished meanwhile
                assert board["last_closed"]["missed"] == "boiler-house,east-gate"
                page = vera.get("/patrol").text
                assert "OVERDUE" in page and f'id="patrol-overdue-{SITE}"' in page
        finally:
            err = stop(gw)
        assert "Traceback" not in err, err[-3000:]
