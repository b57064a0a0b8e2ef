"""The per-device poll schedule of a source that reads its devices in turn over one line.

Each device keeps its own interval on an absolute schedule (due times move by
whole intervals, so a poll's own duration does not drift the rate). The
device due first is polled next; a poll that ends a whole interval or more
behind skips the missed cycles instead of bursting to catch up, and counts
an overrun, so falling behind shows. Used by the Modbus and M-Bus sources.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Protocol, TypeVar

from gateway.model import Clock

if TYPE_CHECKING:
    from gateway.config import DeviceConfig
    from gateway.sources.device_poll import DeviceCounters


class Polled(Protocol):
    """A device as the schedule sees it: an id, an interval, its counters."""

    @property
    def id(self) -> str: ...

    config: DeviceConfig
    counters: DeviceCounters


D = TypeVar("D", bound=Polled)


async def poll_on_schedule(
    devices: Sequence[D], poll: Callable[[D], Awaitable[None]], clock: Clock, *, spread: bool
) -> None:
    """Poll ``devices`` each on its interval until cancelled (see the module docstring).

    ``spread``: the first polls are spread over the shortest interval, so
    devices do not all hit the line in the same instant; otherwise every
    device is due at once and they start in the order given.
    """
    if not devices:
        return
    now = clock.monotonic()
    step = min(d.config.interval_s for d in devices) / len(devices) if spread else 0.0
    # Due times by position: picking the next device is one C-level min() per poll,
    # with no Python call per device (it runs for every poll of every device).
    due = [now + i * step for i in range(len(devices))]
    positions = range(len(devices))
    while True:
        i = min(positions, key=due.__getitem__)
        dev = devices[i]
        delay = due[i] - clock.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        await poll(dev)
        interval = dev.config.interval_s
        nxt = due[i] + interval
        now = clock.monotonic()
        if nxt < now:
            dev.counters.overruns += 1
            nxt += (int((now - nxt) // interval) + 1) * interval
        due[i] = nxt
