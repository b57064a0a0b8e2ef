"""Built-in profiles against the register tables of the manuals they cite: words in, value out.

The words are what the manual says the device sends at that protocol address
(the manual's register number minus one), so a wrong address or word order fails here.
"""

from __future__ import annotations

import struct

from gateway.codecs import decode
from gateway.profiles.registry import ProfileRegistry
from gateway.profiles.schema import ModbusPoint, ModbusProfile, Table

REG, _ = ProfileRegistry.load()


def _point(profile: str, table: Table, address: int) -> ModbusPoint:
    prof = REG.get(profile)
    assert isinstance(prof, ModbusProfile)
    found = [p for p in prof.points if p.table is table and p.address == address]
    assert found, f"{profile}: no point at {table} {address}"
    return found[0]


def _float_low_word_first(x: float) -> list[int]:
    hi, lo = struct.unpack(">HH", struct.pack(">f", x))
    return [lo, hi]


def test_tuf2000m_registers_are_protocol_addresses_with_the_low_word_first() -> None:
    # TUF-2000M table: REG 0001-0002 flow rate REAL4, 0025-0026 net accumulator LONG,
    # both low word first; protocol address = register number - 1.
    flow = _point("ultrasonic-flow-meter", Table.HOLDING_REGISTER, 0)
    assert flow.name == "flow_rate"
    assert decode(flow, _float_low_word_first(12.5)) == 12.5
    net = _point("ultrasonic-flow-meter", Table.HOLDING_REGISTER, 24)
    assert decode(net, [0xE240, 0x0001]) == 123456
    assert decode(net, [0xFFFF, 0xFFFF]) == -1  # LONG is signed


def _float_high_word_first(x: float) -> list[int]:
    return list(struct.unpack(">HH", struct.pack(">f", x)))


def test_sdm630_input_registers_are_floats_high_word_first() -> None:
    # 30001 phase 1 volts at address 0, 30053 total power at 52, 30343 total kWh at 342.
    for address, name, x in (
        (0, "voltage_l1", 231.5),
        (52, "total_power", 7200.25),
        (342, "total_energy", 182352.5),
    ):
        p = _point("eastron-sdm630", Table.INPUT_REGISTER, address)
        assert p.name == name and decode(p, _float_high_word_first(x)) == x


def test_sharky_775_float_energy_and_error_code() -> None:
    energy = _point("diehl-sharky-775-modbus", Table.INPUT_REGISTER, 8)
    assert energy.name == "energy" and decode(energy, _float_high_word_first(1234.5)) == 1234.5
    assert _point("diehl-sharky-775-modbus", Table.INPUT_REGISTER, 164).name == "error_code"


def test_acrel_asj_residual_current_and_alarm_status_word() -> None:
    leak = _point("acrel-asj-residual-current", Table.HOLDING_REGISTER, 0x0000)
    assert leak.name == "leak_ch1" and decode(leak, [450]) == 450
    prof = REG.get("acrel-asj-residual-current")
    assert isinstance(prof, ModbusProfile)
    status = {p.name: p for p in prof.points if p.address == 0x001B}
    # 001BH: 000 normal, 001 warning, 010 alarm, 100 break line.
    for word, active in (
        (0b000, None),
        (0b001, "prealarm_ch1"),
        (0b010, "alarm_ch1"),
        (0b100, "fault_ch1"),
    ):
        assert {n for n, p in status.items() if decode(p, [word])} == (
            {active} if active else set()
        )


def test_fire_panel_contacts_are_discrete_inputs_from_zero() -> None:
    assert _point("fire-panel-di8", Table.DISCRETE_INPUT, 0).name == "fire_z1"
    assert _point("fire-panel-di8", Table.DISCRETE_INPUT, 3).name == "fire_z2"
