"""Broken site files and profiles: errors name the file, the line, the device and the field."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.errors import ConfigError
from gateway.loader import load_site

GOOD_SITE = """\
site: test-site
profile_dirs: [profiles]
sources:
  - {id: tcp1, type: modbus_tcp, host: 127.0.0.1, port: 1502}
devices:
  - id: boiler-1
    profile: boiler-controller
    source: tcp1
    unit: 1
    interval_s: 5
"""


def write(tmp: Path, site: str, profiles: dict[str, str] | None = None) -> Path:
    (tmp / "profiles").mkdir(exist_ok=True)
    for name, text in (profiles or {}).items():
        (tmp / "profiles" / name).write_text(textwrap.dedent(text))
    path = tmp / "site.yaml"
    path.write_text(site)
    return path


def problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_site(path)
    return info.value.problems


def test_good_site_loads(tmp_path: Path) -> None:
    site = load_site(write(tmp_path, GOOD_SITE))
    assert site.device_profiles["boiler-1"].name == "boiler-controller"


@pytest.mark.parametrize(
    ("old", "new", "expect"),
    [
        ("unit: 1", "unit: 300", ["site.yaml:9:", "device 'boiler-1'", "devices[0].unit", "247"]),
        ("interval_s: 5", "interval_s: five", ["site.yaml:10:", "interval_s", "number"]),
        ("    unit: 1\n", "    unit: 1\n    colour: red\n", ["site.yaml:10:", "colour", "Extra"]),
        (
            "profile: boiler-controller",
            "profile: boiler-xx",
            ["site.yaml:7:", "unknown profile 'boiler-xx'"],
        ),
        (
            "source: tcp1",
            "source: tcp9",
            ["site.yaml:8:", "device 'boiler-1'", "unknown source 'tcp9'"],
        ),
        ("interval_s: 5", "interval_s: 1", ["site.yaml:10:", "must exceed", "timeout_s"]),
        ("type: modbus_tcp", "type: modbus_udp", ["site.yaml:4:", "source 'tcp1'", "type"]),
        (
            "port: 1502",
            "port: '${NO_SUCH_VAR_FSG}'",
            ["site.yaml:4:", "NO_SUCH_VAR_FSG is not set"],
        ),
        ("site: test-site", "site: [test", ["YAML syntax error"]),
    ],
)
def test_bad_site_names_file_line_and_field(
    tmp_path: Path, old: str, new: str, expect: list[str]
) -> None:
    assert old in GOOD_SITE
    found = "\n".join(problems(write(tmp_path, GOOD_SITE.replace(old, new))))
    for part in expect:
        assert part in found, (part, found)


def test_duplicate_unit_on_one_line(tmp_path: Path) -> None:
    text = (
        GOOD_SITE
        + "  - {id: boiler-2, profile: boiler-controller, source: tcp1, unit: 1, interval_s: 5}\n"
    )
    found = "\n".join(problems(write(tmp_path, text)))
    assert "device 'boiler-2'" in found and "already device 'boiler-1'" in found


BROKEN_PROFILE = """\
name: my-meter
kind: meter
points:
  - {name: ok, table: holding_register, address: 0, type: uint16}
  - name: total
    table: holding_register
    address: 1
    type: uint32
    order: ABDC
"""
FIXED = BROKEN_PROFILE.replace("ABDC", "ABCD")


def test_broken_profile_names_file_line_point_and_field(tmp_path: Path) -> None:
    text = GOOD_SITE.replace("boiler-controller", "my-meter")
    found = "\n".join(problems(write(tmp_path, text, {"meter.yaml": BROKEN_PROFILE})))
    assert "meter.yaml:9:" in found
    assert "profile 'my-meter' point 'total'" in found
    assert "points[1].order" in found


@pytest.mark.parametrize(
    ("profile", "expect"),
    [
        (
            BROKEN_PROFILE.replace("order: ABDC", "order: ABCD").replace(
                "address: 1", "address: 0"
            ),
            "overlaps point 'ok'",
        ),
        (BROKEN_PROFILE.replace("    order: ABDC\n", "    bit: 3\n"), "only for type bit"),
        (
            BROKEN_PROFILE.replace("type: uint32", "type: string").replace("    order: ABDC\n", ""),
            "needs 'length'",
        ),
        (
            FIXED.replace("table: holding_register\n    address: 1", "table: coil\n    address: 1"),
            "type must be bool",
        ),
        (FIXED + "unreadable: [{table: holding_register, start: 1, end: 4}]\n", "unreadable range"),
    ],
)
def test_profile_cross_checks(tmp_path: Path, profile: str, expect: str) -> None:
    text = GOOD_SITE.replace("boiler-controller", "my-meter")
    found = "\n".join(problems(write(tmp_path, text, {"meter.yaml": profile})))
    assert expect in found and "meter.yaml" in found


def test_cli_check_exit_codes_without_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = write(tmp_path, GOOD_SITE)
    assert main(["check", str(good)]) == 0
    assert "is valid" in capsys.readouterr().out
    bad = write(tmp_path, GOOD_SITE.replace("unit: 1", "unit: -1"))
    assert main(["check", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "site.yaml:9" in err and "Traceback" not in err


def test_cli_process_on_missing_file_is_clean(tmp_path: Path) -> None:
    res = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "check", str(tmp_path / "nope.yaml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 2
    assert "cannot read" in res.stderr and "Traceback" not in res.stderr


def test_demo_site_is_valid() -> None:
    site = load_site(Path(__file__).parents[2] / "deploy" / "demo" / "site.yaml")
    profiles = {p.name for p in site.device_profiles.values()}
    registry_names = set(site.profiles.names())
    assert profiles == registry_names  # one device of every built-in profile
