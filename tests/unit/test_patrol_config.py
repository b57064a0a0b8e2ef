"""Patrol config: the demo file, errors with file:line, the site field, the night window."""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from gateway.config import SiteConfig
from gateway.errors import ConfigError
from gateway.patrol import PatrolConfig, check_against_devices, load_patrol, resolve_patrol

REPO = Path(__file__).resolve().parents[2]
NS = 1_000_000_000


def test_demo_patrol_file_is_valid() -> None:
    c = load_patrol(REPO / "rules" / "patrol.yaml")
    assert [cp.id for cp in c.checkpoints] == [
        "gate-north", "lakeside", "playground", "boiler-house", "east-gate"
    ]
    assert c.routes[0].ordered and c.max_gap_s == 3 * 3600
    assert c.timezone == "Asia/Shanghai"
    assert c.duplicate_window_s == 60
    # The simulator's honest walk (240 s) passes every leg; its fake walk (10 s) fails every leg.
    route = c.routes[0]
    legs = list(zip(route.checkpoints, route.checkpoints[1:], strict=False))
    assert all(10 < c.min_walk_s(route, a, b) <= 240 for a, b in legs)


def write(tmp_path: Path, data: dict[str, Any]) -> Path:
    p = tmp_path / "patrol.yaml"
    p.write_text(yaml.safe_dump(data, sort_keys=False))
    return p


def base() -> dict[str, Any]:
    return {
        "checkpoints": [{"id": "a"}, {"id": "b"}],
        "guards": [{"id": "g", "card": "0123ABCD"}],
        "routes": [{"id": "r", "checkpoints": ["a", "b"]}],
    }


@pytest.mark.parametrize(
    ("change", "expect"),
    [
        ({"guards": [{"id": "g", "card": "0123abcd"}]},
         r"patrol.yaml:\d+: guard 'g': guards\[0\].card"),
        ({"routes": [{"id": "r", "checkpoints": ["a", "x"]}]}, "unknown checkpoint 'x'"),
        ({"guards": [{"id": "g", "card": "0123ABCD"}, {"id": "h", "card": "0123ABCD"}]},
         "already belongs to 'g'"),
        ({"timezone": "Mars/Olympus"}, "unknown time zone"),
        ({"night": {"start": "22:00", "end": "22:00"}}, "must differ"),
        ({"night": {"start": "25:00"}}, r"night.start"),
        ({"walks": [{"between": ["a", "z"], "min_s": 10}]}, "unknown checkpoint 'z'"),
        ({"max_gap_hours": 3}, r"max_gap_hours: Extra inputs are not permitted"),
        ({"routes": [{"id": "r", "checkpoints": ["a", "a"]}]}, "listed twice"),
        ({"checkpoints": [{"id": "a"}, {"id": "b", "reader": "a"}]}, "reader 'a' is used twice"),
    ],
)
def test_errors_name_the_file_line_and_field(
    tmp_path: Path, change: dict[str, Any], expect: str
) -> None:
    data = base()
    data.update(change)
    with pytest.raises(ConfigError) as info:
        load_patrol(write(tmp_path, data))
    text = "\n".join(info.value.problems)
    assert "patrol.yaml" in text
    assert re.search(expect, text), text


def test_site_field_takes_inline_config_or_a_relative_path(tmp_path: Path) -> None:
    site = {
        "site": "s",
        "sources": [{"id": "rf", "type": "serial_line", "port": "/dev/null"}],
        "devices": [{"id": "rf", "profile": "rfid-checkpoint-reader", "source": "rf"}],
    }
    inline = SiteConfig.model_validate({**site, "patrol": base()})
    assert isinstance(inline.patrol, PatrolConfig)
    assert resolve_patrol(inline.patrol, tmp_path / "site.yaml") is inline.patrol
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "patrol.yaml").write_text(yaml.safe_dump(base()))
    by_path = SiteConfig.model_validate({**site, "patrol": "rules/patrol.yaml"})
    got = resolve_patrol(by_path.patrol, tmp_path / "site.yaml")
    assert got is not None and [cp.id for cp in got.checkpoints] == ["a", "b"]
    assert resolve_patrol(None, tmp_path / "site.yaml") is None
    with pytest.raises(ValidationError):
        SiteConfig.model_validate({**site, "patrol": {**base(), "bogus": 1}})


def test_checkpoint_devices_are_checked_against_the_site() -> None:
    c = PatrolConfig.model_validate({**base(), "checkpoints": [{"id": "a", "device": "rf"},
                                                                {"id": "b", "device": "nope"}]})
    assert check_against_devices(c, {"rf"}, "site.yaml") == [
        "site.yaml: checkpoint 'b': device: unknown device 'nope'"
    ]


def test_night_window_in_local_time_across_a_dst_change() -> None:
    c = PatrolConfig.model_validate({**base(), "timezone": "Europe/Berlin"})
    # The night of 28-29 March 2026 loses an hour at 02:00: 22:00 CET -> 06:00 CEST is 7 h.
    s, e = c.window_of_evening(date(2026, 3, 28))
    assert (e - s) // NS == 7 * 3600
    assert c.window_at(s) == (s, e) and c.window_at(e) is None and c.window_at(s - 1) is None
