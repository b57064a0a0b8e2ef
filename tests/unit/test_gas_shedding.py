"""The gas-shortfall plan: the gas-supply alarm's message lists the shedding order (advice only)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from gateway.alerting.engine import AlertEngine
from gateway.config import SiteConfig
from gateway.model import FakeClock
from gateway.reports.config import GasPlan
from tests.unit.test_rules import rules_from, sample

RULES = """
    rules:
      - id: boiler-gas-pressure
        kind: limit
        select: {kinds: [boiler]}
        points: [gas_pressure]
        limits:
          lo: {value: 3.5, severity: high}
      - id: boiler-pressure
        kind: limit
        select: {kinds: [boiler]}
        points: [pressure]
        limits:
          hi: {value: 0.9, severity: high}
"""
SHEDDING: list[dict[str, Any]] = [
    {"area": "offices", "note": "office heating to 16 °C"},
    {"boiler": "blr-2", "note": "the bathhouse boiler"},
    {"area": "residential", "residential": True},
]


def engine(tmp_path: Path, shedding: list[dict[str, Any]]) -> tuple[AlertEngine, FakeClock]:
    cfg = SiteConfig.model_validate({
        "site": "heat-co",
        "sources": [{"id": "tcp-1", "type": "modbus_tcp", "host": "127.0.0.1"}],
        "devices": [{"id": "blr-1", "profile": "boiler-controller", "source": "tcp-1"},
                    {"id": "blr-2", "profile": "boiler-controller", "source": "tcp-1",
                     "unit": 2}],
        "reports": {"gas_plan": {"daily_m3": 1000, "shedding": shedding}},
    })
    clock = FakeClock()
    eng = AlertEngine(cfg, clock, rules=rules_from(tmp_path, RULES), base_dir=tmp_path,
                      state_path=":memory:")
    eng.open()
    return eng, clock


def test_the_gas_alarm_lists_the_shedding_order(tmp_path: Path) -> None:
    eng, clock = engine(tmp_path, SHEDDING)
    (gas,) = eng.on_sample(sample(clock, "blr-1", {"gas_pressure": 3.0}))
    assert gas.rule == "boiler-gas-pressure" and gas.action == "activate"
    assert gas.message.endswith(
        "gas short - shed in this order (advice; the gateway switches nothing):"
        " 1. area offices (office heating to 16 °C); 2. boiler blr-2 (the bathhouse boiler);"
        " 3. area residential (residential)")
    (other,) = eng.on_sample(sample(clock, "blr-1", {"pressure": 1.0}))
    assert "shed" not in other.message


def test_no_plan_no_advice(tmp_path: Path) -> None:
    eng, clock = engine(tmp_path, [])
    (gas,) = eng.on_sample(sample(clock, "blr-1", {"gas_pressure": 3.0}))
    assert "shed" not in gas.message


@pytest.mark.parametrize(
    ("steps", "error"),
    [
        ([{"area": "residential", "residential": True}, {"area": "offices"}],
         "comes after a residential step"),
        ([{"area": "a", "boiler": "b"}], "exactly one of boiler or area"),
    ],
)
def test_residential_is_shed_last(steps: list[dict[str, Any]], error: str) -> None:
    with pytest.raises(ValidationError, match=error):
        GasPlan.model_validate({"shedding": steps})
