"""The M-Bus profile model refuses what it cannot read, with the point's name."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from gateway.plugins.mbus.meter import PointMissing, convert
from gateway.plugins.mbus.profile import MBusProfile


def profile(*points: dict[str, Any]) -> dict[str, Any]:
    return {"name": "p", "protocol": "mbus", "kind": "heat_meter", "points": list(points)}


@pytest.mark.parametrize(
    ("points", "why"),
    [
        ([{"name": "e"}], "exactly one of 'record' and 'index'"),
        ([{"name": "e", "index": 0, "record": {"quantity": "energy"}}], "exactly one of"),
        ([{"name": "e", "index": 0, "unit": "furlong"}], "unit 'furlong' unknown"),
        ([{"name": "e", "index": 0}, {"name": "e", "index": 1}], "defined twice"),
        (
            [{"name": "a", "record": {"quantity": "energy"}},
             {"name": "b", "record": {"quantity": "energy"}}],
            "point 'a': another point selects the same record",
        ),
        ([{"name": "f", "index": 0, "fault_of": ["nope"]}], "unknown point 'nope'"),
        ([{"name": "e", "record": {"quantity": "energy", "colour": "red"}}], "colour"),
        ([{"name": "e", "record": {"quantity": "energy", "function": "mean"}}], "function"),
    ],
)  # fmt: skip
def test_bad_profiles(points: list[dict[str, Any]], why: str) -> None:
    with pytest.raises(ValidationError, match=why):
        MBusProfile.model_validate(profile(*points))


@pytest.mark.parametrize(
    ("value", "unit", "to", "out"),
    [
        (218_370, "Wh", "kWh", 218.37),
        (218_370, "Wh", "MWh", 0.21837),
        (12.565, "m3", "l", 12565.0),
        (0.113, "m3/h", "l/h", 113.0),
        (2_000_000_000, "J", "GJ", 2.0),
        (1.5, "bar", "MPa", 0.15),
        (75.1, "degC", "°C", 75.1),
        (42, "Wh", "", 42),
        ("2025-06-15", "", "kWh", "2025-06-15"),
    ],
)
def test_unit_conversion(value: float, unit: str, to: str, out: object) -> None:
    assert convert(value, unit, to) == out


def test_unit_of_another_quantity_is_refused() -> None:
    with pytest.raises(PointMissing, match="record is in m3, point wants kWh"):
        convert(1.0, "m3", "kWh")
