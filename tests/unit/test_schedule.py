"""The per-device poll schedule (gateway.plugins.schedule) on a fake clock that polls move.

Each poll takes the time the test gives it by advancing the fake clock, so
the schedule never has to wait for real time; the test ends the schedule by
raising out of the last poll it wants.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pytest

from gateway.config import DeviceConfig
from gateway.model import FakeClock
from gateway.plugins.schedule import poll_on_schedule
from gateway.sources.device_poll import DeviceCounters


class Enough(Exception):
    pass


@dataclass
class Dev:
    config: DeviceConfig
    counters: DeviceCounters = field(default_factory=DeviceCounters)

    @property
    def id(self) -> str:
        return self.config.id


def dev(name: str, interval_s: float) -> Dev:
    return Dev(DeviceConfig(id=name, profile="p", source="s", interval_s=interval_s))


async def run(
    devices: list[Dev], spread: bool, polls: int, took: dict[str, float]
) -> list[tuple[str, float]]:
    clock = FakeClock()
    t0 = clock.monotonic()
    seen: list[tuple[str, float]] = []

    async def poll(d: Dev) -> None:
        seen.append((d.id, round(clock.monotonic() - t0, 3)))
        clock.advance(took.get(d.id, 0.0))
        if len(seen) == polls:
            raise Enough

    async def sleep(delay: float) -> None:
        clock.advance(delay)

    with pytest.MonkeyPatch.context() as mp:
        # The schedule sleeps on the event loop; here a sleep moves the fake clock.
        mp.setattr("gateway.plugins.schedule.asyncio.sleep", sleep)
        with pytest.raises(Enough):
            await asyncio.wait_for(poll_on_schedule(devices, poll, clock, spread=spread), 10)
    return seen


async def test_first_polls_spread_over_the_shortest_interval() -> None:
    seen = await run([dev("a", 1.0), dev("b", 2.0)], spread=True, polls=5, took={})
    assert seen == [("a", 0.0), ("b", 0.5), ("a", 1.0), ("a", 2.0), ("b", 2.5)]


async def test_without_spread_every_device_is_due_at_once_in_order() -> None:
    seen = await run([dev("a", 1.0), dev("b", 1.0)], spread=False, polls=4, took={})
    assert seen == [("a", 0.0), ("b", 0.0), ("a", 1.0), ("b", 1.0)]


async def test_a_slow_poll_skips_missed_cycles_and_counts_an_overrun() -> None:
    devices = [dev("a", 1.0)]
    seen = await run(devices, spread=False, polls=3, took={"a": 2.5})
    # Due at 0, 1, 2, 3 ...: the poll at 0 ends at 2.5, so 1 and 2 are skipped.
    assert seen == [("a", 0.0), ("a", 3.0), ("a", 6.0)]
    assert devices[0].counters.overruns == 2


async def test_no_devices_returns_at_once() -> None:
    async def poll(d: Dev) -> None:
        raise AssertionError("nothing to poll")

    await asyncio.wait_for(poll_on_schedule([], poll, FakeClock(), spread=True), 1)
