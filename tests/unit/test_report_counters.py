"""Totaliser consumption through resets, rollovers and meter swaps, as tables."""

from __future__ import annotations

import pytest

from gateway.reports.counters import counter_usage, rollover_of

S = 1_000_000_000
WRAP = 2.0**32


@pytest.mark.parametrize(
    ("values", "rollover", "used", "kinds"),
    [
        # a steady rise
        ([100, 110, 125, 125], WRAP, 25, []),
        # a reset: the counter restarts at zero; what it counted since is used
        ([5000, 5010, 3, 13], WRAP, 10 + 3 + 10, ["reset"]),
        # a rollover of a 32-bit counter
        ([WRAP - 20, WRAP - 5, 7, 17], WRAP, 15 + 12 + 10, ["rollover"]),
        # the same fall without a known rollover: a reset if the new value is plausible
        ([WRAP - 20, WRAP - 5, 7], None, 15 + 7, ["reset"]),
        # a meter swap to a lower start value: that stretch is not counted
        ([5000, 5010, 2000, 2010], WRAP, 20, ["swap"]),
        # a meter swap to a higher start value: an implausible jump, not counted
        ([5000, 5010, 90_000, 90_010], WRAP, 20, ["swap"]),
        # one reading: nothing used
        ([42], WRAP, 0, []),
    ],
)
def test_usage(values: list[float], rollover: float | None, used: float, kinds: list[str]) -> None:
    # one reading a minute; at most 60 units a minute are plausible
    readings = [(i * 60 * S, v) for i, v in enumerate(values)]
    u = counter_usage(readings, max_rate_per_s=1.0, rollover=rollover)
    assert u.used == pytest.approx(used)
    assert [n.kind for n in u.notes] == kinds
    for n in u.notes:
        assert f"({n.before:.12g} -> {n.after:.12g})" in n.text("m³")


def test_counting_goes_on_across_a_data_gap() -> None:
    """The meter counted while the gateway could not read it: two hours of gas are used."""
    readings = [(0, 1000.0), (7200 * S, 1700.0)]
    assert counter_usage(readings, max_rate_per_s=1.0).used == 700


@pytest.mark.parametrize(
    ("type_name", "scale", "wrap"),
    [("uint16", 1, 65536.0), ("uint32", 0.1, 2**32 * 0.1), ("int32", 1, 2.0**31),
     ("float32", 1, None)],
)
def test_rollover_of(type_name: str, scale: float, wrap: float | None) -> None:
    assert rollover_of(type_name, scale) == wrap


@pytest.mark.parametrize(
    ("resolution", "kinds"),
    [(0.0, ["swap"]), (0.01, [])],
)
def test_a_coarse_register_is_not_a_swap(resolution: float, kinds: list[str]) -> None:
    """Hours in 0.01 h steps read every minute: 0.02 after 0.0167 h is a rounding, not a swap."""
    readings = [(0, 10.00), (60 * S, 10.02), (120 * S, 10.03)]
    u = counter_usage(readings, max_rate_per_s=1.05 / 3600, resolution=resolution)
    assert [n.kind for n in u.notes] == kinds
