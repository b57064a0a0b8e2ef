"""One simulated Modbus device: its register image, kept up to date from behaviours and physics.

``DeviceModel`` evaluates every point of a profile at simulation time (its
``sim`` behaviour, overridden by the site's per-device ``sim`` and then by the
scenario), runs the device logic (boiler heat model, leakage monitor), and
encodes each value with ``gateway.codecs.encode``: the exact inverse of what
the gateway decodes, so simulating a profile proves it.

``SimulatedUnit.simdevice()`` wraps the model in a pymodbus ``SimDevice``
(non-shared blocks, one per table). Only the addresses the profile covers are
readable, minus the profile's ``unreadable`` ranges, so a read across a gap
the profile marks unreadable gets exception 2 like the real device. The
``action`` coroutine refreshes the requested table from the model on every
request, records writes (a written holding register or coil becomes that
point's constant value) and answers the ``exception`` fault.
"""

from __future__ import annotations

import random
import struct
from dataclasses import dataclass
from typing import Any

from pymodbus.constants import ExcCodes
from pymodbus.simulator import DataType as SimType
from pymodbus.simulator import SimData, SimDevice

from firmware_sim.behaviours import Behaviour, Constant, make_behaviour
from firmware_sim.clock import Clock
from firmware_sim.faults import FaultPlan
from firmware_sim.physics import (
    BOILER_FIELDS,
    BOILER_INTERLOCK_POINTS,
    BoilerModel,
    LeakageLogic,
)
from gateway.codecs import Value, bytes_to_words, decode, encode, words_to_bytes
from gateway.errors import CodecError
from gateway.profiles.schema import DataType, ModbusPoint, ModbusProfile, SimBehaviour, Table

# Function code -> the table it addresses (pymodbus maps them the same way).
FC_TABLE: dict[int, Table] = {
    1: Table.COIL,
    5: Table.COIL,
    15: Table.COIL,
    2: Table.DISCRETE_INPUT,
    3: Table.HOLDING_REGISTER,
    6: Table.HOLDING_REGISTER,
    16: Table.HOLDING_REGISTER,
    22: Table.HOLDING_REGISTER,
    23: Table.HOLDING_REGISTER,
    4: Table.INPUT_REGISTER,
}
_TABLE_ORDER = (Table.COIL, Table.DISCRETE_INPUT, Table.HOLDING_REGISTER, Table.INPUT_REGISTER)


def effective_behaviours(
    profile: ModbusProfile,
    device_sim: dict[str, SimBehaviour] | None = None,
    scenario_points: dict[str, SimBehaviour] | None = None,
) -> dict[str, SimBehaviour]:
    """Profile ``sim`` blocks, overridden by the device's ``sim`` and then the scenario's."""
    out = {p.name: p.sim for p in profile.points if p.sim is not None}
    out.update(device_sim or {})
    out.update(scenario_points or {})
    return out


class DeviceModel:
    """Point values of one device at simulation time, and the words/bits that hold them."""

    def __init__(
        self,
        device_id: str,
        profile: ModbusProfile,
        behaviours: dict[str, SimBehaviour],
        clock: Clock,
        rng: random.Random | None = None,
    ) -> None:
        self.device_id = device_id
        self.profile = profile
        self.clock = clock
        self.points = {p.name: p for p in profile.points}
        rng = rng if rng is not None else random.Random(device_id)
        unknown = set(behaviours) - set(self.points)
        if unknown:
            raise ValueError(f"device {device_id!r}: no point named {', '.join(sorted(unknown))}")
        self._behaviours: dict[str, Behaviour] = {}
        self._boiler_fields: dict[str, str] = {}
        for name, spec in behaviours.items():
            if spec.kind == "boiler":
                fld = spec.field or name
                if fld not in BOILER_FIELDS:
                    raise ValueError(
                        f"device {device_id!r} point {name!r}: boiler field {fld!r} unknown"
                        f" (known: {', '.join(BOILER_FIELDS)})"
                    )
                self._boiler_fields[name] = fld
            else:
                self._behaviours[name] = make_behaviour(spec, rng)
        self.boiler: BoilerModel | None = None
        if self._boiler_fields:
            self.boiler = BoilerModel()
            for name in BOILER_INTERLOCK_POINTS:
                if name in self.points and name not in behaviours:
                    self._boiler_fields[name] = name
        self.leakage = LeakageLogic(set(self.points)) if profile.kind == "leakage" else None
        # Points without a behaviour read 0 / false; strings read the device model name.
        self.values: dict[str, float | str] = {
            p.name: (profile.model or profile.name) if p.type is DataType.STRING else 0.0
            for p in profile.points
        }
        self.update()

    # ------------------------------------------------------------------ values

    def update(self) -> dict[str, float | str]:
        """Advance every point to the clock's current time; returns the values."""
        t = self.clock.now()
        numeric: dict[str, float] = {
            k: v for k, v in self.values.items() if not isinstance(v, str)
        }
        for name, beh in self._behaviours.items():
            numeric[name] = beh.value(t)
        if self.boiler is not None:
            setpoint = numeric.get("supply_setpoint", 75.0)
            self.boiler.advance(t, setpoint)
            for name, fld in self._boiler_fields.items():
                numeric[name] = self.boiler.output(fld)
        if self.leakage is not None:
            self.leakage.apply(t, numeric)
        self.values.update(numeric)
        return self.values

    def value_of(self, point: ModbusPoint) -> Value:
        """The point's current value in the type the gateway will decode."""
        v = self.values[point.name]
        if point.type in (DataType.BOOL, DataType.BIT):
            return bool(v)
        return v

    def registers(self, table: Table) -> dict[int, int]:
        """address -> word for every register point of ``table``."""
        out: dict[int, int] = {}
        for p in self.profile.points:
            if p.table is not table or table.is_bit:
                continue
            if p.type is DataType.BIT:
                assert p.bit is not None
                # Several bit points share one word; compose it in value order first.
                raw = out.get(p.address, 0)
                cur = struct.unpack(">H", _word_bytes(raw, p))[0]
                if self.value_of(p):
                    cur |= 1 << p.bit
                out[p.address] = bytes_to_words(struct.pack(">H", cur), p.order)[0]
                continue
            try:
                words = encode(p, self.value_of(p))
            except (CodecError, ValueError, OverflowError, struct.error):
                words = [0] * p.count
            for i, w in enumerate(words):
                out[p.address + i] = w
        return out

    def bits(self, table: Table) -> dict[int, bool]:
        return {
            p.address: bool(self.value_of(p))
            for p in self.profile.points
            if p.table is table and table.is_bit
        }

    def write(self, table: Table, address: int, values: list[int] | list[bool]) -> None:
        """A master wrote ``values`` at ``address``: covered points hold the written value."""
        end = address + len(values)
        for p in self.profile.points:
            if p.table is not table or p.address < address or p.address + p.count > end:
                continue
            chunk = values[p.address - address : p.address - address + p.count]
            if table.is_bit:
                new: float | str = float(bool(chunk[0]))
            else:
                decoded = decode(p, [int(w) for w in chunk])
                new = decoded if isinstance(decoded, str) else float(decoded)
            self.values[p.name] = new
            if not isinstance(new, str):
                self._behaviours[p.name] = Constant(new)
            self._boiler_fields.pop(p.name, None)

    # ------------------------------------------------------------------ layout

    def readable_ranges(self, table: Table) -> list[tuple[int, int]]:
        """Inclusive address ranges of ``table`` the device answers (span minus unreadable)."""
        pts = [p for p in self.profile.points if p.table is table]
        if not pts:
            return []
        lo = min(p.address for p in pts)
        hi = max(p.address + p.count - 1 for p in pts)
        holes = sorted(
            (u.start, u.end)
            for u in self.profile.unreadable
            if u.table is table and not table.is_bit
        )
        ranges: list[tuple[int, int]] = []
        cur = lo
        for start, end in holes:
            if end < cur or start > hi:
                continue
            if start > cur:
                ranges.append((cur, start - 1))
            cur = max(cur, end + 1)
        if cur <= hi:
            ranges.append((cur, hi))
        return ranges


def _word_bytes(word: int, p: ModbusPoint) -> bytes:
    """The big-endian bytes of a stored word as the point's byte order reads it."""
    return words_to_bytes([word], p.order)


def _blocks(model: DeviceModel, table: Table) -> list[SimData]:
    ranges = model.readable_ranges(table)
    if table.is_bit:
        if not ranges:
            # pymodbus needs a block per table; one at the top of the address space
            # makes every request to this table an illegal address, as on the device.
            return [SimData(65520, values=[False] * 16, datatype=SimType.BITS)]
        lo, hi = ranges[0][0], ranges[-1][1]
        return [SimData(lo, values=[False] * (hi - lo + 1), datatype=SimType.BITS)]
    if not ranges:
        return [SimData(65535, datatype=SimType.INVALID)]
    return [
        SimData(lo, count=hi - lo + 1, values=0, datatype=SimType.REGISTERS) for lo, hi in ranges
    ]


@dataclass
class SimulatedUnit:
    """A device on a line: its unit id, its model and its fault plan."""

    unit: int
    model: DeviceModel
    faults: FaultPlan

    @property
    def device_id(self) -> str:
        return self.model.device_id

    def simdevice(self) -> SimDevice:
        c, d, h, i = (_blocks(self.model, t) for t in _TABLE_ORDER)
        return SimDevice(id=self.unit, simdata=(c, d, h, i), action=self._action)

    async def _action(
        self,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        registers: list[int],
        set_values: Any,
    ) -> ExcCodes | None:
        fault = self.faults.active()
        if fault is not None and fault.kind == "exception":
            return ExcCodes(fault.exception_code)
        table = FC_TABLE.get(function_code)
        if table is None:
            return ExcCodes.ILLEGAL_FUNCTION
        if set_values is not None:
            vals = set_values if isinstance(set_values, list) else [set_values]
            self.model.write(table, address, vals)
        self.model.update()
        if table.is_bit:
            for addr, bit in self.model.bits(table).items():
                i, b = addr // 16 - start_address, addr % 16
                if 0 <= i < len(registers):
                    registers[i] = registers[i] | (1 << b) if bit else registers[i] & ~(1 << b)
        else:
            for addr, word in self.model.registers(table).items():
                i = addr - start_address
                if 0 <= i < len(registers):
                    registers[i] = word
        return None
