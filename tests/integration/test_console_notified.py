"""The alarm's timeline in the console says who was told, how and at which escalation level:
a real gateway raises the leakage alarm, pages level 1 through a real webhook receiver, then
escalates to level 2; the console (real socket, real Mosquitto) shows both messages."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.servers import Mosquitto, MqttCollector
from tests.integration import console_support as cs
from tests.integration.console_support import ALARM
from tests.integration.receivers import WebhookReceiver
from tests.simproc import running_sim

SITE = "notified-park"


def escalating_site(tmp: Path, mq: Mosquitto, hook: WebhookReceiver) -> Path:
    site = cs.site_yaml(tmp, SITE, mq)
    with site.open("a") as f:  # the file ends inside its alerting: block
        f.write(
            f"""  group_window_s: 0
  channels:
    - {{type: webhook, name: chat, url: "http://127.0.0.1:{hook.port}/robot", preset: wecom}}
  roster:
    people: {{wang: {{}}, li: {{}}, chief: {{}}}}
    shifts: [{{name: always, levels: [[wang, li], [chief]]}}]
  routes:
    - {{name: safety, match: {{min_severity: medium}}, channels: [chat],
       escalation: [{{after_s: 0}}, {{after_s: 3}}]}}
"""
        )
    return site


def notified(timeline: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [t for t in timeline if t["action"] == "notified"]


@pytest.mark.timeout(240)
def test_the_timeline_lists_each_notification_with_recipients_channel_and_level(
    tmp_path: Path, mosquitto: Mosquitto, mqtt_collector: Any
) -> None:
    hook = WebhookReceiver()
    site = escalating_site(tmp_path, mosquitto, hook)
    db = tmp_path / "console.sqlite"
    cs.add_user(db, "vera", "viewer")
    col: MqttCollector = mqtt_collector(mosquitto, f"fsg/{SITE}/events")
    try:
        with running_sim(site, {}), cs.running_gateway(site), cs.running_console(site, db) as base:
            vera = cs.login(base, "vera")

            def timeline() -> list[dict[str, Any]]:
                r = vera.get("/api/alarm", params={"site": SITE, "id": ALARM})
                return list(r.json()["timeline"]) if r.status_code == 200 else []

            lines = cs.wait(lambda: len(notified(timeline())) >= 2 and notified(timeline()), 60,
                         "both levels in the timeline")  # fmt: skip
            first, second = lines[0], lines[1]
            assert (first["actor"], first["channel"], first["level"]) == ("wang, li", "chat", 1)
            assert (second["actor"], second["channel"], second["level"]) == ("chief", "chat", 2)
            assert len(hook.posts) >= 2  # the receiver really got both messages
            # The gateway's own record on events, as any MQTT client sees it.
            sent = [m.json()["data"] for m in col.snapshot(f"fsg/{SITE}/events")
                    if m.json().get("kind") == "notification.sent"
                    and ALARM in m.json()["data"]["alarm_ids"]]  # fmt: skip
            got = [(d["channel"], d["recipients"], d["level"]) for d in sent]
            assert got[:2] == [("chat", ["wang", "li"], 1), ("chat", ["chief"], 2)], sent
            assert sent[1]["possible_duplicate"] is False
            page = vera.get("/alarm", params={"site": SITE, "id": ALARM}).text
            assert "wang, li by chat (level 1)" in page and "chief by chat (level 2)" in page
    finally:
        hook.close()
