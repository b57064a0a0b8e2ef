"""Hot reload end to end: the real gateway, the real broker and the simulator, all processes.

The gateway runs a site like the demo's (two Modbus TCP endpoints, leakage
monitors, latched and plain limit rules) against ``gateway-sim``. While it
runs, the config is changed three times, through ``gateway reload`` and
SIGHUP as ``systemctl reload`` sends it, and a signed MQTT ``reload`` command:

1. thresholds changed, a device added and one removed: the latched alarm's
   condition clears under the new limit but it stays latched, the lowered
   limit raises an alarm, the removed device's alarm returns to normal with a
   note and its retained availability is cleared (the console stops listing
   it), the added device publishes, and a ``config.applied`` event names the
   hash and the change;
2. a rule file broken: ``config.rejected`` with file:line, the ``gateway:config``
   alarm, and the running config stays (its alarm does not move);
3. the file fixed: applied again, ``gateway:config`` clears.

Throughout, the device on the untouched endpoint polls on: its poll counter
(device_health ``polls``, which starts from 0 in a new source) never goes
back, and its samples follow each other at its interval, read from MQTT.
"""

from __future__ import annotations

import itertools
import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from gateway.alerting.command_gate import sign_command
from gateway.console.state import ConsoleState
from gateway.model import SystemClock
from tests.fixtures.servers import Mosquitto, MqttCollector, Received
from tests.integration.test_alerting_e2e import start_gateway, stop
from tests.simproc import bin_path, free_port, running_sim, wait_gateway_online

SITE = "reload-park"
INTERVAL_S = 0.5
LATCH = "leak-latch:steady:leak_ch1:hihi"
PLAIN = "leak-hi:steady:leak_ch2:hi"
GONE = "leak-latch:old-1:leak_ch1:hihi"
OPS_KEY = "ops-" + "0" * 40  # the integrator's command key (commands.users.ops)


def rules_text(latch_at: int, plain_at: int) -> str:
    return f"""area: park
rules:
  - id: leak-latch
    kind: limit
    select: {{kinds: [leakage]}}
    points: [leak_ch1]
    limits:
      hihi: {{value: {latch_at}, severity: high, latch: true}}
  - id: leak-hi
    kind: limit
    select: {{kinds: [leakage]}}
    points: [leak_ch2]
    limits:
      hi: {{value: {plain_at}, severity: medium}}
"""


# Line 8 of the broken file is the misspelt key.
BROKEN_RULES = rules_text(500, 150).replace("      hihi: {value: 500", "      hihi: {valeu: 500")

DEVICES = {
    "steady": "{id: steady, profile: leakage-monitor, source: tcp-a, unit: 1, interval_s: %s,"
    " sim: {leak_ch1: {kind: constant, value: 450}, leak_ch2: {kind: constant, value: 200}}}",
    "old-1": "{id: old-1, profile: leakage-monitor, source: tcp-b, unit: 1, interval_s: %s,"
    " sim: {leak_ch1: {kind: constant, value: 450}}}",
    "new-1": "{id: new-1, profile: leakage-monitor, source: tcp-b, unit: 2, interval_s: %s,"
    " sim: {leak_ch1: {kind: constant, value: 100}}}",
}


def site_text(tmp: Path, mq: Mosquitto, ports: tuple[int, int], devices: list[str]) -> str:
    devs = "\n".join(f"  - {DEVICES[d] % INTERVAL_S}" for d in devices)
    return f"""site: {SITE}
sources:
  - {{id: tcp-a, type: modbus_tcp, host: 127.0.0.1, port: {ports[0]}, timeout_s: 0.2, retries: 0}}
  - {{id: tcp-b, type: modbus_tcp, host: 127.0.0.1, port: {ports[1]}, timeout_s: 0.2, retries: 0}}
devices:
{devs}
sinks:
  mqtt: {{host: 127.0.0.1, port: {mq.port}, prefix: fsg}}
outbox: {{path: {tmp}/state/outbox.sqlite}}
pipeline: {{health_interval_s: 1}}
local_http: {{listen: "127.0.0.1:{free_port()}"}}
commands:
  users:
    ops: {{key: "{OPS_KEY}", allow: [reload]}}
rules: [rules.yaml]
alerting:
  state_db: {tmp}/state/alarms.sqlite
"""


def json_of(msgs: list[Received], suffix: str) -> list[dict[str, Any]]:
    return [m.json() for m in msgs if m.topic.endswith(suffix)]


def payloads(msgs: list[Received], suffix: str) -> list[bytes]:
    return [m.payload for m in msgs if m.topic.endswith(suffix)]


def events(col: MqttCollector, kind: str) -> list[dict[str, Any]]:
    return [e for e in json_of(col.snapshot("/events"), "/events") if e.get("kind") == kind]


def transitions(col: MqttCollector, alarm_id: str) -> list[dict[str, Any]]:
    return json_of(col.snapshot(f"/alarms/{alarm_id}"), f"/alarms/{alarm_id}")


def wait_transition(
    col: MqttCollector, alarm_id: str, action: str, after: int = 0
) -> dict[str, Any]:
    def found(_: list[Received]) -> bool:
        return any(t["action"] == action for t in transitions(col, alarm_id)[after:])

    col.wait_for(found, 30, f"{alarm_id} {action}")
    return next(t for t in transitions(col, alarm_id)[after:] if t["action"] == action)


def wait_event(col: MqttCollector, kind: str, count: int) -> dict[str, Any]:
    col.wait_for(lambda _: len(events(col, kind)) >= count, 30, f"{count} {kind} event(s)")
    return events(col, kind)[count - 1]


def health_of(col: MqttCollector, device: str) -> list[dict[str, Any]]:
    msgs = json_of(col.snapshot(f"/{device}/telemetry"), "/telemetry")
    return [p for p in msgs if p["kind"] == "device_health"]


def wait_health(col: MqttCollector, device: str, more: int) -> None:
    """Until ``more`` further device_health samples of ``device`` arrived."""
    n = len(health_of(col, device))
    col.wait_for(lambda _: len(health_of(col, device)) >= n + more, 30, f"{device} health")


def reload_over_mqtt(mq: Mosquitto, col: MqttCollector, request_id: str) -> dict[str, Any]:
    """A signed ``reload`` command, as the console sends it; returns the gateway's reply."""
    data = {"cmd": "reload", "request_id": request_id, "issued_at": time.time()}
    payload = json.dumps(sign_command(data, "ops", OPS_KEY, SITE))
    subprocess.run(
        ["mosquitto_pub", "-h", "127.0.0.1", "-p", str(mq.port), "-q", "1",
         "-t", f"fsg/{SITE}/commands", "-m", payload],
        check=True, timeout=10,
    )  # fmt: skip

    def replies() -> list[dict[str, Any]]:
        got = json_of(col.snapshot("/replies"), "/replies")
        return [r for r in got if r.get("request_id") == request_id]

    col.wait_for(lambda _: bool(replies()), 30, f"reply to {request_id}")
    return replies()[0]


def reload_cli(site: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [bin_path("gateway"), "reload", str(site), "--timeout", "30"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


@pytest.mark.timeout(240)
def test_reload_applies_changes_keeps_polling_and_refuses_a_broken_rule_file(
    tmp_path: Path, mosquitto: Mosquitto, mqtt_collector: Any
) -> None:
    (tmp_path / "state").mkdir()
    ports = (free_port(), free_port())
    sim_site = tmp_path / "sim" / "site.yaml"
    sim_site.parent.mkdir()
    sim_site.write_text(
        site_text(tmp_path / "sim", mosquitto, ports, ["steady", "old-1", "new-1"])
        .replace("rules: [rules.yaml]\n", "")
    )  # fmt: skip
    site = tmp_path / "site.yaml"
    rules = tmp_path / "rules.yaml"
    rules.write_text(rules_text(300, 250))
    site.write_text(site_text(tmp_path, mosquitto, ports, ["steady", "old-1"]))
    col: MqttCollector = mqtt_collector(mosquitto, f"fsg/{SITE}/#")
    with running_sim(sim_site, {}):
        gw = start_gateway(site)
        try:
            wait_gateway_online(mosquitto.port, SITE)
            latched = wait_transition(col, LATCH, "activate")
            assert latched["latched"]
            wait_transition(col, GONE, "activate")
            assert not transitions(col, PLAIN)  # 200 mA under the 250 mA limit
            wait_health(col, "steady", 2)  # poll counters before the reloads

            # 1. New thresholds, old-1 removed, new-1 added: through `gateway reload`.
            rules.write_text(rules_text(500, 150))
            site.write_text(site_text(tmp_path, mosquitto, ports, ["steady", "new-1"]))
            n_latch = len(transitions(col, LATCH))
            res = reload_cli(site)
            assert res.returncode == 0, res.stdout + res.stderr
            assert "applied" in res.stdout and "new-1" in res.stdout, res.stdout
            applied = wait_event(col, "config.applied", 1)["data"]
            assert applied["devices_added"] == ["new-1"]
            assert applied["devices_removed"] == ["old-1"]
            assert applied["rules_changed"] == ["leak-hi", "leak-latch"]
            assert applied["sources_restarted"] == ["tcp-b"]
            assert applied["sources_added"] == applied["sources_removed"] == []
            assert len(applied["hash"]) == 64 and applied["hash"][:12] in res.stdout
            # The latched alarm: condition gone under 500 mA, still latched until reset.
            cleared = wait_transition(col, LATCH, "condition_clear", n_latch)
            assert cleared["latched"] and cleared["active"] and cleared["state"] == "unacknowledged"
            # The lowered limit raises the plain alarm on the next sample.
            raised = wait_transition(col, PLAIN, "activate")
            assert raised["value"] == 200
            # The removed device's alarm returns to normal, saying why.
            retired = wait_transition(col, GONE, "retire")
            assert retired["state"] == "normal" and not retired["latched"]
            assert "device 'old-1' removed" in json.dumps(retired)
            col.wait_for(lambda m: bool(json_of(m, "/new-1/telemetry")), 30, "new-1 telemetry")
            # The removed device's retained availability is cleared (an empty retained
            # message), so a dashboard or console subscribing now no longer sees it.
            col.wait_for(lambda m: b"" in payloads(m, "/old-1/availability"), 30, "old-1 cleared")
            fresh: MqttCollector = mqtt_collector(mosquitto, f"fsg/{SITE}/+/availability")
            fresh.wait_for(lambda m: bool(payloads(m, "/new-1/availability")), 30, "new-1 retained")
            assert payloads(fresh.snapshot(), "/steady/availability")  # online or, loaded, not
            assert payloads(fresh.snapshot(), "/old-1/availability") == []
            # The console, fed what the gateway published in order, no longer lists old-1.
            console = ConsoleState("fsg", SystemClock())
            for m in col.snapshot():
                console.handle(m.topic, m.payload)
            assert {d for (_, d) in console.devices} == {"steady", "new-1"}

            # 2. A broken rule file: rejected with file:line, the running config stays.
            rules.write_text(BROKEN_RULES)
            n_plain = len(transitions(col, PLAIN))
            gw.send_signal(signal.SIGHUP)
            rejected = wait_event(col, "config.rejected", 1)["data"]
            assert f"{rules}:8" in rejected["error"], rejected
            assert rejected["hash"] == applied["hash"]
            alarm = wait_transition(col, "gateway:config", "activate")
            assert f"{rules}:8" in alarm["message"]
            steady_before = len(json_of(col.snapshot("/steady/telemetry"), "/telemetry"))
            col.wait_for(
                lambda m: len(json_of(m, "/steady/telemetry")) > steady_before + 2,
                30, "steady polling on under the old config",
            )  # fmt: skip
            assert len(transitions(col, PLAIN)) == n_plain  # nothing re-bound, nothing moved

            # 3. Fixed: the next good reload (a signed MQTT command) applies and clears
            # gateway:config.
            rules.write_text(rules_text(500, 150))
            reply = reload_over_mqtt(mosquitto, col, "reload-3")
            assert reply["ok"] and reply["accepted"], reply
            again = wait_event(col, "config.applied", 2)["data"]
            assert again["hash"] == applied["hash"] and again["summary"] == "no change"
            wait_transition(col, "gateway:config", "clear")
            wait_health(col, "steady", 2)  # ... and after them
        finally:
            log = stop(gw)
    assert gw.returncode == 0, log[-3000:]
    assert "config reload rejected" in log and "rules.yaml:8" in log
    assert not (tmp_path / "state" / "gateway.pid").exists()  # `gateway reload` finds none now

    # The untouched endpoint's device never stopped: one source, one counter, no gap.
    msgs = col.snapshot("/steady/telemetry")
    polls = [h["values"]["polls"] for h in health_of(col, "steady")]
    assert len(polls) >= 4 and polls == sorted(polls), polls
    samples = sorted(p["ts_ns"] for p in json_of(msgs, "/telemetry") if p["kind"] == "leakage")
    gaps = [(b - a) / 1e9 for a, b in itertools.pairwise(samples)]
    # Loose (late polls on a loaded machine); the counters above are what rules out a restart.
    assert max(gaps) < 6 * INTERVAL_S, max(gaps)
    # The device whose source was restarted did start again from zero: the check can fail.
    new_polls = [h["values"]["polls"] for h in health_of(col, "new-1")]
    assert new_polls and min(new_polls) < max(polls)
