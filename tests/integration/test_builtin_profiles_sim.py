"""Every built-in Modbus profile, simulated from its own file and read by the gateway's source.

One simulator per transport serves one unit per profile (the ``sim`` blocks of
the profile, on a clock that stands still); the gateway's Modbus source polls
each unit once over a real socket (TCP) and over a pty (RTU), through the read
plan, the decoder and the computed points, and every value must equal what the
simulator was configured to hold. Expected values come from the simulator's
model, never typed in a second time.
"""

from __future__ import annotations

import math
import random
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from firmware_sim.clock import ManualClock
from firmware_sim.faults import FaultPlan
from firmware_sim.modbus_devices import DeviceModel, SimulatedUnit, effective_behaviours
from firmware_sim.rtu_server import RtuLine
from firmware_sim.tcp_server import TcpEndpoint
from gateway.config import DeviceConfig
from gateway.model import Quality, Sample, SystemClock, Value
from gateway.plugins.modbus.config import ModbusRtuSource, ModbusTcpSource
from gateway.plugins.modbus.source import ModbusSource, with_computed
from gateway.profiles.registry import ProfileRegistry
from gateway.profiles.schema import DataType, ModbusPoint, ModbusProfile
from gateway.sources.device_poll import ModbusDevice

REG, _ = ProfileRegistry.load()
NAMES = [n for n in REG.names() if isinstance(REG.get(n), ModbusProfile)]
UNITS = {name: i + 1 for i, name in enumerate(NAMES)}
SIM_TIME_S = 75.0


def _profile(name: str) -> ModbusProfile:
    prof = REG.get(name)
    assert isinstance(prof, ModbusProfile)
    return prof


def _units(clock: ManualClock) -> list[SimulatedUnit]:
    out = []
    for name, n in UNITS.items():
        prof = _profile(name)
        model = DeviceModel(name, prof, effective_behaviours(prof), clock, random.Random(n))
        out.append(SimulatedUnit(n, model, FaultPlan(None, clock)))
    return out


def _as_encoded(p: ModbusPoint, v: Value) -> Value:
    """The value the simulator's register holds: integers are whole raw counts."""
    if isinstance(v, bool | str) or p.type in (DataType.FLOAT32, DataType.FLOAT64):
        return v
    return round((float(v) - p.offset) / p.scale) * p.scale + p.offset


def _check(sample: Sample, model: DeviceModel) -> None:
    prof = model.profile
    assert sample.quality == {}, sample.quality
    expected: dict[str, Value] = {}
    for p in prof.points:
        want = _as_encoded(p, model.value_of(p))
        expected[p.name] = want
        got = sample.values[p.name]
        if isinstance(want, str):
            assert str(got) == want[: 2 * p.count], p.name
        elif isinstance(want, bool):
            assert got is want, p.name
        else:
            assert isinstance(got, int | float) and not isinstance(got, bool), p.name
            tol = abs(float(want)) * 1e-6 if p.type is DataType.FLOAT32 else 1e-9
            assert math.isclose(float(got), float(want), abs_tol=tol + 1e-9), (p.name, got, want)
    for name, expr in prof.expressions:
        want_c, q = expr.evaluate(expected, {})
        assert q is Quality.GOOD and want_c is not None
        assert sample.values[name] == pytest.approx(want_c), name


async def _poll_all(cfg: ModbusTcpSource | ModbusRtuSource) -> dict[str, Sample]:
    samples: dict[str, Sample] = {}

    async def keep(s: Sample) -> None:
        samples[s.device] = s

    devices = [
        ModbusDevice(DeviceConfig(id=name, profile=name, source=cfg.id, unit=n), _profile(name))
        for name, n in UNITS.items()
    ]
    async with ModbusSource(cfg, devices, with_computed(devices, keep), SystemClock()) as src:
        for dev in devices:
            await src.poll_device(dev)
    return samples


@pytest.fixture(scope="module")
def clock() -> ManualClock:
    return ManualClock(SIM_TIME_S)


Served = tuple[dict[str, Sample], dict[int, SimulatedUnit]]


@pytest.fixture(params=["tcp", "rtu"])
async def served(
    request: pytest.FixtureRequest, clock: ManualClock, tmp_path: Path
) -> AsyncIterator[Served]:
    """Every profile's unit polled once by the gateway, and the simulator's units."""
    if request.param == "tcp":
        async with TcpEndpoint("127.0.0.1", 0, _units(clock)) as ep:
            tcp = ModbusTcpSource(
                id="sim", type="modbus_tcp", host="127.0.0.1", port=ep.port, timeout_s=2
            )
            yield await _poll_all(tcp), ep.units
        return
    line = ModbusRtuSource(
        id="bus", type="modbus_rtu", port=str(tmp_path / "rs485"), baudrate=115200
    )
    async with RtuLine(line, _units(clock), wire_time=False) as rtu:
        cfg = line.model_copy(update={"port": rtu.link_path, "timeout_s": 2.0})
        yield await _poll_all(cfg), rtu.units


async def test_every_builtin_profile_reads_as_simulated(served: Served) -> None:
    samples, units = served
    assert sorted(samples) == sorted(NAMES)
    for name, n in UNITS.items():
        _check(samples[name], units[n].model)


async def test_people_counter_occupancy_is_in_minus_out(served: Served) -> None:
    samples, units = served
    model = units[UNITS["people-counter"]].model
    ins, outs = round(float(model.values["in_count"])), round(float(model.values["out_count"]))
    capacity = float(model.values["capacity"])
    got = samples["people-counter"].values
    assert got["occupancy"] == ins - outs
    assert got["occupancy_pct"] == pytest.approx((ins - outs) * 100 / capacity)
