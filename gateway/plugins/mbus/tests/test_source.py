"""MBusSource against simulated heat meters on a real pty (no mocks).

Most tests run the line at 38400 baud to stay fast; one reads at 2400 baud,
the rate real meter buses use, with wire timing on.
"""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gateway.config import DeviceConfig
from gateway.model import Quality, Sample, SystemClock
from gateway.plugins.mbus.codec import FrameReader
from gateway.plugins.mbus.config import MBusSourceConfig
from gateway.plugins.mbus.meter import MBusMeter
from gateway.plugins.mbus.profile import MBusProfile
from gateway.plugins.mbus.sim import MBusLineSim, SimMeter
from gateway.plugins.mbus.source import MBusSource

pytestmark = pytest.mark.timeout(60)

# Constant behaviours, so the values read can be compared exactly.
PROFILE = MBusProfile.model_validate(
    {
        "name": "test-heat-meter",
        "protocol": "mbus",
        "kind": "heat_meter",
        "points": [
            {"name": "energy", "record": {"quantity": "energy"}, "unit": "kWh",
             "sim": {"value": 12345}},
            {"name": "volume", "record": {"quantity": "volume"}, "unit": "m3",
             "sim": {"value": 123.45}},
            {"name": "volume_l", "index": 1, "unit": "l"},
            {"name": "power", "record": {"quantity": "power"}, "unit": "kW",
             "sim": {"value": 40.5}},
            {"name": "flow", "record": {"quantity": "flow"}, "unit": "m3/h",
             "sim": {"value": 1.234}},
            {"name": "supply_temp", "record": {"quantity": "supply_temperature"}, "unit": "°C",
             "sim": {"value": 75.1}},
            {"name": "return_temp", "record": {"quantity": "return_temperature"}, "unit": "°C",
             "sim": {"value": 50.2}},
            {"name": "temp_diff", "record": {"quantity": "temperature_difference"}, "unit": "K",
             "sim": {"value": 24.9}},
            {"name": "outdoor", "record": {"quantity": "external_temperature"},
             "sim": {"value": -7.5}},
            {"name": "energy_prev", "record": {"quantity": "energy", "storage": 1}, "unit": "MWh",
             "sim": {"value": 11}},
            {"name": "error_flags", "record": {"quantity": "error_flags"},
             "fault_of": ["energy", "supply_temp"]},
        ],
    }
)  # fmt: skip
EXPECTED = {
    "energy": 12345,
    "volume": 123.45,
    "volume_l": 123450.0,
    "power": 40.5,
    "flow": 1.234,
    "supply_temp": 75.1,
    "return_temp": 50.2,
    "temp_diff": 24.9,
    "outdoor": -7.5,
    "energy_prev": 11.0,
    "error_flags": 0,
}


def source_cfg(tmp_path: Path, **kw: Any) -> MBusSourceConfig:
    data: dict[str, Any] = {
        "type": "mbus",
        "id": "mbus-1",
        "port": str(tmp_path / "ttyMBUS"),
        "baudrate": 38400,
        "timeout_s": 0.2,
        "retries": 1,
    }
    data.update(kw)
    return MBusSourceConfig.model_validate(data)


def meter(dev_id: str, unit: int, cfg: MBusSourceConfig, interval_s: float = 1.0) -> MBusMeter:
    dc = DeviceConfig(id=dev_id, profile=PROFILE.name, source=cfg.id, unit=unit,
                      interval_s=interval_s)  # fmt: skip
    return MBusMeter(dc, PROFILE, cfg.address_of(dev_id))


class Samples:
    """The source's emit: keeps the samples and wakes waiters."""

    def __init__(self) -> None:
        self.items: list[Sample] = []
        self._changed = asyncio.Event()

    async def __call__(self, sample: Sample) -> None:
        self.items.append(sample)
        self._changed.set()

    def of(self, device: str) -> list[Sample]:
        return [s for s in self.items if s.device == device]

    async def wait(self, pred: Callable[[], bool], within_s: float = 20.0) -> None:
        async with asyncio.timeout(within_s):
            while not pred():
                self._changed.clear()
                await self._changed.wait()


async def test_primary_secondary_and_multi_telegram_reads(tmp_path: Path) -> None:
    cfg = source_cfg(tmp_path, secondary={"heat-2": "20000002-GWY-01-04"})
    # Meter 1 splits its 10 records over 4 telegrams (DIF 0x1F chains them).
    m1 = SimMeter(1, 10000001, PROFILE, records_per_telegram=3)
    m2 = SimMeter(0, 20000002, PROFILE)
    got = Samples()
    async with MBusLineSim(cfg, [m1, m2]) as line:
        meters = [meter("heat-1", 1, cfg), meter("heat-2", 0, cfg)]
        src = MBusSource(cfg, meters, got, SystemClock())
        async with src:
            for dev in src.devices:
                await src.poll_meter(dev)
                await src.poll_meter(dev)  # the sequence starts over on the next read
    for dev_id in ("heat-1", "heat-2"):
        samples = got.of(dev_id)
        assert len(samples) == 2
        for s in samples:
            assert s.error is None and not s.quality, s
            assert s.values == pytest.approx(EXPECTED)
    assert m1.reads == 2 and m2.reads == 2
    # 2 reads x (SND_NKE + 4 REQ_UD2) for meter 1; 2 x (select + REQ_UD2) for meter 2.
    assert line.requests_seen == 14
    assert src.devices[0].counters.requests == 10


async def test_fcb_repeat_and_reset_in_the_simulated_meter() -> None:
    """A REQ_UD2 with an unchanged FCB gets the last telegram again; a toggled one the next."""
    m = SimMeter(1, 10000001, PROFILE, records_per_telegram=4)
    first = m.answer_req_ud2(True)
    assert m.answer_req_ud2(True) == first
    second = m.answer_req_ud2(False)
    assert second != first
    m.reset()
    again = FrameReader().feed(m.answer_req_ud2(True))
    assert len(again) == 1 and m.reads == 2


async def test_dead_meter_does_not_stall_its_neighbour(tmp_path: Path) -> None:
    cfg = source_cfg(tmp_path, dead_after=2, dead_meter_backoff_s=600)
    live = SimMeter(1, 10000001, PROFILE)
    dead = SimMeter(2, 10000002, PROFILE, no_answer=True)
    got = Samples()
    async with MBusLineSim(cfg, [live, dead]):
        meters = [meter("heat-1", 1, cfg, 0.3), meter("heat-2", 2, cfg, 0.3)]
        src = MBusSource(cfg, meters, got, SystemClock())
        async with src, asyncio.TaskGroup() as tg:
            task = tg.create_task(src.run())
            await got.wait(lambda: len(got.of("heat-1")) >= 8 and len(got.of("heat-2")) >= 4)
            task.cancel()
    assert all(not s.quality and s.error is None for s in got.of("heat-1"))
    for s in got.of("heat-2"):
        assert s.values == {}
        assert set(s.quality.values()) == {Quality.BAD}
        assert s.error is not None and "no answer" in s.error
    # Two failed reads (each SND_NKE tried retries + 1 times), then the meter is
    # left alone for dead_meter_backoff_s: the line's time goes to the neighbour.
    c = meters[1].counters
    assert c.requests == 2 * (cfg.retries + 1)
    assert c.timeouts == 2
    assert c.consecutive_failures == 2 and c.good_polls == 0
    assert meters[0].counters.good_polls >= 8


async def test_garbage_on_the_line_is_counted_not_raised(tmp_path: Path) -> None:
    cfg = source_cfg(tmp_path, retries=0, dead_after=100)
    noisy = SimMeter(1, 10000001, PROFILE, garble=True)
    fine = SimMeter(2, 10000002, PROFILE)
    got = Samples()
    rng = random.Random(7)
    async with MBusLineSim(cfg, [noisy, fine]) as line:
        meters = [meter("heat-1", 1, cfg), meter("heat-2", 2, cfg)]
        src = MBusSource(cfg, meters, got, SystemClock())
        async with src:
            for _ in range(3):
                # Noise lands on the line between exchanges ...
                line.inject(bytes(rng.randrange(256) for _ in range(50)))
                await asyncio.sleep(0.05)
                await src.poll_meter(meters[0])  # ... and a meter answers with a bad checksum
                await src.poll_meter(meters[1])
            noisy.garble = False
            await src.poll_meter(meters[0])
    bad = got.of("heat-1")[:3]
    assert all(s.values == {} and s.error and "garbage" in s.error for s in bad)
    assert meters[0].counters.frame_errors == 3
    assert got.of("heat-1")[3].values == pytest.approx(EXPECTED)  # reads again once it is clean
    assert all(s.values == pytest.approx(EXPECTED) for s in got.of("heat-2"))
    assert src.garbage_bytes >= 3 * 50


def test_frame_reader_survives_random_noise() -> None:
    rng = random.Random(13)
    reader = FrameReader()
    fed = 0
    for _ in range(2000):
        chunk = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 40)))
        fed += len(chunk)
        reader.feed(chunk)
    assert reader.garbage > 0 and reader.garbage + reader.pending <= fed


async def test_error_flags_mark_guarded_points_fault(tmp_path: Path) -> None:
    cfg = source_cfg(tmp_path)
    got = Samples()
    async with MBusLineSim(cfg, [SimMeter(1, 10000001, PROFILE, error_flags=0x0004)]):
        src = MBusSource(cfg, [meter("heat-1", 1, cfg)], got, SystemClock())
        async with src:
            await src.poll_meter(src.devices[0])
    (s,) = got.items
    assert s.values["error_flags"] == 4
    assert s.quality == {"energy": Quality.FAULT, "supply_temp": Quality.FAULT}
    assert "energy" not in s.values and s.values["flow"] == 1.234


async def test_one_read_at_2400_baud_with_wire_timing(tmp_path: Path) -> None:
    cfg = source_cfg(tmp_path, baudrate=2400, timeout_s=0.5)
    got = Samples()
    async with MBusLineSim(cfg, [SimMeter(1, 10000001, PROFILE)], wire_time=True):
        src = MBusSource(cfg, [meter("heat-1", 1, cfg, 5.0)], got, SystemClock())
        async with src:
            await src.poll_meter(src.devices[0])
    (s,) = got.items
    assert s.error is None and s.values == pytest.approx(EXPECTED)


async def test_unplugged_line_gives_bad_samples_and_reconnects(tmp_path: Path) -> None:
    cfg = source_cfg(tmp_path, reconnect_min_s=0.05, reconnect_max_s=0.1)
    got = Samples()
    src = MBusSource(cfg, [meter("heat-1", 1, cfg)], got, SystemClock())
    async with src:
        await src.poll_meter(src.devices[0])  # no pty yet
        assert src.link_ok is False and got.items[-1].error is not None
        async with MBusLineSim(cfg, [SimMeter(1, 10000001, PROFILE)]):
            await asyncio.sleep(0.15)  # past the reconnect back-off
            await src.poll_meter(src.devices[0])
    assert src.link_ok is True
    assert got.items[-1].values == pytest.approx(EXPECTED)


async def test_reads_through_a_tcp_transparent_converter(tmp_path: Path) -> None:
    """A TCP server that copies bytes both ways to the meters' pty, as a converter does."""
    line_cfg = source_cfg(tmp_path)
    assert line_cfg.port is not None
    tty_path = line_cfg.port
    loop = asyncio.get_running_loop()

    async def bridge(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        fd = os.open(tty_path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        loop.add_reader(fd, lambda: writer.write(os.read(fd, 4096)))
        try:
            while data := await reader.read(4096):
                os.write(fd, data)
        finally:
            loop.remove_reader(fd)
            os.close(fd)
            writer.close()

    server = await asyncio.start_server(bridge, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    cfg = MBusSourceConfig.model_validate(
        {"type": "mbus", "id": "mbus-tcp", "host": "127.0.0.1", "tcp_port": port,
         "baudrate": 38400, "timeout_s": 0.3}
    )  # fmt: skip
    got = Samples()
    async with server, MBusLineSim(line_cfg, [SimMeter(1, 10000001, PROFILE)]):
        src = MBusSource(cfg, [meter("heat-1", 1, cfg)], got, SystemClock())
        async with src:
            await src.poll_meter(src.devices[0])
            await src.poll_meter(src.devices[0])
    assert [s.error for s in got.items] == [None, None]
    assert got.items[-1].values == pytest.approx(EXPECTED)


async def test_read_stops_at_max_telegrams_and_says_so(tmp_path: Path) -> None:
    cfg = source_cfg(tmp_path, max_telegrams=2)
    got = Samples()
    # 10 records, 2 per telegram: 5 telegrams, of which the source reads 2.
    async with MBusLineSim(cfg, [SimMeter(1, 10000001, PROFILE, records_per_telegram=2)]):
        src = MBusSource(cfg, [meter("heat-1", 1, cfg)], got, SystemClock())
        async with src:
            await src.poll_meter(src.devices[0])
    (s,) = got.items
    assert s.error is not None and "max_telegrams=2" in s.error
    # Records 0-3 (energy, volume, power, flow) were read; the rest are missing.
    assert set(s.values) == {"energy", "volume", "volume_l", "power", "flow"}
    assert s.quality["supply_temp"] is Quality.BAD


async def test_converter_echo_is_not_taken_for_the_answer(tmp_path: Path) -> None:
    cfg = source_cfg(tmp_path)
    got = Samples()
    async with MBusLineSim(cfg, [SimMeter(1, 10000001, PROFILE)], echo=True):
        src = MBusSource(cfg, [meter("heat-1", 1, cfg)], got, SystemClock())
        async with src:
            await src.poll_meter(src.devices[0])
    (s,) = got.items
    assert s.error is None and s.values == pytest.approx(EXPECTED)
