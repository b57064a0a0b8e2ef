"""The request planner: a device's points merged into the fewest Modbus reads.

Points of one table are sorted by address and merged greedily while the
merged read stays within the protocol limit (125 registers, 2000 bits), the
gap read through is at most ``max_gap`` registers (x16 for bit tables, since
a skipped bit costs only a bit), and the gap does not touch a range the
profile marks unreadable (a read across it would earn an exception for
every point in the request). Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from gateway.profiles.schema import ModbusPoint, ModbusProfile, Table, Unreadable

MAX_REGISTERS = 125
MAX_BITS = 2000


@dataclass(frozen=True, slots=True)
class ReadRequest:
    """One Modbus read: ``count`` items of ``table`` from ``address``, and the points in it."""

    table: Table
    address: int
    count: int
    points: tuple[ModbusPoint, ...]

    @property
    def end(self) -> int:
        return self.address + self.count - 1


def _crosses_unreadable(table: Table, lo: int, hi: int, unreadable: Sequence[Unreadable]) -> bool:
    """Whether the addresses lo..hi (inclusive) touch an unreadable range."""
    return lo <= hi and any(u.table == table and lo <= u.end and u.start <= hi for u in unreadable)


def plan_points(
    points: Sequence[ModbusPoint],
    max_gap: int,
    unreadable: Sequence[Unreadable] = (),
    merge: bool = True,
) -> list[ReadRequest]:
    """Plan reads for ``points``. ``merge=False`` gives one request per point (for comparison)."""
    if not merge:
        return [ReadRequest(p.table, p.address, p.count, (p,)) for p in points]
    requests: list[ReadRequest] = []
    for table in Table:
        pts = sorted((p for p in points if p.table == table), key=lambda p: (p.address, p.count))
        if not pts:
            continue
        limit = MAX_BITS if table.is_bit else MAX_REGISTERS
        gap_limit = max_gap * 16 if table.is_bit else max_gap
        start = pts[0].address
        end = pts[0].address + pts[0].count - 1
        members = [pts[0]]
        for p in pts[1:]:
            p_end = p.address + p.count - 1
            gap = p.address - end - 1
            fits = max(end, p_end) - start + 1 <= limit
            if (
                fits
                and gap <= gap_limit
                and not _crosses_unreadable(table, end + 1, p.address - 1, unreadable)
            ):
                end = max(end, p_end)
                members.append(p)
                continue
            requests.append(ReadRequest(table, start, end - start + 1, tuple(members)))
            start, end, members = p.address, p_end, [p]
        requests.append(ReadRequest(table, start, end - start + 1, tuple(members)))
    return requests


def plan_profile(
    profile: ModbusProfile, max_gap: int | None = None, merge: bool = True
) -> list[ReadRequest]:
    """Plan a device: the site's ``max_gap`` override wins over the profile's."""
    gap = profile.max_gap if max_gap is None else max_gap
    return plan_points(profile.points, gap, profile.unreadable, merge)
