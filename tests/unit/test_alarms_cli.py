"""``gateway alarms list``: what the on-call engineer reads from the alarm state file."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.model import FakeClock
from tests.unit.test_rules import LIMIT, make_engine, sample

ALARM = "leak:lk-1:leak_ch1:hihi"


def site_file(tmp_path: Path, extra: str = "", roster: str = "{}") -> Path:
    path = tmp_path / "site.yaml"
    path.write_text(
        textwrap.dedent(
            f"""
            site: cli-park
            sources: [{{id: rtu-1, type: modbus_rtu, port: /dev/null}}]
            devices: [{{id: lk-1, profile: leakage-monitor, source: rtu-1, unit: 1}}]
            alerting: {{state_db: alarms.sqlite, roster: {roster}}}
            """
        )
        + extra
    )
    return path


def raise_one(tmp_path: Path, clock: FakeClock) -> None:
    eng = make_engine(tmp_path, LIMIT, clock, state=None)
    eng.on_sample(sample(clock, "lk-1", {"leak_ch1": 450}))
    clock.advance(5)
    assert eng.on_sample(sample(clock, "lk-1", {"leak_ch1": 450}))
    eng.close()


def test_list_shows_each_alarm_id_state_and_severity(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    raise_one(tmp_path, FakeClock())
    assert main(["alarms", "list", "--site", str(site_file(tmp_path))]) == 0
    lines = capsys.readouterr().out.splitlines()
    [hihi] = [ln for ln in lines if ALARM in ln]
    assert "?" not in hihi
    assert "unacknowledged" in hihi and "high" in hihi and "450" in hihi
    [hi] = [ln for ln in lines if "leak:lk-1:leak_ch1:hi " in ln]
    assert "medium" in hi

    assert main(["alarms", "list", "--site", str(site_file(tmp_path)), "--json"]) == 0
    shown = {a["alarm_id"]: a for a in json.loads(capsys.readouterr().out)}
    assert shown[ALARM]["severity"] == "high" and shown[ALARM]["state"] == "unacknowledged"


@pytest.mark.parametrize(
    ("extra", "roster", "shown"),
    [
        # The site's time zone, with its offset.
        ("timezone: Europe/Berlin\n", "{}", "raised 2026-01-01 01:00:05+01:00"),
        # None set for the site: the roster's, which the notifications use too.
        ("", "{timezone: Asia/Shanghai}", "raised 2026-01-01 08:00:05+08:00"),
        ("", "{timezone: UTC}", "raised 2026-01-01 00:00:05+00:00"),
    ],
)
def test_list_shows_times_in_the_site_time_zone_with_the_offset(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: str, roster: str, shown: str
) -> None:
    raise_one(tmp_path, FakeClock())  # 2026-01-01 00:00:00 UTC, raised 5 s later
    assert main(["alarms", "list", "--site", str(site_file(tmp_path, extra, roster))]) == 0
    [hihi] = [ln for ln in capsys.readouterr().out.splitlines() if ALARM in ln]
    assert shown in hihi
