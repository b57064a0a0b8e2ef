"""The M-Bus source: every meter on one M-Bus line, read in turn on its own interval.

One ``MBusSource`` owns one line (serial port or TCP transparent converter)
and serialises every exchange on it: M-Bus is half duplex and a master talks
to one meter at a time. A read is: SND_NKE (primary addressing, when
``reset_before_read``) or the secondary-address selection (CI 0x52 to 253),
each acknowledged by E5; then REQ_UD2 until a telegram no longer ends with
DIF 0x1F ("more records follow"), toggling the FCB per new telegram and
repeating it unchanged on a retry, so the meter resends rather than skips.
A converter's echo of the master's own frame is skipped.

A meter may answer after its timeout, while the master already talks to the
next one. Input is flushed before every request, and an answer is taken only
when it fits the request: E5 for SND_NKE and selection; for REQ_UD2 a RSP_UD
from the meter's primary address, or, under secondary addressing, whose
header carries the selected secondary address. Anything else is a late
answer: skipped and counted (``stale_frames``), and the wait goes on to the
deadline, so one slow meter does not shift every later read on the line.

A meter that does not answer costs the line ``timeout_s x (retries + 1)``
once per read; after ``dead_after`` failed reads in a row it is only retried
every ``dead_meter_backoff_s`` (its points stay bad meanwhile), so a dead
meter cannot stall its neighbours. Bytes that form no valid frame are
counted (``garbage_bytes``, and per meter as frame errors), never raised.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import replace

from gateway.config import DeviceConfig
from gateway.errors import CodecError, ConnectError, DeviceTimeout, FrameError, SourceError
from gateway.model import Clock, Sample
from gateway.plugins.base import BoundDevice, Source, SourceContext
from gateway.plugins.mbus.codec import (
    C_RSP_UD,
    CI_RSP_VARIABLE,
    Ack,
    Frame,
    FrameReader,
    LongFrame,
    ShortFrame,
    parse_frame,
    req_ud2,
    secondary_matches,
    select_frame,
    snd_nke,
)
from gateway.plugins.mbus.config import MBusSourceConfig
from gateway.plugins.mbus.link import Link
from gateway.plugins.mbus.meter import MBusMeter
from gateway.plugins.mbus.profile import MBusProfile
from gateway.plugins.mbus.records import Record, decode_telegram
from gateway.plugins.reconnect import LinkRetry
from gateway.plugins.schedule import poll_on_schedule
from gateway.sources.device_poll import DeviceCounters

log = logging.getLogger(__name__)
Emit = Callable[[Sample], Awaitable[None]]
MAX_FRAME = 261  # 68 L L 68 + 255 + CS 16


class MBusSource:
    """Reads every meter behind one M-Bus line (see module docstring)."""

    def __init__(
        self,
        cfg: MBusSourceConfig,
        devices: Sequence[MBusMeter],
        emit: Emit,
        clock: Clock,
    ) -> None:
        self.cfg = cfg
        self.devices = list(devices)
        self._emit = emit
        self._clock = clock
        self._link = Link(cfg)
        self._frames = FrameReader()
        self._retry = LinkRetry(cfg, log)
        self._dead_until: dict[str, float] = {}
        self.garbage_bytes = 0
        # Whole frames that were no answer to the request in flight (late answers).
        self.stale_frames = 0
        self.connected = False
        self.link_ok: bool | None = None
        self.link_error = ""

    def device_counters(self) -> dict[str, DeviceCounters]:
        """Each meter's counters, by device id (the status API and the health records)."""
        return {d.id: d.counters for d in self.devices}

    async def __aenter__(self) -> MBusSource:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        self._link.close()

    # ------------------------------------------------------------------ schedule

    async def run(self) -> None:
        """Read until cancelled. Never raises for meter or line trouble."""
        await poll_on_schedule(self.devices, self.poll_meter, self._clock, spread=False)

    async def _ensure_open(self) -> bool:
        if self._link.connected:
            return True
        got = await self._retry.open(
            self._link.open,
            self._clock.monotonic(),
            f"{self.cfg.id}: line {self._link.where} open again",
        )
        if isinstance(got, ConnectError):
            self.connected, self.link_ok, self.link_error = False, False, str(got)
        elif got:
            self.connected, self.link_ok, self.link_error = True, True, ""
        return got is True

    # ------------------------------------------------------------------ one meter

    async def poll_meter(self, meter: MBusMeter) -> None:
        """Read one meter once and emit its Sample (all bad when it could not be read)."""
        c = meter.counters
        c.polls += 1
        now = self._clock.monotonic()
        if not await self._ensure_open():
            c.connect_errors += 1
            c.consecutive_failures += 1
            await self._emit(meter.all_bad(self._clock.now_ns(), f"{self.cfg.id}: not connected"))
            return
        if self._dead_until.get(meter.id, 0.0) > now:
            await self._emit(meter.all_bad(self._clock.now_ns(), c.last_error or "no answer"))
            return
        start = self._clock.monotonic()
        try:
            records, note = await self._read(meter)
        except (SourceError, CodecError) as exc:
            if isinstance(exc, CodecError):
                c.decode_errors += 1
            else:
                c.count_error(exc)
            if isinstance(exc, ConnectError):
                self._link.close()
                self._retry.lost()
                self.connected, self.link_ok, self.link_error = False, False, str(exc)
            await self._failed(meter, exc, now)
            return
        c.last_latency_s = self._clock.monotonic() - start
        c.latency_sum_s += c.last_latency_s
        c.good_polls += 1
        if c.last_error is not None:
            log.warning("%s/%s: answering again", self.cfg.id, meter.id)
        c.last_error = None
        c.consecutive_failures = 0
        self._dead_until.pop(meter.id, None)
        await self._emit(meter.build_sample(records, self._clock.now_ns(), note))

    async def _failed(self, meter: MBusMeter, exc: Exception, now: float) -> None:
        c = meter.counters
        c.consecutive_failures += 1
        if c.last_error is None:
            log.warning("%s/%s: %s", self.cfg.id, meter.id, exc)
        c.last_error = str(exc)
        if c.consecutive_failures >= self.cfg.dead_after:
            self._dead_until[meter.id] = now + self.cfg.dead_meter_backoff_s
        await self._emit(meter.all_bad(self._clock.now_ns(), str(exc)))

    async def _read(self, meter: MBusMeter) -> tuple[list[Record], str | None]:
        """Every record of one meter (all telegrams), and a note when the read was cut short."""
        addr = meter.address
        if meter.secondary is not None:
            await self._exchange(meter, select_frame(meter.secondary), ack=True)
            meter.fcb = True
        elif self.cfg.reset_before_read:
            await self._exchange(meter, snd_nke(addr), ack=True)
            meter.fcb = True
        records: list[Record] = []
        for _ in range(self.cfg.max_telegrams):
            frame = await self._exchange(meter, req_ud2(addr, meter.fcb), ack=False)
            meter.fcb = not meter.fcb
            assert isinstance(frame, LongFrame)  # _not_an_answer lets nothing else through
            tg = decode_telegram(frame.ci, frame.data)
            base = len(records)
            records.extend(replace(r, index=base + r.index) for r in tg.records)
            if not tg.more_follow:
                return records, None
        return records, f"more than max_telegrams={self.cfg.max_telegrams} telegrams; rest unread"

    async def _exchange(self, meter: MBusMeter, request: bytes, *, ack: bool) -> Frame:
        """The answer to ``request`` (E5 when ``ack``, else this meter's RSP_UD), asked up to
        ``retries`` more times on silence, garbage or answers from someone else."""
        last: SourceError | None = None
        for _attempt in range(self.cfg.retries + 1):
            meter.counters.requests += 1
            try:
                return await self._transact(meter, request, ack)
            except (DeviceTimeout, FrameError) as exc:
                last = exc
        assert last is not None
        raise last

    @staticmethod
    def _not_an_answer(meter: MBusMeter, frame: Frame, ack: bool) -> str | None:
        """Why ``frame`` is no answer to the request in flight (None: it is)."""
        if ack:
            # E5 carries no address: any E5 is taken. A stale one taken here costs nothing
            # worse than a failed read: the real E5 is then skipped by the REQ_UD2 exchange,
            # and the RSP_UD is still matched to this meter below.
            return None if isinstance(frame, Ack) else f"expected E5, got {describe(frame)}"
        if not isinstance(frame, LongFrame) or frame.c & 0x0F != C_RSP_UD:
            return f"expected RSP_UD, got {describe(frame)}"
        if meter.secondary is None:
            if frame.a != meter.address:
                return f"RSP_UD from address {frame.a}, asked {meter.address}"
            return None
        # Selected meters answer with their own primary address: match the header's
        # secondary address (ident, manufacturer, version, medium) against the selection.
        own = frame.data[:8] if frame.ci == CI_RSP_VARIABLE and len(frame.data) >= 12 else b""
        if not secondary_matches(meter.secondary.to_bytes(), own):
            who = own[3::-1].hex() if own else "(no header)"
            return f"answer from meter {who}, not the one selected"
        return None

    def _flush(self) -> None:
        """Forget what arrived since the last exchange: late answers (``stale_frames``),
        the rest of an answer already taken, and noise (``garbage_bytes``)."""
        stale = self._link.take()
        if stale:
            before = self._frames.garbage
            self.stale_frames += len(self._frames.feed(stale))
            self._count_garbage(self._frames.garbage - before + self._frames.pending)
        self._frames.reset()

    async def _transact(self, meter: MBusMeter, request: bytes, ack: bool) -> Frame:
        """One request and its answer: DeviceTimeout on silence, FrameError on garbage or when
        only answers to something else came (a late answer to an earlier request is skipped
        and counted in ``stale_frames``; the wait goes on to the deadline)."""
        self._flush()
        await self._link.send(request)
        # The request's own wire time, then the answer's first byte within timeout_s.
        clock = self._clock
        deadline = clock.monotonic() + self.cfg.wire_time_s(len(request)) + self.cfg.timeout_s
        echo = parse_frame(request)
        heard, wrong = False, None
        g0 = self._frames.garbage
        while True:
            data = await self._link.recv(deadline - clock.monotonic())
            if data:
                if not heard:
                    # Bytes have begun: give the longest frame its wire time from here,
                    # without cutting the wait short when they are only a stale answer.
                    heard = True
                    deadline = max(
                        deadline, clock.monotonic() + self.cfg.wire_time_s(MAX_FRAME) + 0.05
                    )
                before = self._frames.garbage
                # Some level converters echo the master's own frame: that is no answer.
                frames = [f for f in self._frames.feed(data) if f != echo]
                self._count_garbage(self._frames.garbage - before)
                for frame in frames:
                    wrong = self._not_an_answer(meter, frame, ack)
                    if wrong is None:
                        self.stale_frames += len(frames) - 1
                        return frame
                self.stale_frames += len(frames)
            if clock.monotonic() >= deadline:
                break
        junk = self._frames.garbage - g0 + self._frames.pending
        self._count_garbage(self._frames.pending)
        self._frames.reset()
        if wrong is not None:
            raise FrameError(wrong)
        if heard:
            raise FrameError(f"garbage answer ({junk} bytes, no valid frame)")
        raise DeviceTimeout(f"no answer within {self.cfg.timeout_s:g} s")

    def _count_garbage(self, n: int) -> None:
        self.garbage_bytes += n


def describe(frame: Frame) -> str:
    """A frame in a few words, for error messages."""
    if isinstance(frame, Ack):
        return "E5"
    if isinstance(frame, ShortFrame):
        return f"short frame C {frame.c:02X} A {frame.a}"
    return f"long frame C {frame.c:02X} A {frame.a} CI {frame.ci:02X}"


def build_meters(
    cfg: MBusSourceConfig,
    devices: Sequence[DeviceConfig],
    profiles: Mapping[str, object],
    site_tags: dict[str, str],
    units: dict[str, dict[str, str]],
) -> list[MBusMeter]:
    """The meters of one source from the site's devices (profiles already cross-checked),
    recording each point's unit in ``units`` for the sinks."""
    meters = []
    for d in devices:
        prof = profiles[d.id]
        assert isinstance(prof, MBusProfile)
        meters.append(MBusMeter(d, prof, cfg.address_of(d.id), site_tags))
        units[d.id] = {p.name: p.unit for p in prof.points if p.unit}
    return meters


def build(cfg: MBusSourceConfig, devices: Sequence[BoundDevice], ctx: SourceContext) -> Source:
    """The plugin's factory (gateway.plugins): one source per M-Bus line."""
    if cfg.protocol == "cjt188":
        from gateway.plugins.mbus import cjt188_source  # it builds on this module

        return cjt188_source.build(cfg, devices, ctx)
    tags = dict(ctx.site_tags)
    meters = [MBusMeter(d.config, d.profile, cfg.address_of(d.config.id), tags) for d in devices]
    return MBusSource(cfg, meters, ctx.emit, ctx.clock)
