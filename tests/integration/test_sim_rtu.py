"""The Modbus RTU simulator on a real pty: several units on one line, faults and wire time."""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pymodbus.client import AsyncModbusSerialClient
from pymodbus.exceptions import ModbusException
from pymodbus.pdu import ExceptionResponse

from firmware_sim.clock import ManualClock
from firmware_sim.faults import FaultPlan
from firmware_sim.modbus_devices import DeviceModel, SimulatedUnit, effective_behaviours
from firmware_sim.rtu_server import RtuLine, transaction_wire_time_s
from firmware_sim.schema import FaultSpec
from gateway.codecs import decode
from gateway.config import ModbusRtuSource
from gateway.profiles.registry import ProfileRegistry
from gateway.profiles.schema import ModbusProfile

REG, _ = ProfileRegistry.load()


def unit(n: int, profile: str, clock: ManualClock, fault: FaultSpec | None = None) -> SimulatedUnit:
    prof = REG.get(profile)
    assert isinstance(prof, ModbusProfile)
    model = DeviceModel(f"{profile}-{n}", prof, effective_behaviours(prof), clock, random.Random(n))
    return SimulatedUnit(n, model, FaultPlan(fault, clock))


def source(tmp_path: Path, baudrate: int = 9600) -> ModbusRtuSource:
    return ModbusRtuSource(
        id="bus", type="modbus_rtu", port=str(tmp_path / "dev" / "rs485"), baudrate=baudrate
    )


@pytest.fixture
async def line(tmp_path: Path) -> AsyncIterator[RtuLine]:
    clock = ManualClock(75.0)  # a quarter of the flow meter's 300 s sine: 120 + 10
    units = [
        unit(1, "leakage-monitor", clock),
        unit(2, "leakage-monitor", clock, FaultSpec(kind="exception", exception_code=4)),
        unit(3, "ultrasonic-flow-meter", clock),
        unit(4, "ultrasonic-flow-meter", clock, FaultSpec(kind="no_answer")),
        unit(5, "ultrasonic-flow-meter", clock, FaultSpec(kind="garbage")),
        unit(6, "ultrasonic-flow-meter", clock, FaultSpec(kind="slow", delay_s=0.3)),
    ]
    async with RtuLine(source(tmp_path, 115200), units, wire_time=False) as rtu:
        yield rtu


async def connect(path: str, request_timeout_s: float = 0.3) -> AsyncModbusSerialClient:
    client = AsyncModbusSerialClient(port=path, baudrate=9600, timeout=request_timeout_s, retries=0)
    assert await asyncio.wait_for(client.connect(), 5)
    return client


async def test_pty_is_linked_at_the_configured_path(line: RtuLine, tmp_path: Path) -> None:
    link = tmp_path / "dev" / "rs485"
    assert link.is_symlink() and os.readlink(link) == line.pty_path
    assert line.pty_path.startswith("/dev/pts/")
    await line.aclose()
    assert not link.exists()


async def test_several_units_on_one_line(line: RtuLine) -> None:
    client = await connect(line.link_path)
    try:
        leak = line.units[1].model
        rr = await asyncio.wait_for(client.read_input_registers(0x0FA0, count=4, device_id=1), 5)
        assert not rr.isError(), rr
        assert [
            decode(leak.points[f"leak_ch{i}"], [rr.registers[i - 1]]) for i in (1, 2, 3, 4)
        ] == [round(float(leak.values[f"leak_ch{i}"])) for i in (1, 2, 3, 4)]
        rr = await asyncio.wait_for(client.read_holding_registers(501, count=2, device_id=1), 5)
        assert decode(leak.points["alarm_threshold"], rr.registers[:1]) == 300
        flow = line.units[3].model
        rr = await asyncio.wait_for(client.read_holding_registers(0, count=10, device_id=3), 5)
        assert not rr.isError(), rr
        assert decode(flow.points["flow_rate"], rr.registers[0:2]) == pytest.approx(130.0)
    finally:
        client.close()


async def test_faults_do_not_disturb_the_other_units(line: RtuLine) -> None:
    client = await connect(line.link_path)
    try:
        rr = await asyncio.wait_for(client.read_input_registers(0x0FA0, count=4, device_id=2), 5)
        assert isinstance(rr, ExceptionResponse) and rr.exception_code == 4
        for dead in (4, 5, 9):  # no answer, garbage (bad CRC), nobody at that address
            with pytest.raises(ModbusException):
                await asyncio.wait_for(client.read_holding_registers(1, count=2, device_id=dead), 5)
            rr = await asyncio.wait_for(client.read_holding_registers(1, count=2, device_id=3), 5)
            assert not rr.isError(), (dead, rr)
    finally:
        client.close()


async def _timed_reads(client: AsyncModbusSerialClient, address: int, count: int) -> float:
    """Median time of three input-register reads."""
    took = []
    for _ in range(3):
        t0 = time.monotonic()
        await asyncio.wait_for(client.read_input_registers(address, count=count, device_id=1), 5)
        took.append(time.monotonic() - t0)
    return sorted(took)[1]


async def test_wire_time_makes_a_read_take_the_computed_time(tmp_path: Path) -> None:
    clock = ManualClock(0)
    src = source(tmp_path, 9600)
    # 4 registers: request 8 bytes, answer 3 + 8 + 2 = 13 bytes; 8N1 = 10 bits at 9600 baud.
    expected = transaction_wire_time_s(8, 13, src)
    assert expected == pytest.approx((8 + 3.5 + 13 + 3.5) * 10 / 9600)  # 29.2 ms
    async with RtuLine(src, [unit(1, "leakage-monitor", clock)], wire_time=True) as rtu:
        client = await connect(rtu.link_path, request_timeout_s=2)
        try:
            took = await _timed_reads(client, 0x0FA8, 4)
            assert 0.8 * expected <= took < expected + 0.3
            # A read across the unreadable gap gets a 5-byte exception answer: less wire time.
            exc_took = await _timed_reads(client, 0x0FA0, 12)
            assert exc_took >= 0.8 * transaction_wire_time_s(8, 5, src)
        finally:
            client.close()
    async with RtuLine(src, [unit(1, "leakage-monitor", clock)], wire_time=False) as rtu:
        client = await connect(rtu.link_path, request_timeout_s=2)
        try:
            assert await _timed_reads(client, 0x0FA8, 4) < expected
        finally:
            client.close()


async def test_slow_unit_answers_late(line: RtuLine) -> None:
    client = await connect(line.link_path, request_timeout_s=2)
    try:
        t0 = time.monotonic()
        rr = await asyncio.wait_for(client.read_holding_registers(0, count=2, device_id=6), 5)
        took = time.monotonic() - t0
        assert not rr.isError(), rr
        assert 0.3 <= took < 1.0
        assert decode(line.units[6].model.points["flow_rate"], rr.registers) == pytest.approx(130.0)
    finally:
        client.close()


async def test_line_noise_is_ignored_and_the_line_resynchronises(line: RtuLine) -> None:
    client = await connect(line.link_path, request_timeout_s=0.5)
    try:
        # A torn frame (looks like the start of a long write request) then silence.
        fd = os.open(line.link_path, os.O_WRONLY | os.O_NOCTTY)
        try:
            os.write(fd, bytes([3, 16, 0, 1, 0, 100, 200, 1, 2]))
        finally:
            os.close(fd)
        await asyncio.sleep(0.15)
        rr = await asyncio.wait_for(client.read_holding_registers(1, count=2, device_id=3), 5)
        assert not rr.isError(), rr
        assert line.frames_ignored >= 1
    finally:
        client.close()
