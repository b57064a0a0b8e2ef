"""The running gateway: sources, pipeline and outputs wired together in one TaskGroup.

Sources put Samples on one bounded queue; when it is full they wait, so a
slow consumer delays polls (visible as data age and overruns) instead of
silently dropping readings. The pipeline task takes each Sample and hands it
to the outputs in order. ``Gateway.run`` returns when the stop event is set
(SIGINT/SIGTERM) or the duration is over, and closes everything it opened.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TextIO

from gateway.config import ModbusRtuSource, ModbusTcpSource, SerialLineSource, Site
from gateway.model import Clock, Sample, SystemClock
from gateway.profiles.schema import ModbusProfile, SerialLineProfile
from gateway.sources.device_poll import DeviceCounters, ModbusDevice
from gateway.sources.modbus import ModbusSource
from gateway.sources.serial_lines import SerialLineDevice

log = logging.getLogger(__name__)


def sample_line(sample: Sample) -> str:
    """One JSON line per sample for the console sink."""
    d: dict[str, Any] = {
        "device": sample.device,
        "ts": datetime.fromtimestamp(sample.ts_ns / 1e9, UTC).isoformat(timespec="milliseconds"),
        "ts_ns": sample.ts_ns,
        "values": sample.values,
    }
    if sample.quality:
        d["quality"] = {k: str(v) for k, v in sample.quality.items()}
    if sample.error:
        d["error"] = sample.error
    return json.dumps(d, separators=(",", ":"), ensure_ascii=False)


class Gateway:
    """Builds the sources for a site and runs them with the pipeline."""

    def __init__(self, site: Site, clock: Clock | None = None, out: TextIO | None = None) -> None:
        self.site = site
        self.clock: Clock = clock or SystemClock()
        self.out = out or sys.stdout
        cfg = site.config
        self.queue: asyncio.Queue[Sample] = asyncio.Queue(maxsize=cfg.pipeline.queue_size)
        self.sources: list[ModbusSource | SerialLineDevice] = []
        self.samples_out = 0
        site_tags = {"site": cfg.site}
        for src in cfg.sources:
            devs = site.devices_of(src.id)
            if not devs:
                continue
            if isinstance(src, ModbusTcpSource | ModbusRtuSource):
                mdevs = []
                for d in devs:
                    prof = site.device_profiles[d.id]
                    assert isinstance(prof, ModbusProfile)
                    mdevs.append(ModbusDevice(d, prof, site_tags))
                self.sources.append(ModbusSource(src, mdevs, self.queue.put, self.clock))
            else:
                assert isinstance(src, SerialLineSource)
                prof = site.device_profiles[devs[0].id]
                assert isinstance(prof, SerialLineProfile)
                self.sources.append(
                    SerialLineDevice(src, devs[0], prof, self.queue.put, self.clock, site_tags)
                )
        self._console = cfg.sinks.console is not None and cfg.sinks.console.enabled

    def device_counters(self) -> dict[str, DeviceCounters]:
        out: dict[str, DeviceCounters] = {}
        for s in self.sources:
            if isinstance(s, ModbusSource):
                out.update({d.id: d.counters for d in s.devices})
            else:
                out[s.device.id] = s.counters
        return out

    async def _pipeline(self) -> None:
        while True:
            sample = await self.queue.get()
            self.samples_out += 1
            if self._console:
                self.out.write(sample_line(sample) + "\n")
                self.out.flush()

    async def run(self, stop: asyncio.Event, duration: float | None = None) -> None:
        """Run until ``stop`` is set or ``duration`` seconds passed."""
        async with contextlib.AsyncExitStack() as stack:
            for s in self.sources:
                await stack.enter_async_context(s)
            try:
                async with asyncio.TaskGroup() as tg:
                    tasks = [tg.create_task(s.run()) for s in self.sources]
                    tasks.append(tg.create_task(self._pipeline()))
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), timeout=duration)
                    for t in tasks:
                        t.cancel()
            except* asyncio.CancelledError:
                pass


def install_signal_handlers(stop: asyncio.Event) -> Callable[[], None]:
    """SIGINT/SIGTERM set ``stop``; returns a function that removes the handlers."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    def remove() -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)

    return remove


async def run_site(site: Site, duration: float | None = None) -> int:
    stop = asyncio.Event()
    remove = install_signal_handlers(stop)
    try:
        gw = Gateway(site)
        log.info(
            "gateway for site %s: %d sources, %d devices",
            site.config.site,
            len(gw.sources),
            sum(1 for d in site.config.devices if d.enabled),
        )
        await gw.run(stop, duration)
    finally:
        remove()
    return 0
