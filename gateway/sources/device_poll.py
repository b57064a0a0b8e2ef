"""Turning one device's raw reads into a Sample: decoding, quality, fault bits, counters.

Transport-independent and pure apart from the counters it keeps, so the
Modbus TCP and RTU pollers share it, and tests can feed it words directly.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from gateway.codecs import decode, decode_bits, direct_struct, scaled
from gateway.config import DeviceConfig
from gateway.errors import CodecError, DeviceException, DeviceTimeout, FrameError, SourceError
from gateway.model import Quality, Sample, Value
from gateway.profiles.schema import ModbusPoint, ModbusProfile
from gateway.sources.planner import ReadRequest, plan_profile
from gateway.sources.samples import DeviceSamples


class _Slot(NamedTuple):
    point: ModbusPoint
    off: int  # registers from the start of the read
    direct: struct.Struct | None
    name: str


def _whole_read(slots: Sequence[_Slot], count: int) -> struct.Struct | None:
    """One Struct unpacking every point of a read (pad bytes over the gaps), or None.

    None unless every point has a direct Struct and none overlap: then the
    points are decoded one by one.
    """
    fmt = ">"
    pos = 0
    for sl in slots:
        if sl.direct is None or sl.off * 2 < pos:
            return None
        gap = sl.off * 2 - pos
        fmt += (f"{gap}x" if gap else "") + sl.direct.format.lstrip("<>!=@")
        pos = sl.off * 2 + sl.direct.size
    if pos > count * 2:
        return None
    return struct.Struct(fmt)


@dataclass
class DeviceCounters:
    """Per-device health counters, exported on the status API and to InfluxDB."""

    polls: int = 0
    good_polls: int = 0
    timeouts: int = 0
    exceptions: int = 0
    frame_errors: int = 0
    connect_errors: int = 0
    decode_errors: int = 0
    overruns: int = 0
    consecutive_failures: int = 0
    last_latency_s: float = 0.0
    last_error: str | None = None
    requests: int = 0
    latency_sum_s: float = 0.0
    # Merged reads refused with exception 2 and replaced by the parts that read.
    learned_splits: int = 0

    def count_error(self, exc: SourceError) -> None:
        if isinstance(exc, DeviceTimeout):
            self.timeouts += 1
        elif isinstance(exc, DeviceException):
            self.exceptions += 1
        elif isinstance(exc, FrameError):
            self.frame_errors += 1
        else:
            self.connect_errors += 1

    def as_dict(self) -> dict[str, float | int | str | None]:
        return {k: v for k, v in self.__dict__.items()}


@dataclass
class ModbusDevice:
    """A configured Modbus device with its read plan and counters."""

    config: DeviceConfig
    profile: ModbusProfile
    site_tags: dict[str, str] = field(default_factory=dict)
    merge: bool = True
    plan: list[ReadRequest] = field(init=False)
    counters: DeviceCounters = field(default_factory=DeviceCounters)

    def __post_init__(self) -> None:
        self.tags = {**self.site_tags, **self.config.tags}
        self._set_plan(plan_profile(self.profile, self.config.max_gap, self.merge))
        self._samples = DeviceSamples(self.id, self.profile.kind, self.tags, self.profile.points)

    @property
    def max_gap(self) -> int:
        """The gap the plan reads through: the site's override, else the profile's."""
        return self.profile.max_gap if self.config.max_gap is None else self.config.max_gap

    def _set_plan(self, plan: list[ReadRequest]) -> None:
        self.plan = plan
        # Per request, precomputed once: how to turn its words into bytes, and each
        # point's byte offset and direct Struct (None: the general ``decode``).
        self._unpack: list[tuple[struct.Struct, list[_Slot], struct.Struct | None] | None] = []
        for req in self.plan:
            if req.table.is_bit:
                self._unpack.append(None)
                continue
            slots = sorted(
                (_Slot(p, p.address - req.address, direct_struct(p), p.name) for p in req.points),
                key=lambda sl: sl.off,
            )
            self._unpack.append(
                (struct.Struct(f">{req.count}H"), slots, _whole_read(slots, req.count))
            )

    def split(self, request: ReadRequest, pieces: Sequence[ReadRequest]) -> None:
        """Read ``pieces`` instead of ``request`` from now on (a learned hole, holes.py)."""
        i = next(i for i, r in enumerate(self.plan) if r is request)
        self._set_plan([*self.plan[:i], *pieces, *self.plan[i + 1 :]])
        self.counters.learned_splits += 1

    @property
    def id(self) -> str:
        return self.config.id

    def build_sample(
        self,
        results: Sequence[Sequence[int] | Sequence[bool] | SourceError],
        ts_ns: int,
    ) -> Sample:
        """A Sample from the results of ``self.plan`` (same order): words/bits or an error each."""
        values: dict[str, Value] = {}
        quality: dict[str, Quality] = {}
        errors: list[str] = []

        def undecodable(name: str, exc: CodecError) -> None:
            self.counters.decode_errors += 1
            quality[name] = Quality.BAD
            errors.append(str(exc))

        for req, res, unpack in zip(self.plan, results, self._unpack, strict=True):
            if isinstance(res, SourceError):
                for p in req.points:
                    quality[p.name] = Quality.BAD
                errors.append(str(res))
                continue
            if unpack is not None:
                words_st, slots, whole = unpack
                try:
                    buf: bytes | None = words_st.pack(*res)
                except struct.error:
                    buf = None  # not 16-bit words, or a short read: let decode say why
                if buf is not None and whole is not None:
                    # Every point at once (the usual case); scaled() still
                    # rejects NaN/inf point by point.
                    for sl, raw in zip(slots, whole.unpack(buf), strict=True):
                        try:
                            values[sl.name] = scaled(sl.point, raw)
                        except CodecError as exc:
                            undecodable(sl.name, exc)
                    continue
                for sl in slots:
                    p = sl.point
                    try:
                        if buf is not None and sl.direct is not None:
                            values[sl.name] = scaled(p, sl.direct.unpack_from(buf, sl.off * 2)[0])
                        else:
                            values[sl.name] = decode(p, res[sl.off : sl.off + p.count])
                    except CodecError as exc:
                        undecodable(p.name, exc)
                continue
            for p in req.points:
                off = p.address - req.address
                try:
                    values[p.name] = decode_bits(p, res[off : off + 1])  # type: ignore[arg-type]
                except CodecError as exc:
                    undecodable(p.name, exc)
        return self._samples.sample(
            ts_ns, values, quality, "; ".join(dict.fromkeys(errors)) if errors else None
        )

    def all_bad(self, ts_ns: int, error: str) -> Sample:
        """A Sample saying nothing could be read (device unreachable)."""
        return self._samples.all_bad(ts_ns, error)
