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
