"""The Modbus plugin's registration and config models, through the site schema."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from gateway.config import SiteConfig
from gateway.plugins import registry
from gateway.plugins.modbus.config import ModbusRtuSource, ModbusTcpSource
from tests.plugin_support import sample_site

HERE = Path(__file__).resolve().parents[1]


def test_the_readme_sample_is_a_valid_site() -> None:
    site = sample_site(HERE)
    tcp, rtu = site.sources
    assert isinstance(tcp, ModbusTcpSource) and tcp.host == "10.0.0.20"
    assert isinstance(rtu, ModbusRtuSource) and rtu.bits_per_char == 11  # 8E1


def test_both_types_are_registered_and_unit_addressed() -> None:
    reg = registry()
    for name in ("modbus_tcp", "modbus_rtu"):
        plugin = reg.source(name)
        assert plugin.unit_addressed and plugin.profile_protocols == {"modbus"}


def test_an_unknown_key_is_refused_by_the_plugin_model() -> None:
    with pytest.raises(ValidationError, match="baud"):
        SiteConfig.model_validate(
            {
                "site": "s",
                "sources": [{"id": "t", "type": "modbus_tcp", "host": "h", "baud": 9600}],
                "devices": [{"id": "d", "profile": "p", "source": "t"}],
            }
        )


def test_profiles_show_and_check_ask_the_plugin_for_the_read_plan(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from gateway.cli import main

    assert main(["profiles", "show", "boiler-controller"]) == 0
    out = capsys.readouterr().out
    assert "# read plan: 2 request(s) for " in out
    assert "#   holding_register 100..111 (12): supply_temp, return_temp" in out
