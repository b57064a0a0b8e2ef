"""One M-Bus meter on a line: its address, profile, counters, and records -> Sample. Pure.

``select`` maps a profile point to a decoded record (by quantity/storage/
tariff/subunit/function and ``nth``, or by position) and converts the value
to the point's unit; ``MBusMeter.build_sample`` does that for every point.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from gateway.config import DeviceConfig
from gateway.model import Quality, Sample, Value
from gateway.plugins.mbus.codec import ADDR_SELECTED, SecondaryAddress
from gateway.plugins.mbus.profile import UNITS, MBusPoint, MBusProfile
from gateway.plugins.mbus.records import Record
from gateway.sources.device_poll import DeviceCounters
from gateway.sources.samples import DeviceSamples


class PointMissing(Exception):
    """The read holds no record the point selects, or one in an unconvertible unit."""


def convert(value: Value, unit: str, to: str) -> Value:
    """``value`` in canonical ``unit`` converted to the point unit ``to`` ('' keeps it)."""
    if not to or isinstance(value, str | bool):
        return value
    canonical, exp = UNITS[to]
    if canonical != unit:
        raise PointMissing(f"record is in {unit or 'no unit'}, point wants {to}")
    if exp == 0:
        return value
    # Powers of ten in binary floating point: 12.565 m3 is 12565 l, not 12565.000000000002.
    return round(value * 10.0**exp, 9)


def select(point: MBusPoint, records: Sequence[Record]) -> Record:
    if point.index is not None:
        if point.index >= len(records):
            raise PointMissing(f"{point.name}: no record #{point.index} ({len(records)} read)")
        return records[point.index]
    sel = point.record
    assert sel is not None
    hits = [
        r
        for r in records
        if r.quantity == sel.quantity
        and r.storage == sel.storage
        and r.tariff == sel.tariff
        and r.subunit == sel.subunit
        and r.function == sel.function
    ]
    if sel.nth >= len(hits):
        raise PointMissing(
            f"{point.name}: no {sel.function} {sel.quantity} record at storage {sel.storage},"
            f" tariff {sel.tariff}, subunit {sel.subunit}"
        )
    return hits[sel.nth]


@dataclass
class MBusMeter:
    """A configured meter: ``unit`` is its primary address unless ``secondary`` is set."""

    config: DeviceConfig
    profile: MBusProfile
    secondary: SecondaryAddress | None = None
    site_tags: dict[str, str] = field(default_factory=dict)
    counters: DeviceCounters = field(default_factory=DeviceCounters)
    # The FCB of the next new REQ_UD2 (EN 13757-2: it toggles per new telegram).
    fcb: bool = True

    def __post_init__(self) -> None:
        self.tags = {**self.site_tags, **self.config.tags}
        self._samples = DeviceSamples(self.id, self.profile.kind, self.tags, self.profile.points)

    @property
    def id(self) -> str:
        return self.config.id

    @property
    def address(self) -> int:
        return ADDR_SELECTED if self.secondary is not None else self.config.unit

    def build_sample(
        self, records: Sequence[Record], ts_ns: int, error: str | None = None
    ) -> Sample:
        values: dict[str, Value] = {}
        quality: dict[str, Quality] = {}
        errors = [error] if error else []
        for p in self.profile.points:
            try:
                rec = select(p, records)
                values[p.name] = convert(rec.value, rec.unit, p.unit)
            except PointMissing as exc:
                self.counters.decode_errors += 1
                quality[p.name] = Quality.BAD
                errors.append(str(exc))
        # Error flags set (fault_of): the meter says its readings cannot be trusted.
        return self._samples.sample(ts_ns, values, quality, "; ".join(errors) if errors else None)

    def all_bad(self, ts_ns: int, error: str) -> Sample:
        return self._samples.all_bad(ts_ns, error)
