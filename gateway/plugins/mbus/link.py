"""The byte pipe under an M-Bus source: a serial port (pyserial) or a TCP transparent converter.

Both deliver received bytes into one buffer with an event, so the source
reads frames the same way over either. The serial port is non-blocking and
watched by the event loop's reader callback (no thread); the TCP converter
has a reader task. The buffer is bounded: a line spewing noise while nobody
asks drops the excess, and the dropped bytes are counted as garbage.
"""

from __future__ import annotations

import asyncio
import contextlib
import termios

import serial

from gateway.errors import ConnectError
from gateway.plugins.mbus.config import MBusSourceConfig

MAX_BUFFER = 64 * 1024


class Link:
    def __init__(self, cfg: MBusSourceConfig) -> None:
        self.cfg = cfg
        self._buf = bytearray()
        self._ready = asyncio.Event()
        self._port: serial.Serial | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._lost: str | None = None
        self.dropped = 0

    @property
    def where(self) -> str:
        return self.cfg.port or f"{self.cfg.host}:{self.cfg.tcp_port}"

    @property
    def connected(self) -> bool:
        return (self._port is not None or self._writer is not None) and self._lost is None

    async def open(self) -> None:
        self.close()
        self._lost = None
        cfg = self.cfg
        try:
            if cfg.port is not None:
                self._port = serial.Serial(
                    cfg.port,
                    baudrate=cfg.baudrate,
                    bytesize=8,
                    parity=cfg.parity,
                    stopbits=cfg.stopbits,
                    timeout=0,
                )
                asyncio.get_running_loop().add_reader(self._port.fileno(), self._on_readable)
            else:
                assert cfg.host is not None and cfg.tcp_port is not None
                reader, self._writer = await asyncio.wait_for(
                    asyncio.open_connection(cfg.host, cfg.tcp_port), cfg.timeout_s * 4
                )
                self._reader_task = asyncio.create_task(self._read_tcp(reader))
        except (serial.SerialException, OSError, ValueError, TimeoutError, termios.error) as exc:
            # termios.error is no OSError: a pty whose other side was just killed refuses
            # tcsetattr (EINVAL) for a moment; that is a failed open, retried with back-off.
            self.close()
            raise ConnectError(f"{cfg.id}: cannot open {self.where}: {exc}") from exc

    def close(self) -> None:
        if self._port is not None:
            with contextlib.suppress(RuntimeError, ValueError, OSError):
                asyncio.get_running_loop().remove_reader(self._port.fileno())
            with contextlib.suppress(serial.SerialException, OSError):
                self._port.close()
            self._port = None
        if self._reader_task is not None:
            self._reader_task.cancel()
            self._reader_task = None
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def _feed(self, data: bytes) -> None:
        room = MAX_BUFFER - len(self._buf)
        if len(data) > room:
            self.dropped += len(data) - room
            data = data[:room]
        self._buf += data
        self._ready.set()

    def _lose(self, why: str) -> None:
        self._lost = why
        self._ready.set()

    def _on_readable(self) -> None:
        assert self._port is not None
        try:
            data = self._port.read(4096)
        except (serial.SerialException, OSError) as exc:
            self._lose(f"port lost: {exc}")
            with contextlib.suppress(RuntimeError, ValueError, OSError):
                asyncio.get_running_loop().remove_reader(self._port.fileno())
            return
        if not data:
            # Readable but empty: the other end hung up (pty closed, USB adapter gone).
            self._lose("port closed by the device")
            with contextlib.suppress(RuntimeError, ValueError, OSError):
                asyncio.get_running_loop().remove_reader(self._port.fileno())
            return
        self._feed(data)

    async def _read_tcp(self, reader: asyncio.StreamReader) -> None:
        try:
            while data := await reader.read(4096):
                self._feed(data)
        except OSError as exc:
            self._lose(f"connection lost: {exc}")
            return
        self._lose("connection closed by the converter")

    def take(self) -> bytes:
        """Everything received so far (and forget it)."""
        data = bytes(self._buf)
        self._buf.clear()
        self._ready.clear()
        return data

    async def recv(self, wait_s: float) -> bytes:
        """Bytes received within ``wait_s`` (b"" if none); ``ConnectError`` if the link is gone."""
        if not self._buf and self._lost is None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._ready.wait(), max(wait_s, 0.0))
        if self._lost is not None and not self._buf:
            raise ConnectError(f"{self.cfg.id}: {self._lost}")
        return self.take()

    async def send(self, frame: bytes) -> None:
        if self._lost is not None:
            raise ConnectError(f"{self.cfg.id}: {self._lost}")
        try:
            if self._port is not None:
                self._port.write(frame)
            elif self._writer is not None:
                self._writer.write(frame)
                await self._writer.drain()
            else:
                raise ConnectError(f"{self.cfg.id}: not connected")
        except (serial.SerialException, OSError) as exc:
            self._lose(f"write failed: {exc}")
            raise ConnectError(f"{self.cfg.id}: write failed: {exc}") from exc
