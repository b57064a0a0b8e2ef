"""OPC UA sources and profiles in a site file: validation and cross-checks with clear errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.errors import ConfigError
from gateway.loader import load_site
from gateway.redact import plaintext_secret_warnings
from tests import sitebuilder
from tests.sitebuilder import site


def write_site(tmp_path: Path, device: dict[str, object], **extra: Any) -> Path:
    sources: list[dict[str, Any]] = [
        {"id": "plc", "type": "opcua", "endpoint": "opc.tcp://127.0.0.1:4840"},
        {"id": "tcp", "type": "modbus_tcp", "host": "127.0.0.1"},
    ]
    devices = [{"id": "boiler-plc-1", "interval_s": 2, **device}]
    doc = site("plant", sources=sources, devices=devices, **extra)
    return sitebuilder.write_site(tmp_path, doc)


def test_an_opcua_device_loads_with_rules_on_its_points(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        yaml.safe_dump(
            {
                "rules": [
                    {
                        "id": "supply-hi",
                        "kind": "limit",
                        "select": {"devices": ["boiler-plc-1"]},
                        "points": ["supply_temp"],
                        "limits": {"hi": {"value": 90, "severity": "high"}},
                    }
                ]
            }
        )
    )
    path = write_site(
        tmp_path,
        {"profile": "boiler-plc-opcua", "source": "plc"},
        rules=["rules.yaml"],
    )
    site = load_site(path)
    assert site.device_profiles["boiler-plc-1"].protocol == "opcua"


@pytest.mark.parametrize(
    ("device", "message"),
    [
        (
            {"profile": "boiler-controller", "source": "plc"},
            "profile 'boiler-controller' speaks modbus but source 'plc' is opcua",
        ),
        (
            {"profile": "boiler-plc-opcua", "source": "tcp"},
            "profile 'boiler-plc-opcua' speaks opcua but source 'tcp' is modbus_tcp",
        ),
    ],
)
def test_protocol_mismatch_is_named(
    tmp_path: Path, device: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError) as err:
        load_site(write_site(tmp_path, device))
    assert any(message in p and "device 'boiler-plc-1'" in p for p in err.value.problems)


def test_a_rule_on_a_point_the_opcua_profile_lacks_is_named(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        yaml.safe_dump(
            {
                "rules": [
                    {
                        "id": "level-lo",
                        "kind": "limit",
                        "select": {"devices": ["boiler-plc-1"]},
                        "points": ["water_level"],
                        "limits": {"lo": {"value": -10, "severity": "high"}},
                    }
                ]
            }
        )
    )
    path = write_site(
        tmp_path, {"profile": "boiler-plc-opcua", "source": "plc"}, rules=["rules.yaml"]
    )
    with pytest.raises(ConfigError) as err:
        load_site(path)
    assert any("water_level" in p for p in err.value.problems), err.value.problems


@pytest.mark.parametrize(
    ("source", "warned"),
    [
        ({"endpoint": "opc.tcp://10.0.4.20:4840", "username": "u", "password": "p"}, True),
        ({"endpoint": "opc.tcp://127.0.0.1:4840", "username": "u", "password": "p"}, False),
        ({"endpoint": "opc.tcp://10.0.4.20:4840"}, False),
        (
            {
                "endpoint": "opc.tcp://10.0.4.20:4840",
                "username": "u",
                "password": "p",
                "security": {"policy": "Basic256Sha256", "certificate": "c", "private_key": "k"},
            },
            False,
        ),
    ],
)
def test_a_password_without_a_secure_channel_is_warned(
    tmp_path: Path, source: dict[str, object], warned: bool
) -> None:
    path = write_site(tmp_path, {"profile": "boiler-plc-opcua", "source": "plc"})
    data = yaml.safe_load(path.read_text())
    data["sources"][0].update(source)
    path.write_text(yaml.safe_dump(data))
    warnings = plaintext_secret_warnings(load_site(path).config)
    expect = [
        "sources[plc]: the OPC UA password may be sent to 10.0.4.20 unencrypted"
        " (security.policy: Basic256Sha256)"
    ]
    assert warnings == (expect if warned else [])
