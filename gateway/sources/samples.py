"""The Samples of one polled device: what they all share, and the fault rule that finishes one.

A device's id, kind and tags are fixed for its life, so they are gathered
once; ``sample`` finishes a poll's values and qualities into a Sample,
``all_bad`` says nothing could be read. Shared by the Modbus and M-Bus
devices (gateway.sources.device_poll, gateway.plugins.mbus.meter).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from gateway.model import Quality, Sample, Value


class FaultablePoint(Protocol):
    """A profile point: its name, and the points its non-zero value marks as faults."""

    @property
    def name(self) -> str: ...

    @property
    def fault_of(self) -> list[str]: ...


class DeviceSamples:
    """Builds the Samples of one device (see the module docstring)."""

    __slots__ = ("_faults", "_names", "device", "kind", "tags")

    def __init__(
        self, device: str, kind: str, tags: dict[str, str], points: Sequence[FaultablePoint]
    ) -> None:
        self.device = device
        self.kind = kind
        self.tags = tags
        self._names = [p.name for p in points]
        self._faults = [(p.name, tuple(p.fault_of)) for p in points if p.fault_of]

    def sample(
        self, ts_ns: int, values: dict[str, Value], quality: dict[str, Quality], error: str | None
    ) -> Sample:
        """A Sample of ``values`` and the non-good ``quality`` (both taken, not copied)."""
        # A sensor-fault bit or a meter's error flags turn the readings they guard
        # into faults: a broken leakage loop reads as 0 mA, which must never look
        # like "no leakage".
        for name, targets in self._faults:
            if values.get(name):
                for target in targets:
                    values.pop(target, None)
                    quality[target] = Quality.FAULT
        return Sample(
            device=self.device,
            kind=self.kind,
            ts_ns=ts_ns,
            values=values,
            quality=quality,
            tags=self.tags,
            error=error,
        )

    def all_bad(self, ts_ns: int, error: str) -> Sample:
        """A Sample saying nothing could be read (device unreachable)."""
        return Sample(
            device=self.device,
            kind=self.kind,
            ts_ns=ts_ns,
            values={},
            quality={name: Quality.BAD for name in self._names},
            tags=self.tags,
            error=error,
        )
