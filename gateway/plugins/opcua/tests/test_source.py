"""OpcUaSource against the boiler-PLC simulator: a real asyncua server on a loopback port.

No mocks: the simulator is an asyncua server, the source a real asyncua
client; status codes and restarts are injected at the server.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from asyncua.ua.status_codes import StatusCodes

from gateway.model import Quality
from gateway.plugins.opcua.sim import OpcUaSimServer, SimDevice
from gateway.plugins.opcua.source import OpcUaSource
from gateway.plugins.opcua.tests.conftest import (
    DEVICE,
    Samples,
    all_good,
    boiler_profile,
    make_source,
)
from tests.fixtures.servers import free_port

pytestmark = pytest.mark.timeout(60)


@contextlib.asynccontextmanager
async def running(source: OpcUaSource) -> AsyncIterator[OpcUaSource]:
    task = asyncio.create_task(source.run())
    try:
        yield source
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@pytest.mark.parametrize("mode", ["subscription", "polling"])
async def test_reads_every_point_with_the_servers_source_timestamp(
    plc: OpcUaSimServer, mode: str
) -> None:
    samples = Samples()
    async with running(make_source(plc.endpoint, samples, mode=mode)) as src:
        s = await samples.wait_for(all_good, what="a sample with every point good")
    assert src.link_ok is True
    assert s.device == DEVICE and s.kind == "boiler"
    assert s.values["flame"] is True
    assert isinstance(s.values["burner_starts"], int) and s.values["burner_starts"] >= 1200
    assert 72 <= s.values["supply_temp"] <= 78  # type: ignore[operator]
    assert 0.39 <= s.values["pressure"] <= 0.51  # type: ignore[operator]  # kPa x 0.001
    # The PLC's own timestamp per point, beside the gateway's read time.
    assert s.source_ts_ns is not None and set(s.source_ts_ns) == set(s.values)
    for ts in s.source_ts_ns.values():
        assert abs(ts - s.ts_ns) < 30e9


@pytest.mark.parametrize("mode", ["subscription", "polling"])
async def test_bad_status_gives_bad_quality_and_no_value(plc: OpcUaSimServer, mode: str) -> None:
    samples = Samples()
    async with running(make_source(plc.endpoint, samples, mode=mode)):
        await samples.wait_for(all_good, what="good values first")
        plc.set_status(DEVICE, "supply_temp", StatusCodes.BadSensorFailure)
        plc.set_status(DEVICE, "pressure", StatusCodes.UncertainLastUsableValue)
        s = await samples.wait_for(
            lambda s: (
                s.quality.get("supply_temp") is Quality.BAD
                and s.quality.get("pressure") is Quality.UNCERTAIN
            ),
            what="bad supply_temp and uncertain pressure",
        )
        assert "supply_temp" not in s.values
        assert s.error is not None and "BadSensorFailure" in s.error
        assert isinstance(s.values["pressure"], float)  # uncertain keeps its value
        assert s.values["flame"] is True and "flame" not in s.quality
        plc.set_status(DEVICE, "supply_temp", None)
        plc.set_status(DEVICE, "pressure", None)
        await samples.wait_for(all_good, what="good again once the PLC clears the status")
    # Never a value beside a bad quality, in any sample.
    for s in samples.all:
        assert not [p for p, q in s.quality.items() if q is Quality.BAD and p in s.values]


async def test_server_restart_marks_points_bad_then_values_resume() -> None:
    port = free_port()
    sim = OpcUaSimServer("127.0.0.1", port, [SimDevice(DEVICE, boiler_profile())])
    await sim.start()
    samples = Samples()
    src = make_source(sim.endpoint, samples)
    try:
        async with running(src):
            await samples.wait_for(all_good, what="good values before the restart")
            await sim.stop()
            down = await samples.wait_for(
                lambda s: not s.values and all(q is Quality.BAD for q in s.quality.values()),
                what="every point bad while the PLC is down",
            )
            assert len(down.quality) == 5 and down.error
            assert src.link_ok is False
            n_down = len(samples.all)
            await sim.start()
            after = await samples.wait_for(
                lambda s: samples.all.index(s) >= n_down and all_good(s),
                what="good values after the restart",
            )
            assert after.values["flame"] is True
            assert src.sessions >= 2 and src.link_ok is True
    finally:
        await sim.stop()


@pytest.mark.parametrize("mode", ["subscription", "polling"])
async def test_missing_nodes_leave_only_their_points_bad(mode: str) -> None:
    prof = boiler_profile()
    # The PLC serves every point but supply_temp (a browse path) and flame (a NodeId).
    missing = {"supply_temp", "flame"}
    served = prof.model_copy(update={"points": [p for p in prof.points if p.name not in missing]})
    sim = OpcUaSimServer("127.0.0.1", free_port(), [SimDevice(DEVICE, served)])
    samples = Samples()
    async with sim, running(make_source(sim.endpoint, samples, mode=mode)):
        s = await samples.wait_for(
            lambda s: len(s.values) == 3 and len(s.quality) == 2,
            what="the three served points with values",
        )
    assert s.quality == {"supply_temp": Quality.BAD, "flame": Quality.BAD}
    assert s.error is not None and "BoilerPLC/2:SupplyTemperature" in s.error
    assert "BadNodeIdUnknown" in s.error
