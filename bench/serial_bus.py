"""Serial bus efficiency: useful registers per second on one RS-485 line against its limit.

The line: 9600 baud 8N1 (10 bits a character), 8 units of the benchmark
profile (``fleet_sim.point_layout``), served by ``gateway-sim`` (its own
process) on a pseudo-terminal with wire-time emulation: each answer is held
until request and answer would have crossed the wire, 3.5-character gaps
included (``firmware_sim.rtu_server.wire_time_s``). The gateway's
``ModbusSource`` polls it in this process, every unit on a short interval so
the line is never idle, once with the request planner and once with one
request per point (``ModbusDevice(merge=False)``).

Theoretical limit of the line, for reading holding registers: a request is
8 bytes, an answer 5 + 2n bytes, each frame followed by a 3.5-character gap,
so n registers cost (8 + 3.5 + 5 + 2n + 3.5) x 10 / baud seconds. The line's
ceiling is n = 125 (the protocol's largest read): 444 registers/s at 9600.
We report the achieved rate of useful registers (registers that hold a
point) against that ceiling, and against the ceiling of the plan actually
used (what the same requests would achieve with zero turnaround).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bench.fleet_sim import write_profile
from bench.procs import Children, python_argv
from gateway.config import ModbusRtuSource
from gateway.loader import load_site
from gateway.model import Sample, SystemClock
from gateway.plugins.modbus.source import ModbusSource
from gateway.profiles.schema import ModbusProfile
from gateway.sources.device_poll import ModbusDevice

PROFILE = "bench-device"
GAP_CHARS = 3.5
REQUEST_BYTES = 8
MAX_READ = 125


def transaction_s(registers: int, baud: int, bits_per_char: int = 10) -> float:
    """Wire time of one read of ``registers`` holding registers, both gaps included."""
    chars = REQUEST_BYTES + GAP_CHARS + 5 + 2 * registers + GAP_CHARS
    return chars * bits_per_char / baud


def line_limit_regs_s(baud: int, bits_per_char: int = 10) -> float:
    return MAX_READ / transaction_s(MAX_READ, baud, bits_per_char)


@dataclass
class SerialParams:
    units: int = 8
    points: int = 40
    baud: int = 9600
    duration_s: float = 30.0


@dataclass
class SerialRun:
    merge: bool
    requests_per_poll: int
    useful_registers_per_poll: int
    polls: int = 0
    good_polls: int = 0
    registers_s: float = 0.0
    plan_limit_regs_s: float = 0.0
    pct_of_line_limit: float = 0.0
    pct_of_plan_limit: float = 0.0
    timeouts: int = 0


@dataclass
class SerialResult:
    params: dict[str, Any]
    line_limit_regs_s: float
    runs: list[SerialRun] = field(default_factory=list)


def write_site(work: Path, p: SerialParams) -> Path:
    write_profile(work / "profiles", PROFILE, "bench", p.points)
    # One request per point on a 9600 baud line: 40 x ~25 ms a poll, so the
    # per-request timeout stays small and the interval short (always overdue).
    site = {
        "site": "bench-serial",
        "profile_dirs": ["profiles"],
        "sources": [
            {
                "id": "rs485-bench",
                "type": "modbus_rtu",
                "port": str(work / "ttyBENCH"),
                "baudrate": p.baud,
                "timeout_s": 0.5,
                "retries": 0,
            }
        ],
        "devices": [
            {
                "id": f"unit{u}",
                "profile": PROFILE,
                "source": "rs485-bench",
                "unit": u,
                "interval_s": 0.6,
            }
            for u in range(1, p.units + 1)
        ],
        "simulation": {"wire_time": True},
    }
    path = work / "site.yaml"
    path.write_text(yaml.safe_dump(site, sort_keys=False))
    return path


async def _poll(site_path: Path, merge: bool, duration: float, warmup: float) -> SerialRun:
    site = load_site(site_path)
    src = site.config.sources[0]
    assert isinstance(src, ModbusRtuSource)
    devices: list[ModbusDevice] = []
    for d in site.devices_of(src.id):
        prof = site.device_profiles[d.id]
        assert isinstance(prof, ModbusProfile)
        devices.append(ModbusDevice(d, prof, merge=merge))
    regs_of = {p.name: p.count for p in devices[0].profile.points}
    run = SerialRun(
        merge=merge,
        requests_per_poll=len(devices[0].plan),
        useful_registers_per_poll=sum(regs_of.values()),
    )
    counting = False
    registers = 0

    async def emit(sample: Sample) -> None:
        nonlocal registers
        if not counting:
            return
        run.polls += 1
        if not sample.quality:
            run.good_polls += 1
        registers += sum(regs_of.get(k, 0) for k in sample.values)

    source = ModbusSource(src, devices, emit, SystemClock())
    async with source:
        task = asyncio.create_task(source.run())
        await asyncio.sleep(warmup)
        counting = True
        t0 = time.monotonic()
        timeouts0 = sum(d.counters.timeouts for d in devices)
        await asyncio.sleep(duration)
        counting = False
        elapsed = time.monotonic() - t0
        run.timeouts = sum(d.counters.timeouts for d in devices) - timeouts0
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    run.registers_s = round(registers / elapsed, 1)
    per_poll_s = sum(
        transaction_s(r.count, src.baudrate, src.bits_per_char) for r in devices[0].plan
    )
    run.plan_limit_regs_s = round(run.useful_registers_per_poll / per_poll_s, 1)
    limit = line_limit_regs_s(src.baudrate, src.bits_per_char)
    run.pct_of_line_limit = round(100 * run.registers_s / limit, 1)
    run.pct_of_plan_limit = round(100 * run.registers_s / run.plan_limit_regs_s, 1)
    return run


def run_serial(p: SerialParams, work: Path) -> SerialResult:
    work.mkdir(parents=True, exist_ok=True)
    site = write_site(work, p)
    res = SerialResult(params=asdict(p), line_limit_regs_s=round(line_limit_regs_s(p.baud), 1))
    with Children(work) as children:
        sim = children.start(
            "rtu_sim", python_argv("firmware_sim.cli", str(site), "--wire-time"), stdout_pipe=True
        )
        sim.wait_line(lambda ln: ln.strip() == "ready", 30.0)
        for merge in (True, False):
            res.runs.append(asyncio.run(_poll(site, merge, p.duration_s, warmup=2.0)))
    return res
