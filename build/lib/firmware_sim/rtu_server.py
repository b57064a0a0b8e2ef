"""Modbus RTU line of the simulator: several unit ids on one pseudo-terminal, with wire time.

Like ``tcp_server``, two layers: pymodbus serves the units' ``SimDevice``s with
the RTU framer on a private loopback port (the firmware), and ``RtuLine`` is
the RS-485 bus in front of it. The line owns a pty whose slave end is linked at
the source's ``port`` path (the gateway opens that path like any serial
device). For each request frame read from the pty (length from the function
code, CRC checked; a bad frame is ignored as a real slave would), the line:

- stays silent for unit ids nobody simulates and for ``no_answer`` faults,
- forwards the frame to the firmware and reads its answer,
- garbles the answer (``garbage``; the CRC is made sure to be wrong),
- with wire time on, holds the answer until the request and the answer would
  have crossed the wire at the configured baud rate (``wire_time_s``),
- delivers ``slow`` answers ``delay_s`` late from a separate task, so the bus
  keeps serving the other units meanwhile (the late frame then lands on the
  line like a late slave's answer would).

Requests are served one at a time, in order, as on a half-duplex bus.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import time
from collections.abc import Coroutine

from pymodbus.exceptions import ModbusException
from pymodbus.framer import FramerRTU, FramerType
from pymodbus.pdu import DecodePDU
from pymodbus.server import ModbusTcpServer

from firmware_sim.faults import garbage
from firmware_sim.modbus_devices import SimulatedUnit
from firmware_sim.ptylink import PtyLink
from firmware_sim.tcp_server import start_firmware, stop_firmware
from gateway.config import ModbusRtuSource

log = logging.getLogger(__name__)
UPSTREAM_TIMEOUT_S = 5.0
INTER_FRAME_CHARS = 3.5


def wire_time_s(frame_bytes: int, bits_per_char: int, baudrate: int) -> float:
    """Time one RTU frame occupies the bus: its characters plus the 3.5-character gap after it."""
    return (frame_bytes + INTER_FRAME_CHARS) * bits_per_char / baudrate


def transaction_wire_time_s(request: int, answer: int, source: ModbusRtuSource) -> float:
    """Request and answer frames back to back, at the source's baud rate and character format."""
    bpc = source.bits_per_char
    return wire_time_s(request, bpc, source.baudrate) + wire_time_s(answer, bpc, source.baudrate)


def crc_ok(frame: bytes) -> bool:
    if len(frame) < 4:
        return False
    return FramerRTU.compute_CRC(frame[:-2]) == int.from_bytes(frame[-2:], "big")


def frame_size(buf: bytes, decoder: DecodePDU) -> int | None:
    """Bytes of the RTU frame at the head of ``buf``; 0 = need more bytes; None = not a frame."""
    if len(buf) < 2:
        return 0
    pdu_class = decoder.lookupPduClass(buf)
    if pdu_class is None:
        return None
    try:
        size = int(pdu_class.calculateRtuFrameSize(buf))
    except ModbusException:
        return None
    return size if size and len(buf) >= size else 0


class RtuLine:
    """The RS-485 line of a ``modbus_rtu`` source, served on a pty."""

    def __init__(
        self,
        source: ModbusRtuSource,
        units: list[SimulatedUnit],
        *,
        wire_time: bool = False,
        rng: random.Random | None = None,
    ) -> None:
        self.source = source
        self.units = {u.unit: u for u in units}
        self.wire_time = wire_time
        self.pty = PtyLink(source.port)
        self._rng = rng or random.Random(f"rtu:{source.id}")
        self._requests = DecodePDU(True)
        self._answers = DecodePDU(False)
        self._buf = b""
        self._last_rx = 0.0
        # Real slaves resynchronise on 3.5 characters of silence; a pty delivers a
        # whole write at once, so allow scheduling jitter on top of that.
        self._silence_s = max(0.05, wire_time_s(0, source.bits_per_char, source.baudrate))
        self._queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue(maxsize=64)
        self._firmware: ModbusTcpServer | None = None
        self._firmware_port = 0
        self._up: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.frames_ignored = 0

    @property
    def link_path(self) -> str:
        return str(self.pty.link)

    @property
    def pty_path(self) -> str:
        return self.pty.pty_path

    async def __aenter__(self) -> RtuLine:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def start(self) -> None:
        self._firmware, self._firmware_port = await start_firmware(
            list(self.units.values()), FramerType.RTU
        )
        self.pty.open()
        asyncio.get_running_loop().add_reader(self.pty.master_fd, self._on_readable)
        self._spawn(self._serve())

    async def aclose(self) -> None:
        if self.pty.is_open:
            asyncio.get_running_loop().remove_reader(self.pty.master_fd)
        for t in list(self._tasks):
            t.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self.pty.close()
        if self._up is not None:
            self._up[1].close()
            self._up = None
        if self._firmware is not None:
            await stop_firmware(self._firmware)
            self._firmware = None

    def _spawn(self, coro: Coroutine[None, None, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------------ reading the bus

    def _on_readable(self) -> None:
        try:
            data = os.read(self.pty.master_fd, 4096)
        except BlockingIOError:
            return
        except OSError:
            # EIO: no process has the slave open; we hold it, so this is transient.
            return
        now = time.monotonic()
        if self._buf and now - self._last_rx > self._silence_s:
            # Line silence ends a frame: a leftover partial frame is noise, not a prefix.
            self.frames_ignored += 1
            self._buf = b""
        self._last_rx = now
        self._buf += data
        while self._buf:
            size = frame_size(self._buf, self._requests)
            if size == 0:
                return
            if size is None or not crc_ok(self._buf[:size]):
                # A real slave discards the garbled frame and waits for line silence.
                self.frames_ignored += 1
                self._buf = b""
                return
            frame, self._buf = self._buf[:size], self._buf[size:]
            try:
                self._queue.put_nowait((now, frame))
            except asyncio.QueueFull:
                self.frames_ignored += 1

    async def _serve(self) -> None:
        while True:
            arrived, frame = await self._queue.get()
            try:
                await self._transact(arrived, frame)
            except (OSError, asyncio.IncompleteReadError, TimeoutError) as exc:
                log.warning("%s: firmware link failed (%s); reconnecting", self.source.id, exc)
                if self._up is not None:
                    self._up[1].close()
                self._up = None

    async def _upstream(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._up is None:
            self._up = await asyncio.open_connection("127.0.0.1", self._firmware_port)
        return self._up

    async def _ask_firmware(self, frame: bytes) -> bytes:
        reader, writer = await self._upstream()
        writer.write(frame)
        await writer.drain()
        buf = b""
        async with asyncio.timeout(UPSTREAM_TIMEOUT_S):
            while True:
                chunk = await reader.read(512)
                if not chunk:
                    raise asyncio.IncompleteReadError(buf, None)
                buf += chunk
                size = frame_size(buf, self._answers)
                if size is None:
                    return buf
                if size:
                    return buf[:size]

    async def _transact(self, arrived: float, frame: bytes) -> None:
        sim = self.units.get(frame[0])
        if sim is None:
            return  # nobody at this address: silence, as on a real bus
        fault = sim.faults.active()
        if fault is not None and fault.kind == "no_answer":
            return
        answer = await self._ask_firmware(frame)
        if fault is not None and fault.kind == "garbage":
            answer = garbage(len(answer), self._rng)
            while crc_ok(answer):
                answer = garbage(len(answer), self._rng)
        delay = 0.0
        if self.wire_time:
            delay = transaction_wire_time_s(len(frame), len(answer), self.source)
        if fault is not None and fault.kind == "slow":
            self._spawn(self._deliver_at(arrived + delay + fault.delay_s, answer))
            return
        await self._deliver_at(arrived + delay, answer)

    async def _deliver_at(self, when: float, answer: bytes) -> None:
        wait = when - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        with contextlib.suppress(OSError):
            self.pty.write(answer)
