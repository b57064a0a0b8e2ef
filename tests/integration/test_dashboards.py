"""Every dashboard query runs, and returns data, on a real InfluxDB filled by the gateway.

The simulators (``gateway-sim``) play the demo site with a leak scenario and a
patrol round; the real gateway (``gateway run``, its InfluxDB sink in v1 mode)
writes readings, its own health, alarm transitions and patrol records to the
``influxdb1`` fixture's influxd for some seconds. Then every template-variable
query, every panel target and every annotation of every dashboard JSON is
substituted as Grafana would (``$timeFilter``, ``$__interval``, and each
variable set to "All": the regex group of the values its own query returned)
and run; any InfluxQL error, and any query without a single value, fails the
test, which names every such panel at once.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from dashboards import build
from tests.fixtures.servers import InfluxDB1, Mosquitto
from tests.simproc import DEMO_SITE, bin_path, free_port, running_sim

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = ROOT / "dashboards"
RUN_S = 25.0
# The patrol route of rules/patrol.yaml walked in seconds (minimum walks are
# minutes, so the round is complete but too fast: a finding), plus a card
# nobody holds (another finding).
PATROL_ROUTE = ["gate-north", "lakeside", "playground", "boiler-house", "east-gate"]
GUARD_CARD = "04A1B2C3D4"


def dashboard_files() -> list[Path]:
    return sorted(DASHBOARDS.glob("*.json"))


def test_committed_dashboards_are_what_build_py_makes() -> None:
    assert [p.name for p in dashboard_files()] == sorted(build.BUILDERS)
    assert build.main(["--check"]) == 0, "stale dashboards/*.json: run python -m dashboards.build"


def _site(tmp: Path, influx: InfluxDB1, broker: Mosquitto) -> Path:
    """The demo site, delivering to the test's influxd, with fast health and an alarm scenario."""
    data = yaml.safe_load(DEMO_SITE.read_text())
    # Without the OPC UA PLC: its server's start-up (about 2 s of address space)
    # would delay the simulator's "ready" past the first patrol taps.
    data["sources"] = [s for s in data["sources"] if s["type"] != "opcua"]
    data["devices"] = [d for d in data["devices"] if d["profile"] != "boiler-plc-opcua"]
    data["sinks"] = {"influx": {**influx.sink_config(), "flush_interval_s": 0.2,
                                "retry_min_s": 0.2, "retry_max_s": 1.0},
                     "mqtt": broker.sink_config()}
    data["outbox"] = {"path": str(tmp / "outbox.sqlite"), "synchronous": "normal"}
    data["pipeline"] = {"health_interval_s": 1.0}
    # Rule, patrol and state paths relative to the demo site still resolve from tmp.
    data["rules"] = [str((DEMO_SITE.parent / r).resolve()) for r in data.get("rules", [])]
    if isinstance(data.get("patrol"), str):
        data["patrol"] = str((DEMO_SITE.parent / data["patrol"]).resolve())
    if data.get("alerting"):
        data["alerting"]["state_db"] = str(tmp / "alarms.sqlite")
    scenarios = data.setdefault("simulation", {}).setdefault("scenarios", {})
    scenarios["default"] = {
        "description": "test: one walked round and an unknown card",
        "serial": {"rfid-gate": {"rounds": [
            # Taps before the gateway has opened the port are lost: start a few seconds in.
            {"route": PATROL_ROUTE, "card": GUARD_CARD, "start_s": [5], "walk_s": 2},
            {"route": ["lakeside"], "card": "0BADCAFE01", "start_s": [16], "walk_s": 1},
        ]}},
    }
    scenarios["dashboards"] = {
        "description": "test: leak-north channel 1 over the 300 mA alarm, leak-lake ch3 fault",
        "devices": {
            "leak-north": {"points": {"leak_ch1": {"kind": "constant", "value": 450}}},
            "leak-lake": {"points": {"fault_ch3": {"kind": "constant", "value": 1}}},
            "boiler-1": {"points": {"water_level": {"kind": "constant", "value": 150}}},
            "pipe-1": {"points": {"supply_pressure": {"kind": "constant", "value": 1.7}}},
        },
    }
    path = tmp / "site.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture
def filled_influx(
    influxdb1: InfluxDB1, mosquitto: Mosquitto, tmp_path: Path
) -> Iterator[InfluxDB1]:
    run = tmp_path / "run"
    run.mkdir()
    site = _site(tmp_path, influxdb1, mosquitto)
    env = {**os.environ, "FSG_RUN_DIR": str(run), "FSG_SIM_TCP_PORT": str(free_port())}
    with running_sim(site, env, "--scenario", "dashboards"):
        gw = subprocess.Popen(
            [bin_path("gateway"), "run", str(site), "--duration", str(RUN_S)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env,
        )
        try:
            # An operator acknowledges the first alarm, through the MQTT command topic.
            alarm_id = _first_alarm(influxdb1, deadline=time.monotonic() + RUN_S - 5)
            ack = subprocess.run(
                [bin_path("gateway"), "alarms", "ack", alarm_id, "--site", str(site),
                 "--by", "tester", "--comment", "dashboard test"],
                capture_output=True, text=True, timeout=30, env=env,
            )
            assert ack.returncode == 0, ack.stdout + ack.stderr
            _, err = gw.communicate(timeout=RUN_S + 60)
        finally:
            if gw.poll() is None:
                gw.kill()
                gw.wait()
    assert gw.returncode == 0, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    yield influxdb1


def _first_alarm(db: InfluxDB1, deadline: float) -> str:
    while time.monotonic() < deadline:
        series, _err = influxql(db, 'SHOW TAG VALUES FROM "alarm" WITH KEY = "alarm_id"')
        ids = sorted(str(row[1]) for s in series for row in s.get("values", []))
        if ids:
            return ids[0]
        time.sleep(0.5)
    raise AssertionError("the gateway raised no alarm in time")


# --------------------------------------------------------------------------- Grafana's substitution


def _regex_group(values: list[str]) -> str:
    """Grafana's InfluxDB interpolation of a multi-value/All variable: (a|b|c), regex-escaped."""
    return "(" + "|".join(re.sub(r"([\\^$.|?*+()\[\]{}/])", r"\\\1", v) for v in values) + ")"


def substitute(query: str, variables: dict[str, str]) -> str:
    q = query.replace("$timeFilter", "time > now() - 1h").replace("$__interval", "2s")
    # Longest names first, so $device never eats part of $devices.
    for name in sorted(variables, key=len, reverse=True):
        q = q.replace(f"${name}", variables[name])
    assert "$" not in re.sub(r"/\^.*?\$/", "", q), f"unsubstituted variable in {q}"
    return q


def influxql(db: InfluxDB1, q: str) -> tuple[list[dict[str, Any]], str | None]:
    r = httpx.post(f"{db.url}/query", params={"db": db.database, "epoch": "ms"},
                   data={"q": q}, timeout=30)
    body = r.json()
    if r.status_code != 200 or "error" in body:
        return [], str(body.get("error", r.text))
    res = body["results"][0]
    if "error" in res:
        return [], str(res["error"])
    return res.get("series", []), None


def has_value(series: list[dict[str, Any]]) -> bool:
    """At least one non-null value outside the time column."""
    for s in series:
        cols = s["columns"]
        for row in s.get("values", []):
            if any(v is not None for c, v in zip(cols, row, strict=True) if c != "time"):
                return True
    return False


def panel_targets(dash: dict[str, Any]) -> Iterator[tuple[str, str]]:
    for panel in dash["panels"]:
        for p in [panel, *panel.get("panels", [])]:
            for t in p.get("targets", []):
                yield f"panel {p.get('title')!r} {t['refId']}", t["query"]
    for a in dash.get("annotations", {}).get("list", []):
        if "target" in a and "query" in a["target"]:
            yield f"annotation {a['name']!r}", a["target"]["query"]


def resolve_variables(db: InfluxDB1, dash: dict[str, Any], problems: list[str]) -> dict[str, str]:
    values: dict[str, str] = {}
    for v in dash["templating"]["list"]:
        name = v["name"]
        if v["type"] == "textbox":
            values[name] = v["query"]
            continue
        assert v["type"] == "query", v
        q = substitute(v["query"], values)
        series, err = influxql(db, q)
        found = sorted({row[1] for s in series for row in s.get("values", [])})
        if err or not found:
            problems.append(f"{dash['uid']}: variable ${name}: {err or 'no values'}: {q}")
            found = ["__none__"]
        values[name] = _regex_group(found)
    return values


def test_every_dashboard_query_returns_data(filled_influx: InfluxDB1) -> None:
    problems: list[str] = []
    ran = 0
    for path in dashboard_files():
        dash = json.loads(path.read_text())
        variables = resolve_variables(filled_influx, dash, problems)
        assert {"site", "area", "device"} <= set(variables) or dash["uid"] == "fsg-patrol"
        for where, query in panel_targets(dash):
            q = substitute(query, variables)
            series, err = influxql(filled_influx, q)
            ran += 1
            if err:
                problems.append(f"{dash['uid']}: {where}: InfluxQL error {err}: {q}")
            elif not has_value(series):
                problems.append(f"{dash['uid']}: {where}: no data: {q}")
    assert ran >= 40, ran
    if problems:
        # What the gateway did write, to tell a query mistake from missing data.
        for q in ('SHOW MEASUREMENTS', 'SHOW TAG VALUES FROM "patrol" WITH KEY IN ("kind", '
                  '"record", "status")', 'SHOW TAG VALUES FROM "alarm" WITH KEY = "rule"'):
            series, _err = influxql(filled_influx, q)
            seen = sorted({str(row[-1]) for s in series for row in s.get("values", [])})
            problems.append(f"(written: {q} -> {', '.join(seen)})")
    assert not problems, f"{len(problems)} of {ran} queries failed:\n" + "\n".join(problems)
