"""Value behaviours: what a simulated point reads at simulation time ``t``.

Built from a profile's ``sim`` block (``SimBehaviour``). Time is passed in, never
read from the wall clock, so tests evaluate any instant without sleeping.
Randomness comes from an injected ``random.Random`` so runs are reproducible.
The ``boiler`` kind is not here: it is one output of the shared boiler heat
model in ``physics`` (several points read the same model).
"""

from __future__ import annotations

import math
import random
from typing import Protocol

from gateway.profiles.schema import SimBehaviour

# Random walks step once per simulated second, so how often the gateway polls
# does not change how fast a value wanders.
WALK_TICK_S = 1.0
# After a long jump in time only the last steps matter (the walk is bounded).
_MAX_CATCH_UP_STEPS = 10_000


class Behaviour(Protocol):
    def value(self, t: float) -> float: ...


class Constant:
    def __init__(self, value: float) -> None:
        self._value = value

    def value(self, t: float) -> float:
        return self._value


class Ramp:
    """``low`` to ``high`` over ``period_s``, then back to ``low`` (saw-tooth)."""

    def __init__(self, low: float, high: float, period_s: float) -> None:
        self.low, self.high, self.period_s = low, high, period_s

    def value(self, t: float) -> float:
        frac = (t % self.period_s) / self.period_s
        return self.low + (self.high - self.low) * frac


class Sine:
    def __init__(self, centre: float, amplitude: float, period_s: float) -> None:
        self.centre, self.amplitude, self.period_s = centre, amplitude, period_s

    def value(self, t: float) -> float:
        return self.centre + self.amplitude * math.sin(2 * math.pi * t / self.period_s)


class RandomWalk:
    """Starts at ``start``; each simulated second moves by at most ``step``, kept in low..high."""

    def __init__(self, start: float, low: float, high: float, step: float, rng: random.Random):
        if low > high:
            low, high = high, low
        self.low, self.high, self.step = low, high, abs(step)
        self._x = min(max(start, low), high)
        self._ticks = 0
        self._rng = rng

    def value(self, t: float) -> float:
        target = int(t // WALK_TICK_S)
        todo = target - self._ticks
        if todo > _MAX_CATCH_UP_STEPS:
            todo = _MAX_CATCH_UP_STEPS
        for _ in range(max(todo, 0)):
            x = self._x + self._rng.uniform(-self.step, self.step)
            # Reflect at the bounds instead of clamping, so the walk does not stick there.
            if x > self.high:
                x = 2 * self.high - x
            if x < self.low:
                x = 2 * self.low - x
            self._x = min(max(x, self.low), self.high)
        self._ticks = max(self._ticks, target)
        return self._x


class Counter:
    """A totaliser: ``start`` plus ``step`` per simulated second."""

    def __init__(self, start: float, step: float) -> None:
        self.start, self.step = start, step

    def value(self, t: float) -> float:
        return self.start + self.step * t


def make_behaviour(spec: SimBehaviour, rng: random.Random) -> Behaviour:
    """The behaviour a ``sim`` block describes (not ``boiler``: see physics.BoilerModel)."""
    if spec.kind == "constant":
        return Constant(spec.value)
    if spec.kind == "ramp":
        return Ramp(spec.low, spec.high, spec.period_s)
    if spec.kind == "sine":
        return Sine(spec.value, spec.amplitude, spec.period_s)
    if spec.kind == "random_walk":
        return RandomWalk(spec.value, spec.low, spec.high, spec.step, rng)
    if spec.kind == "counter":
        return Counter(spec.value, spec.step)
    raise ValueError(f"behaviour kind {spec.kind!r} is a model output, not a standalone behaviour")
