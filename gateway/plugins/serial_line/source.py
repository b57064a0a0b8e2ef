"""Serial-line source: one line-oriented ASCII device (an RFID checkpoint reader) on one port.

The port is opened with pyserial in non-blocking mode and watched with the
event loop's reader callback, so no thread is needed. Every complete line
becomes one Sample stamped when the line's terminator arrived; a line that
does not parse is counted as a frame error and logged (rate-limited), and
never stops the source. An overlong line (noise without line ends) is one
frame error however long it is, and the next line after it is read
(``LineSplitter``).

The tap path is bounded: lines pass a token bucket (``max_lines_per_s``,
bursts of ``max_burst_lines``) as they are read; a line over the rate is
dropped unread and counted in ``counters.overruns`` (the patrol check turns
the count into a finding), so a flooding reader costs a counter increment
per line, not a patrol verdict and an outbox row. The reading task yields to
the event loop after every line it hands on, so the other sources keep
their poll interval while this one floods. A port that disappears (reader unplugged) is retried
with capped back-off, and the device is reported with an error Sample so the
patrol check can call the reader offline.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import termios
from collections.abc import Awaitable, Callable, Sequence

import serial

from gateway.config import DeviceConfig
from gateway.errors import ConnectError, FrameError
from gateway.model import Clock, Quality, Sample
from gateway.plugins.base import BoundDevice, Source, SourceContext
from gateway.plugins.serial_line.config import SerialLineSource
from gateway.plugins.serial_line.line_codec import LineSplitter, parse_line
from gateway.profiles.schema import SerialLineProfile
from gateway.sources.device_poll import DeviceCounters

log = logging.getLogger(__name__)
Emit = Callable[[Sample], Awaitable[None]]
_READ_CHUNK = 4096


class SerialLineDevice:
    """Reads lines from one serial port and emits one Sample per valid line."""

    def __init__(
        self,
        cfg: SerialLineSource,
        device: DeviceConfig,
        profile: SerialLineProfile,
        emit: Emit,
        clock: Clock,
        site_tags: dict[str, str] | None = None,
    ) -> None:
        self.cfg = cfg
        self.device = device
        self.profile = profile
        self._emit = emit
        self._clock = clock
        self.tags = {**(site_tags or {}), **device.tags}
        self.counters = DeviceCounters()
        self.lines = 0
        self.connected = False
        self.link_ok: bool | None = None
        self.link_error = ""
        self._port: serial.Serial | None = None
        self.splitter = LineSplitter(
            profile.line.terminator.encode(profile.line.encoding), profile.line.max_length
        )
        # Bounded by the token bucket's burst; full only if the pipeline stalls.
        self._queue: asyncio.Queue[tuple[int, bytes] | Exception] = asyncio.Queue(maxsize=1000)
        self._tokens = float(cfg.max_burst_lines)
        self._refilled = clock.monotonic()
        self._last_garbage_log = -1e9

    def device_counters(self) -> dict[str, DeviceCounters]:
        return {self.device.id: self.counters}

    async def __aenter__(self) -> SerialLineDevice:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        self._close()

    def _open(self) -> None:
        try:
            port = serial.Serial(
                self.cfg.port,
                baudrate=self.cfg.baudrate,
                bytesize=self.cfg.bytesize,
                parity=self.cfg.parity,
                stopbits=self.cfg.stopbits,
                timeout=0,
            )
        except (serial.SerialException, OSError, ValueError, termios.error) as exc:
            # termios.error is no OSError (pyserial lets tcsetattr's escape): a failed open.
            raise ConnectError(f"{self.cfg.id}: cannot open {self.cfg.port}: {exc}") from exc
        self._port = port
        self.splitter.reset()
        asyncio.get_running_loop().add_reader(port.fileno(), self._on_readable)
        self.connected = True
        self.link_ok, self.link_error = True, ""

    def _close(self) -> None:
        if self._port is not None:
            with contextlib.suppress(RuntimeError, ValueError, OSError):
                asyncio.get_running_loop().remove_reader(self._port.fileno())
            with contextlib.suppress(serial.SerialException, OSError):
                self._port.close()
        self._port = None
        self.connected = False

    def _on_readable(self) -> None:
        assert self._port is not None
        try:
            data = self._port.read(_READ_CHUNK)
        except (serial.SerialException, OSError) as exc:
            self._put(ConnectError(f"{self.cfg.id}: port lost: {exc}"))
            return
        if not data:
            # Readable but empty: the other end hung up (pty closed, USB gone).
            self._put(ConnectError(f"{self.cfg.id}: port closed by the device"))
            return
        ts_ns = self._clock.now_ns()
        for item in self.splitter.feed(data):
            if isinstance(item, FrameError):
                self._put(item)
            elif self._take_token():
                self._put((ts_ns, item))
            else:
                self.counters.overruns += 1

    def _take_token(self) -> bool:
        now = self._clock.monotonic()
        cfg = self.cfg
        self._tokens = min(
            float(cfg.max_burst_lines), self._tokens + (now - self._refilled) * cfg.max_lines_per_s
        )
        self._refilled = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True

    def _put(self, item: tuple[int, bytes] | Exception) -> None:
        try:
            self._queue.put_nowait(item)
        except asyncio.QueueFull:
            # The pipeline is far behind; count it as a frame error so it shows.
            self.counters.frame_errors += 1

    async def run(self) -> None:
        """Read lines until cancelled; reopen the port with back-off when it goes away."""
        backoff = self.cfg.reconnect_min_s
        down_logged = False
        while True:
            try:
                self._open()
            except ConnectError as exc:
                self.counters.connect_errors += 1
                self.link_ok, self.link_error = False, str(exc)
                if not down_logged:
                    log.warning(
                        "%s; retrying with back-off up to %g s", exc, self.cfg.reconnect_max_s
                    )
                    down_logged = True
                    await self._emit(self._offline(str(exc)))
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.cfg.reconnect_max_s)
                continue
            if down_logged:
                log.warning("%s: port %s open again", self.cfg.id, self.cfg.port)
            down_logged = False
            backoff = self.cfg.reconnect_min_s
            try:
                await self._read_lines()
            except ConnectError as exc:
                self._close()
                self.link_ok, self.link_error = False, str(exc)
                self.counters.connect_errors += 1
                log.warning("%s", exc)
                down_logged = True
                await self._emit(self._offline(str(exc)))
                await asyncio.sleep(backoff)
            finally:
                self._close()

    async def _read_lines(self) -> None:
        while True:
            try:
                item = await asyncio.wait_for(self._queue.get(), timeout=self.cfg.silence_s)
            except TimeoutError:
                self.counters.timeouts += 1
                await self._emit(self._offline(f"no line for {self.cfg.silence_s} s"))
                continue
            if isinstance(item, ConnectError):
                raise item
            if isinstance(item, FrameError):
                self._garbage(item)
                continue
            assert isinstance(item, tuple)
            ts_ns, raw = item
            raw = raw.strip(b"\r\n")
            if not raw:
                continue
            try:
                values = parse_line(self.profile, raw)
            except FrameError as exc:
                self._garbage(exc)
                continue
            self.lines += 1
            self.counters.polls += 1
            self.counters.good_polls += 1
            self.counters.last_error = None
            await self._emit(
                Sample(
                    device=self.device.id,
                    kind=self.profile.kind,
                    ts_ns=ts_ns,
                    values=values,
                    tags=self.tags,
                )
            )
            # Queue.get does not yield while lines are waiting: let the other sources run.
            await asyncio.sleep(0)

    def _garbage(self, exc: FrameError) -> None:
        self.counters.frame_errors += 1
        self.counters.last_error = str(exc)
        now = self._clock.monotonic()
        if now - self._last_garbage_log > 60:
            log.warning(
                "%s/%s: garbage on the line (%d so far): %s",
                self.cfg.id,
                self.device.id,
                self.counters.frame_errors,
                exc,
            )
            self._last_garbage_log = now

    def _offline(self, why: str) -> Sample:
        return Sample(
            device=self.device.id,
            kind=self.profile.kind,
            ts_ns=self._clock.now_ns(),
            values={},
            quality={f.name: Quality.BAD for f in self.profile.fields},
            tags=self.tags,
            error=why,
        )


# --------------------------------------------------------------------------- plugin factory


def build(cfg: SerialLineSource, devices: Sequence[BoundDevice], ctx: SourceContext) -> Source:
    (dev,) = devices  # one_device: the site loader refuses a second one
    return SerialLineDevice(cfg, dev.config, dev.profile, ctx.emit, ctx.clock, dict(ctx.site_tags))
