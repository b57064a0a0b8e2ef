"""The serial-line source over a real pseudo-terminal: lines in, Samples out, garbage counted."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import tty
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from gateway.config import DeviceConfig, SerialLineSource
from gateway.model import Clock, FakeClock, Sample, SystemClock
from gateway.plugins.serial_line.line_codec import with_checksum
from gateway.plugins.serial_line.source import SerialLineDevice
from gateway.profiles.registry import ProfileRegistry
from gateway.profiles.schema import SerialLineProfile


def _profile() -> SerialLineProfile:
    reg, _ = ProfileRegistry.load()
    prof = reg.get("rfid-checkpoint-reader")
    assert isinstance(prof, SerialLineProfile)
    return prof


async def _collect(q: asyncio.Queue[Sample], n: int) -> list[Sample]:
    return [await asyncio.wait_for(q.get(), timeout=5) for _ in range(n)]


async def test_lines_garbage_and_unplug(tmp_path: Path) -> None:
    master, slave = os.openpty()
    tty.setraw(slave)
    link = tmp_path / "rfid"
    link.symlink_to(os.ttyname(slave))
    cfg = SerialLineSource(id="rfid", type="serial_line", port=str(link), reconnect_min_s=0.05)
    dev = DeviceConfig(
        id="rfid-1", profile="rfid-checkpoint-reader", source="rfid", tags={"area": "park"}
    )
    q: asyncio.Queue[Sample] = asyncio.Queue()
    src = SerialLineDevice(cfg, dev, _profile(), q.put, SystemClock(), {"site": "t"})
    task = asyncio.create_task(src.run())
    try:
        await asyncio.sleep(0.2)  # let it open the port (no event to await on the far side)
        os.write(master, (with_checksum("CP01,04A1B2C3D4,1") + "\r\n").encode())
        os.write(master, b"\x00\xff noise *12\r\n")
        os.write(master, (with_checksum("CP01,04A1B2C3D4,2") + "\r\n").encode())
        # a line split across two writes is still one line
        line = (with_checksum("CP02,0000000000000001,3") + "\r\n").encode()
        os.write(master, line[:7])
        await asyncio.sleep(0.05)
        os.write(master, line[7:])
        got = await _collect(q, 3)
        assert [s.values["seq"] for s in got] == [1, 2, 3]
        assert got[2].values["reader"] == "CP02"
        assert got[0].tags == {"site": "t", "area": "park"}
        assert got[0].kind == "patrol_tap" and got[0].error is None
        assert src.counters.frame_errors == 1
        # Unplug: close both ends of the pty and remove the device path.
        link.unlink()
        os.close(master)
        os.close(slave)
        offline = await asyncio.wait_for(q.get(), timeout=5)
        assert offline.values == {} and offline.error is not None
        assert src.counters.connect_errors >= 1
        assert not task.done()  # the source keeps retrying, it never dies
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await src.aclose()



@contextlib.asynccontextmanager
async def reading(
    tmp_path: Path, clock: Clock | None = None, **cfg: Any
) -> AsyncIterator[tuple[int, SerialLineDevice, asyncio.Queue[Sample]]]:
    """A running source on a fresh pty: (the device side's fd, the source, its samples)."""
    master, slave = os.openpty()
    tty.setraw(slave)
    link = tmp_path / "rfid"
    link.symlink_to(os.ttyname(slave))
    src_cfg = SerialLineSource(id="rfid", type="serial_line", port=str(link), **cfg)
    dev = DeviceConfig(id="rfid-1", profile="rfid-checkpoint-reader", source="rfid")
    q: asyncio.Queue[Sample] = asyncio.Queue()
    src = SerialLineDevice(src_cfg, dev, _profile(), q.put, clock or SystemClock(), {})
    task = asyncio.create_task(src.run())
    try:
        await asyncio.sleep(0.2)  # let it open the port (no event to await on the far side)
        yield master, src, q
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await src.aclose()
        os.close(master)
        os.close(slave)


async def until(cond: Callable[[], bool], limit_s: float = 5.0) -> None:
    deadline = time.monotonic() + limit_s
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def test_oversized_garbage_costs_no_tap(tmp_path: Path) -> None:
    """1 MB without a line end, then a newline: one counted error, the next tap decoded."""
    async with reading(tmp_path) as (master, src, q):
        os.set_blocking(master, False)
        tap = (with_checksum("CP01,04A1B2C3D4,7") + "\r\n").encode()
        # The garbage ends with a bare LF: any line end resynchronises.
        data = b"A" * (1 << 20) + b"\n" + tap
        sent = 0
        while sent < len(data):
            try:
                sent += os.write(master, data[sent : sent + 65536])
            except BlockingIOError:
                await asyncio.sleep(0.001)  # the pty buffer is full: let the gateway read
        (got,) = await _collect(q, 1)
        assert got.values == {"reader": "CP01", "card": "04A1B2C3D4", "seq": 7}
        assert src.counters.frame_errors == 1  # one oversized line, not one per read
        assert src.splitter.discarded_bytes == (1 << 20) + 1


async def test_lines_over_the_rate_are_dropped_and_counted(tmp_path: Path) -> None:
    """The tap path is bounded: a burst beyond max_burst_lines is counted, not handled."""
    clock = FakeClock()  # time stands still: no token comes back during the burst
    async with reading(tmp_path, clock, max_lines_per_s=5, max_burst_lines=20) as (master, src, q):
        lines = [with_checksum(f"CP01,F1{i:08X},{i}") + "\r\n" for i in range(100)]
        os.write(master, "".join(lines).encode())
        got = await _collect(q, 20)
        await until(lambda: src.counters.overruns >= 80)
        assert src.counters.overruns == 80 and q.empty()
        assert [s.values["seq"] for s in got] == list(range(20))  # the first ones, in order
        clock.advance(1.0)  # five tokens back
        os.write(master, "".join(lines[:10]).encode())
        assert len(await _collect(q, 5)) == 5
        await until(lambda: src.counters.overruns >= 85)
        assert src.counters.overruns == 85 and src.counters.frame_errors == 0
