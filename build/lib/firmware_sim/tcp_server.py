"""Modbus TCP endpoint of the simulator: one listening port, several unit ids.

Two layers, like a real plant: pymodbus ``ModbusTcpServer`` is the devices'
firmware (the ``SimDevice`` of each unit, on a private loopback port), and
``TcpEndpoint`` is the wire in front of it. The endpoint listens on the
source's host:port, reads each MBAP request, and per unit id either drops it
(``no_answer``), forwards it and garbles the answer (``garbage``), forwards
it and delivers the answer late without blocking later requests (``slow``),
or forwards it as is. A unit id nobody simulates gets exception 0x0B
(gateway target failed to respond), as a TCP gateway in front of a serial bus
answers. Requests on one connection reach the firmware one at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import struct
from collections.abc import Coroutine
from typing import cast

from pymodbus.framer import FramerType
from pymodbus.server import ModbusTcpServer

from firmware_sim.faults import garbage
from firmware_sim.modbus_devices import SimulatedUnit

log = logging.getLogger(__name__)
_MBAP = struct.Struct(">HHHB")
UPSTREAM_TIMEOUT_S = 5.0


async def start_firmware(
    units: list[SimulatedUnit], framer: FramerType
) -> tuple[ModbusTcpServer, int]:
    """Start pymodbus serving ``units`` on a free loopback port; returns the server and port."""
    server = ModbusTcpServer(
        [u.simdevice() for u in units], address=("127.0.0.1", 0), framer=framer
    )
    await server.serve_forever(background=True)
    listener = cast(asyncio.Server, server.transport)
    return server, int(listener.sockets[0].getsockname()[1])


async def stop_firmware(server: ModbusTcpServer) -> None:
    await server.shutdown()  # type: ignore[no-untyped-call]  # pymodbus leaves it unannotated


class TcpEndpoint:
    """The Modbus TCP face of a ``modbus_tcp`` source."""

    def __init__(
        self, host: str, port: int, units: list[SimulatedUnit], rng: random.Random | None = None
    ) -> None:
        self.host, self.port = host, port
        self.units = {u.unit: u for u in units}
        self._rng = rng or random.Random(f"tcp:{host}:{port}")
        self._firmware: ModbusTcpServer | None = None
        self._firmware_port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    async def __aenter__(self) -> TcpEndpoint:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def start(self) -> None:
        self._firmware, self._firmware_port = await start_firmware(
            list(self.units.values()), FramerType.SOCKET
        )
        self._server = await asyncio.start_server(self._on_client, self.host, self.port)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def aclose(self) -> None:
        if self._server is not None:
            self._server.close()
        for w in list(self._writers):
            w.close()
        for t in list(self._tasks):
            t.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)
            self._server = None
        if self._firmware is not None:
            await stop_firmware(self._firmware)
            self._firmware = None

    def _spawn(self, coro: Coroutine[None, None, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        self._writers.add(writer)
        up_w: asyncio.StreamWriter | None = None
        try:
            up_r, up_w = await asyncio.open_connection("127.0.0.1", self._firmware_port)
            while True:
                header = await reader.readexactly(_MBAP.size)
                length, unit = _MBAP.unpack(header)[2:]
                if not 2 <= length <= 254:
                    log.warning("closing connection: bad MBAP length %d", length)
                    return
                pdu = await reader.readexactly(length - 1)
                answer = await self._handle(header, pdu, unit, up_r, up_w, writer)
                if answer is not None:
                    writer.write(answer)
                    await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()
            if up_w is not None:
                up_w.close()

    async def _handle(
        self,
        header: bytes,
        pdu: bytes,
        unit: int,
        up_r: asyncio.StreamReader,
        up_w: asyncio.StreamWriter,
        writer: asyncio.StreamWriter,
    ) -> bytes | None:
        tid, pid, _length, _ = _MBAP.unpack(header)
        sim = self.units.get(unit)
        if sim is None:
            return _MBAP.pack(tid, pid, 3, unit) + bytes((pdu[0] | 0x80, 0x0B))
        fault = sim.faults.active()
        if fault is not None and fault.kind == "no_answer":
            return None
        up_w.write(header + pdu)
        await up_w.drain()
        answer = await asyncio.wait_for(_read_mbap(up_r), UPSTREAM_TIMEOUT_S)
        if fault is not None and fault.kind == "garbage":
            # Keep the MBAP header (the stream stays framed) and the function code
            # (so it does not pass for an exception answer); garble the rest.
            body = garbage(len(answer) - _MBAP.size - 1, self._rng)
            answer = answer[: _MBAP.size + 1] + body
        if fault is not None and fault.kind == "slow":
            self._spawn(self._late(writer, answer, fault.delay_s))
            return None
        return answer

    async def _late(self, writer: asyncio.StreamWriter, answer: bytes, delay_s: float) -> None:
        await asyncio.sleep(delay_s)
        if writer.is_closing():
            return
        with contextlib.suppress(ConnectionError):
            writer.write(answer)
            await writer.drain()


async def _read_mbap(reader: asyncio.StreamReader) -> bytes:
    header = await reader.readexactly(_MBAP.size)
    length = _MBAP.unpack(header)[2]
    return header + await reader.readexactly(length - 1)
