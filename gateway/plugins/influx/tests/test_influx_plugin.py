"""The InfluxDB plugin: its README sample, and the fields each mode needs."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from gateway.config import Sinks
from gateway.plugins import registry
from tests.plugin_support import sample_sinks

HERE = Path(__file__).resolve().parents[1]


def test_the_readme_sample_is_valid() -> None:
    cfg = sample_sinks(HERE).configured()["influx"]
    assert isinstance(cfg, registry().sinks["influx"].config)


def test_v1_without_a_database_is_refused() -> None:
    with pytest.raises(ValidationError, match="mode v1 needs database"):
        Sinks.model_validate({"influx": {"mode": "v1"}})
