"""Simulated CJ/T 188 meters on a pty: the far end of an ``mbus`` source with ``protocol: cjt188``.

Each ``Cjt188SimMeter`` answers a read-data request (C 0x01, DI 901F) for
its meter type and address (AA bytes in the request match any digit pair)
with C 0x81 and the 901F data built from its profile's points (``sim``
behaviours, in the point's unit), echoing the request's SER. Faults:
``no_answer`` (silent), ``garble`` (answer with a broken checksum),
``error_reply`` (C 0xC1, the meter reports an error), ``reply_address``
(answers under another address), ``delay_s`` (answers late), ``status``
(the ST word).
``Cjt188LineSim`` serves them with the wire timing, turnaround, ``echo``
and ``inject`` of the M-Bus ``MBusLineSim``. Test and development aid: the
gateway never imports it.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from firmware_sim.behaviours import Behaviour, make_behaviour
from gateway.config import DeviceConfig
from gateway.plugins.base import SimContext, SimPart
from gateway.plugins.mbus import cjt188
from gateway.plugins.mbus.config import MBusSourceConfig
from gateway.plugins.mbus.profile import UNITS, MBusProfile
from gateway.plugins.mbus.sim import MBusLineSim
from gateway.profiles.schema import SimBehaviour


@dataclass
class Cjt188SimMeter:
    """One simulated meter: its 7-byte address (wire order), profile and faults."""

    address: bytes
    profile: MBusProfile
    no_answer: bool = False
    garble: bool = False
    error_reply: bool = False
    status: int = 0
    # Answer with this address instead of its own (a miswired or reprogrammed meter).
    reply_address: bytes | None = None
    # Answer this much later than the line's turnaround (a slow or busy meter).
    delay_s: float = 0.0
    unit_first: bool = False
    overrides: dict[str, SimBehaviour] = field(default_factory=dict)
    clock: Callable[[], float] = time.monotonic
    rng: random.Random = field(default_factory=lambda: random.Random(0))
    reads: int = 0

    def __post_init__(self) -> None:
        if self.profile.meter_type is None:
            raise ValueError(f"profile {self.profile.name!r} has no meter_type")
        self.meter_type = self.profile.meter_type
        self._t0 = self.clock()
        specs = {p.name: p.sim for p in self.profile.points if p.sim} | self.overrides
        self._behaviours: dict[str, Behaviour] = {
            name: make_behaviour(spec, self.rng) for name, spec in specs.items()
        }

    def values(self) -> dict[tuple[str, int], int | float | str]:
        """The 901F values in canonical units, from the points' behaviours."""
        t = self.clock() - self._t0
        out: dict[tuple[str, int], int | float | str] = {
            ("datetime", 0): datetime.now().replace(microsecond=0).isoformat(),
            ("status", 0): self.status,
        }
        for p in self.profile.points:
            if p.record is None or p.name not in self._behaviours:
                continue
            value = self._behaviours[p.name].value(t)
            exp = UNITS[p.unit][1] if p.unit else 0
            out[(p.record.quantity, p.record.storage)] = value / 10.0**exp
        return out

    def matches(self, frame: cjt188.Cjt188Frame) -> bool:
        wild = cjt188.BROADCAST[0]
        return frame.meter_type in (self.meter_type, wild) and all(
            a in (b, wild) for a, b in zip(frame.address, self.address, strict=True)
        )

    def answer(self, frame: cjt188.Cjt188Frame) -> bytes | None:
        if self.no_answer or frame.is_reply or not self.matches(frame):
            return None
        di, ser = cjt188.split_di(frame.data)
        if frame.c != cjt188.C_READ or di != cjt188.DI_CURRENT:
            return None
        if self.error_reply:
            data = frame.data[:3] + bytes([0x01])
            return cjt188.encode_frame(self.meter_type, self.address, cjt188.C_ERROR, data, 2)
        self.reads += 1
        data = cjt188.encode_901f(self.meter_type, self.values(), ser, unit_first=self.unit_first)
        addr = self.reply_address or self.address
        out = cjt188.encode_frame(self.meter_type, addr, cjt188.C_REPLY, data, 2)
        if self.garble:
            out = out[:-2] + bytes([out[-2] ^ 0x5A, out[-1]])
        return out


class Cjt188LineSim(MBusLineSim):
    """The CJ/T 188 meters of one source, served on a pty at the source's ``port``."""

    def __init__(
        self,
        source: MBusSourceConfig,
        meters: list[Cjt188SimMeter],
        *,
        wire_time: bool = True,
        turnaround_s: float = 0.01,
        echo: bool = False,
    ) -> None:
        super().__init__(source, [], wire_time=wire_time, turnaround_s=turnaround_s, echo=echo)
        self.cj_meters = meters
        self._cj_reader = cjt188.Cjt188Reader()

    @classmethod
    def for_site(
        cls,
        source: MBusSourceConfig,
        devices: Sequence[DeviceConfig],
        profiles: Mapping[str, object],
        *,
        wire_time: bool = True,
    ) -> Cjt188LineSim:
        meters = []
        for d in devices:
            prof = profiles[d.id]
            assert isinstance(prof, MBusProfile)
            meters.append(
                Cjt188SimMeter(
                    source.cjt188_address(d.id, d.unit),
                    prof,
                    unit_first=source.cjt188_unit_first,
                    overrides=dict(d.sim),
                    rng=random.Random(d.id),
                )
            )
        return cls(source, meters, wire_time=wire_time)

    @property
    def garbage_seen(self) -> int:
        return self._cj_reader.garbage

    def _handle(self, data: bytes) -> None:
        for frame in self._cj_reader.feed(data):
            self.requests_seen += 1
            # Two meters answering one request collide on the wire: both go out.
            talking = [(m, a) for m in self.cj_meters if (a := m.answer(frame)) is not None]
            if not talking:
                continue
            item = (b"".join(a for _m, a in talking), 13 + len(frame.data))
            delay = max(m.delay_s for m, _a in talking)
            asyncio.get_running_loop().call_later(delay, self._queue, item)

    def _queue(self, item: tuple[bytes, int]) -> None:
        if not self._requests.full():
            self._requests.put_nowait(item)


async def start(src: MBusSourceConfig, ctx: SimContext) -> tuple[SimPart, str] | None:
    """gateway-sim: the source's CJ/T 188 meters on a pty (serial only)."""
    devs = ctx.site.devices_of(src.id)
    if src.port is None or not devs:
        return None
    line = Cjt188LineSim.for_site(src, devs, ctx.site.device_profiles, wire_time=ctx.wire_time)
    await line.start()
    return line, f"serving {src.id} on {line.link_path} -> {line.pty.pty_path} (CJ/T 188)"
