"""Completeness of a report's data: the share of a window with data, and every gap in it.

Pure functions over timestamp series (ns). A gap is a stretch longer than
``polls`` poll intervals with no sample: between two samples, from the start
of the window to the first sample, or from the last sample to its end. A
window with no sample at all is one gap. The share of the window with data
is what the gaps leave. A figure computed over a stretch that overlaps a gap
carries a note saying so (``gap_note``): a report never looks complete when
data is missing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

NS = 1_000_000_000
DEFAULT_GAP_POLLS = 3


@dataclass(frozen=True)
class Gap:
    """No sample in [start_ns, end_ns)."""

    start_ns: int
    end_ns: int

    @property
    def duration_s(self) -> float:
        return (self.end_ns - self.start_ns) / NS


@dataclass(frozen=True)
class Coverage:
    """How much of a window one device (or the gateway itself) has data for."""

    name: str
    start_ns: int
    end_ns: int
    interval_s: float
    samples: int
    gaps: tuple[Gap, ...]

    @property
    def window_s(self) -> float:
        return (self.end_ns - self.start_ns) / NS

    @property
    def missing_s(self) -> float:
        return sum(g.duration_s for g in self.gaps)

    @property
    def share(self) -> float:
        """0..1: the share of the window not inside a gap."""
        if self.window_s <= 0:
            return 0.0
        return max(0.0, 1.0 - self.missing_s / self.window_s)

    @property
    def complete(self) -> bool:
        return not self.gaps


def find_gaps(
    times_ns: Iterable[int],
    start_ns: int,
    end_ns: int,
    interval_s: float,
    polls: int = DEFAULT_GAP_POLLS,
) -> list[Gap]:
    """Every stretch of [start_ns, end_ns) longer than ``polls`` intervals without a sample."""
    if end_ns <= start_ns:
        return []
    limit = polls * interval_s * NS
    inside = sorted({t for t in times_ns if start_ns <= t < end_ns})
    gaps: list[Gap] = []
    prev = start_ns
    for t in inside:
        if t - prev > limit:
            gaps.append(Gap(prev, t))
        prev = t
    # The last sample stands for the interval after it; past that the window is empty.
    if end_ns - prev > limit:
        gaps.append(Gap(prev, end_ns))
    return gaps


def coverage(
    name: str,
    times_ns: Sequence[int],
    start_ns: int,
    end_ns: int,
    interval_s: float,
    polls: int = DEFAULT_GAP_POLLS,
) -> Coverage:
    """The ``Coverage`` of ``name`` over [start_ns, end_ns)."""
    gaps = find_gaps(times_ns, start_ns, end_ns, interval_s, polls)
    n = sum(1 for t in times_ns if start_ns <= t < end_ns)
    return Coverage(name, start_ns, end_ns, interval_s, n, tuple(gaps))


def overlapping(gaps: Iterable[Gap], start_ns: int, end_ns: int) -> list[Gap]:
    """The gaps that overlap [start_ns, end_ns)."""
    return [g for g in gaps if g.start_ns < end_ns and g.end_ns > start_ns]


def gap_note(gaps: Iterable[Gap], start_ns: int, end_ns: int) -> str | None:
    """'computed over N gap(s), H h missing' when the figure's stretch overlaps a gap."""
    hit = overlapping(gaps, start_ns, end_ns)
    if not hit:
        return None
    missing = sum(min(g.end_ns, end_ns) - max(g.start_ns, start_ns) for g in hit) / NS
    return f"computed over {len(hit)} gap(s), {fmt_duration(missing)} without data"


def fmt_duration(seconds: float) -> str:
    """3725 -> '1h02m05s'; under an hour '2m05s'."""
    s = round(seconds)
    h, rest = divmod(int(s), 3600)
    m, sec = divmod(rest, 60)
    return f"{h}h{m:02d}m{sec:02d}s" if h else f"{m}m{sec:02d}s"


def verdict(coverages: Iterable[Coverage]) -> str:
    """One line for the report's head: COMPLETE only when nothing is missing."""
    every = list(coverages)
    missing = [c for c in every if not c.complete]
    if not missing:
        return "COMPLETE: every device and the gateway have data for the whole day"
    names = ", ".join(f"{c.name} {c.share * 100:.1f} %" for c in missing)
    return f"INCOMPLETE: data missing for {len(missing)} of {len(every)} sources ({names})"


__all__ = [
    "DEFAULT_GAP_POLLS",
    "Coverage",
    "Gap",
    "coverage",
    "find_gaps",
    "fmt_duration",
    "gap_note",
    "overlapping",
    "verdict",
]
