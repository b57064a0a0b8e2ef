"""Learning a device's holes (gateway.sources.holes) as tables: refused addresses in, finding out.

The device here is a rule in memory (which reads it refuses), standing in for
the transport so every shape of map can be tried; the same code against the
simulator over TCP and RTU is in gateway/plugins/modbus/tests/test_learned_holes.py.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest

from gateway.errors import DeviceException, DeviceTimeout, SourceError
from gateway.profiles.schema import ModbusPoint, Table, Unreadable
from gateway.sources import holes
from gateway.sources.planner import plan_points

HR = Table.HOLDING_REGISTER


def pts(*addresses: int, table: Table = HR, float_at: Sequence[int] = ()) -> list[ModbusPoint]:
    out = []
    for a in addresses:
        kind = "bool" if table.is_bit else ("float32" if a in float_at else "uint16")
        out.append(ModbusPoint(name=f"p{a}", table=table, address=a, type=kind))
    return out


class Device:
    """Refuses (exception 2) any read that touches ``refused`` or is longer than ``cap``."""

    def __init__(
        self,
        refused: Callable[[int], bool],
        cap: int = 2000,
        fail_after: int | None = None,
    ) -> None:
        self.refused, self.cap, self.fail_after = refused, cap, fail_after
        self.reads: list[tuple[int, int]] = []

    async def read(self, table: Table, address: int, count: int) -> list[int] | SourceError:
        self.reads.append((address, count))
        if self.fail_after is not None and len(self.reads) > self.fail_after:
            return DeviceTimeout("no answer")
        if count > self.cap or any(self.refused(a) for a in range(address, address + count)):
            return DeviceException("exception code 2", 2)
        return [0] * count


async def learn_on(points: list[ModbusPoint], dev: Device, max_gap: int = 32) -> holes.Finding:
    (req,) = plan_points(points, max_gap)
    return await holes.learn(req, dev.read, max_gap)


def spans(found: holes.Finding) -> list[tuple[int, int]]:
    return [(r.address, r.end) for r in found.pieces]


async def test_the_reserved_range_is_found_exactly() -> None:
    dev = Device(lambda a: 20 <= a <= 29)
    found = await learn_on(pts(0, 10, 30, 40), dev)
    assert found.gaps == ((20, 29),) and found.points == ()
    assert spans(found) == [(0, 10), (30, 40)]
    assert found.probes == len(dev.reads) < 30
    # What the source will read from now on reads.
    for r in found.pieces:
        assert not holes.refused(await dev.read(r.table, r.address, r.count))
    assert holes.advice("m", "prof", found) == [
        "device m: holding_register 20..29 refused with exception 2 (illegal data address);"
        " declare `unreadable: [{table: holding_register, start: 20, end: 29}]` in profile prof"
    ]


async def test_two_holes_in_one_gap_and_one_at_its_edge() -> None:
    dev = Device(lambda a: a in (11, 12, 13, 17, 29))
    found = await learn_on(pts(0, 10, 30, 40), dev)
    assert found.gaps == ((11, 13), (17, 17), (29, 29))
    assert spans(found) == [(0, 10), (30, 40)]
    line = holes.advice("m", "prof", found)[0]
    assert "holding_register 11..13, 17, 29 refused" in line
    assert "{table: holding_register, start: 17, end: 17}" in line


async def test_a_refused_point_inside_a_run_is_found_by_halving() -> None:
    # Points 0..7 touch each other (one run); point 5's register is refused.
    dev = Device(lambda a: a == 5)
    found = await learn_on(pts(0, 1, 2, 3, 4, 5, 6, 7, 20), dev)
    assert [p.name for p in found.points] == ["p5"]
    assert found.gaps == ()
    assert spans(found) == [(0, 4), (5, 5), (6, 20)]


async def test_a_float_half_refused_is_a_refused_point_not_a_hole() -> None:
    dev = Device(lambda a: a == 11)
    found = await learn_on(pts(0, 10, 30, float_at=[10]), dev)
    assert [p.name for p in found.points] == ["p10"] and found.gaps == ()
    assert spans(found) == [(0, 0), (10, 11), (30, 30)]


async def test_a_length_cap_answered_with_exception_2_reads_the_runs_apart() -> None:
    dev = Device(lambda a: False, cap=20)
    found = await learn_on(pts(0, 10, 30, 40), dev)
    assert found.gaps == () and found.points == () and not found.whole
    assert spans(found) == [(0, 0), (10, 10), (30, 30), (40, 40)]
    (line,) = holes.advice("m", "prof", found)
    assert "as one read, though each of its parts reads alone; reading it in 4 parts" in line


async def test_a_run_longer_than_the_cap_is_read_in_the_parts_that_read() -> None:
    dev = Device(lambda a: False, cap=5)
    found = await learn_on(pts(*range(12)), dev)
    assert found.gaps == () and found.points == ()
    # Never the refused read again: the halves of halves that were read.
    assert spans(found) == [(0, 2), (3, 5), (6, 8), (9, 11)]


async def test_everything_refused_is_not_a_hole() -> None:
    dev = Device(lambda a: True)
    found = await learn_on(pts(0, 10, 30, 40), dev)
    assert found.whole and len(dev.reads) == 4  # each point once, no gap search
    assert holes.advice("m", "prof", found) == [
        "device m: every point of holding_register 0..40 refused with exception 2 (illegal"
        " data address), even read alone: check the unit id, the table and the addresses of"
        " profile prof"
    ]


async def test_a_single_refused_point_says_so() -> None:
    found = await learn_on(pts(7), Device(lambda a: a == 7))
    assert found.whole
    assert holes.advice("m", "prof", found) == [
        "device m: point p7 (holding_register 7) refused with exception 2 (illegal data"
        " address) when read alone: check its address in profile prof, or remove it"
    ]


async def test_another_error_while_probing_abandons_the_learning() -> None:
    dev = Device(lambda a: 20 <= a <= 29, fail_after=3)
    with pytest.raises(holes.Abandoned, match="no answer"):
        await learn_on(pts(0, 10, 30, 40), dev)


async def test_a_long_bit_gap_stops_at_the_budget_and_is_declared_whole() -> None:
    dev = Device(lambda a: 100 <= a <= 1800)
    found = await learn_on(pts(0, 1900, table=Table.COIL), dev, max_gap=124)
    assert found.probes <= holes.PROBE_BUDGET + 1
    # Known refused from 100 on; the rest of the gap, past the budget, declared with it.
    assert found.gaps == ((100, 1899),) and found.cut is not None and 100 < found.cut < 1899
    assert spans(found) == [(0, 0), (1900, 1900)]
    (line,) = holes.advice("m", "prof", found)
    assert f"(from {found.cut} on not searched register by register" in line


async def test_past_the_budget_a_readable_gap_is_still_read_not_declared() -> None:
    dev = Device(lambda a: 5 <= a <= 25)
    (req,) = plan_points(pts(0, 30, 40), 32)
    found = await holes.learn(req, dev.read, 32, budget=4)
    assert found.gaps == ((1, 29),) and found.cut == 1  # 3 point reads + 1 gap read
    assert spans(found) == [(0, 0), (30, 40)]  # 31..39 read once and kept


def test_advice_lists_the_ranges_already_declared_first() -> None:
    (req,) = plan_points(pts(0, 10, 30, 40), 32)
    found = holes.Finding(req, ((20, 29),), (), (), 0)
    declared = [Unreadable(table=Table.INPUT_REGISTER, start=5, end=9)]
    (line,) = holes.advice("m", "prof", found, declared)
    first = "{table: input_register, start: 5, end: 9}, {table: holding_register, start: 20,"
    assert f"`unreadable: [{first}" in line
