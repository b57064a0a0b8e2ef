"""Device profile models: what a device is and how to read each of its points.

A profile is YAML validated by these pydantic models (``extra="forbid"``).
Modbus points name their table, address, data type, word/byte order, scale
and offset; serial-line profiles name the line format. The same models feed
the gateway and the simulators (``sim`` blocks), so a profile is proven by
simulating it.
"""

from __future__ import annotations

import codecs
import functools
import re
from collections.abc import Sequence
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Literal, Protocol, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from gateway.profiles.computed import Expression, ExpressionError

NAME_RE = r"^[A-Za-z][A-Za-z0-9_]*$"
PROFILE_NAME_RE = r"^[a-z0-9][a-z0-9_.-]*$"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NamedPoint(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def unit(self) -> str: ...


class PointsProfile(Strict):
    """What every profile made of named ``points`` shares (Modbus, M-Bus, OPC UA, plugins):
    the names and units the core asks for, and no point name defined twice, nor
    a ``fault_of`` naming a point the profile does not have."""

    if TYPE_CHECKING:
        # Each profile model declares its own list of points (a pydantic field).
        points: Sequence[NamedPoint]

    def point_names(self) -> list[str]:
        return [p.name for p in self.points]

    def point_units(self) -> dict[str, str]:
        return {p.name: p.unit for p in self.points if p.unit}

    @model_validator(mode="after")
    def _point_names(self) -> Self:
        names: set[str] = set()
        for p in self.points:
            if p.name in names:
                raise ValueError(f"point {p.name!r} is defined twice")
            names.add(p.name)
        for p in self.points:
            for target in getattr(p, "fault_of", ()):
                if target not in names:
                    raise ValueError(f"point {p.name!r}: fault_of names unknown point {target!r}")
        return self


class Table(StrEnum):
    COIL = "coil"
    DISCRETE_INPUT = "discrete_input"
    INPUT_REGISTER = "input_register"
    HOLDING_REGISTER = "holding_register"

    @property
    def is_bit(self) -> bool:
        return self in (Table.COIL, Table.DISCRETE_INPUT)


class DataType(StrEnum):
    BOOL = "bool"
    INT16 = "int16"
    UINT16 = "uint16"
    INT32 = "int32"
    UINT32 = "uint32"
    INT64 = "int64"
    UINT64 = "uint64"
    FLOAT32 = "float32"
    FLOAT64 = "float64"
    STRING = "string"
    BIT = "bit"  # one bit inside a 16-bit register


class Order(StrEnum):
    """Byte order of a multi-word value, written as for a 32-bit value.

    ABCD: big-endian words, most significant word first (Modbus default).
    CDAB: least significant word first, bytes big-endian in each word.
    BADC: most significant word first, bytes swapped in each word.
    DCBA: fully little-endian.
    The same rule extends to 64-bit values and strings (word order, byte swap).
    """

    ABCD = "ABCD"
    CDAB = "CDAB"
    BADC = "BADC"
    DCBA = "DCBA"


# Registers per data type; STRING uses Point.length, BOOL/BIT use one.
WORDS: dict[DataType, int] = {
    DataType.BOOL: 1,
    DataType.BIT: 1,
    DataType.INT16: 1,
    DataType.UINT16: 1,
    DataType.INT32: 2,
    DataType.UINT32: 2,
    DataType.FLOAT32: 2,
    DataType.INT64: 4,
    DataType.UINT64: 4,
    DataType.FLOAT64: 4,
}


_FLOAT_TYPES = frozenset({DataType.FLOAT32, DataType.FLOAT64})
_NOT_NUMERIC = frozenset({DataType.BOOL, DataType.BIT, DataType.STRING})


def _exact_decimals(x: float, most: int = 10) -> int | None:
    """The fewest decimals that write ``x`` exactly (0.1 -> 1, 0.5 -> 1, 2 -> 0), or None."""
    for d in range(most + 1):
        y = x * 10**d
        if abs(y - round(y)) <= 1e-12 * max(1.0, abs(y)):
            return d
    return None


class SimBehaviour(Strict):
    """How the simulator animates a point (ignored by the gateway).

    constant: ``value``; ramp: from ``low`` to ``high`` over ``period_s`` then
    wraps; sine: ``value`` ± ``amplitude`` over ``period_s``; random_walk:
    starts at ``value``, steps of at most ``step`` kept within low..high;
    boiler: the simple boiler heat model (see firmware_sim.physics), output
    ``field`` of it; counter: grows by ``step`` per second (totalisers).
    """

    kind: Literal["constant", "ramp", "sine", "random_walk", "boiler", "counter"] = "constant"
    value: float = 0.0
    low: float = 0.0
    high: float = 100.0
    amplitude: float = 0.0
    period_s: float = Field(default=60.0, ge=0.1, le=365 * 86400)
    step: float = 1.0
    field: str | None = None


class ModbusPoint(Strict):
    name: Annotated[str, Field(pattern=NAME_RE)]
    table: Table
    address: Annotated[int, Field(ge=0, le=65535)]
    type: DataType = DataType.UINT16
    order: Order = Order.ABCD
    bit: Annotated[int, Field(ge=0, le=15)] | None = None
    length: Annotated[int, Field(ge=1, le=125)] | None = None  # registers, for strings
    scale: float = 1.0
    offset: float = 0.0
    # Decimals of the engineering value; default: what scale and offset imply
    # for integer registers (see ``rounding``).
    decimals: Annotated[int, Field(ge=0, le=15)] | None = None
    unit: str = ""
    description: str = ""
    # A point whose non-zero value means the sensor itself is broken: the
    # points named in ``fault_of`` get quality "fault" and no value.
    fault_of: list[str] = Field(default_factory=list)
    sim: SimBehaviour | None = None

    @property
    def count(self) -> int:
        """Registers (or bits, for bit tables) the point occupies."""
        if self.table.is_bit:
            return 1
        if self.type is DataType.STRING:
            assert self.length is not None
            return self.length
        return WORDS[self.type]

    @functools.cached_property
    def rounding(self) -> int | None:
        """Decimals the scaled value is rounded to, worked out once per point; None: as decoded.

        raw x scale + offset of an integer register has no more decimals than
        scale and offset (raw 204 x 0.1 is 20.4, not the 20.400000000000002
        binary floating point makes of it). A float register's value has its
        own precision, so only an explicit ``decimals`` rounds it.
        """
        if self.decimals is not None:
            return self.decimals
        if self.type in _FLOAT_TYPES or (self.scale == 1.0 and self.offset == 0.0):
            return None
        ds, do = _exact_decimals(self.scale), _exact_decimals(self.offset)
        return None if ds is None or do is None else max(ds, do)

    @functools.cached_property
    def round_factor(self) -> float | None:
        """``10 ** rounding`` for ``codecs.scaled`` (hot path); None when there is nothing
        to round, an unscaled integer register included (it is exact as it is)."""
        nd = self.rounding
        if nd is None or (
            self.type not in _FLOAT_TYPES and self.scale == 1.0 and self.offset == 0.0
        ):
            return None
        return float(10**nd)

    @model_validator(mode="after")
    def _check_type_vs_table(self) -> ModbusPoint:
        if self.table.is_bit and self.type not in (DataType.BOOL,):
            raise ValueError(f"point {self.name!r}: a {self.table} holds bits; type must be bool")
        if not self.table.is_bit and self.type is DataType.BOOL:
            raise ValueError(
                f"point {self.name!r}: type bool is for coils/discrete inputs;"
                " use type 'bit' with 'bit: N' for one bit of a register"
            )
        if self.type is DataType.BIT and self.bit is None:
            raise ValueError(f"point {self.name!r}: type bit needs 'bit: 0..15'")
        if self.type is not DataType.BIT and self.bit is not None:
            raise ValueError(f"point {self.name!r}: 'bit' is only for type bit")
        if self.type is DataType.STRING and self.length is None:
            raise ValueError(f"point {self.name!r}: type string needs 'length' (registers)")
        if self.type is not DataType.STRING and self.length is not None:
            raise ValueError(f"point {self.name!r}: 'length' is only for type string")
        if self.decimals is not None and self.type in _NOT_NUMERIC:
            raise ValueError(f"point {self.name!r}: 'decimals' is only for numeric types")
        if self.address + self.count - 1 > 65535:
            raise ValueError(f"point {self.name!r}: runs past address 65535")
        return self


class Unreadable(Strict):
    """A register range the device refuses to read (planner never reads through it)."""

    table: Table
    start: Annotated[int, Field(ge=0, le=65535)]
    end: Annotated[int, Field(ge=0, le=65535)]

    @model_validator(mode="after")
    def _ordered(self) -> Unreadable:
        if self.end < self.start:
            raise ValueError("unreadable range: end is before start")
        return self


class ComputedPoint(Strict):
    """A point worked out from other points of the device (gateway.profiles.computed)."""

    name: Annotated[str, Field(pattern=NAME_RE)]
    compute: Annotated[str, Field(min_length=1, max_length=256)]
    unit: str = ""
    description: str = ""


class ModbusProfile(PointsProfile):
    name: Annotated[str, Field(pattern=PROFILE_NAME_RE)]
    protocol: Literal["modbus"] = "modbus"
    kind: Annotated[str, Field(pattern=NAME_RE)]
    vendor: str = ""
    model: str = ""
    description: str = ""
    max_gap: Annotated[int, Field(ge=0, le=124)] = 16
    unreadable: list[Unreadable] = Field(default_factory=list)
    points: list[ModbusPoint] = Field(min_length=1)
    computed: list[ComputedPoint] = Field(default_factory=list)

    def point_names(self) -> list[str]:
        return super().point_names() + [c.name for c in self.computed]

    def point_units(self) -> dict[str, str]:
        units = super().point_units()
        units.update({c.name: c.unit for c in self.computed if c.unit})
        return units

    @functools.cached_property
    def expressions(self) -> list[tuple[str, Expression]]:
        """Each computed point's name and parsed expression, in profile order."""
        known = frozenset(p.name for p in self.points if p.type is not DataType.STRING)
        return [(c.name, Expression.parse(c.compute, known)) for c in self.computed]

    @model_validator(mode="after")
    def _computed_parse(self) -> ModbusProfile:
        names = {p.name for p in self.points}
        for c in self.computed:
            if c.name in names:
                raise ValueError(f"computed point {c.name!r} is already a point of the profile")
            names.add(c.name)
        known = frozenset(p.name for p in self.points if p.type is not DataType.STRING)
        for c in self.computed:
            try:
                Expression.parse(c.compute, known)
            except ExpressionError as exc:
                raise ValueError(
                    f"computed point {c.name!r}: compute {c.compute!r}: {exc}"
                ) from None
        return self

    @model_validator(mode="after")
    def _cross_checks(self) -> ModbusProfile:
        owner: dict[tuple[Table, int], str] = {}
        for p in self.points:
            # Bits of one register may be shared by several 'bit' points.
            if p.type is DataType.BIT:
                continue
            for a in range(p.address, p.address + p.count):
                key = (p.table, a)
                if key in owner:
                    raise ValueError(
                        f"point {p.name!r} overlaps point {owner[key]!r} at {p.table} {a}"
                    )
                owner[key] = p.name
        for p in self.points:
            for u in self.unreadable:
                if u.table == p.table and p.address <= u.end and u.start <= p.address + p.count - 1:
                    raise ValueError(
                        f"point {p.name!r} lies in the unreadable range {u.start}..{u.end}"
                    )
        return self


class LineField(Strict):
    """A named group of the line pattern, turned into a point value."""

    name: Annotated[str, Field(pattern=NAME_RE)]
    type: Literal["string", "int", "float"] = "string"
    unit: str = ""
    description: str = ""


class LineFormat(Strict):
    """How a line-oriented ASCII device frames its messages.

    ``pattern`` is a regular expression with named groups, one per field,
    matched against each line without its terminator. ``checksum`` "xor8"
    expects the line to end with ``*HH``: the XOR of every byte before it.
    """

    encoding: str = "ascii"
    terminator: str = "\r\n"
    pattern: str
    checksum: Literal["none", "xor8"] = "none"
    max_length: Annotated[int, Field(ge=8, le=4096)] = 256

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, v: str) -> str:
        try:
            codecs.lookup(v)
        except LookupError as exc:
            raise ValueError(f"unknown encoding {v!r}") from exc
        return v

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, v: str) -> str:
        try:
            re.compile(v)
        except re.error as exc:
            raise ValueError(f"pattern does not compile: {exc}") from exc
        return v


@functools.lru_cache(maxsize=256)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


class SerialLineProfile(Strict):
    name: Annotated[str, Field(pattern=PROFILE_NAME_RE)]
    protocol: Literal["serial_line"]
    kind: Annotated[str, Field(pattern=NAME_RE)]
    vendor: str = ""
    model: str = ""
    description: str = ""
    line: LineFormat
    fields: list[LineField] = Field(min_length=1)

    def point_names(self) -> list[str]:
        return [f.name for f in self.fields]

    def point_units(self) -> dict[str, str]:
        return {f.name: f.unit for f in self.fields if f.unit}

    @property
    def compiled(self) -> re.Pattern[str]:
        return _compiled(self.line.pattern)

    @model_validator(mode="after")
    def _groups_match(self) -> SerialLineProfile:
        groups = set(re.compile(self.line.pattern).groupindex)
        for f in self.fields:
            if f.name not in groups:
                raise ValueError(f"field {f.name!r} has no named group in line.pattern")
        return self
