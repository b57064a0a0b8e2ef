"""The ``mbus`` source with ``protocol: cjt188``: CJ/T 188 meters on one line, read in turn.

``Cjt188Source`` keeps everything of ``MBusSource`` that is not the link
layer: the line (serial port or TCP converter), the per-meter schedule, the
dead-meter back-off, the counters and the samples. A read is one exchange:
FE wake-up bytes and a read-data request for DI 901F (C 0x01, the meter
type T from the profile, the meter's 7-byte address and a sequence number
SER), answered by C 0x81 with the 901F data, or by C 0xC1 when the meter
reports an error. An answer is taken only when its type, address, DI and
SER match the request, so a late answer to an earlier request is skipped
(counted in ``stale_frames``).
Silence and garbage (bad checksum, wrong length, noise) are retried up to
``retries`` times and counted (``timeouts``, ``frame_errors``,
``garbage_bytes``); they never raise out of ``run``.
"""

from __future__ import annotations

from collections.abc import Sequence

from gateway.errors import DeviceException, DeviceTimeout, FrameError
from gateway.model import Clock
from gateway.plugins.base import BoundDevice, Source, SourceContext
from gateway.plugins.mbus import cjt188
from gateway.plugins.mbus.config import MBusSourceConfig
from gateway.plugins.mbus.meter import MBusMeter
from gateway.plugins.mbus.records import Record
from gateway.plugins.mbus.source import MAX_FRAME, Emit, MBusSource


class Cjt188Source(MBusSource):
    """Reads every CJ/T 188 meter behind one line (see module docstring)."""

    def __init__(
        self, cfg: MBusSourceConfig, devices: Sequence[MBusMeter], emit: Emit, clock: Clock
    ) -> None:
        super().__init__(cfg, devices, emit, clock)
        self._reader = cjt188.Cjt188Reader()
        self._ser = 0
        self._addr = {m.id: cfg.cjt188_address(m.id, m.config.unit) for m in self.devices}

    async def _read(self, meter: MBusMeter) -> tuple[list[Record], str | None]:
        meter_type = meter.profile.meter_type
        assert meter_type is not None  # the loader refuses such a profile on this source
        addr = self._addr[meter.id]
        last: DeviceTimeout | FrameError | None = None
        for _attempt in range(self.cfg.retries + 1):
            meter.counters.requests += 1
            self._ser = (self._ser + 1) & 0xFF
            request = cjt188.read_request(meter_type, addr, self._ser, wake=self.cfg.cjt188_wakeup)
            try:
                frame = await self._answer(request, meter_type, addr)
            except (DeviceTimeout, FrameError) as exc:
                last = exc
                continue
            if frame.is_error:
                code = frame.data[-1] if frame.data else 0
                raise DeviceException(
                    f"meter answered error (C {frame.c:02X}): {frame.data.hex(' ')}", code
                )
            return cjt188.decode_901f(
                meter_type, frame.data, unit_first=self.cfg.cjt188_unit_first
            ), None
        assert last is not None
        raise last

    def _mismatch(self, frame: cjt188.Cjt188Frame, meter_type: int, addr: bytes) -> str | None:
        """Why ``frame`` is no answer to the request in flight (None: it is)."""
        wild = cjt188.BROADCAST[0]
        if frame.meter_type != meter_type or any(
            a not in (b, wild) for a, b in zip(addr, frame.address, strict=True)
        ):
            return (
                f"answer from meter {frame.meter_type:02X}/{cjt188.format_address(frame.address)},"
                f" asked {meter_type:02X}/{cjt188.format_address(addr)}"
            )
        if frame.is_error:
            return None
        if frame.c != cjt188.C_REPLY:
            return f"expected a read-data answer (C 81), got C {frame.c:02X}"
        di, ser = cjt188.split_di(frame.data)
        if di != cjt188.DI_CURRENT or ser != self._ser:
            return f"answer for DI {di:04X} SER {ser}, asked 901F SER {self._ser}"
        return None

    async def _answer(self, request: bytes, meter_type: int, addr: bytes) -> cjt188.Cjt188Frame:
        """The reply to ``request``: DeviceTimeout on silence, FrameError on garbage or when
        only replies to something else came (a late answer to an earlier request is skipped)."""
        stale = self._link.take()
        self._reader.reset()
        garbage_before = self._reader.garbage
        await self._link.send(request)
        clock, cfg = self._clock, self.cfg
        # The request's own wire time, then the answer's first byte within timeout_s;
        # once bytes arrive, the longest frame gets its wire time (at least).
        deadline = clock.monotonic() + cfg.wire_time_s(len(request)) + cfg.timeout_s
        heard, wrong = False, None
        try:
            while True:
                data = await self._link.recv(deadline - clock.monotonic())
                if data and not heard:
                    heard = True
                    deadline = max(deadline, clock.monotonic() + cfg.wire_time_s(MAX_FRAME) + 0.05)
                # Not replies: the master's own request, echoed by a level converter.
                for frame in (f for f in self._reader.feed(data) if f.is_reply):
                    wrong = self._mismatch(frame, meter_type, addr)
                    if wrong is None:
                        return frame
                    self.stale_frames += 1
                if clock.monotonic() >= deadline:
                    break
        finally:
            self._count_garbage(len(stale) + self._reader.garbage - garbage_before)
        junk = self._reader.garbage - garbage_before + self._reader.pending
        self._count_garbage(self._reader.pending)
        if wrong is not None:
            raise FrameError(wrong)
        if heard:
            raise FrameError(f"garbage answer ({junk} bytes, no valid CJ/T 188 frame)")
        raise DeviceTimeout(f"no answer within {cfg.timeout_s:g} s")


def build(cfg: MBusSourceConfig, devices: Sequence[BoundDevice], ctx: SourceContext) -> Source:
    """The factory for an ``mbus`` source with ``protocol: cjt188``."""
    tags = dict(ctx.site_tags)
    meters = [MBusMeter(d.config, d.profile, None, tags) for d in devices]
    return Cjt188Source(cfg, meters, ctx.emit, ctx.clock)
