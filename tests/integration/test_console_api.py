"""The console's HTTP API over a real socket, against real Mosquitto, InfluxDB, a simulator
and a gateway (each its own process): who may do what, bad input, CSRF, and an
acknowledgement that reaches the alarm on MQTT and InfluxDB under the user's name."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fixtures.servers import InfluxDB1, Mosquitto, MqttCollector
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

SITE = "console-park"


@pytest.mark.timeout(180)
def test_console_api_roles_csrf_input_and_an_ack_under_the_users_name(
    tmp_path: Path, mosquitto: Mosquitto, influxdb1: InfluxDB1, mqtt_collector: Any
) -> None:
    site = site_yaml(tmp_path, SITE, mosquitto, influxdb1)
    db = tmp_path / "console.sqlite"
    for name, role in (("vera", "viewer"), ("wang", "operator"), ("chief", "supervisor")):
        add_user(db, name, role)
    col: MqttCollector = mqtt_collector(mosquitto, "fsg/#")
    with running_sim(site, {}), running_gateway(site), running_console(site, db) as base:
        anon = httpx.Client(base_url=base, timeout=30)
        # 401 without login (API), the login page for a page.
        assert anon.get("/api/alarms").status_code == 401
        page = anon.get("/")
        assert page.status_code == 303 and page.headers["location"].startswith("/login")
        bad = anon.post("/login", data={"username": "wang", "password": "wrong password"})
        assert bad.status_code == 401 and "wrong user name or password" in bad.text

        viewer, wang, chief = login(base, "vera"), login(base, "wang"), login(base, "chief")
        raised = wait(lambda: console_alarm(viewer, SITE), 60, "the leakage alarm in the console")
        assert raised["state"] == "unacknowledged" and raised["severity"] == "high"
        assert raised["raised_ns"] is not None
        ack = {"site": SITE, "alarm_id": ALARM, "action": "ack"}

        # 403: a viewer may look, not acknowledge.
        r = viewer.post("/api/actions", json=ack)
        assert r.status_code == 403 and "viewer" in r.json()["detail"]
        # 403: an operator may not reset (supervisors do).
        assert wang.post("/api/actions", json={**ack, "action": "reset"}).status_code == 403
        # CSRF: a session without the token, or with another session's, is refused.
        no_token = wang.post("/api/actions", json=ack, headers={"X-CSRF-Token": ""})
        assert no_token.status_code == 403 and "CSRF" in no_token.json()["detail"]
        other = wang.post(
            "/api/actions", json=ack, headers={"X-CSRF-Token": chief.headers["X-CSRF-Token"]}
        )
        assert other.status_code == 403
        # 422: bad input changes nothing (and nobody can claim another's name).
        for body in (
            {**ack, "by": "chief"},
            {**ack, "action": "explode"},
            {**ack, "action": "shelve", "duration": "2h"},  # no reason
            {**ack, "action": "shelve", "duration": "soon", "reason": "x"},
            {"site": SITE, "action": "ack"},
        ):
            r = wang.post("/api/actions", json=body)
            assert r.status_code == 422, (body, r.status_code, r.text)
        assert wang.post("/api/actions", json={**ack, "alarm_id": "no:such"}).status_code == 404
        assert console_alarm(viewer, SITE)["state"] == "unacknowledged"  # type: ignore[index]

        # The acknowledgement: the gateway's reply, then the retained state on MQTT.
        r = wang.post("/api/actions", json={**ack, "comment": "on my way"})
        assert r.status_code == 200, r.text
        assert r.json()["ok"] is True and r.json()["state"] == "acknowledged"
        assert r.json()["actor"] == "wang via console"
        states = col.wait_for(
            lambda ms: any(m.topic == f"fsg/{SITE}/alarms/{ALARM}"
                           and m.json().get("state") == "acknowledged" for m in ms),
            15, "acknowledged state on MQTT",
        )  # fmt: skip
        acked = [m.json() for m in states if m.topic.endswith(ALARM)][-1]
        assert acked["actor"] == "wang via console"
        # The command on the wire was signed by the console and named wang.
        cmds = [m.json() for m in col.snapshot(f"fsg/{SITE}/commands")]
        assert any(c["by"] == "wang" and c["user"] == "console" and c["sig"] for c in cmds)
        # InfluxDB has the transition with the user's name.
        rows = wait(
            lambda: influxdb1.rows(
                f"SELECT actor, state FROM alarm WHERE alarm_id = '{ALARM}'"
                " AND state = 'acknowledged'"
            ),
            20, "the acknowledged transition in InfluxDB",
        )  # fmt: skip
        assert "wang via console" in str(rows)
        # The console shows it too, with the timeline from the events topic.
        wait(lambda: console_alarm(viewer, SITE)["state"] == "acknowledged", 15, "console state")  # type: ignore[index]
        detail = viewer.get("/api/alarm", params={"site": SITE, "id": ALARM}).json()
        assert [t["action"] for t in detail["timeline"]][-1] == "ack"
        # The gateway refuses a second ack; the API says so (409) and the audit log keeps both.
        again = wang.post("/api/actions", json=ack)
        assert again.status_code == 409
        audit = chief.get("/api/audit").json()
        assert [(a["user"], a["action"], a["ok"]) for a in audit[:2]] == [
            ("wang", "ack", False),
            ("wang", "ack", True),
        ]
        assert viewer.get("/api/audit").status_code == 403

        # An API token works without a cookie or CSRF token, with its user's role.
        token = wang.post("/api/tokens", json={"label": "script"}).json()["token"]
        script = httpx.Client(base_url=base, timeout=30,
                              headers={"Authorization": f"Bearer {token}"})  # fmt: skip
        assert script.get("/api/me").json()["name"] == "wang"
        assert script.post("/api/actions", json={**ack, "action": "reset"}).status_code == 403
        bogus = httpx.Client(base_url=base, headers={"Authorization": "Bearer fsg_nope"})
        assert bogus.get("/api/alarms").status_code == 401

        # The pages render for a phone: the list, the alarm, devices and gateways.
        html = viewer.get("/").text
        assert ALARM in html and "acknowledged" in html
        assert 'name="viewport"' in html
        page = wang.get("/alarm", params={"site": SITE, "id": ALARM}).text
        assert "wang via console" in page and "Timeline" in page
        wait(lambda: "online" in viewer.get("/devices").text, 15, "device online")
        assert "north-gate" in viewer.get("/devices").text
        wait(lambda: SITE in viewer.get("/gateways").text, 15, "gateway listed")
