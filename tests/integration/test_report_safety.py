"""The daily safety log against a real influxd: the known day plus the patrol test's night.

Figures come from the day's rules (tests/integration/report_day.py) and the
patrol simulation (tests/unit/test_patrol_report.py), never from the report.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from gateway.loader import load_site
from gateway.patrol.influxql import influx_query
from gateway.reports.day import read_day
from gateway.reports.pdf import render_pdf
from gateway.reports.render import render_text
from gateway.reports.safety import collect_safety, excursions, safety_document
from tests.fixtures.servers import InfluxDB1, free_port
from tests.integration.report_day import DAY, SITE, at, pdftotext, site_file, write_day
from tests.integration.test_patrol_report import write_night
from tests.unit.test_patrol_report import REPO

pytestmark = pytest.mark.timeout(120)
S = 1_000_000_000


async def test_safety_log_matches_the_day_written(influxdb1: InfluxDB1, tmp_path: Path) -> None:
    exp = await write_day(influxdb1)
    await write_night(influxdb1, SITE)
    site = load_site(site_file(tmp_path, influxdb1, patrol=REPO / "rules" / "patrol.yaml"))
    query = influx_query(influxdb1.url, influxdb1.database)
    rep = collect_safety(query, site, read_day(query, site, DAY))

    assert rep.night is not None
    s = rep.night.summary
    assert (s["complete"], s["abandoned"], s["overdue"]) == (4, 1, 1)
    (leak,) = rep.leakage
    assert (leak.device, leak.point, leak.acked_by, leak.raised_ns) == (
        "leak-1", "leak_ch2", "wang", at(21))
    (cold,) = rep.excursions
    assert (cold.device, cold.start_ns, cold.end_ns, cold.peak) == ("cold-1", at(14), at(14, 30),
                                                                    9.5)
    assert list(rep.offline) == ["boiler-1"]
    (gap,) = rep.offline["boiler-1"]
    assert (gap.start_ns, gap.end_ns) == (exp.outage_1[0] - 60 * S, exp.outage_1[1])
    (outage,) = rep.gateway_outages
    assert (outage.start_ns, outage.end_ns) == (exp.gateway_outage[0] - 10 * S,
                                                exp.gateway_outage[1])

    text = render_text(safety_document(rep))
    assert text.splitlines()[1].startswith("INCOMPLETE: data missing for 2 of 7 sources")
    assert "4 complete round(s), 1 abandoned, 0 open" in text
    assert "02:30 activate -> 02:40 ack (li) -> 03:30 clear" in text
    assert "cold-1     14:00:00  14:30:00  30m00s    9.5" in text
    assert "leak-1 leak_ch2  1       21:00:00      wang" in text
    assert "rfid-gate" in text and "not polled" in text

    pdf_text = pdftotext(render_pdf(safety_document(rep)))
    assert "4 complete round(s), 1 abandoned, 0 open" in pdf_text
    assert "02:30 activate -> 02:40 ack (li) -> 03:30 clear" in pdf_text


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([3, 3, 3], []),
        ([3, 9, 10, 3], [(60, 180, 10)]),
        ([3, 9], [(60, 120, 9)]),  # still outside at the end: one poll after the last reading
        ([-40, 3, 9, 3], [(0, 60, -40), (120, 180, 9)]),
    ],
)
def test_excursions(values: list[float], expected: list[tuple[int, int, float]]) -> None:
    readings = [(i * 60 * S, float(v)) for i, v in enumerate(values)]
    got = excursions("cold", readings, -30.0, 8.0, 60 * S)
    assert [(e.start_ns // S, e.end_ns // S, e.peak) for e in got] == expected


async def test_the_gateway_command_writes_both_reports(
    influxdb1: InfluxDB1, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``gateway report heating|safety`` through the real entry point (gateway.cli.main)."""
    from gateway.cli import main

    await write_day(influxdb1)
    path = site_file(tmp_path, influxdb1)
    out = tmp_path / "safety.html"
    assert await asyncio.to_thread(
        main, ["report", "safety", "--date", DAY.isoformat(), "--site", str(path),
               "--format", "html", "-o", str(out)]) == 0
    assert '<p class="incomplete">INCOMPLETE' in out.read_text()
    assert await asyncio.to_thread(
        main, ["report", "heating", "--date", DAY.isoformat(), "--site", str(path)]) == 0
    assert capsys.readouterr().out.startswith(f"{SITE}: heating report for {DAY.isoformat()}")
    # A bad date is refused by argparse; an unreachable InfluxDB is a clear error, exit 1.
    (tmp_path / "dead").mkdir()
    dead = site_file(tmp_path / "dead", influxdb1)
    dead.write_text(dead.read_text().replace(influxdb1.url, f"http://127.0.0.1:{free_port()}"))
    assert await asyncio.to_thread(
        main, ["report", "heating", "--date", DAY.isoformat(), "--site", str(dead)]) != 0
    assert "unreachable" in capsys.readouterr().err
