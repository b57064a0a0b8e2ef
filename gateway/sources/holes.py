"""Learning a device's holes: what to read instead of a merged read refused with exception 2.

A device whose register map has a reserved range the profile does not
declare answers a merged read across it with exception 2 (illegal data
address), and every point in that read would stay bad. ``learn`` splits the
refused read along its points: each run of adjacent points is read alone
(halved down to single points when it is refused), and each gap between the
runs is searched for the exact addresses the device refuses (the first
refused address by halving the gap, then address by address to the end of
that refused run). The result (``Finding``) names the refused gap ranges, the
points refused on their own, and the reads to make instead: the readable
points planned again with the refused ranges as if the profile declared them.

``advice`` turns a finding into the lines to log (and ``gateway probe`` to
print): which ranges to declare ``unreadable:`` in the profile, and which
points the device refuses outright. Both are transport-independent: the
caller passes the read coroutine, so the Modbus source and the probe command
share them.
"""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from gateway.errors import DeviceException, SourceError
from gateway.profiles.schema import ModbusPoint, Table, Unreadable
from gateway.sources.planner import ReadRequest, plan_points

ILLEGAL_ADDRESS = 2
# Reads one learning may spend searching the gaps of one refused read; past it
# each gap is read once more and, if still refused, declared whole from where
# the search stopped (declaring it is still right: a gap holds no point).
# Registers never get near it (a read is at most 125); a coil gap of up to
# 2000 bits could. ``gateway probe`` passes a smaller one.
PROBE_BUDGET = 300

# (table, address, count) -> the words/bits read, or why not.
Read = Callable[[Table, int, int], Awaitable[Sequence[int] | Sequence[bool] | SourceError]]


def refused(result: object) -> bool:
    """Whether a read result is exception 2 (illegal data address)."""
    return isinstance(result, DeviceException) and result.code == ILLEGAL_ADDRESS


class Abandoned(Exception):
    """A probe failed otherwise than with exception 2: the learning is given up."""

    def __init__(self, error: SourceError) -> None:
        super().__init__(str(error))
        self.error = error


@dataclass(frozen=True, slots=True)
class Finding:
    """What splitting one refused read taught.

    ``gaps``: inclusive address ranges between points that the device refuses.
    ``points``: points refused even when read alone. ``pieces``: the reads
    to make instead of ``request`` (the refused points each alone, so they
    come back by themselves if the device starts to serve them).
    ``whole``: nothing in the read reads on its own (the device refuses the
    table, or is not the device the profile describes): there is nothing to
    learn, keep the read as it is. ``cut``: the first address from which the
    gaps were declared whole, unsearched, because the budget ran out (None:
    every refused address was found one by one).
    """

    request: ReadRequest
    gaps: tuple[tuple[int, int], ...]
    points: tuple[ModbusPoint, ...]
    pieces: tuple[ReadRequest, ...]
    probes: int
    cut: int | None = None

    @property
    def whole(self) -> bool:
        return len(self.points) == len(self.request.points)

    @property
    def table(self) -> Table:
        return self.request.table


def _span(points: Sequence[ModbusPoint]) -> tuple[int, int]:
    return min(p.address for p in points), max(p.address + p.count - 1 for p in points)


def _runs(points: Sequence[ModbusPoint]) -> list[list[ModbusPoint]]:
    """Points grouped into runs that touch or overlap (no address between them)."""
    runs: list[list[ModbusPoint]] = []
    end = -2
    for p in sorted(points, key=lambda p: (p.address, p.count)):
        p_end = p.address + p.count - 1
        if runs and p.address <= end + 1:
            runs[-1].append(p)
            end = max(end, p_end)
        else:
            runs.append([p])
            end = p_end
    return runs


def _ranges(addresses: Sequence[int]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for a in sorted(set(addresses)):
        if out and a == out[-1][1] + 1:
            out[-1] = (out[-1][0], a)
        else:
            out.append((a, a))
    return out


class _Prober:
    def __init__(self, table: Table, read: Read, budget: int) -> None:
        self.table = table
        self._read = read
        self.count = 0
        self.budget = budget
        self.cut: int | None = None

    async def ok(self, lo: int, hi: int) -> bool:
        """Whether lo..hi reads; exception 2 is False, any other failure abandons."""
        self.count += 1
        res = await self._read(self.table, lo, hi - lo + 1)
        if refused(res):
            return False
        if isinstance(res, SourceError):
            raise Abandoned(res)
        return True

    async def split_run(
        self, run: Sequence[ModbusPoint]
    ) -> tuple[list[ModbusPoint], list[Sequence[ModbusPoint]]]:
        """The points of a run refused on their own, and the parts of it that read
        (halving the run while it is refused)."""
        if await self.ok(*_span(run)):
            return [], [run]
        if len(run) == 1:
            return list(run), []
        half = len(run) // 2
        bad_a, good_a = await self.split_run(run[:half])
        bad_b, good_b = await self.split_run(run[half:])
        return bad_a + bad_b, good_a + good_b

    async def refused_in_gap(self, lo: int, hi: int) -> list[int]:
        """Every address of lo..hi the device refuses (past the budget: the rest whole)."""
        out: list[int] = []
        while lo <= hi:
            if await self.ok(lo, hi):
                return out
            if self.count >= self.budget:
                self.cut = lo if self.cut is None else self.cut
                return out + list(range(lo, hi + 1))
            # The first refused address: the shortest refused prefix of lo..hi.
            a, b = lo, hi
            while a < b:
                mid = (a + b) // 2
                if await self.ok(lo, mid):
                    a = mid + 1
                else:
                    b = mid
            out.append(a)
            lo = a + 1
            # Reserved ranges are usually long: walk the run one address at a time.
            while lo <= hi and self.count < self.budget and not await self.ok(lo, lo):
                out.append(lo)
                lo += 1
        return out


async def learn(
    request: ReadRequest,
    read: Read,
    max_gap: int,
    unreadable: Sequence[Unreadable] = (),
    budget: int = PROBE_BUDGET,
) -> Finding:
    """Split the refused ``request`` along its points (see the module docstring).

    ``max_gap`` and ``unreadable`` are what the device's plan was made with;
    ``budget`` bounds the reads spent searching gaps (see ``PROBE_BUDGET``).
    Raises ``Abandoned`` when a probe fails otherwise than with exception 2
    (a timeout, a lost link, another exception): nothing is learned then.
    """
    probe = _Prober(request.table, read, budget)
    runs = _runs(request.points)
    bad: list[ModbusPoint] = []
    parts: list[Sequence[ModbusPoint]] = []  # each read alone
    for run in runs:
        run_bad, run_parts = await probe.split_run(run)
        bad += run_bad
        parts += run_parts
    in_gaps: list[int] = []
    if len(bad) < len(request.points):
        for before, after in itertools.pairwise(runs):
            in_gaps += await probe.refused_in_gap(_span(before)[1] + 1, _span(after)[0] - 1)
    gaps = tuple(_ranges(in_gaps))
    table = request.table
    good = [p for p in request.points if p not in bad]
    learned = [Unreadable(table=table, start=s, end=e) for s, e in gaps]
    # The refused points' own addresses: the planner must not read through them either.
    learned += [Unreadable(table=table, start=s, end=e) for s, e in (_span([p]) for p in bad)]
    pieces = plan_points(good, max_gap, [*unreadable, *learned])
    if not gaps and not bad:
        # Refused as one read though every part reads alone (some devices cap
        # the length of a read): read the parts that were read.
        pieces = [ReadRequest(table, *_count(part), tuple(part)) for part in parts]
    pieces += [ReadRequest(table, p.address, p.count, (p,)) for p in bad]
    pieces.sort(key=lambda r: r.address)
    return Finding(request, gaps, tuple(bad), tuple(pieces), probe.count, probe.cut)


def _count(run: Sequence[ModbusPoint]) -> tuple[int, int]:
    lo, hi = _span(run)
    return lo, hi - lo + 1


def _yaml(table: Table, start: int, end: int) -> str:
    return f"{{table: {table}, start: {start}, end: {end}}}"


def _where(table: Table, lo: int, hi: int) -> str:
    return f"{table} {lo}" if lo == hi else f"{table} {lo}..{hi}"


def advice(
    device: str, profile: str, finding: Finding, declared: Sequence[Unreadable] = ()
) -> list[str]:
    """What to change in the profile, one line per kind of finding (pure).

    The ``unreadable:`` list given is the whole list to declare: the ranges
    the profile already ``declared`` first, then the learned ones.
    """
    t, r = finding.table, finding.request
    why = "refused with exception 2 (illegal data address)"
    if finding.whole and len(r.points) > 1:
        return [
            f"device {device}: every point of {_where(t, r.address, r.end)} {why}, even read"
            f" alone: check the unit id, the table and the addresses of profile {profile}"
        ]
    lines = [
        f"device {device}: point {p.name} ({_where(t, *_span([p]))}) {why} when read alone:"
        f" check its address in profile {profile}, or remove it"
        for p in finding.points
    ]
    if finding.gaps:
        ranges = ", ".join(f"{s}..{e}" if s != e else f"{s}" for s, e in finding.gaps)
        listed = [_yaml(u.table, u.start, u.end) for u in declared]
        listed += [_yaml(t, s, e) for s, e in finding.gaps]
        unsearched = (
            ""
            if finding.cut is None
            else f" (from {finding.cut} on not searched register by register: {finding.probes}"
            " reads spent; the device's own range may be narrower)"
        )
        lines.append(
            f"device {device}: {t} {ranges} {why}{unsearched};"
            f" declare `unreadable: [{', '.join(listed)}]` in profile {profile}"
        )
    elif not finding.points:
        lines.append(
            f"device {device}: {_where(t, r.address, r.end)} {why} as one read, though each of"
            f" its parts reads alone; reading it in {len(finding.pieces)} parts (a lower"
            " max_gap for this device does the same)"
        )
    return lines
