"""Cjt188Source against simulated CJ/T 188 meters on a real pty (no mocks).

The line runs at 38400 baud to stay fast, except one read at 2400 baud 8E1
(the rate of real meter buses) with wire timing on.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from pathlib import Path
from typing import Any

import pytest

from gateway.config import DeviceConfig
from gateway.model import Quality, SystemClock
from gateway.plugins.base import BoundDevice, SourceContext
from gateway.plugins.mbus.cjt188 import parse_address
from gateway.plugins.mbus.cjt188_sim import Cjt188LineSim, Cjt188SimMeter
from gateway.plugins.mbus.cjt188_source import Cjt188Source
from gateway.plugins.mbus.config import MBusSourceConfig
from gateway.plugins.mbus.meter import MBusMeter
from gateway.plugins.mbus.profile import MBusPoint, MBusProfile, RecordSelector
from gateway.plugins.mbus.source import build
from gateway.plugins.mbus.tests.test_source import Samples
from gateway.plugins.mbus.tests.test_source import source_cfg as mbus_source_cfg
from gateway.profiles.schema import SimBehaviour

pytestmark = pytest.mark.timeout(60)

# name, quantity, storage, unit, and the value simulated (and expected, exactly).
POINTS = [
    ("energy", "energy", 0, "kWh", 12345.67),
    ("energy_settled", "energy", 1, "MWh", 12.0),
    ("power", "power", 0, "kW", 40.5),
    ("flow", "flow", 0, "l/h", 1234.5),
    ("volume", "volume", 0, "m³", 8200.25),
    ("supply_temp", "supply_temperature", 0, "°C", 75.12),
    ("return_temp", "return_temperature", 0, "°C", 50.05),
    ("hours", "operating_time", 0, "h", 4321),
    ("status", "status", 0, "", 0),
]
PROFILE = MBusProfile(
    name="test-heat-cjt188",
    protocol="mbus",
    kind="heat_meter",
    meter_type=0x20,
    points=[
        MBusPoint(
            name=n, record=RecordSelector(quantity=q, storage=s), unit=u, sim=SimBehaviour(value=v)
        )
        for n, q, s, u, v in POINTS
    ],
)
EXPECTED = {n: v for n, _q, _s, _u, v in POINTS}
ADDR = {"heat-1": "20260000000001", "heat-2": "20260000000002", "heat-3": "20260000000003"}


def source_cfg(tmp_path: Path, **kw: Any) -> MBusSourceConfig:
    return mbus_source_cfg(tmp_path, **({"protocol": "cjt188", "addresses": ADDR} | kw))


def meters(cfg: MBusSourceConfig, *ids: str, interval_s: float = 1.0) -> list[MBusMeter]:
    return [
        MBusMeter(DeviceConfig(id=i, profile=PROFILE.name, source=cfg.id, interval_s=interval_s),
                  PROFILE)
        for i in ids
    ]  # fmt: skip


def sim(cfg: MBusSourceConfig, dev_id: str, **kw: Any) -> Cjt188SimMeter:
    return Cjt188SimMeter(parse_address(ADDR[dev_id]), PROFILE, **kw)


@pytest.mark.parametrize("unit_first", [False, True])
async def test_reads_every_point_exactly(tmp_path: Path, unit_first: bool) -> None:
    cfg = source_cfg(tmp_path, cjt188_unit_first=unit_first)
    got = Samples()
    async with Cjt188LineSim(cfg, [sim(cfg, "heat-1", unit_first=unit_first),
                                   sim(cfg, "heat-2", unit_first=unit_first)]):  # fmt: skip
        src = Cjt188Source(cfg, meters(cfg, "heat-1", "heat-2"), got, SystemClock())
        async with src:
            for m in src.devices:
                await src.poll_meter(m)
                await src.poll_meter(m)
    for dev in ("heat-1", "heat-2"):
        for s in got.of(dev):
            assert s.error is None and not s.quality, s
            assert s.values == pytest.approx(EXPECTED)
    assert [m.counters.requests for m in src.devices] == [2, 2]
    assert src.garbage_bytes == 0


async def test_factory_dispatches_on_protocol_and_reads_at_2400_baud(tmp_path: Path) -> None:
    cfg = source_cfg(tmp_path, baudrate=2400, timeout_s=0.5)
    got = Samples()
    dev = DeviceConfig(id="heat-1", profile=PROFILE.name, source=cfg.id, interval_s=5)
    ctx = SourceContext(emit=got, clock=SystemClock(), site_tags={})
    src = build(cfg, [BoundDevice(dev, PROFILE)], ctx)
    assert isinstance(src, Cjt188Source)
    async with Cjt188LineSim(cfg, [sim(cfg, "heat-1")], wire_time=True), src:
        await src.poll_meter(src.devices[0])
    (s,) = got.of("heat-1")
    assert s.values == pytest.approx(EXPECTED)


async def test_garbage_and_bad_checksums_are_refused_and_counted(tmp_path: Path) -> None:
    cfg = source_cfg(tmp_path, retries=0, dead_after=100)
    noisy, fine = sim(cfg, "heat-1", garble=True), sim(cfg, "heat-2")
    got = Samples()
    rng = random.Random(3)
    async with Cjt188LineSim(cfg, [noisy, fine], echo=True) as line:
        src = Cjt188Source(cfg, meters(cfg, "heat-1", "heat-2"), got, SystemClock())
        async with src:
            for _ in range(3):
                line.inject(bytes(rng.randrange(256) for _ in range(40)))  # noise between reads
                await asyncio.sleep(0.05)
                await src.poll_meter(src.devices[0])  # answers with a broken checksum
                await src.poll_meter(src.devices[1])
            noisy.garble = False
            await src.poll_meter(src.devices[0])
    bad = got.of("heat-1")[:3]
    assert all(s.values == {} and s.error and "garbage" in s.error for s in bad), bad
    assert all(set(s.quality.values()) == {Quality.BAD} for s in bad)
    assert src.devices[0].counters.frame_errors == 3
    assert src.garbage_bytes >= 3 * 60  # the noise and three broken answers
    assert got.of("heat-1")[3].values == pytest.approx(EXPECTED)
    # The echoed requests (a converter echoing the master) were no answer and no garbage
    # to the neighbour, which read every time.
    assert all(s.values == pytest.approx(EXPECTED) for s in got.of("heat-2"))


async def test_error_reply_and_wrong_meter_are_failed_reads(tmp_path: Path) -> None:
    cfg = source_cfg(tmp_path, retries=0)
    erring = sim(cfg, "heat-1", error_reply=True)
    # A meter answering for heat-2's request with another address (wrong wiring or config).
    impostor = sim(cfg, "heat-2", reply_address=parse_address("99999999999999"))
    got = Samples()
    async with Cjt188LineSim(cfg, [erring, impostor]):
        src = Cjt188Source(cfg, meters(cfg, "heat-1", "heat-2"), got, SystemClock())
        async with src:
            for m in src.devices:
                await src.poll_meter(m)
    (e,), (w,) = got.of("heat-1"), got.of("heat-2")
    assert e.values == {} and e.error and "meter answered error (C C1)" in e.error
    assert src.devices[0].counters.exceptions == 1
    assert w.values == {} and w.error and "answer from meter 20/99999999999999" in w.error
    assert src.devices[1].counters.frame_errors == 1


async def test_dead_meter_does_not_stall_its_neighbour(tmp_path: Path) -> None:
    cfg = source_cfg(tmp_path, dead_after=2, dead_meter_backoff_s=600)
    got = Samples()
    async with Cjt188LineSim(cfg, [sim(cfg, "heat-1"), sim(cfg, "heat-2", no_answer=True)]):
        src = Cjt188Source(cfg, meters(cfg, "heat-1", "heat-2", interval_s=0.3), got,
                           SystemClock())  # fmt: skip
        async with src:
            run = asyncio.create_task(src.run())
            counts = {"heat-1": 8, "heat-2": 4}
            await got.wait(lambda: all(len(got.of(d)) >= n for d, n in counts.items()))
            run.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await run
    assert [s for s in got.of("heat-1") if s.quality or s.error] == []
    assert {(tuple(s.values), frozenset(s.quality.values())) for s in got.of("heat-2")} == {
        ((), frozenset({Quality.BAD}))
    }
    assert all("no answer" in str(s.error) for s in got.of("heat-2"))
    c = src.devices[1].counters
    # Two failed reads (each tried retries + 1 times), then left alone for the back-off.
    assert c.requests == 2 * (cfg.retries + 1) and c.timeouts == 2
    assert src.devices[0].counters.good_polls >= 8


async def test_a_late_answer_is_not_taken_for_the_next_meters(tmp_path: Path) -> None:
    """heat-1 answers after the timeout, while heat-2 is being asked: its stale answer is
    skipped and heat-2's own one taken, so the line does not shift by one answer."""
    cfg = source_cfg(tmp_path, retries=0, timeout_s=1.0, dead_after=100)
    slow = sim(cfg, "heat-1", delay_s=1.5)
    got = Samples()
    async with Cjt188LineSim(cfg, [slow, sim(cfg, "heat-2", delay_s=0.6)]):
        src = Cjt188Source(cfg, meters(cfg, "heat-1", "heat-2"), got, SystemClock())
        async with src:
            await src.poll_meter(src.devices[0])  # times out; its answer comes 0.5 s later
            await src.poll_meter(src.devices[1])
            slow.delay_s = 0
            await src.poll_meter(src.devices[0])
    late, again = got.of("heat-1")
    assert late.values == {} and "no answer" in str(late.error)
    (s2,) = got.of("heat-2")
    assert s2.error is None and s2.values == pytest.approx(EXPECTED)
    assert again.error is None and again.values == pytest.approx(EXPECTED)
    assert src.stale_frames == 1  # heat-1's late answer, skipped in heat-2's exchange
