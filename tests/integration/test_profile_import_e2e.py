"""An imported register table in use: `profiles show`, `check`, and a simulated device.

The integrator's path on site, with the real commands as processes: import
a vendor workbook into the site's profile folder, show it, check a site that
uses it, then read a simulator serving that profile over a real Modbus TCP
socket. The raw registers are checked at the addresses the vendor's table
named (30011 is input register 10, low word first), not only through the
profile, so a wrong conversion cannot cancel itself out.
"""

from __future__ import annotations

import asyncio
import random
import subprocess
from pathlib import Path

import yaml
from pymodbus.client import AsyncModbusTcpClient

from firmware_sim.clock import ManualClock
from firmware_sim.faults import FaultPlan
from firmware_sim.modbus_devices import DeviceModel, SimulatedUnit
from firmware_sim.tcp_server import TcpEndpoint
from gateway.codecs import decode
from gateway.profiles.registry import load_profile_file
from gateway.profiles.schema import ModbusProfile, SimBehaviour
from tests.simproc import bin_path
from tests.unit.test_profile_import import write_arcm

SITE = """\
site: import-test
profile_dirs: [profiles]
sources:
  - {id: rcm-line, type: modbus_tcp, host: 127.0.0.1, port: 1502}
devices:
  - {id: rcm-1, profile: arcm300, source: rcm-line, unit: 3, interval_s: 5}
"""


def gateway(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [bin_path("gateway"), *args], cwd=cwd, capture_output=True, text=True, timeout=60
    )


def test_import_show_check_and_read_from_a_simulator(tmp_path: Path) -> None:
    write_arcm(tmp_path / "ARCM300 map.xlsx")
    (tmp_path / "profiles").mkdir()
    done = gateway(
        "profiles", "import", "ARCM300 map.xlsx", "--name", "arcm300", "--kind",
        "residual_current", "--vendor", "Acrel", "-o", "profiles/arcm300.yaml", cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    assert (
        done.stderr.splitlines()[-1] == "wrote profiles/arcm300.yaml: profile 'arcm300', 6 points"
    )
    imported = load_profile_file(tmp_path / "profiles" / "arcm300.yaml")
    assert isinstance(imported, ModbusProfile)

    shown = gateway("profiles", "show", "arcm300", "--profile-dir", "profiles", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    data = yaml.safe_load(shown.stdout)
    assert data["name"] == "arcm300"
    assert [(p["name"], p["table"], p["address"]) for p in data["points"]] == [
        ("leakage_current", "input_register", 0),
        ("temperature_1", "input_register", 1),
        ("energy", "input_register", 10),
        ("alarm_threshold", "holding_register", 100),
        ("alarm", "discrete_input", 0),
        ("relay_1", "coil", 0),
    ]

    (tmp_path / "site.yaml").write_text(SITE)
    checked = gateway("check", "site.yaml", cwd=tmp_path)
    assert checked.returncode == 0, checked.stderr
    assert (
        "    rcm-1: arcm300 unit 3 every 5 s, 6 points in 4 read(s)" in checked.stdout.splitlines()
    )

    asyncio.run(read_from_simulator(imported))


async def read_from_simulator(profile: ModbusProfile) -> None:
    values = {
        "leakage_current": 287.0,
        "temperature_1": 21.5,
        "energy": 1234.56,
        "alarm_threshold": 300.0,
        "alarm": 1.0,
        "relay_1": 0.0,
    }
    behaviours = {k: SimBehaviour(kind="constant", value=v) for k, v in values.items()}
    clock = ManualClock(0.0)
    model = DeviceModel("rcm-1", profile, behaviours, clock, random.Random(1))
    unit = SimulatedUnit(3, model, FaultPlan(None, clock))
    async with TcpEndpoint("127.0.0.1", 0, [unit]) as ep:
        client = AsyncModbusTcpClient("127.0.0.1", port=ep.port, timeout=2, retries=0)
        assert await asyncio.wait_for(client.connect(), 5)
        try:
            # The vendor's 30011, UINT32 CDAB x 0.01: 123456 = 0x0001E240, low word first.
            rr = await asyncio.wait_for(client.read_input_registers(10, count=2, device_id=3), 5)
            assert rr.registers == [0xE240, 0x0001]
            rr = await asyncio.wait_for(client.read_input_registers(0, count=2, device_id=3), 5)
            assert rr.registers == [287, 215]  # 30001 and 30002 (x 0.1)
            rr = await asyncio.wait_for(client.read_holding_registers(100, count=1, device_id=3), 5)
            assert rr.registers == [300]  # 40101
            rr = await asyncio.wait_for(client.read_discrete_inputs(0, count=1, device_id=3), 5)
            assert rr.bits[0] is True  # 10001
            got = {}
            for p in profile.points:
                if p.table.is_bit:
                    continue
                read = (
                    client.read_input_registers
                    if p.table.value == "input_register"
                    else client.read_holding_registers
                )
                rr = await asyncio.wait_for(read(p.address, count=p.count, device_id=3), 5)
                got[p.name] = decode(p, rr.registers)
            assert got == {
                "leakage_current": 287,
                "temperature_1": 21.5,
                "energy": 1234.56,
                "alarm_threshold": 300,
            }
        finally:
            client.close()
