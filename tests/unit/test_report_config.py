"""The site's reports: block is checked against the site: routes and boilers it names must exist."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from gateway.errors import ConfigError
from gateway.loader import load_site


def write_site(tmp_path: Path, reports: dict[str, object]) -> Path:
    p = tmp_path / "site.yaml"
    p.write_text(yaml.safe_dump({
        "site": "heat-co",
        "sources": [{"id": "tcp-1", "type": "modbus_tcp", "host": "127.0.0.1"}],
        "devices": [{"id": "blr-1", "profile": "boiler-controller", "source": "tcp-1",
                     "interval_s": 5}],
        "reports": reports,
    }))
    return p


def test_a_good_block_loads(tmp_path: Path) -> None:
    site = load_site(write_site(tmp_path, {"at": "06:45", "formats": ["pdf"], "gas_plan": {
        "daily_m3": 900, "shedding": [{"boiler": "blr-1"}, {"area": "homes", "residential": True}]
    }}))
    assert site.config.reports is not None and site.config.reports.at == "06:45"


@pytest.mark.parametrize(
    ("reports", "message"),
    [
        ({"route": "nowhere"}, "reports.route: unknown alerting route 'nowhere'"),
        ({"gas_plan": {"shedding": [{"boiler": "blr-9"}]}},
         "reports.gas_plan.shedding: unknown boiler 'blr-9'"),
        ({"at": "7:30"}, "'7:30' is not a time of day HH:MM"),
        ({"formats": ["docx"]},
         "reports.formats[0]: Input should be 'text', 'csv', 'html' or 'pdf'"),
        ({"colour": "red"}, "reports.colour"),
    ],
)
def test_bad_blocks_are_refused_with_a_clear_message(
    tmp_path: Path, reports: dict[str, object], message: str
) -> None:
    path = write_site(tmp_path, reports)
    with pytest.raises(ConfigError) as exc:
        load_site(path)
    text = "\n".join(exc.value.problems)
    assert str(path) in text and message in text
