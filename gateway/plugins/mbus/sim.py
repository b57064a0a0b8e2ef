"""Simulated M-Bus heat meters on a pty: the slave end of an ``mbus`` source's line.

Each ``SimMeter`` answers SND_NKE with E5, the secondary-address selection
(CI 0x52 to 253, wildcards allowed) with E5 when it matches, and REQ_UD2
with a RSP_UD built from its profile's points (``sim`` behaviours, in the
point's unit) using a heat-meter record layout (``LAYOUT``). With
``records_per_telegram`` set, the records are split over several telegrams
chained by DIF 0x1F; the FCB decides between the next telegram (toggled)
and a repeat (unchanged), and SND_NKE or a selection restarts the sequence.

``MBusLineSim`` serves the meters on one pty with wire timing: an answer
arrives no sooner than the request and the answer would take on the wire at
the line's baud rate, plus the meter's turnaround. Faults: ``no_answer``
(the meter is silent), ``garble`` (its RSP_UD has a bad checksum),
``error_flags`` (its error-flags record), and
``inject`` writes raw bytes (noise) onto the line. Test and development
aid: the gateway never imports it.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from firmware_sim.behaviours import Behaviour, make_behaviour
from firmware_sim.ptylink import PtyLink
from gateway.config import DeviceConfig
from gateway.plugins.base import SimContext, SimPart
from gateway.plugins.mbus.codec import (
    ACK,
    ADDR_SELECTED,
    C_REQ_UD2,
    C_RSP_UD,
    C_SND_NKE,
    CI_RSP_VARIABLE,
    CI_SELECT,
    DIF_MORE_RECORDS,
    FCB,
    FrameReader,
    LongFrame,
    SecondaryAddress,
    ShortFrame,
    long_frame,
    secondary_matches,
)
from gateway.plugins.mbus.config import MBusSourceConfig
from gateway.plugins.mbus.profile import UNITS, MBusProfile
from gateway.plugins.mbus.records import encode_header, encode_record, vif_info
from gateway.profiles.schema import SimBehaviour

# quantity -> (DIF data coding, VIF bytes): a typical heat meter's record layout,
# chosen to exercise BCD, binary integers, a real and an extension VIF.
LAYOUT: dict[str, tuple[int, bytes]] = {
    "energy": (0x0C, b"\x06"),  # 8-digit BCD, kWh
    "volume": (0x04, b"\x14"),  # 32-bit integer, 0.01 m3
    "power": (0x0B, b"\x2b"),  # 6-digit BCD, W
    "flow": (0x0B, b"\x3b"),  # 6-digit BCD, l/h
    "supply_temperature": (0x0A, b"\x5a"),  # 4-digit BCD, 0.1 degC
    "return_temperature": (0x0A, b"\x5e"),  # 4-digit BCD, 0.1 degC
    "temperature_difference": (0x02, b"\x61"),  # 16-bit integer, 0.01 K
    "external_temperature": (0x05, b"\x67"),  # 32-bit real, degC
    "error_flags": (0x02, b"\xfd\x17"),  # 16-bit bit field
}


@dataclass
class SimMeter:
    """One simulated meter: primary address, 8-digit id, profile, faults."""

    primary: int
    ident: int
    profile: MBusProfile
    manufacturer: str = "GWY"
    version: int = 1
    records_per_telegram: int | None = None
    no_answer: bool = False
    # Answer REQ_UD2 with a broken checksum (a noisy line or a failing meter).
    garble: bool = False
    error_flags: int = 0
    # Per-device behaviour overrides (a site device's ``sim`` block).
    overrides: dict[str, SimBehaviour] = field(default_factory=dict)
    clock: Callable[[], float] = time.monotonic
    rng: random.Random = field(default_factory=lambda: random.Random(0))
    selected: bool = False
    reads: int = 0

    def __post_init__(self) -> None:
        self._t0 = self.clock()
        specs = {p.name: p.sim for p in self.profile.points if p.sim} | self.overrides
        self._behaviours: dict[str, Behaviour] = {
            name: make_behaviour(spec, self.rng) for name, spec in specs.items()
        }
        self._last_fcb: bool | None = None
        self._next = 0
        self._last: bytes | None = None
        self._pending: list[bytes] = []
        self._access = 0

    @property
    def secondary(self) -> bytes:
        return SecondaryAddress(
            self.ident, self.manufacturer, self.version, self.profile.medium
        ).to_bytes()

    def reset(self) -> None:
        """SND_NKE or selection: the next REQ_UD2 starts the telegram sequence anew."""
        self._last_fcb, self._next, self._last = None, 0, None

    def records(self) -> list[bytes]:
        out = []
        t = self.clock() - self._t0
        for p in self.profile.points:
            if p.record is None or p.record.quantity not in LAYOUT:
                continue
            coding, vib = LAYOUT[p.record.quantity]
            info = vif_info(vib)
            if p.record.quantity == "error_flags":
                raw: int | float = self.error_flags
            else:
                value = self._behaviours[p.name].value(t) if p.name in self._behaviours else 0.0
                exp = UNITS[p.unit][1] if p.unit else 0
                canonical = value / 10.0**exp
                scaled = canonical / (info.factor * 10.0**info.exp)
                raw = scaled if coding == 0x05 else round(scaled)
            out.append(
                encode_record(coding, vib, raw, storage=p.record.storage, tariff=p.record.tariff)
            )
        return out

    def telegrams(self) -> list[bytes]:
        self._access = (self._access + 1) & 0xFF
        head = encode_header(
            self.ident, self.manufacturer, self.version, self.profile.medium, self._access, 0
        )
        recs = self.records()
        per = self.records_per_telegram or max(1, len(recs))
        chunks = [recs[i : i + per] for i in range(0, len(recs), per)] or [[]]
        return [
            head + b"".join(c) + (bytes([DIF_MORE_RECORDS]) if i < len(chunks) - 1 else b"")
            for i, c in enumerate(chunks)
        ]

    def answer_req_ud2(self, fcb: bool) -> bytes:
        """The RSP_UD for a REQ_UD2 with this FCB: a repeat when it did not toggle."""
        if self._last is not None and fcb == self._last_fcb:
            return self._last
        if self._next == 0:
            self._pending = self.telegrams()
            self.reads += 1
        data = self._pending[self._next]
        self._next = (self._next + 1) % len(self._pending)
        self._last_fcb = fcb
        self._last = long_frame(C_RSP_UD, self.primary, CI_RSP_VARIABLE, data)
        return self._last


class MBusLineSim:
    """The meters of one ``mbus`` source, served on a pty at the source's ``port``."""

    def __init__(
        self,
        source: MBusSourceConfig,
        meters: list[SimMeter],
        *,
        wire_time: bool = True,
        turnaround_s: float = 0.01,
        echo: bool = False,
    ) -> None:
        if source.port is None:
            raise ValueError(f"source {source.id!r} has no serial port to simulate")
        self.source = source
        self.meters = meters
        self.wire_time = wire_time
        self.turnaround_s = turnaround_s
        # Echo every request back, as some M-Bus level converters do.
        self.echo = echo
        self.pty = PtyLink(source.port)
        self._reader = FrameReader()
        self._requests: asyncio.Queue[tuple[bytes, int]] = asyncio.Queue(maxsize=64)
        self._task: asyncio.Task[None] | None = None
        self.requests_seen = 0

    @classmethod
    def for_site(
        cls,
        source: MBusSourceConfig,
        devices: Sequence[DeviceConfig],
        profiles: Mapping[str, object],
        *,
        wire_time: bool = True,
    ) -> MBusLineSim:
        """The meters a site puts on ``source``: ids from ``secondary`` or 10000000 + unit."""
        meters = []
        for d in devices:
            prof = profiles[d.id]
            assert isinstance(prof, MBusProfile)
            addr = source.address_of(d.id)
            ident = addr.ident if addr is not None else 10_000_000 + d.unit
            meters.append(
                SimMeter(d.unit, ident, prof, overrides=dict(d.sim), rng=random.Random(d.id))
            )
        return cls(source, meters, wire_time=wire_time)

    @property
    def link_path(self) -> str:
        return str(self.pty.link)

    async def __aenter__(self) -> MBusLineSim:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def start(self) -> None:
        self.pty.open()
        asyncio.get_running_loop().add_reader(self.pty.master_fd, self._on_readable)
        self._task = asyncio.create_task(self._serve())

    async def aclose(self) -> None:
        if self.pty.is_open:
            asyncio.get_running_loop().remove_reader(self.pty.master_fd)
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self.pty.close()

    @property
    def garbage_seen(self) -> int:
        return self._reader.garbage

    def inject(self, data: bytes) -> None:
        """Noise on the line, as a meter or a bad cable would make it."""
        self.pty.write(data)

    def _on_readable(self) -> None:
        try:
            data = os.read(self.pty.master_fd, 4096)
        except (BlockingIOError, OSError):
            return
        if self.echo:
            self.pty.write(data)
        self._handle(data)

    def _handle(self, data: bytes) -> None:
        """Answer the requests in ``data`` (queued for ``_serve``, which adds the wire time)."""
        for frame in self._reader.feed(data):
            answer = self._answer(frame)
            self.requests_seen += 1
            if answer is not None and not self._requests.full():
                self._requests.put_nowait((answer, self._reader_frame_len(frame)))

    @staticmethod
    def _reader_frame_len(frame: object) -> int:
        return 5 if isinstance(frame, ShortFrame) else 6 + 3 + len(getattr(frame, "data", b""))

    def _answer(self, frame: object) -> bytes | None:
        if isinstance(frame, ShortFrame):
            targets = (
                [m for m in self.meters if m.selected]
                if frame.a == ADDR_SELECTED
                else [m for m in self.meters if m.primary == frame.a]
            )
            live = [m for m in targets if not m.no_answer]
            if frame.c == C_SND_NKE:
                for m in targets:
                    m.reset()
                return bytes([ACK]) * len(live) if live else None
            if frame.c & ~FCB == C_REQ_UD2 and live:
                # Two meters on one address would collide: the wire carries both.
                return b"".join(self._rsp_ud(m, bool(frame.c & FCB)) for m in live)
            return None
        if isinstance(frame, LongFrame) and frame.a == ADDR_SELECTED and frame.ci == CI_SELECT:
            answers = 0
            for m in self.meters:
                m.selected = secondary_matches(frame.data, m.secondary)
                if m.selected:
                    m.reset()
                    answers += 0 if m.no_answer else 1
            return bytes([ACK]) * answers if answers else None
        return None

    @staticmethod
    def _rsp_ud(meter: SimMeter, fcb: bool) -> bytes:
        frame = meter.answer_req_ud2(fcb)
        if meter.garble:
            frame = frame[:-2] + bytes([frame[-2] ^ 0x5A, frame[-1]])
        return frame

    async def _serve(self) -> None:
        while True:
            answer, request_len = await self._requests.get()
            if self.wire_time:
                # Request and answer on the wire, plus the meter's turnaround.
                wire = self.source.wire_time_s(request_len + len(answer))
                await asyncio.sleep(wire + self.turnaround_s)
            self.pty.write(answer)


async def start(src: MBusSourceConfig, ctx: SimContext) -> tuple[SimPart, str] | None:
    """The plugin's simulator for gateway-sim: the source's meters on a pty (serial only)."""
    if src.protocol == "cjt188":
        from gateway.plugins.mbus import cjt188_sim

        return await cjt188_sim.start(src, ctx)
    devs = ctx.site.devices_of(src.id)
    if src.port is None or not devs:
        return None
    line = MBusLineSim.for_site(src, devs, ctx.site.device_profiles, wire_time=ctx.wire_time)
    await line.start()
    return line, f"serving {src.id} on {line.link_path} -> {line.pty.pty_path} (M-Bus)"
