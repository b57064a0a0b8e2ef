"""Request planner: request counts for the built-in profiles, limits and gap handling."""

from __future__ import annotations

import pytest

from gateway.profiles.registry import ProfileRegistry
from gateway.profiles.schema import ModbusPoint, ModbusProfile, Unreadable
from gateway.sources.planner import MAX_REGISTERS, plan_points, plan_profile


def _registry() -> ProfileRegistry:
    reg, problems = ProfileRegistry.load()
    assert problems == []
    return reg


# profile -> (points, planned requests). One request per point is the baseline.
EXPECTED = {
    "leakage-monitor": (22, 4),
    "boiler-controller": (16, 2),
    "ultrasonic-flow-meter": (9, 3),
    "pipe-heat-meter": (9, 1),
    "cold-room-thermometer": (5, 2),
}


@pytest.mark.parametrize(("name", "counts"), sorted(EXPECTED.items()))
def test_builtin_profiles_plan(name: str, counts: tuple[int, int]) -> None:
    prof = _registry().get(name)
    assert isinstance(prof, ModbusProfile)
    merged = plan_profile(prof)
    single = plan_profile(prof, merge=False)
    assert (len(prof.points), len(merged)) == counts
    assert len(single) == len(prof.points)
    # Every point is read exactly once, inside its request.
    covered = [p.name for r in merged for p in r.points]
    assert sorted(covered) == sorted(p.name for p in prof.points)
    for r in merged:
        assert r.count <= MAX_REGISTERS
        for p in r.points:
            assert r.address <= p.address and p.address + p.count - 1 <= r.end


def _reg(name: str, address: int, dtype: str = "uint16", **kw: object) -> ModbusPoint:
    return ModbusPoint.model_validate(
        {"name": name, "table": "holding_register", "address": address, "type": dtype, **kw}
    )


def test_gap_within_limit_is_read_through() -> None:
    reqs = plan_points([_reg("a", 0), _reg("b", 5)], max_gap=4)
    assert [(r.address, r.count) for r in reqs] == [(0, 6)]


def test_gap_over_limit_splits() -> None:
    reqs = plan_points([_reg("a", 0), _reg("b", 6)], max_gap=4)
    assert [(r.address, r.count) for r in reqs] == [(0, 1), (6, 1)]


def test_zero_gap_merges_only_adjacent() -> None:
    reqs = plan_points([_reg("a", 0), _reg("b", 1, "float32"), _reg("c", 4)], max_gap=0)
    assert [(r.address, r.count) for r in reqs] == [(0, 3), (4, 1)]


def test_never_reads_across_unreadable_range() -> None:
    bad = [Unreadable(table="holding_register", start=3, end=3)]  # type: ignore[arg-type]
    reqs = plan_points([_reg("a", 0), _reg("b", 5)], max_gap=10, unreadable=bad)
    assert [(r.address, r.count) for r in reqs] == [(0, 1), (5, 1)]


def test_unreadable_range_in_other_table_does_not_matter() -> None:
    bad = [Unreadable(table="input_register", start=3, end=3)]  # type: ignore[arg-type]
    reqs = plan_points([_reg("a", 0), _reg("b", 5)], max_gap=10, unreadable=bad)
    assert len(reqs) == 1


def test_register_limit_splits_long_runs() -> None:
    pts = [_reg(f"p{i}", i * 2, "float32") for i in range(100)]  # 200 contiguous registers
    reqs = plan_points(pts, max_gap=0)
    assert [r.count for r in reqs] == [124, 76]  # 125 would split a float
    assert all(r.count <= MAX_REGISTERS for r in reqs)


def test_bit_limit_and_bit_gap() -> None:
    coils = [
        ModbusPoint.model_validate({"name": f"c{i}", "table": "coil", "address": i, "type": "bool"})
        for i in range(0, 2100)
    ]
    reqs = plan_points(coils, max_gap=0)
    assert [r.count for r in reqs] == [2000, 100]
    sparse = [coils[0], coils[40]]
    assert len(plan_points(sparse, max_gap=4)) == 1  # a 39-bit gap costs 5 bytes: read through
    assert len(plan_points(sparse, max_gap=2)) == 2


def test_bits_sharing_a_register_are_one_read() -> None:
    pts = [_reg(f"b{i}", 10, "bit", bit=i) for i in range(8)]
    reqs = plan_points(pts, max_gap=0)
    assert [(r.address, r.count, len(r.points)) for r in reqs] == [(10, 1, 8)]


def test_tables_never_merge() -> None:
    ir = ModbusPoint.model_validate({"name": "i", "table": "input_register", "address": 1})
    reqs = plan_points([_reg("h", 0), ir], max_gap=10)
    assert len(reqs) == 2


def test_site_override_of_max_gap() -> None:
    prof = _registry().get("ultrasonic-flow-meter")
    assert isinstance(prof, ModbusProfile)
    assert len(plan_profile(prof, max_gap=100)) == 1  # 0..91 in one read
    assert len(plan_profile(prof, max_gap=0)) == 6
