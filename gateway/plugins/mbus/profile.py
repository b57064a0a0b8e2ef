"""M-Bus device profiles: which data record feeds which point, and in what unit.

A point selects its record either by what it is (``record``: quantity,
storage number, tariff, subunit, function, and ``nth`` for the n-th match)
or by position (``index``: the n-th record of the whole read, across
telegrams). Meters order records differently, so selecting by quantity is
the portable choice; ``index`` is for records the VIF tables do not name.
Values arrive in canonical units (codec) and are converted to the point's
``unit`` by a power of ten.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from gateway.profiles.schema import NAME_RE, PROFILE_NAME_RE, PointsProfile, SimBehaviour, Strict

# Point unit -> (canonical unit, power of ten from canonical to point unit).
UNITS: dict[str, tuple[str, int]] = {
    "Wh": ("Wh", 0), "kWh": ("Wh", -3), "MWh": ("Wh", -6),
    "J": ("J", 0), "kJ": ("J", -3), "MJ": ("J", -6), "GJ": ("J", -9),
    "m3": ("m3", 0), "m³": ("m3", 0), "l": ("m3", 3),
    "W": ("W", 0), "kW": ("W", -3), "MW": ("W", -6),
    "m3/h": ("m3/h", 0), "m³/h": ("m3/h", 0), "l/h": ("m3/h", 3),
    "degC": ("degC", 0), "°C": ("degC", 0), "K": ("K", 0),
    "bar": ("bar", 0), "kPa": ("bar", 2), "MPa": ("bar", -1),
    "s": ("s", 0), "h": ("h", 0), "kg": ("kg", 0), "t": ("kg", -3), "V": ("V", 0), "A": ("A", 0),
}  # fmt: skip


class RecordSelector(Strict):
    """Which record: the ``nth`` (from 0) whose fields all match."""

    quantity: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")]
    storage: Annotated[int, Field(ge=0, le=2**21)] = 0
    tariff: Annotated[int, Field(ge=0, le=2**10)] = 0
    subunit: Annotated[int, Field(ge=0, le=2**10)] = 0
    function: Literal["instantaneous", "maximum", "minimum", "error"] = "instantaneous"
    nth: Annotated[int, Field(ge=0, le=255)] = 0


class MBusPoint(Strict):
    name: Annotated[str, Field(pattern=NAME_RE)]
    record: RecordSelector | None = None
    index: Annotated[int, Field(ge=0, le=1000)] | None = None
    unit: str = ""
    description: str = ""
    # Non-zero value (an error-flags record) means the meter reports itself broken:
    # the points named here get quality "fault" and no value.
    fault_of: list[str] = Field(default_factory=list)
    sim: SimBehaviour | None = None

    @model_validator(mode="after")
    def _one_selector(self) -> MBusPoint:
        if (self.record is None) == (self.index is None):
            raise ValueError(f"point {self.name!r}: give exactly one of 'record' and 'index'")
        if self.unit and self.unit not in UNITS:
            raise ValueError(
                f"point {self.name!r}: unit {self.unit!r} unknown (known: {', '.join(UNITS)})"
            )
        return self


class MBusProfile(PointsProfile):
    name: Annotated[str, Field(pattern=PROFILE_NAME_RE)]
    protocol: Literal["mbus"]
    kind: Annotated[str, Field(pattern=NAME_RE)]
    vendor: str = ""
    model: str = ""
    description: str = ""
    # Simulator only: the medium byte of the header (0x04 heat outlet, 0x0C heat inlet).
    medium: Annotated[int, Field(ge=0, le=255)] = 0x04
    # CJ/T 188 meter type T (0x10 cold water, 0x20 heat, 0x30 gas): set for meters on a
    # ``protocol: cjt188`` source, which asks for it and expects it in the answer.
    meter_type: Annotated[int, Field(ge=0x10, le=0x49)] | None = None
    points: list[MBusPoint] = Field(min_length=1)

    @model_validator(mode="after")
    def _cross_checks(self) -> MBusProfile:
        selectors = [p.record for p in self.points if p.record is not None]
        for p in self.points:
            if p.record is not None and selectors.count(p.record) > 1:
                raise ValueError(f"point {p.name!r}: another point selects the same record")
        return self
