"""Simulation time: the one clock every simulator reads, injected so tests can run fast.

Simulation seconds count from the start of a run. ``SimClock`` runs ``speed``
times faster than the monotonic clock, so a night of patrol taps can be
played in a minute. Wire time and slow-answer delays are physical and are
always real seconds; they never go through this clock.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Protocol


class Clock(Protocol):
    """Simulation time in seconds since the start of the run."""

    def now(self) -> float: ...

    async def sleep_until(self, t: float) -> None: ...


class SimClock:
    """Monotonic time scaled by ``speed`` (1.0 = real time)."""

    def __init__(self, speed: float = 1.0, monotonic: Callable[[], float] = time.monotonic) -> None:
        if speed <= 0:
            raise ValueError("speed must be > 0")
        self.speed = speed
        self._monotonic = monotonic
        self._t0 = monotonic()

    def now(self) -> float:
        return (self._monotonic() - self._t0) * self.speed

    async def sleep_until(self, t: float) -> None:
        # Re-check after waking: the event loop may wake us a little early.
        left = t - self.now()
        while left > 0:
            await asyncio.sleep(left / self.speed)
            left = t - self.now()


class ManualClock:
    """A clock tests move by hand; ``sleep_until`` yields until someone advances it."""

    def __init__(self, t: float = 0.0) -> None:
        self.t = t
        self._moved = asyncio.Event()

    def now(self) -> float:
        return self.t

    def advance(self, dt: float) -> None:
        self.t += dt
        self._moved.set()
        self._moved = asyncio.Event()

    async def sleep_until(self, t: float) -> None:
        while self.t < t:
            await self._moved.wait()
