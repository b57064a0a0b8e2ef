"""Alerting end to end: a simulated leakage fault through the real gateway to people.

The simulator (its own process) drives leak_ch1 of a leakage monitor to
450 mA; the gateway (its own process, restarted mid-test) raises the latched
300 mA alarm after the rule's 5 s on-delay. The alarm must reach Mosquitto
(retained state + event stream), InfluxDB (the `alarm` measurement), an SMTP
server (aiosmtpd) and a webhook receiver (aiohttp), both on loopback. Nobody
acknowledges: level 2 of the roster is told; then an on-call engineer
acknowledges with `mosquitto_pub`, and level 3 is never told.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from gateway.alerting.command_gate import sign_command
from tests.fixtures.servers import InfluxDB1, Mosquitto, MqttCollector
from tests.integration.receivers import Mailbox, WebhookReceiver
from tests.simproc import bin_path, running_sim
from tests.sitebuilder import Doc, leak_monitor_site, write_site

ALARM = "leakage:leak-1:leak_ch1:hihi"
LI_KEY = "li-" + "0" * 40  # the on-call engineer's command key (commands.users)
L2_AFTER_S = 8
L3_AFTER_S = 20


def site_doc(tmp: Path, mq: Mosquitto, influx: InfluxDB1, smtp_port: int, hook: int) -> Doc:
    doc = leak_monitor_site("e2e-park", tmp, mq, influx, li={"key": LI_KEY})
    doc["alerting"] |= {
        "group_window_s": 0.5,
        "channels": [
            {"type": "email", "name": "mail", "host": "127.0.0.1", "port": smtp_port,
             "security": "none", "sender": "gateway@park.example"},
            {"type": "webhook", "name": "chat", "url": f"http://127.0.0.1:{hook}/robot",
             "preset": "dingtalk"},
        ],
        "roster": {
            "timezone": "UTC",
            "people": {
                "wang": {"email": "wang@park.example", "phone": "13800000001"},
                "li": {"email": "li@park.example"},
                "chief": {"email": "chief@park.example"},
            },
            "shifts": [{"name": "always", "levels": [["wang"], ["li"], ["chief"]]}],
        },
        "routes": [{
            "name": "safety",
            "match": {"min_severity": "high", "rules": ["leakage"]},  # only the 300 mA alarm
            "channels": ["mail", "chat"],
            "escalation": [{"after_s": 0}, {"after_s": L2_AFTER_S}, {"after_s": L3_AFTER_S}],
        }],
    }  # fmt: skip
    return doc


def site_yaml(tmp: Path, mq: Mosquitto, influx: InfluxDB1, smtp_port: int, hook: int) -> Path:
    return write_site(tmp, site_doc(tmp, mq, influx, smtp_port, hook))


def start_gateway(site: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [bin_path("gateway"), "run", str(site)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def stop(proc: subprocess.Popen[str]) -> str:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.stderr.read() if proc.stderr else ""


def wait(cond: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s: {what}")
        time.sleep(0.1)


def command_over_mqtt(
    mq: Mosquitto, col: MqttCollector, payload: str, request_id: str
) -> dict[str, Any]:
    """Publish a command with mosquitto_pub, as an on-call phone would; return the reply."""
    topic = "fsg/e2e-park/commands"
    subprocess.run(
        [
            "mosquitto_pub",
            "-h",
            "127.0.0.1",
            "-p",
            str(mq.port),
            "-q",
            "1",
            "-t",
            topic,
            "-m",
            payload,
        ],
        check=True,
        timeout=10,
    )

    def replies() -> list[dict[str, Any]]:
        return [
            m.json() for m in col.snapshot("/replies") if m.json().get("request_id") == request_id
        ]

    wait(lambda: bool(replies()), 15, f"reply to {request_id}")
    return replies()[0]


def alarm_states(col: MqttCollector) -> list[dict[str, Any]]:
    return [m.json() for m in col.snapshot(f"/alarms/{ALARM}")]


@pytest.mark.timeout(240)
def test_leak_fault_reaches_everyone_escalates_and_ack_stops_it(
    tmp_path: Path,
    mosquitto: Mosquitto,
    influxdb1: InfluxDB1,
    mqtt_collector: Any,
    mailbox: tuple[Mailbox, int],
    webhook: WebhookReceiver,
) -> None:
    box, smtp_port = mailbox
    site = site_yaml(tmp_path, mosquitto, influxdb1, smtp_port, webhook.port)
    col: MqttCollector = mqtt_collector(mosquitto, "fsg/#")
    with running_sim(site, {}):
        gw = start_gateway(site)
        try:
            # 1. The alarm: raised after the 5 s on-delay, retained on MQTT.
            wait(
                lambda: any(s["state"] == "unacknowledged" for s in alarm_states(col)),
                40,
                "leakage alarm on MQTT",
            )
            raised = next(s for s in alarm_states(col) if s["state"] == "unacknowledged")
            telemetry = [m.json() for m in col.snapshot("/leak-1/telemetry")]
            first_over = min(t["ts_ns"] for t in telemetry if t["values"].get("leak_ch1", 0) > 300)
            delay = (raised["ts_ns"] - first_over) / 1e9
            assert 4.5 <= delay <= 7.0, delay  # on_delay_s is 5, polls every 0.5 s
            assert raised["latched"] and raised["severity"] == "high"
            assert "450" in raised["message"]
            # Its copy on the events topic follows it (same batch, next message).
            wait(
                lambda: any(
                    e.get("alarm_id") == ALARM and e.get("action") == "activate"
                    for e in (m.json() for m in col.snapshot("/events"))
                ),
                10,
                "the activation on the events topic",
            )
            # 2. Level 1 is told by e-mail and in the group chat.
            wait(lambda: box.to("wang@park.example"), 20, "e-mail to level 1")
            wait(lambda: webhook.posts, 20, "webhook post")
            assert "leak" in json.dumps(webhook.posts[0], ensure_ascii=False)
            assert webhook.posts[0].get("msgtype") in ("text", "markdown")  # DingTalk robot format
            # 3. InfluxDB has the transition, usable as a Grafana annotation.
            wait(
                lambda: influxdb1.rows(f"SELECT * FROM alarm WHERE alarm_id = '{ALARM}'"),
                20,
                "alarm row in InfluxDB",
            )
            # 4. Restart: state and the pending escalation survive, nothing fires twice.
            stop(gw)
            gw = start_gateway(site)
            wait(lambda: box.to("li@park.example"), L2_AFTER_S + 25, "level 2 escalation")
            activations = [
                e
                for e in (m.json() for m in col.snapshot("/events"))
                if e.get("alarm_id") == ALARM and e.get("action") == "activate"
            ]
            assert len(activations) == 1, activations
            assert len(box.to("wang@park.example")) == 1
            # 5. An on-call engineer acknowledges with mosquitto_pub; the reply says so.
            cmd = sign_command({"cmd": "ack", "alarm_id": ALARM, "request_id": "r-1",
                                "issued_at": time.time()}, "li", LI_KEY, "e2e-park")
            reply = command_over_mqtt(mosquitto, col, json.dumps(cmd), "r-1")
            assert reply["ok"] is True and reply["state"] == "acknowledged"
            wait(lambda: alarm_states(col)[-1]["state"] == "acknowledged", 10, "acked state")
            assert "li" in alarm_states(col)[-1]["actor"]
            # An unsigned one claiming to be li is refused.
            forged = {"cmd": "ack", "alarm_id": ALARM, "by": "li", "request_id": "r-3",
                      "issued_at": time.time()}
            refused = command_over_mqtt(mosquitto, col, json.dumps(forged), "r-3")
            assert refused["error"] == "refused" and "unsigned" in refused["message"]
            # A malformed command is answered with an error and changes nothing.
            bad = command_over_mqtt(mosquitto, col, '{"cmd": "ack", "request_id": "r-2"}', "r-2")
            assert bad["ok"] is False and bad["error"] == "bad_command"
            assert alarm_states(col)[-1]["state"] == "acknowledged"
            # 6. Level 3 is never told: the acknowledgement stopped the escalation.
            time.sleep(max(0.0, L3_AFTER_S + 5 - (time.time_ns() - raised["ts_ns"]) / 1e9))
            assert box.to("chief@park.example") == []
            assert gw.poll() is None
        finally:
            err = stop(gw)
    assert "Traceback" not in err, err
