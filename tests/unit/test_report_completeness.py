"""Completeness of report data, as tables: samples in, gaps and share out."""

from __future__ import annotations

import pytest

from gateway.reports.completeness import Gap, coverage, find_gaps, gap_note, verdict

S = 1_000_000_000
DAY = 86_400


def ts(*seconds: float) -> list[int]:
    return [int(s * S) for s in seconds]


@pytest.mark.parametrize(
    ("times", "interval", "expected"),
    [
        # every poll there: no gap
        (range(0, DAY, 60), 60, []),
        # nothing at all: the whole day is one gap
        ([], 60, [(0, DAY)]),
        # two missed polls (samples 180 s apart, exactly 3 intervals): not a gap
        ([*range(0, 600, 60), *range(720, DAY, 60)], 60, []),
        # three missed polls (240 s apart): a gap from the last sample to the next
        ([*range(0, 600, 60), *range(780, DAY, 60)], 60, [(540, 780)]),
        # a two-hour outage in the middle
        ([*range(0, 36_000, 60), *range(43_200, DAY, 60)], 60, [(35_940, 43_200)]),
        # late start and early end are gaps at the edges
        (range(3600, 80_000, 60), 60, [(0, 3600), (79_980, DAY)]),
        # samples outside the window do not fill it
        ([-60, DAY + 60], 60, [(0, DAY)]),
    ],
)
def test_gaps(times: list[int], interval: float, expected: list[tuple[int, int]]) -> None:
    got = find_gaps(ts(*times), 0, DAY * S, interval)
    assert [(g.start_ns // S, g.end_ns // S) for g in got] == expected


@pytest.mark.parametrize(
    ("times", "share"),
    [
        (range(0, DAY, 60), 1.0),
        ([], 0.0),
        ([*range(0, 36_000, 60), *range(43_200, DAY, 60)], 1 - 7260 / DAY),
    ],
)
def test_share(times: list[int], share: float) -> None:
    cov = coverage("boiler-1", ts(*times), 0, DAY * S, 60)
    assert cov.share == pytest.approx(share)
    assert cov.complete == (share == 1.0)
    assert cov.samples == len(list(times))


@pytest.mark.parametrize(
    ("start", "end", "note"),
    [
        (0, 3600, None),
        (3000, 4000, "computed over 1 gap(s), 6m40s without data"),
        (0, DAY, "computed over 2 gap(s), 1h00m00s without data"),
    ],
)
def test_a_figure_over_a_gap_says_so(start: int, end: int, note: str | None) -> None:
    gaps = [Gap(3600 * S, 4200 * S), Gap(7200 * S, 10_200 * S)]
    assert gap_note(gaps, start * S, end * S) == note


def test_verdict_never_says_complete_with_a_gap() -> None:
    full = coverage("a", ts(*range(0, DAY, 60)), 0, DAY * S, 60)
    holed = coverage("b", ts(*range(0, DAY // 2, 60)), 0, DAY * S, 60)
    assert verdict([full]).startswith("COMPLETE")
    v = verdict([full, holed])
    assert v.startswith("INCOMPLETE") and "1 of 2" in v and "b 49.9 %" in v
