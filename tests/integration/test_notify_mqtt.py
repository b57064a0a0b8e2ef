"""The MQTT notification channel publishes on its own topic (real gateway, real Mosquitto)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.servers import Mosquitto, MqttCollector
from tests.integration.test_alarm_crash import start_gateway
from tests.integration.test_alerting_e2e import stop
from tests.simproc import running_sim
from tests.sitebuilder import Doc, write_site


@pytest.mark.timeout(120)
def test_mqtt_channel_publishes_on_its_topic(
    tmp_path: Path, one_level_doc: Doc, mosquitto: Mosquitto, mqtt_collector: Any
) -> None:
    alerting = one_level_doc["alerting"]
    alerting["channels"].insert(0, {"type": "mqtt", "name": "pager", "topic": "pager/night"})
    alerting["routes"][0]["channels"] = ["pager"]
    site = write_site(tmp_path, one_level_doc)
    col: MqttCollector = mqtt_collector(mosquitto, "fsg/e2e-park/#")
    with running_sim(site, {}):
        gw = start_gateway(site, {})
        try:
            col.wait_for(
                lambda ms: any(m.topic == "fsg/e2e-park/pager/night" for m in ms),
                40,
                "the notification on the channel's topic",
            )
            [note] = col.snapshot("/pager/night")
        finally:
            err = stop(gw)
    assert "Traceback" not in err, err
    body = note.json()
    assert body["alarms"][0]["alarm_id"] == "leakage:leak-1:leak_ch1:hihi"
    assert body["recipients"] == ["wang"] and "ALARM" in body["title"]
    # Only there: the events topic carries alarm transitions, not the pages.
    assert not [
        m for m in col.snapshot("/events") if m.json().get("kind") == "notification"
    ]
