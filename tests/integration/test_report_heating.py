"""The heating report against a real influxd: a known day in, every figure checked.

The day is written by the real ``InfluxSink`` (tests/integration/report_day.py);
the expected figures are computed there from the day's rules, not from the
report code.
"""

from __future__ import annotations

import argparse
import os
import subprocess
from pathlib import Path

import pytest

from gateway.loader import load_site
from gateway.patrol.influxql import influx_query
from gateway.patrol_cli import register_cli as register_patrol
from gateway.reports.cli import build_document, build_report, register_cli
from gateway.reports.day import GATEWAY, read_day
from gateway.reports.heating import collect_heating
from gateway.reports.render import render_csv, render_html, render_text
from tests.fixtures.servers import InfluxDB1
from tests.integration.report_day import (
    DAY,
    END,
    ESCALATE_S,
    GAS_PLAN,
    SITE,
    START,
    at,
    site_file,
    write_day,
)

pytestmark = pytest.mark.timeout(120)
S = 1_000_000_000


async def test_heating_figures_match_the_day_written(influxdb1: InfluxDB1, tmp_path: Path) -> None:
    exp = await write_day(influxdb1)
    await write_day(influxdb1, "other-site")  # must not leak into this site's report
    site = load_site(site_file(tmp_path, influxdb1))
    day = read_day(influx_query(influxdb1.url, influxdb1.database), site, DAY)
    assert (day.start_ns, day.end_ns) == (START, END)
    rep = collect_heating(day)

    b1, b2 = rep.boilers
    assert b1.device == "boiler-1"
    assert b1.running_h == pytest.approx(exp.running_h_1)
    assert b1.starts == exp.starts_1
    assert b1.gas_m3 == pytest.approx(exp.gas_1)
    assert b1.supply is not None and b1.return_ is not None and b1.pressure is not None
    assert (b1.supply.min, b1.supply.max) == (min(exp.supply_1), max(exp.supply_1))
    assert b1.supply.mean == pytest.approx(sum(exp.supply_1) / len(exp.supply_1))
    assert b1.return_.mean == pytest.approx(sum(exp.return_1) / len(exp.return_1))
    assert (b1.pressure.min, b1.pressure.max) == pytest.approx(
        (min(exp.pressure_1), max(exp.pressure_1)))
    notes_1 = " | ".join(b1.notes)
    assert "totaliser reset" in notes_1 and "computed over 1 gap(s)" in notes_1
    assert b2.gas_m3 == pytest.approx(exp.gas_2)
    assert b2.starts == exp.starts_2  # from the controller's counter, not the polls
    assert b2.running_h == pytest.approx(exp.running_h_2, abs=0.01)
    assert any("rolled over" in n for n in b2.notes)
    assert rep.gas_m3 == pytest.approx(exp.gas_1 + exp.gas_2)
    assert rep.shortfall_m3 == pytest.approx(GAS_PLAN - exp.gas_1 - exp.gas_2)
    assert sum(v for _, v in rep.gas_per_hour) == pytest.approx(rep.gas_m3)
    assert len(rep.gas_per_hour) == 24

    (net,) = rep.networks
    assert net.makeup_pct == pytest.approx(100 * sum(exp.makeup) / sum(exp.supply_flow))
    assert net.heat_kwh == pytest.approx(exp.heat_kwh)
    assert net.leak_alarms == 1

    (meter,) = rep.heat_meters
    assert meter.heat_kwh == pytest.approx(exp.meter_kwh)
    assert meter.volume_m3 == pytest.approx(exp.meter_m3)
    assert [n.split(":")[0] for n in meter.notes] == ["heat", "volume"]
    assert all("meter swap" in n for n in meter.notes)

    # Completeness: the boiler outage and the gateway outage, each listed, nothing else.
    cov = {c.name: c for c in rep.coverages}
    assert [(g.start_ns, g.end_ns) for g in cov["boiler-1"].gaps] == [
        (exp.outage_1[0] - 60 * S, exp.outage_1[1])]
    assert [(g.start_ns, g.end_ns) for g in cov[GATEWAY].gaps] == [
        (exp.gateway_outage[0] - 10 * S, exp.gateway_outage[1])]
    assert cov["boiler-1"].share == pytest.approx(
        1 - (exp.outage_1[1] - exp.outage_1[0] + 60 * S) / (END - START))
    assert cov["boiler-1"].samples == len(exp.boiler_1_times)
    assert cov[GATEWAY].samples == len(exp.gateway_times)
    assert all(cov[d].complete for d in ("boiler-2", "net-1", "leak-1", "cold-1", "hm-1"))

    # Alarms: acknowledgement times, who, late per the route's escalation, unacknowledged.
    by_id = {a.alarm_id: a for a in rep.alarms}
    gas = by_id["boiler-2/gas"]
    assert (gas.acked_ns, gas.acked_by) == (at(9, 50), "zhang")
    assert gas.late and (at(9, 50) - at(9)) / S > ESCALATE_S
    makeup = by_id["net-1/makeup"]
    assert (makeup.acked_by, makeup.late) == ("li", False)
    assert by_id["boiler-1/flame"].unacknowledged

    text = render_text(build_document("heating", influx_query(influxdb1.url, influxdb1.database),
                                      site, DAY))
    first = text.splitlines()
    assert first[0] == f"{SITE}: heating report for {DAY.isoformat()} (Asia/Shanghai)"
    assert first[1].startswith("INCOMPLETE: data missing for 2 of 7 sources")
    assert f"shortfall {GAS_PLAN - exp.gas_1 - exp.gas_2:.1f} m³" in text
    assert "LATE ACK" in text and "UNACKNOWLEDGED" in text
    assert "! boiler-1  09:59:00" not in text  # gaps table rows are dated
    assert "01-01 09:59:00  01-01 12:00:00  2h01m00s" in text


async def test_formats_and_the_cli(
    influxdb1: InfluxDB1, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    exp = await write_day(influxdb1)
    path = site_file(tmp_path, influxdb1)
    site = load_site(path)
    doc = build_document("heating", influx_query(influxdb1.url, influxdb1.database), site, DAY)
    csv_text = render_csv(doc)
    assert csv_text.splitlines()[1].startswith('"# INCOMPLETE: data missing for 2 of 7')
    assert f"boilers,boiler-1,boiler_room,{exp.running_h_1:.2f},{exp.starts_1}," in csv_text
    assert "gaps,gateway,01-01 02:59:50,01-01 03:20:00,20m10s,!" in csv_text
    html = render_html(doc)
    assert '<p class="incomplete">INCOMPLETE' in html
    assert html.count("<svg") == 3  # two boilers' temperatures, gas per hour
    # boiler-1's lines break at its outage (2 segments x 2 series), boiler-2's do not
    assert html.count("<polyline") == 4 + 2 and html.count('class="gap"') == 1
    assert html.count('class="bar"') == 24

    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="command", required=True)
    register_patrol(sub)
    register_cli(sub)
    out = tmp_path / "heating.csv"
    args = ap.parse_args(["report", "heating", "--date", DAY.isoformat(), "--site", str(path),
                          "--format", "csv", "-o", str(out)])
    assert args.func(args) == 0
    assert out.read_text() == csv_text


def _run(*cmd: str) -> str:
    return subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=60).stdout


def _pixels_near(png: Path, rgb: tuple[int, int, int], tol: int = 40) -> int:
    from PIL import Image

    with Image.open(png) as im:
        px = list(im.convert("RGB").tobytes())
        rgb_px = zip(px[0::3], px[1::3], px[2::3], strict=True)
        return sum(1 for p in rgb_px if all(abs(a - b) <= tol for a, b in zip(p, rgb, strict=True)))


async def test_pdf_holds_the_figures_and_the_charts(influxdb1: InfluxDB1, tmp_path: Path) -> None:
    """pdftotext finds the figures; pdftoppm renders every page; the chart page is not blank.

    The rendered pages are kept in $FSG_ARTEFACTS (default: the test's tmp folder).
    """
    exp = await write_day(influxdb1)
    site = load_site(site_file(tmp_path, influxdb1))
    pdf = tmp_path / "heating.pdf"
    pdf.write_bytes(build_report("heating", influx_query(influxdb1.url, influxdb1.database),
                                 site, DAY, "pdf"))
    assert pdf.read_bytes().startswith(b"%PDF")
    text = _run("pdftotext", "-layout", str(pdf), "-")
    assert "INCOMPLETE: data missing for 2 of 7 sources" in text
    gas = exp.gas_1 + exp.gas_2
    assert f"gas used {gas:.1f} m³ against a plan of {GAS_PLAN:.1f} m³" in text
    assert f"shortfall {GAS_PLAN - gas:.1f} m³" in text
    assert f"{exp.running_h_1:.2f}" in text and "LATE ACK" in text and "2h01m00s" in text
    pages = int(next(line.split()[-1] for line in _run("pdfinfo", str(pdf)).splitlines()
                     if line.startswith("Pages:")))
    out = Path(os.environ.get("FSG_ARTEFACTS", str(tmp_path))) / "heating-page"
    out.parent.mkdir(parents=True, exist_ok=True)
    _run("pdftoppm", "-r", "60", "-png", str(pdf), str(out))
    rendered = sorted(out.parent.glob("heating-page-*.png"))
    assert len(rendered) == pages >= 1
    # The charts are drawn: the supply series and gas bars (red), the return series (blue).
    red = sum(_pixels_near(p, (0xC0, 0x39, 0x2B)) for p in rendered)
    blue = sum(_pixels_near(p, (0x24, 0x71, 0xA3)) for p in rendered)
    assert red > 5000 and blue > 500  # a legend alone is a few dozen pixels
