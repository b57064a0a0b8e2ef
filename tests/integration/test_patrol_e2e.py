"""Night patrol end to end: RFID simulator on a pty -> gateway -> Mosquitto and InfluxDB.

The night (22:00 into the small hours, Asia/Shanghai) is replayed 600 times
faster: `gateway-sim --speed 600` writes the taps on the reader's pty, and the gateway
runs a clock that starts at 22:00 and runs at the same speed
(`--sim-clock-start/--sim-clock-speed`). Round starts are offset by 10
simulated minutes so the gateway has opened the port before the first tap.

- a normal night gives only complete rounds and no overdue alarm;
- a missed round gives exactly one overdue alarm for its gap;
- a round tapped 10 s per leg is flagged as faked, with an alarm;
- `gateway report patrol` for the night lists the rounds and, per
  checkpoint, the taps that were sent.
"""

from __future__ import annotations

import csv
import io
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.fixtures.servers import InfluxDB1, Mosquitto
from tests.simproc import ROOT, bin_path, running_sim, wait_gateway_online

# 600x: a 240 s leg is 0.4 s real, far above the event-loop jitter of a busy
# machine; the shortest allowed walk (120 s) is 0.2 s.
SPEED = 600
ROUTE = ["gate-north", "lakeside", "playground", "boiler-house", "east-gate"]
CARD = "04A1B2C3D4"  # keeper-wang in rules/patrol.yaml
NIGHTS: dict[str, list[dict[str, Any]]] = {
    "normal": [{"route": ROUTE, "card": CARD, "start_s": [600, 9600, 18600], "walk_s": 240}],
    "missed": [{"route": ROUTE, "card": CARD, "start_s": [600, 18600], "walk_s": 240}],
    "faked": [
        {"route": ROUTE, "card": CARD, "start_s": [600], "walk_s": 10},
        {"route": ROUTE, "card": CARD, "start_s": [9600, 18600], "walk_s": 240},
    ],
}


def write_site(tmp: Path, night: str, mq: Mosquitto, influx: InfluxDB1) -> Path:
    site = {
        "site": f"patrol-{night}",
        "sources": [
            {
                "id": "rfid-gate",
                "type": "serial_line",
                "port": str(tmp / "run" / "rfid-gate"),
                "reconnect_min_s": 0.05,
                "reconnect_max_s": 0.1,
            }
        ],
        "devices": [
            {
                "id": "rfid-gate",
                "profile": "rfid-checkpoint-reader",
                "source": "rfid-gate",
                "tags": {"area": "park"},
            }
        ],
        "sinks": {
            "mqtt": {"host": "127.0.0.1", "port": mq.port, "prefix": "fsg"},
            "influx": {
                "mode": "v1",
                "url": influx.url,
                "database": influx.database,
                "create_database": True,
                "flush_interval_s": 0.2,
            },
        },
        "outbox": {"path": str(tmp / "outbox.sqlite")},
        "alerting": {"state_db": str(tmp / "alarms.sqlite")},
        "patrol": str(ROOT / "rules" / "patrol.yaml"),
        "simulation": {"scenarios": {night: {"serial": {"rfid-gate": {"rounds": NIGHTS[night]}}}}},
    }
    path = tmp / "site.yaml"
    path.write_text(yaml.safe_dump(site, sort_keys=False))
    return path


def run_night(tmp: Path, night: str, mq: Mosquitto, influx: InfluxDB1, rounds: int) -> str:
    """Replay one night until ``rounds`` rounds are closed in InfluxDB; return the gateway log.

    The last round closes about 20,000 simulated seconds (33 s real) into the
    night; the wait is bounded at 90 s real.
    """
    site = write_site(tmp, night, mq, influx)
    gw = subprocess.Popen(
        [
            bin_path("gateway"),
            "run",
            str(site),
            "--sim-clock-start",
            "2026-11-26T22:00:00+08:00",
            "--sim-clock-speed",
            str(SPEED),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # The reader's first taps come 1 s (real) after the simulator starts, and
        # opening a serial port flushes what arrived before: start the simulator only
        # once the gateway is up (its retained online status) and retrying the port.
        wait_gateway_online(mq.port, f"patrol-{night}")
        with running_sim(site, {}, "--scenario", night, "--speed", str(SPEED)):
            wait_rows(
                lambda: (
                    len(rows(influx, f"patrol-{night}", "record = 'round'")) >= rounds
                    or gw.poll() is not None
                ),
                timeout=90,
            )
            # A moment more for the findings and alarms that close the round.
            time.sleep(1.0)
    finally:
        if gw.poll() is None:
            gw.send_signal(signal.SIGTERM)
        gw.wait(timeout=30)
    err = gw.stderr.read() if gw.stderr else ""
    assert gw.returncode == 0, err
    assert "Traceback" not in err, err
    return err


def rows(influx: InfluxDB1, site: str, where: str) -> list[dict[str, Any]]:
    return influx.rows(f"SELECT * FROM patrol WHERE site = '{site}' AND {where}")


def alarm_activations(influx: InfluxDB1, site: str, rule: str) -> list[dict[str, Any]]:
    return influx.rows(
        f"SELECT * FROM alarm WHERE site = '{site}' AND rule = '{rule}' AND action = 'activate'"
    )


def wait_rows(fn: Any, timeout: float = 15) -> None:
    """InfluxDB is written by the sink at its own pace; give it a bounded moment."""
    deadline = time.monotonic() + timeout
    while not fn() and time.monotonic() < deadline:
        time.sleep(0.2)


@pytest.mark.timeout(180)
def test_normal_night_only_complete_rounds_and_report(
    tmp_path: Path, mosquitto: Mosquitto, influxdb1: InfluxDB1
) -> None:
    run_night(tmp_path, "normal", mosquitto, influxdb1, rounds=3)
    site = "patrol-normal"
    wait_rows(lambda: len(rows(influxdb1, site, "record = 'round'")) >= 3)
    rounds = rows(influxdb1, site, "record = 'round'")
    assert [r["status"] for r in rounds] == ["complete"] * 3, rounds
    taps = rows(influxdb1, site, "record = 'tap'")
    assert len(taps) == 15
    assert [t["checkpoint"] for t in taps] == ROUTE * 3
    assert {t["guard"] for t in taps} == {"keeper-wang"}
    findings = rows(influxdb1, site, "record = 'finding'")
    assert not [
        f
        for f in findings
        if f["kind"]
        in ("patrol.overdue", "patrol.faked_round", "patrol.too_fast", "patrol.checkpoint_missed")
    ]
    assert alarm_activations(influxdb1, site, "patrol_overdue") == []

    # The report read back from InfluxDB matches what the simulator tapped.
    res = subprocess.run(
        [
            bin_path("gateway"),
            "report",
            "patrol",
            "--date",
            "2026-11-26",
            "--format",
            "csv",
            "--influx-url",
            influxdb1.url,
            "--database",
            influxdb1.database,
            "--tz",
            "Asia/Shanghai",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    report = res.stdout
    lines = [r for r in csv.reader(io.StringIO(report)) if r]
    text = "\n".join(",".join(r) for r in lines)
    for cp in ROUTE:
        row = next(r for r in lines if cp in r and any(c.strip() == "3" for c in r))
        assert row, (cp, text)
    # Three complete rounds by keeper-wang, each about four 240 s legs long.
    assert text.count("complete") >= 3, text
    assert "keeper-wang" in text


@pytest.mark.timeout(180)
def test_missed_round_raises_exactly_one_overdue_alarm(
    tmp_path: Path, mosquitto: Mosquitto, influxdb1: InfluxDB1
) -> None:
    run_night(tmp_path, "missed", mosquitto, influxdb1, rounds=2)
    site = "patrol-missed"
    wait_rows(lambda: bool(alarm_activations(influxdb1, site, "patrol_overdue")))
    overdue = alarm_activations(influxdb1, site, "patrol_overdue")
    assert len(overdue) == 1, overdue
    findings = rows(influxdb1, site, "kind = 'patrol.overdue'")
    assert len(findings) == 1, findings
    rounds = rows(influxdb1, site, "record = 'round'")
    assert [r["status"] for r in rounds] == ["complete"] * 2


@pytest.mark.timeout(180)
def test_faked_round_is_flagged_with_an_alarm(
    tmp_path: Path, mosquitto: Mosquitto, influxdb1: InfluxDB1
) -> None:
    run_night(tmp_path, "faked", mosquitto, influxdb1, rounds=3)
    site = "patrol-faked"
    wait_rows(lambda: bool(alarm_activations(influxdb1, site, "patrol_faked_round")))
    assert len(alarm_activations(influxdb1, site, "patrol_faked_round")) == 1
    too_fast = rows(influxdb1, site, "kind = 'patrol.too_fast'")
    assert len(too_fast) == 4  # every leg of the faked round
    assert alarm_activations(influxdb1, site, "patrol_unknown_card") == []
