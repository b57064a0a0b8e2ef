"""The patrol report against a real influxd: a simulated night written as the Influx sink writes it.

The night's records come from the engine (tests/unit/test_patrol_report.py
simulates it), go through the real ``InfluxSink`` (v1 line protocol over
HTTP) into influxd started by the ``influxdb1`` fixture, and the report reads
them back with InfluxQL. It must tell the story of the taps that were sent.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import yaml

from gateway.config import InfluxSinkConfig
from gateway.outbox import Record, RecordKind
from gateway.patrol import load_patrol
from gateway.patrol.influxql import influx_query
from gateway.patrol.night import collect_night
from gateway.patrol.report import build_patrol_report
from gateway.patrol_cli import register_cli
from gateway.plugins.influx.sink import InfluxSink
from tests.fixtures.servers import InfluxDB1
from tests.unit.test_patrol_report import (
    NIGHT,
    REPO,
    SITE,
    check_report_matches_taps,
    simulate_night,
)

pytestmark = pytest.mark.timeout(60)


async def write_night(db: InfluxDB1, site: str) -> int:
    night = simulate_night()
    records = [
        Record(seq=i + 1, kind=RecordKind.EVENT, ts_ns=ev.ts_ns, item=ev)
        for i, ev in enumerate(night.events)
    ]
    async with InfluxSink(InfluxSinkConfig(**db.sink_config()), site) as sink:
        for i in range(0, len(records), 100):
            await sink.send(records[i : i + 100])
    return len(records)


async def test_report_read_back_from_influxdb_matches_the_taps(influxdb1: InfluxDB1) -> None:
    n = await write_night(influxdb1, SITE)
    # Another site in the same database must not leak into this site's report.
    await write_night(influxdb1, "other-park")
    stored = influxdb1.rows(f"SELECT count(message) FROM patrol WHERE site = '{SITE}'")
    assert stored and stored[0]["count"] > 0
    query = influx_query(influxdb1.url, influxdb1.database)
    cfg = load_patrol(REPO / "rules" / "patrol.yaml")
    rep = collect_night(query, NIGHT, config=cfg, site=SITE)
    check_report_matches_taps(rep, simulate_night())
    assert n > 50
    text = build_patrol_report(query, NIGHT, config=cfg, site=SITE)
    assert "4 complete round(s), 1 abandoned, 0 open; 1 overdue gap(s)" in text


async def test_grafana_style_queries_work_on_the_schema(influxdb1: InfluxDB1) -> None:
    """The InfluxQL a dashboard panel would use (with $timeFilter spelled out)."""
    await write_night(influxdb1, SITE)
    tf = "time > 0"
    per_cp = influxdb1.rows(
        "SELECT count(\"seq\") FROM \"patrol\" WHERE \"record\" = 'tap' AND \"status\" = 'ok'"
        f" AND {tf} GROUP BY \"checkpoint\""
    )
    # 4 in the night, plus the 20:00 and 07:00 rounds outside it.
    assert {r["checkpoint"]: r["count"] for r in per_cp}["playground"] == 6
    rounds = influxdb1.rows(
        f"SELECT \"duration_s\", \"round\" FROM \"patrol\" WHERE \"record\" = 'round' AND {tf}"
        " GROUP BY \"guard\", \"status\""
    )
    assert sum(r["status"] == "abandoned" for r in rounds) == 1
    alarms = influxdb1.rows(
        f"SELECT \"message\" FROM \"patrol\" WHERE \"record\" = 'finding' AND \"alarm\" = true"
        f" AND {tf} GROUP BY \"kind\""
    )
    assert {r["kind"] for r in alarms} >= {"patrol.overdue", "patrol.faked_round",
                                            "patrol.unknown_card"}


async def test_cli_reads_the_site_file(
    influxdb1: InfluxDB1, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    await write_night(influxdb1, SITE)
    site_file = tmp_path / "site.yaml"
    site_file.write_text(
        yaml.safe_dump(
            {
                "site": SITE,
                "sources": [{"id": "rfid-gate", "type": "serial_line", "port": "/dev/null"}],
                "devices": [
                    {"id": "rfid-gate", "profile": "rfid-checkpoint-reader", "source": "rfid-gate"}
                ],
                "sinks": {"influx": influxdb1.sink_config()},
                "patrol": str(REPO / "rules" / "patrol.yaml"),
            }
        )
    )
    ap = argparse.ArgumentParser()
    register_cli(ap.add_subparsers(dest="command", required=True))
    args = ap.parse_args(
        ["report", "patrol", "--date", NIGHT.isoformat(), "--format", "csv",
         "--site", str(site_file)]
    )
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"# {SITE}: patrol report for the night of 2026-01-01")
    assert out.count("\nrounds,") == 5
    assert "rounds,20260102-023000-keeper-wang,keeper-wang,2026-01-02T02:30:00+08:00" in out
