"""The RFID reader simulator on a real pty: lines as the profile frames them, unplugging, speed."""

from __future__ import annotations

import asyncio
import os
import re
import time
from pathlib import Path

import serial

from firmware_sim.clock import SimClock
from firmware_sim.rfid import RfidReader, RfidScript, xor8
from gateway.config import SerialLineSource
from gateway.profiles.registry import ProfileRegistry
from gateway.profiles.schema import SerialLineProfile

REG, _ = ProfileRegistry.load()
PROFILE = REG.get("rfid-checkpoint-reader")
assert isinstance(PROFILE, SerialLineProfile)
SPEED = 50.0  # simulated seconds per real second


def parse(line: bytes) -> dict[str, str] | None:
    """The gateway's reading of a line; None when the checksum is wrong."""
    assert isinstance(PROFILE, SerialLineProfile)
    assert line.endswith(b"\r\n"), line
    body, _, cs = line[:-2].decode("ascii").rpartition("*")
    if int(cs, 16) != xor8(body.encode()):
        return None
    m = re.match(PROFILE.line.pattern, body)
    assert m is not None, body
    return m.groupdict()


def read_lines(path: str, n: int, timeout: float) -> list[bytes]:
    out: list[bytes] = []
    deadline = time.monotonic() + timeout
    with serial.Serial(path, 9600, timeout=0.2) as port:
        while len(out) < n and time.monotonic() < deadline:
            line = port.readline()
            if line:
                out.append(line)
    return out


def wait_for_path(path: Path, present: bool, limit_s: float) -> None:
    deadline = time.monotonic() + limit_s
    while path.is_symlink() != present:
        assert time.monotonic() < deadline, f"{path} present={not present} after {limit_s} s"
        time.sleep(0.01)


async def test_taps_garbage_unplug_and_replug(tmp_path: Path) -> None:
    assert isinstance(PROFILE, SerialLineProfile)
    link = tmp_path / "run" / "rfid"
    src = SerialLineSource(id="rfid", type="serial_line", port=str(link))
    script = RfidScript.model_validate(
        {
            "rounds": [
                {
                    "route": ["north-gate", "lakeside", "boiler-house"],
                    "card": "04A3B2C1D0",
                    "start_s": [20],
                    "walk_s": 10,
                }
            ],
            "garbage_at_s": [35],
            "taps": [
                {"at_s": 45, "reader": "lakeside", "card": "0BADCAFE01"},
                {"at_s": 70, "reader": "playground", "card": "04A3B2C1D0"},  # unplugged: lost
                {"at_s": 95, "reader": "playground", "card": "04A3B2C1D0"},
            ],
            "unplug": [{"after_s": 60, "duration_s": 25}],
            "seq_start": 100,
        }
    )
    reader = RfidReader("rfid", src, PROFILE, script, SimClock(SPEED))
    async with reader:
        assert os.readlink(link) == reader.pty_path
        lines = await asyncio.to_thread(read_lines, str(link), 5, 5.0)
        parsed = [parse(line) for line in lines]
        assert parsed == [
            {"reader": "north-gate", "card": "04A3B2C1D0", "seq": "100"},
            {"reader": "lakeside", "card": "04A3B2C1D0", "seq": "101"},
            None,  # line noise at 35 s: wrong checksum, no sequence number used
            {"reader": "boiler-house", "card": "04A3B2C1D0", "seq": "102"},
            {"reader": "lakeside", "card": "0BADCAFE01", "seq": "103"},
        ]
        # Unplugged: the path disappears, then a new pty appears at the same path.
        await asyncio.to_thread(wait_for_path, link, False, 5)
        await asyncio.to_thread(wait_for_path, link, True, 5)
        after = await asyncio.to_thread(read_lines, str(link), 1, 5.0)
        assert [parse(line) for line in after] == [
            {"reader": "playground", "card": "04A3B2C1D0", "seq": "104"}
        ]
        assert [(e.at_s, e.reader) for e in reader.lost] == [(70, "playground")]
    assert not link.exists()


async def test_speed_factor_plays_a_schedule_faster_than_real_time(tmp_path: Path) -> None:
    assert isinstance(PROFILE, SerialLineProfile)
    link = tmp_path / "rfid"
    src = SerialLineSource(id="rfid", type="serial_line", port=str(link))
    # A 4-checkpoint round, 4 minutes between checkpoints: 12 simulated minutes.
    script = RfidScript.model_validate(
        {
            "rounds": [
                {
                    "route": ["a", "b", "c", "d"],
                    "card": "04A3B2C1D0",
                    "start_s": [60],
                    "walk_s": 240,
                }
            ]
        }
    )
    t0 = time.monotonic()
    async with RfidReader("rfid", src, PROFILE, script, SimClock(1200)) as reader:
        lines = await asyncio.to_thread(read_lines, str(link), 4, 5.0)
        elapsed = time.monotonic() - t0
        assert [parse(line)["reader"] for line in lines] == ["a", "b", "c", "d"]  # type: ignore[index]
        assert elapsed < 2.0  # 780 simulated seconds in well under 2 real ones
        assert len(reader.sent) == 4
