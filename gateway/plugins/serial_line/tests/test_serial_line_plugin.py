"""The serial-line plugin: its README sample, and one device per line (checked by the loader)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from gateway.errors import ConfigError
from gateway.loader import load_site
from gateway.plugins import registry
from gateway.plugins.serial_line.config import SerialLineSource
from tests.plugin_support import readme_sample, sample_site

HERE = Path(__file__).resolve().parents[1]


def test_the_readme_sample_is_a_valid_site() -> None:
    (src,) = sample_site(HERE).sources
    assert isinstance(src, SerialLineSource) and src.max_lines_per_s == 10
    assert registry().source("serial_line").patrol_reader


def test_a_second_device_on_one_line_is_refused(tmp_path: Path) -> None:
    data = {"site": "s", **readme_sample(HERE)}
    data["devices"].append({**data["devices"][0], "id": "cp-two"})
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError) as info:
        load_site(path)
    assert any("already belongs to device 'cp-gate-north'" in p for p in info.value.problems)
