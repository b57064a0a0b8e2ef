"""Scenario resolution: the default layer, overrides, and errors that name what is wrong."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from firmware_sim.scenarios import describe, resolve, scenario_names
from gateway.errors import ConfigError
from gateway.loader import load_site

DEMO = Path(__file__).resolve().parents[2] / "deploy" / "demo" / "site.yaml"


def demo_data() -> dict[str, Any]:
    """The demo site's devices and scenarios, without parts that name files relative to it."""
    data = yaml.safe_load(DEMO.read_text())
    keep = ("site", "description", "sources", "devices", "simulation")
    return {k: v for k, v in data.items() if k in keep}


@pytest.fixture
def demo_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("FSG_RUN_DIR", str(tmp_path))
    monkeypatch.setenv("FSG_SIM_TCP_PORT", "1502")
    return tmp_path


def test_every_demo_scenario_resolves(demo_env: Path) -> None:
    site = load_site(DEMO)
    names = scenario_names(site)
    for required in (
        "leak-fault",
        "unit-dead",
        "patrol-normal-night",
        "patrol-missed-round",
        "patrol-faked-round",
        "patrol-unknown-card",
        "patrol-reader-unplugged",
    ):
        assert required in names
    for name in names:
        resolve(site, name)
    assert any(line.startswith("unit-dead") for line in describe(site))


def test_chosen_scenario_goes_on_top_of_default(demo_env: Path) -> None:
    site = load_site(DEMO)
    base = resolve(site, None)
    assert base.serial["rfid-gate"].loop_s == 900  # demo patrol from `default`
    leak = resolve(site, "leak-fault")
    assert leak.serial["rfid-gate"].loop_s == 900  # default kept
    assert set(leak.plan("leak-north").points) == {"leak_ch1"}
    assert leak.plan("leak-lake").points["fault_ch3"].value == 1
    night = resolve(site, "patrol-missed-round")
    assert night.serial["rfid-gate"].loop_s is None  # replaced
    assert night.serial["rfid-gate"].rounds[0].start_s == [0, 9000, 27000]
    dead = resolve(site, "unit-dead")
    fault = dead.plan("flow-main").fault
    assert fault is not None and fault.kind == "no_answer"
    assert dead.plan("leak-north").fault is None


def test_unknown_scenario_lists_the_known_ones(demo_env: Path) -> None:
    site = load_site(DEMO)
    with pytest.raises(ConfigError, match=r"unknown scenario 'nope' \(known: .*unit-dead"):
        resolve(site, "nope")


def test_bad_scenario_problems_name_device_point_and_field(demo_env: Path) -> None:
    data = demo_data()
    data["simulation"]["scenarios"]["broken"] = {
        "devices": {
            "ghost": {"fault": {"kind": "no_answer"}},
            "leak-north": {"points": {"leak_ch9": {"kind": "constant", "value": 1}}},
            "rfid-gate": {"points": {}},
        },
        "serial": {
            "rfid-gate": {"rounds": [{"route": ["a"], "card": "04A3B2C1D0"}], "bogus": True},
            "boiler-1": {},
        },
    }
    path = demo_env / "site.yaml"
    path.write_text(yaml.safe_dump(data))
    site = load_site(path)
    with pytest.raises(ConfigError) as err:
        resolve(site, "broken")
    text = "\n".join(err.value.problems)
    assert "ghost" not in text  # a device the site lacks is only a warning (see below)
    assert "has no point 'leak_ch9'" in text
    assert "'rfid-gate' is a serial-line device" in text
    assert "serial.rfid-gate.bogus" in text
    assert "'boiler-1' is not a serial-line device" in text
    assert all(p.startswith(str(path)) for p in err.value.problems)


def test_devices_missing_from_a_trimmed_site_are_warnings(demo_env: Path) -> None:
    data = demo_data()
    data["sources"] = [s for s in data["sources"] if s["id"] == "rs485-park"]
    data["devices"] = [d for d in data["devices"] if d["source"] == "rs485-park"]
    path = demo_env / "rtu.yaml"
    path.write_text(yaml.safe_dump(data))
    site = load_site(path)
    res = resolve(site, "unit-dead")
    assert res.serial == {}
    assert any("no device 'rfid-gate'" in w for w in res.warnings)
    fault = res.plan("flow-main").fault
    assert fault is not None and fault.kind == "no_answer"
    assert resolve(site, "boiler-overheat").plan("boiler-1").points == {}


def test_the_simulation_section_is_the_simulators_to_check(demo_env: Path) -> None:
    # The gateway keeps ``simulation:`` opaque; firmware_sim.schema names the bad field.
    data = demo_data()
    data["simulation"]["wire_time"] = "sometimes"
    data["simulation"]["scenarios"]["unit-dead"]["devices"]["flow-main"]["fault"]["kind"] = "fire"
    path = demo_env / "site.yaml"
    path.write_text(yaml.safe_dump(data))
    site = load_site(path)
    with pytest.raises(ConfigError) as err:
        resolve(site, "unit-dead")
    assert any(p.startswith(f"{path}: simulation.wire_time") for p in err.value.problems), (
        err.value.problems
    )
    assert any(
        "simulation.scenarios.unit-dead.devices.flow-main.fault.kind" in p
        for p in err.value.problems
    ), err.value.problems
