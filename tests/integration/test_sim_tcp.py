"""The Modbus TCP simulator over a real socket, read by a real pymodbus client."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator

import pytest
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException
from pymodbus.pdu import ExceptionResponse

from firmware_sim.clock import ManualClock
from firmware_sim.faults import FaultPlan
from firmware_sim.modbus_devices import DeviceModel, SimulatedUnit, effective_behaviours
from firmware_sim.schema import FaultSpec
from firmware_sim.tcp_server import TcpEndpoint
from gateway.codecs import decode
from gateway.profiles.registry import ProfileRegistry
from gateway.profiles.schema import ModbusPoint, ModbusProfile, Table

REG, _ = ProfileRegistry.load()


def unit(n: int, profile: str, clock: ManualClock, fault: FaultSpec | None = None) -> SimulatedUnit:
    prof = REG.get(profile)
    assert isinstance(prof, ModbusProfile)
    model = DeviceModel(f"{profile}-{n}", prof, effective_behaviours(prof), clock, random.Random(n))
    return SimulatedUnit(n, model, FaultPlan(fault, clock))


async def read_point(client: AsyncModbusTcpClient, p: ModbusPoint, unit_id: int) -> object:
    if p.table is Table.HOLDING_REGISTER:
        rr = await client.read_holding_registers(p.address, count=p.count, device_id=unit_id)
    elif p.table is Table.INPUT_REGISTER:
        rr = await client.read_input_registers(p.address, count=p.count, device_id=unit_id)
    elif p.table is Table.DISCRETE_INPUT:
        rr = await client.read_discrete_inputs(p.address, count=1, device_id=unit_id)
        assert not rr.isError(), rr
        return rr.bits[0]
    else:
        rr = await client.read_coils(p.address, count=1, device_id=unit_id)
        assert not rr.isError(), rr
        return rr.bits[0]
    assert not rr.isError(), (p.name, rr)
    return decode(p, rr.registers)


@pytest.fixture
async def plant() -> AsyncIterator[tuple[TcpEndpoint, ManualClock]]:
    clock = ManualClock(123.0)
    units = [
        unit(1, "boiler-controller", clock),
        unit(2, "pipe-heat-meter", clock),
        unit(3, "cold-room-thermometer", clock),
        unit(4, "leakage-monitor", clock, FaultSpec(kind="exception", exception_code=6)),
        unit(5, "ultrasonic-flow-meter", clock, FaultSpec(kind="no_answer")),
        unit(6, "ultrasonic-flow-meter", clock, FaultSpec(kind="garbage")),
        unit(7, "ultrasonic-flow-meter", clock, FaultSpec(kind="slow", delay_s=0.4)),
    ]
    async with TcpEndpoint("127.0.0.1", 0, units) as ep:
        yield ep, clock


@pytest.fixture
async def client(plant: tuple[TcpEndpoint, ManualClock]) -> AsyncIterator[AsyncModbusTcpClient]:
    c = AsyncModbusTcpClient("127.0.0.1", port=plant[0].port, timeout=0.5, retries=0)
    assert await asyncio.wait_for(c.connect(), 5)
    yield c
    c.close()


async def test_every_point_of_every_unit_decodes_to_the_model(
    plant: tuple[TcpEndpoint, ManualClock], client: AsyncModbusTcpClient
) -> None:
    ep, _ = plant
    for unit_id in (1, 2, 3):
        sim = ep.units[unit_id]
        for p in sim.model.profile.points:
            got = await asyncio.wait_for(read_point(client, p, unit_id), 5)
            want = sim.model.value_of(p)
            if isinstance(want, bool | str):
                assert got == want if isinstance(want, bool) else str(got) == want[: 2 * p.count]
            else:
                assert got == pytest.approx(want, abs=abs(p.scale) / 2 + 1e-4), p.name


async def test_multi_register_read_and_time_moves_values(
    plant: tuple[TcpEndpoint, ManualClock], client: AsyncModbusTcpClient
) -> None:
    ep, clock = plant
    pipe = ep.units[2].model
    rr = await asyncio.wait_for(client.read_input_registers(0, count=20, device_id=2), 5)
    assert not rr.isError()
    heat = pipe.points["heat_energy"]
    assert decode(heat, rr.registers[16:20]) == round(48_000_000 + 1.6 * 123)
    clock.advance(100)
    rr = await asyncio.wait_for(client.read_input_registers(16, count=4, device_id=2), 5)
    assert decode(heat, rr.registers) == round(48_000_000 + 1.6 * 223)


async def test_unreadable_range_and_unknown_unit(client: AsyncModbusTcpClient) -> None:
    # The boiler profile marks 112..119 unreadable: a read across it is refused.
    rr = await asyncio.wait_for(client.read_holding_registers(110, count=11, device_id=1), 5)
    assert isinstance(rr, ExceptionResponse) and rr.exception_code == 2
    rr = await asyncio.wait_for(client.read_holding_registers(0, count=1, device_id=42), 5)
    assert isinstance(rr, ExceptionResponse) and rr.exception_code == 0x0B


async def test_exception_fault(client: AsyncModbusTcpClient) -> None:
    rr = await asyncio.wait_for(client.read_input_registers(0x0FA0, count=4, device_id=4), 5)
    assert isinstance(rr, ExceptionResponse) and rr.exception_code == 6


async def test_no_answer_times_out_and_others_still_answer(client: AsyncModbusTcpClient) -> None:
    t0 = time.monotonic()
    with pytest.raises(ModbusException):
        await asyncio.wait_for(client.read_holding_registers(1, count=2, device_id=5), 5)
    assert time.monotonic() - t0 >= 0.4
    rr = await asyncio.wait_for(client.read_holding_registers(100, count=2, device_id=1), 5)
    assert not rr.isError()


async def test_garbage_fault(plant: tuple[TcpEndpoint, ManualClock]) -> None:
    c = AsyncModbusTcpClient("127.0.0.1", port=plant[0].port, timeout=0.5, retries=0)
    assert await asyncio.wait_for(c.connect(), 5)
    try:
        outcome: object
        try:
            outcome = await asyncio.wait_for(c.read_holding_registers(1, count=2, device_id=6), 5)
        except ModbusException as exc:
            outcome = exc
        want = plant[0].units[6].model.registers(Table.HOLDING_REGISTER)
        # Either the client rejects the frame or what it decodes is not the device's data.
        if not isinstance(outcome, ModbusException):
            assert outcome.isError() or outcome.registers != [want[1], want[2]]  # type: ignore[attr-defined]
    finally:
        c.close()


async def test_slow_fault_answers_late_without_blocking_others(
    plant: tuple[TcpEndpoint, ManualClock],
) -> None:
    c = AsyncModbusTcpClient("127.0.0.1", port=plant[0].port, timeout=2, retries=0)
    assert await asyncio.wait_for(c.connect(), 5)
    try:
        t0 = time.monotonic()
        rr = await asyncio.wait_for(c.read_holding_registers(1, count=2, device_id=7), 5)
        took = time.monotonic() - t0
        assert not rr.isError()
        assert 0.4 <= took < 1.5
    finally:
        c.close()
