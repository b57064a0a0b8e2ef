"""Helpers shared by the delivery integration tests and the producer script."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

from gateway.config import InfluxSinkConfig, MqttSinkConfig, OutboxConfig, Sinks
from gateway.delivery import Delivery
from gateway.model import Quality, Sample
from gateway.sinks.base import Sink

SITE = "park"
DEVICES = ("rcm-1", "boiler-1", "meter-1")
# Fast retries keep outage tests short; production defaults are 0.5 .. 30 s.
FAST_RETRY: dict[str, Any] = {"retry_min_s": 0.2, "retry_max_s": 1.0}


def make_sample(i: int, base_ns: int, devices: tuple[str, ...] = DEVICES) -> Sample:
    """Sample number ``i``: device ``i % len(devices)``, 1 ms apart, ``seq`` = i."""
    device = devices[i % len(devices)]
    quality = {"sensor2": Quality.FAULT} if i % 10 == 0 else {}
    return Sample(
        device=device,
        kind="testdev",
        ts_ns=base_ns + i * 1_000_000,
        values={"seq": i, "temp_c": 20.0 + i / 100, "on": i % 2 == 0, "mode": f"m{i % 3}"},
        quality=quality,
        tags={"area": "north park"},
    )


def make_delivery(
    outbox_path: Path,
    *,
    mqtt: dict[str, Any] | None = None,
    influx: dict[str, Any] | None = None,
    outbox: dict[str, Any] | None = None,
    extra_sinks: Sequence[Sink] = (),
) -> Delivery:
    sinks = Sinks(
        mqtt=MqttSinkConfig(**{**FAST_RETRY, **mqtt}) if mqtt is not None else None,
        influx=InfluxSinkConfig(**{**FAST_RETRY, "flush_interval_s": 0.1, **influx})
        if influx is not None
        else None,
    )
    ob = OutboxConfig(path=str(outbox_path), **(outbox or {}))
    return Delivery(SITE, sinks, ob, extra_sinks=extra_sinks)


@contextlib.asynccontextmanager
async def running(d: Delivery) -> AsyncIterator[Delivery]:
    """``async with`` the delivery and run its workers; cancel them at the end."""
    async with d:
        task = asyncio.create_task(d.run())
        try:
            yield d
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def wait_until(pred: Callable[[], bool], within_s: float, what: str) -> None:
    deadline = time.monotonic() + within_s
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within_s} s waiting for {what}")
        await asyncio.sleep(0.05)


def dedupe_seqs(seqs: list[int]) -> list[int]:
    """First occurrence of each seq, in arrival order (at-least-once may repeat)."""
    seen: set[int] = set()
    out = []
    for s in seqs:
        if s not in seen:
            seen.add(s)
            out.append(s)
    return out
