"""OPC UA DataValues to point values and quality: pure functions, tested as tables.

The severity bits of a StatusCode (Part 4 7.39: bits 31-30) decide:
00 Good -> value, quality good; 01 Uncertain -> value, quality uncertain;
10/11 Bad -> no value, quality bad (a bad reading is never a number).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

from gateway.errors import CodecError
from gateway.model import Quality, Value
from gateway.plugins.opcua.profile import OpcUaPoint

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def status_quality(code: int) -> Quality:
    """The gateway's quality for an OPC UA StatusCode value."""
    severity = (code >> 30) & 0b11
    if severity == 0:
        return Quality.GOOD
    if severity == 1:
        return Quality.UNCERTAIN
    return Quality.BAD


def to_ns(ts: datetime | None) -> int | None:
    """A DataValue timestamp as ns since the epoch; naive datetimes are UTC (as asyncua's)."""
    if ts is None:
        return None
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    delta = ts - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000


def convert(point: OpcUaPoint, raw: object) -> Value:
    """The point's engineering value from the variable's value; CodecError if it does not fit."""
    if point.type == "string":
        if isinstance(raw, str):
            return raw
        raise CodecError(f"{point.name}: expected a string, got {type(raw).__name__}")
    if point.type == "bool":
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, int):
            return raw != 0
        raise CodecError(f"{point.name}: expected a boolean, got {type(raw).__name__}")
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise CodecError(f"{point.name}: expected a number, got {type(raw).__name__}")
    if point.type == "int" and point.scale == 1.0 and point.offset == 0.0 and isinstance(raw, int):
        return raw
    value = float(raw) * point.scale + point.offset
    if not math.isfinite(value):
        raise CodecError(f"{point.name}: {value} is not a finite number")
    return round(value) if point.type == "int" else value
