"""Consumption from a totaliser (gas, heat, water) through resets, rollovers and meter swaps.

Pure: readings ``(ts_ns, value)`` in, the amount used and one note per
anomaly out. Between two readings the counter may only rise, and by no more
than ``max_rate_per_s`` allows in the time between them. When it falls:

- a **rollover** when wrapping past ``rollover`` explains the step within the
  plausible rate: counted as ``rollover - before + after``;
- a **reset** when the new reading alone is within the plausible rate (the
  counter restarted from zero): counted as ``after``;
- otherwise a **meter swap** (a new meter with another start value): the
  stretch between the two readings is not counted and the note says so.

A rise beyond the plausible rate is a swap too (a new meter with a higher
start value); nothing of that stretch is counted. The totaliser keeps
counting while the gateway is not reading it, so a stretch across a data
gap is still counted, within the same plausibility rule.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

NS = 1_000_000_000
NoteKind = Literal["reset", "rollover", "swap"]


@dataclass(frozen=True)
class CounterNote:
    kind: NoteKind
    before_ns: int
    after_ns: int
    before: float
    after: float
    counted: float

    def text(self, unit: str = "") -> str:
        u = f" {unit}" if unit else ""
        b, a, n = (f"{v:.12g}" for v in (self.before, self.after, self.counted))
        if self.kind == "rollover":
            return f"totaliser rolled over ({b} -> {a}); {n}{u} counted across it"
        if self.kind == "reset":
            return f"totaliser reset ({b} -> {a}); {n}{u} since the reset counted"
        return (f"meter swap or implausible jump ({b} -> {a});"
                " use between these readings not counted")


@dataclass(frozen=True)
class CounterUsage:
    used: float
    notes: tuple[CounterNote, ...]
    readings: int


def rollover_of(type_name: str, scale: float = 1.0) -> float | None:
    """Where a register type wraps, in engineering units (None for floats)."""
    bits = {"uint16": 16, "int16": 15, "uint32": 32, "int32": 31, "uint64": 64, "int64": 63}
    b = bits.get(type_name)
    return None if b is None else float(2**b) * scale


def counter_usage(
    readings: Sequence[tuple[int, float]],
    *,
    max_rate_per_s: float,
    rollover: float | None = None,
    resolution: float = 0.0,
) -> CounterUsage:
    """The amount a totaliser counted over ``readings`` (sorted here by time).

    ``resolution`` (the register's scale) is added to every step's plausible
    rise: a counter read in steps of 0.01 may show 0.02 after 0.012 was used.
    """
    pts = sorted(readings)
    used = 0.0
    notes: list[CounterNote] = []
    for (t0, a), (t1, b) in itertools.pairwise(pts):
        limit = max_rate_per_s * max(t1 - t0, 0) / NS + resolution
        d = b - a
        if 0 <= d <= limit:
            used += d
            continue
        if d < 0 and rollover is not None and 0 <= rollover - a + b <= limit:
            n = rollover - a + b
            used += n
            notes.append(CounterNote("rollover", t0, t1, a, b, n))
        elif d < 0 and 0 <= b <= limit:
            used += b
            notes.append(CounterNote("reset", t0, t1, a, b, b))
        else:
            notes.append(CounterNote("swap", t0, t1, a, b, 0.0))
    return CounterUsage(used, tuple(notes), len(pts))


__all__ = ["CounterNote", "CounterUsage", "counter_usage", "rollover_of"]
