"""Which register range to declare ``unreadable:`` when a merged read gets exception 2.

A device whose map has an undeclared reserved range refuses a read that
crosses it with exception 2 (illegal data address), although each point
alone reads fine. The search is the read plan's own (``gateway.sources.holes``,
which the Modbus source runs when a poll is refused), so ``gateway probe``
and the gateway's log give the same advice; here it runs on the probe's
client with a smaller read budget, so a probe stays short on a slow line.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from gateway.errors import SourceError
from gateway.profiles.schema import ModbusProfile, Table
from gateway.sources import holes
from gateway.sources.planner import ReadRequest

ILLEGAL_DATA_ADDRESS = holes.ILLEGAL_ADDRESS
MAX_READS = 64

# read(table, address, count): words or bits; raises SourceError.
ReadFn = Callable[[Table, int, int], Awaitable[Sequence[int] | Sequence[bool]]]


async def unreadable_advice(
    read: ReadFn, request: ReadRequest, device: str, profile: ModbusProfile, max_gap: int
) -> list[str]:
    """Advice lines for ``request``, which the device refused with exception 2."""

    async def answer(
        table: Table, address: int, count: int
    ) -> Sequence[int] | Sequence[bool] | SourceError:
        try:
            return await read(table, address, count)
        except SourceError as exc:
            return exc

    try:
        found = await holes.learn(request, answer, max_gap, profile.unreadable, MAX_READS)
    except holes.Abandoned as exc:
        return [f"advice incomplete: {exc}"]
    return holes.advice(device, profile.name, found, profile.unreadable)
