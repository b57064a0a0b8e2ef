"""The console's pages as a phone's browser uses them (forms, cookies, CSRF fields), and the
server-sent event stream that tells a page it is live — or that the broker is gone."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fixtures.servers import Mosquitto
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

SITE = "pages-park"


def sse_events(client: httpx.Client, want: int, timeout: float = 30) -> list[tuple[str, Any]]:
    """The first ``want`` events of ``/stream`` as (event, data)."""
    got: list[tuple[str, Any]] = []
    with client.stream("GET", "/stream", timeout=timeout) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        kind = ""
        for line in r.iter_lines():
            if line.startswith("event: "):
                kind = line.removeprefix("event: ")
            elif line.startswith("data: "):
                got.append((kind, json.loads(line.removeprefix("data: "))))
                if len(got) >= want:
                    break
    return got


@pytest.mark.timeout(180)
def test_forms_need_csrf_reset_asks_to_confirm_and_the_stream_reports_a_lost_broker(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    site = site_yaml(tmp_path, SITE, mosquitto)
    db = tmp_path / "console.sqlite"
    add_user(db, "chief", "supervisor")
    add_user(db, "wang", "operator")
    with (
        running_sim(site, {}),
        running_gateway(site),
        running_console(site, db, "--heartbeat", "0.5") as base,
    ):
        chief = login(base, "chief")
        wait(lambda: console_alarm(chief, SITE), 60, "the alarm in the console")
        form = {"site": SITE, "alarm_id": ALARM, "action": "reset"}
        # A form without the session's CSRF token is refused and changes nothing.
        r = chief.post("/alarm", data=form)
        assert r.status_code == 403 and "CSRF" in r.text
        # Reset asks first; nothing is sent until "yes".
        csrf = chief.headers["X-CSRF-Token"]
        ask = chief.post("/alarm", data={**form, "csrf": csrf})
        assert ask.status_code == 200 and "Really reset" in ask.text
        assert all(a["action"] != "reset" for a in chief.get("/api/audit").json())
        done = chief.post("/alarm", data={**form, "csrf": csrf, "confirm": "yes"})
        assert done.status_code == 303
        shown = chief.get(done.headers["location"]).text
        # The gateway refuses: the leak is still there. The page says why.
        assert "cannot be reset while its condition is present" in shown
        # Shelve through the form, with a duration and a reason, as an operator.
        wang = login(base, "wang")
        shelve = {"site": SITE, "alarm_id": ALARM, "action": "shelve", "duration": "2h",
                  "reason": "sensor replaced tomorrow",
                  "csrf": wang.headers["X-CSRF-Token"]}  # fmt: skip
        r = wang.post("/alarm", data=shelve)
        assert r.status_code == 303 and "result=" in r.headers["location"]
        wait(lambda: console_alarm(wang, SITE)["state"] == "shelved", 15, "shelved")  # type: ignore[index]
        # Another user holding the same link sees no result; its owner sees it once.
        assert "shelve: shelved" not in chief.get(r.headers["location"]).text
        page = wang.get(r.headers["location"]).text
        assert "shelve: shelved" in page
        assert "sensor replaced tomorrow" in page and "wang via console" in page
        assert "shelve: shelved" not in wang.get(r.headers["location"]).text
        # A crafted link cannot make the console say something.
        fake = "call 555-0100"
        crafted = wang.get("/alarm", params={"site": SITE, "id": ALARM, "msg": fake, "err": fake,
                                             "result": "forged"})  # fmt: skip
        assert crafted.status_code == 200 and "555-0100" not in crafted.text

        # The stream: live while the broker is there, says so when it is gone.
        first = sse_events(chief, 2)
        assert first[0][0] == "change" and first[0][1]["broker"] is True
        assert first[1][0] in ("heartbeat", "change")
        mosquitto.server.stop()
        wait(lambda: not chief.get("/api/status").json()["broker_connected"], 20, "broker lost")
        later = sse_events(chief, 2)
        assert all(data["broker"] is False for _, data in later)
        # Acting now fails at once and says why; nothing waits for a reply that cannot come.
        r = wang.post("/api/actions", json={"site": SITE, "alarm_id": ALARM, "action": "unshelve"})
        assert r.status_code == 503 and "not connected" in r.json()["detail"]
        # The stream needs a login like everything else.
        anon = httpx.Client(base_url=base, timeout=10)
        assert anon.get("/stream").status_code == 303
