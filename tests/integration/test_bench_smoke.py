"""The benchmark harness at a tiny size: it runs end to end, loses nothing, reports every figure.

No timing is asserted (the machine is shared); only that the harness works
and its accounting holds: every point the simulator served reached both
InfluxDB and MQTT, and the table and the JSON carry every figure.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

FLEET_FIGURES = (
    "offered_points_s",
    "delivered_points_s_mqtt",
    "delivered_points_s_influx",
    "produced_points",
    "lost_points",
    "cpu_s_per_100k_points",
    "peak_rss_mb",
    "backlog_max",
    "backlog_end_of_load",
    "outbox_points_left_at_exit",
    "drain_s",
    "sustained",
    "alarm_latency_ms",
    "loop_lag_max_ms",
    "mosquitto_cpu_pct",
    "influxdb_cpu_pct",
)


@pytest.mark.timeout(300)
def test_bench_quick_run_loses_nothing_and_reports_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    # Its own process group: on a timeout the harness's children (simulator,
    # Mosquitto, InfluxDB, gateway) go with it instead of loading the machine.
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.run", "--quick", "--json", str(out), "--no-md"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=280)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        pytest.fail("bench --quick did not finish in 280 s:\n" + stdout[-3000:] + stderr[-3000:])
    assert proc.returncode == 0, stdout[-3000:] + stderr[-3000:]
    res = json.loads(out.read_text())
    assert set(res["machine"]) >= {"cpu_model", "cores", "python"}
    runs = [res["fleet"], *res["scaling"]]
    assert len(runs) == 3  # the fleet run and scaling at 1x and 4x
    for run in runs:
        assert set(FLEET_FIGURES) <= set(run), set(FLEET_FIGURES) - set(run)
        assert run["produced_points"] > 0
        assert run["lost_points"] == 0, run
        assert run["delivered_influx"] >= run["produced_points"]
        assert run["delivered_mqtt"] >= run["produced_points"]
        assert run["outbox_points_left_at_exit"] == 0
    fleet = res["fleet"]
    assert fleet["alarms_seen"] >= 1, fleet
    assert set(fleet["alarm_latency_ms"]) >= {"p50", "p99", "max"}
    serial = res["serial"]
    assert {r["merge"] for r in serial["runs"]} == {True, False}
    for r in serial["runs"]:
        assert r["registers_s"] > 0 and r["pct_of_line_limit"] > 0
    summary = res["summary"]
    assert summary["points_lost"] == 0
    for key in (
        "points_s_delivered",
        "max_sustained_points_s",
        "cpu_s_per_100k_points",
        "peak_rss_mb",
        "alarm_latency_ms",
        "serial_pct_of_line_planner",
        "serial_pct_of_line_per_point",
    ):
        assert key in summary, key
    # The printed table names every section.
    for word in ("fleet runs", "alarm latency", "serial bus", "summary", "machine"):
        assert word in stdout, word
