"""Which register range to declare ``unreadable:`` when a merged read gets exception 2.

A device whose map has an undeclared reserved range refuses a read that
crosses it with exception 2 (illegal data address), although each point
alone reads fine. ``unreadable_advice`` finds the range: every point of the
refused request is read alone, then the gaps between them are bisected
(a read of a gap that is refused is split in halves until single registers
are left), within ``MAX_READS`` reads so a probe stays short on a slow line.

This is the one place ``gateway probe`` gets its advice from, so the read
plan's own hole finding can replace it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from gateway.errors import DeviceException, SourceError
from gateway.profiles.schema import ModbusPoint, Table
from gateway.sources.planner import ReadRequest

ILLEGAL_DATA_ADDRESS = 2
MAX_READS = 64

# read(table, address, count): words or bits; raises SourceError.
ReadFn = Callable[[Table, int, int], Awaitable[Sequence[int] | Sequence[bool]]]


class _OutOfReads(Exception):
    pass


def _ranges(addresses: Sequence[int]) -> list[tuple[int, int]]:
    """Sorted addresses as inclusive runs: [20, 21, 22, 25] -> [(20, 22), (25, 25)]."""
    out: list[tuple[int, int]] = []
    for a in sorted(addresses):
        if out and a == out[-1][1] + 1:
            out[-1] = (out[-1][0], a)
        else:
            out.append((a, a))
    return out


def _yaml(table: Table, lo: int, hi: int) -> str:
    return f"{{table: {table}, start: {lo}, end: {hi}}}"


def _refused_alone(p: ModbusPoint) -> str:
    return (
        f"point {p.name} ({p.table} {p.address}) is refused on its own (exception 2):"
        " check its address and table in the device's manual"
    )


async def unreadable_advice(read: ReadFn, request: ReadRequest) -> list[str]:
    """Advice lines for ``request``, which the device refused with exception 2."""
    budget = [MAX_READS]
    table = request.table

    async def refused(lo: int, hi: int) -> list[int]:
        """Addresses lo..hi the device refuses (bisecting)."""
        if budget[0] <= 0:
            raise _OutOfReads
        budget[0] -= 1
        try:
            await read(table, lo, hi - lo + 1)
        except DeviceException as exc:
            if exc.code != ILLEGAL_DATA_ADDRESS:
                raise
            if lo == hi:
                return [lo]
            mid = (lo + hi) // 2
            return await refused(lo, mid) + await refused(mid + 1, hi)
        return []

    span = f"{table} {request.address}..{request.end}"
    points = sorted(request.points, key=lambda p: p.address)
    if len(points) == 1:
        return [_refused_alone(points[0])]
    lines: list[str] = []
    holes: list[int] = []
    gaps: list[tuple[int, int]] = []
    try:
        for p in points:
            if await refused(p.address, p.address + p.count - 1):
                lines.append(_refused_alone(p))
        end = points[0].address - 1
        for p in points:
            if p.address > end + 1:
                gaps.append((end + 1, p.address - 1))
            end = max(end, p.address + p.count - 1)
        for lo, hi in gaps:
            holes += await refused(lo, hi)
    except _OutOfReads:
        lines.append(
            f"could not narrow the refused range down within {MAX_READS} reads; the read"
            f" {span} crosses the gaps " + ", ".join(f"{lo}..{hi}" for lo, hi in gaps)
        )
        return lines
    except SourceError as exc:
        lines.append(f"advice incomplete: {exc}")
        return lines
    runs = _ranges(holes)
    if runs:
        lines.append(
            f"the read {span} crosses registers the device refuses; declare them in the profile:"
        )
        lines.append("unreadable: [" + ", ".join(_yaml(table, lo, hi) for lo, hi in runs) + "]")
    elif not lines:
        lines.append(
            f"the read {span} was refused (exception 2) but every part of it reads alone;"
            " lower max_gap to split it"
        )
    return lines
