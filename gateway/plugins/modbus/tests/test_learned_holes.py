"""A merged read refused with exception 2: the source learns the device's holes.

The simulated meter (firmware_sim, over a real TCP socket and a real pty)
refuses holding registers 20..29, which its own profile declares
``unreadable``; the gateway's profile for it does not, so its planner merges
points 0, 10, 30 and 40 into one read of 0..40 (``max_gap: 32``).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from firmware_sim.clock import ManualClock
from firmware_sim.faults import FaultPlan
from firmware_sim.modbus_devices import DeviceModel, SimulatedUnit, effective_behaviours
from firmware_sim.rtu_server import RtuLine
from firmware_sim.schema import FaultSpec
from firmware_sim.tcp_server import TcpEndpoint
from gateway.config import DeviceConfig
from gateway.model import FakeClock, Quality, Sample, SystemClock
from gateway.plugins.modbus.config import ModbusRtuSource, ModbusTcpSource
from gateway.plugins.modbus.source import ModbusSource
from gateway.profiles.schema import ModbusProfile, Table
from gateway.sources.device_poll import ModbusDevice

VALUES = {"p0": 100.0, "p10": 110.0, "p25": 125.0, "p30": 130.0, "p40": 140.0}
ADVICE = (
    "device meter-1: holding_register 20..29 refused with exception 2 (illegal data address);"
    " declare `unreadable: [{table: holding_register, start: 20, end: 29}]`"
    " in profile holey-meter"
)


def profile(addresses: Sequence[int], **extra: Any) -> ModbusProfile:
    return ModbusProfile.model_validate(
        {
            "name": "holey-meter",
            "kind": "meter",
            "points": [
                {
                    "name": f"p{a}",
                    "table": "holding_register",
                    "address": a,
                    "sim": {"kind": "constant", "value": VALUES[f"p{a}"]},
                }
                for a in addresses
            ],
            **extra,
        }
    )


# What the device really is: 20..29 reserved.
DEVICE = profile(
    [0, 10, 30, 40], unreadable=[{"table": "holding_register", "start": 20, "end": 29}]
)


def sim_unit(fault: FaultSpec | None = None, clock: ManualClock | None = None) -> SimulatedUnit:
    clock = clock or ManualClock(0.0)
    model = DeviceModel("meter-1", DEVICE, effective_behaviours(DEVICE), clock, random.Random(1))
    return SimulatedUnit(1, model, FaultPlan(fault, clock))


def gateway_device(addresses: Sequence[int] = (0, 10, 30, 40)) -> ModbusDevice:
    cfg = DeviceConfig(id="meter-1", profile="holey-meter", source="bus", unit=1, max_gap=32)
    return ModbusDevice(cfg, profile(addresses))


class Collect:
    def __init__(self) -> None:
        self.samples: list[Sample] = []

    async def __call__(self, sample: Sample) -> None:
        self.samples.append(sample)


@pytest.fixture
async def tcp_meter() -> AsyncIterator[TcpEndpoint]:
    async with TcpEndpoint("127.0.0.1", 0, [sim_unit()]) as ep:
        yield ep


def tcp_source(ep: TcpEndpoint, dev: ModbusDevice, got: Collect) -> ModbusSource:
    cfg = ModbusTcpSource(id="bus", type="modbus_tcp", host="127.0.0.1", port=ep.port)
    return ModbusSource(cfg, [dev], got, SystemClock())


def advice_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "refused with exception 2" in r.getMessage()]


async def poll(src: ModbusSource, dev: ModbusDevice, got: Collect) -> Sample:
    await asyncio.wait_for(src.poll_device(dev), 20)
    return got.samples[-1]


async def test_a_refused_merged_read_is_split_and_the_hole_is_named_once(
    tcp_meter: TcpEndpoint, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="gateway")
    dev, got = gateway_device(), Collect()
    assert [(r.address, r.count) for r in dev.plan] == [(0, 41)]
    async with tcp_source(tcp_meter, dev, got) as src:
        first = await poll(src, dev, got)
        assert set(first.quality) == set(VALUES) - {"p25"}  # that poll's read was refused
        assert first.error is not None and "exception code 2" in first.error
        for _ in range(3):
            s = await poll(src, dev, got)
            assert s.quality == {} and s.error is None
            assert s.values == {k: v for k, v in VALUES.items() if k != "p25"}
    assert [(r.address, r.end) for r in dev.plan] == [(0, 10), (30, 40)]
    assert dev.counters.learned_splits == 1
    # Only the poll's refusal is a device error; the search's refusals are its answers.
    assert dev.counters.exceptions == 1
    assert advice_lines(caplog) == [ADVICE]


async def test_a_point_inside_the_hole_stays_bad_with_its_reason(
    tcp_meter: TcpEndpoint, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="gateway")
    dev, got = gateway_device((0, 10, 25, 30, 40)), Collect()
    async with tcp_source(tcp_meter, dev, got) as src:
        await poll(src, dev, got)
        for _ in range(2):
            s = await poll(src, dev, got)
            assert s.quality == {"p25": Quality.BAD}
            assert s.error is not None and "illegal data address" in s.error
            assert s.values == {k: v for k, v in VALUES.items() if k != "p25"}
    # The refused point is asked alone (it may come back); the rest merge around the hole.
    assert [(r.address, r.end) for r in dev.plan] == [(0, 10), (25, 25), (30, 40)]
    lines = advice_lines(caplog)
    assert lines == [
        "device meter-1: point p25 (holding_register 25) refused with exception 2"
        " (illegal data address) when read alone: check its address in profile holey-meter,"
        " or remove it",
        "device meter-1: holding_register 20..24, 26..29 refused with exception 2"
        " (illegal data address); declare `unreadable: [{table: holding_register, start: 20,"
        " end: 24}, {table: holding_register, start: 26, end: 29}]` in profile holey-meter",
    ]


async def test_a_device_refusing_everything_for_a_while_keeps_its_learned_plan(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # As a device answers exception 2 to every read while it boots.
    sim_clock, clock = ManualClock(0.0), FakeClock()
    booting = FaultSpec(kind="exception", exception_code=2, after_s=10, duration_s=100)
    async with TcpEndpoint("127.0.0.1", 0, [sim_unit(booting, sim_clock)]) as ep:
        dev, got = gateway_device(), Collect()
        cfg = ModbusTcpSource(id="bus", type="modbus_tcp", host="127.0.0.1", port=ep.port)
        async with ModbusSource(cfg, [dev], got, clock) as src:
            await poll(src, dev, got)
            learned = list(dev.plan)
            assert len(learned) == 2
            sim_clock.advance(10)
            s = await poll(src, dev, got)
            assert set(s.quality) == set(VALUES) - {"p25"}
            # Nothing reads even alone: nothing learned, the plan stays.
            assert dev.plan == learned and dev.counters.learned_splits == 1
            # ... and the search is not repeated on every poll.
            before = dev.counters.requests
            await poll(src, dev, got)
            assert dev.counters.requests - before == 2
            clock.advance(61)
            before = dev.counters.requests
            await poll(src, dev, got)
            assert dev.counters.requests - before > 2
            sim_clock.advance(100)
            s = await poll(src, dev, got)
            assert s.quality == {} and s.values["p30"] == 130.0 and dev.plan == learned
    assert ADVICE in advice_lines(caplog)


async def test_a_declared_hole_needs_no_learning(tcp_meter: TcpEndpoint) -> None:
    cfg = DeviceConfig(id="meter-1", profile="holey-meter", source="bus", unit=1, max_gap=32)
    dev, got = ModbusDevice(cfg, DEVICE), Collect()
    async with tcp_source(tcp_meter, dev, got) as src:
        s = await poll(src, dev, got)
    assert s.quality == {} and dev.counters.learned_splits == 0
    assert dev.counters.requests == 2


async def test_over_an_rtu_line(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="gateway")
    cfg = ModbusRtuSource(
        id="bus", type="modbus_rtu", port=str(tmp_path / "rs485"), baudrate=115200, timeout_s=0.5
    )
    async with RtuLine(cfg, [sim_unit()], wire_time=False) as line:
        assert line.link_path
        dev, got = gateway_device(), Collect()
        async with ModbusSource(cfg, [dev], got, SystemClock()) as src:
            await poll(src, dev, got)
            s = await poll(src, dev, got)
    assert s.quality == {} and s.values["p40"] == 140.0
    assert [(r.table, r.address, r.end) for r in dev.plan] == [
        (Table.HOLDING_REGISTER, 0, 10),
        (Table.HOLDING_REGISTER, 30, 40),
    ]
    assert advice_lines(caplog) == [ADVICE]
