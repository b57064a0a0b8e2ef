"""Fault injection: which fault a simulated device shows right now, and garbage bytes.

A device's ``FaultSpec`` (from the site's scenario) is active from ``after_s``
for ``duration_s`` simulation seconds (for ever when no duration is given).
The kinds and who carries them out:

- ``no_answer``: the line emulator (tcp_server / rtu_server) drops the request;
  the master times out. Other units on the same line keep answering.
- ``exception``: the device firmware (the pymodbus ``SimDevice`` action) answers
  the Modbus exception ``exception_code``.
- ``garbage``: the line emulator replaces the answer with random bytes of the
  same length (on RTU the CRC is guaranteed wrong; on TCP the MBAP header and
  function code are kept so the stream stays framed; the rest is garbled).
- ``slow``: the line emulator delivers the answer ``delay_s`` real seconds late,
  without holding up answers of other units.
"""

from __future__ import annotations

import random

from firmware_sim.clock import Clock
from firmware_sim.schema import FaultSpec

# Exception codes a Modbus slave may send (9 is not assigned by the standard).
VALID_EXCEPTION_CODES = frozenset({1, 2, 3, 4, 5, 6, 7, 8, 10, 11})


class FaultPlan:
    """One device's fault and its time window."""

    def __init__(self, spec: FaultSpec | None, clock: Clock) -> None:
        if (
            spec is not None
            and spec.kind == "exception"
            and spec.exception_code not in VALID_EXCEPTION_CODES
        ):
            raise ValueError(f"exception_code {spec.exception_code} is not a Modbus code")
        self.spec = spec
        self._clock = clock

    def active(self) -> FaultSpec | None:
        """The fault in force now, or None."""
        spec = self.spec
        if spec is None:
            return None
        t = self._clock.now()
        if t < spec.after_s:
            return None
        if spec.duration_s is not None and t >= spec.after_s + spec.duration_s:
            return None
        return spec

    def kind(self) -> str | None:
        spec = self.active()
        return spec.kind if spec is not None else None


def garbage(length: int, rng: random.Random) -> bytes:
    """``length`` random bytes (at least 1)."""
    return bytes(rng.getrandbits(8) for _ in range(max(1, length)))
