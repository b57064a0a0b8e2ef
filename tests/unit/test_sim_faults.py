"""Fault windows and wire-time arithmetic of the simulators."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from firmware_sim.clock import ManualClock, SimClock
from firmware_sim.faults import FaultPlan
from firmware_sim.rtu_server import crc_ok, transaction_wire_time_s, wire_time_s
from firmware_sim.schema import FaultSpec
from gateway.config import ModbusRtuSource


def test_fault_window_after_and_duration() -> None:
    clock = ManualClock(0)
    plan = FaultPlan(FaultSpec(kind="no_answer", after_s=10, duration_s=5), clock)
    seen = {}
    for t in (0, 9.99, 10, 14.99, 15, 100):
        clock.t = t
        seen[t] = plan.kind()
    assert seen == {0: None, 9.99: None, 10: "no_answer", 14.99: "no_answer", 15: None, 100: None}


def test_fault_without_duration_lasts_and_no_fault_is_none() -> None:
    clock = ManualClock(1e6)
    assert FaultPlan(FaultSpec(kind="garbage"), clock).kind() == "garbage"
    assert FaultPlan(None, clock).active() is None


def test_exception_code_must_be_a_modbus_code() -> None:
    assert FaultSpec(kind="exception", exception_code=6).exception_code == 6
    with pytest.raises(ValidationError):
        FaultSpec(kind="exception", exception_code=9)


def test_wire_time_counts_start_data_parity_stop_bits_and_the_gap() -> None:
    # 8N1 = 10 bits per character at 9600 baud: 1.0417 ms per character.
    assert wire_time_s(8, 10, 9600) == pytest.approx((8 + 3.5) * 10 / 9600)
    src = ModbusRtuSource(id="l", type="modbus_rtu", port="/x", baudrate=9600, parity="E")
    assert src.bits_per_char == 11
    # Read 10 registers: request 8 bytes, answer 3 + 20 + 2 = 25 bytes.
    assert transaction_wire_time_s(8, 25, src) == pytest.approx((8 + 3.5 + 25 + 3.5) * 11 / 9600)
    fast = ModbusRtuSource(id="f", type="modbus_rtu", port="/x", baudrate=115200, stopbits=2)
    assert transaction_wire_time_s(8, 25, fast) < transaction_wire_time_s(8, 25, src) / 10


def test_crc_check() -> None:
    frame = bytes.fromhex("01030000000a c5cd".replace(" ", ""))
    assert crc_ok(frame)
    assert not crc_ok(frame[:-1] + b"\x00")
    assert not crc_ok(b"\x01")


async def test_sim_clock_speed() -> None:
    now = [100.0]
    clock = SimClock(speed=60, monotonic=lambda: now[0])
    now[0] += 2.0
    assert clock.now() == pytest.approx(120.0)
    with pytest.raises(ValueError):
        SimClock(speed=0)
    real = SimClock(speed=1000)
    await real.sleep_until(50)  # 50 simulated seconds = 50 ms
    assert real.now() >= 50
