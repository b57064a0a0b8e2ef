"""The whole simulated site for one run: every enabled device of every source, together.

``Simulator`` starts, from a loaded site and a resolved scenario, what each
source's plugin registered as its ``simulator`` (Modbus: a ``TcpEndpoint`` or
an ``RtuLine``; serial line: an ``RfidReader``), all reading one injected clock.
``start`` returns one human-readable line per source saying where it serves;
``aclose`` stops everything and removes the pty symlinks.
"""

from __future__ import annotations

from dataclasses import dataclass

from firmware_sim.clock import Clock, SimClock
from firmware_sim.scenarios import ResolvedScenario
from firmware_sim.schema import simulation_of
from gateway.config import Site, SourceConfig
from gateway.plugins import registry
from gateway.plugins.base import SimContext, SimPart

Part = SimPart


@dataclass
class Options:
    speed: float = 1.0
    wire_time: bool | None = None  # None: as the site's simulation.wire_time says
    seed: int = 0


class Simulator:
    def __init__(
        self,
        site: Site,
        scenario: ResolvedScenario,
        options: Options | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.site = site
        self.scenario = scenario
        self.options = options or Options()
        self.clock = clock or SimClock(self.options.speed)
        wt = self.options.wire_time
        self.wire_time = simulation_of(site).wire_time if wt is None else wt
        self.parts: list[Part] = []

    async def start(self) -> list[str]:
        """Start every source; returns one 'serving ...' line per source."""
        lines: list[str] = []
        try:
            for src in self.site.config.sources:
                line = await self._start_source(src)
                if line:
                    lines.append(line)
        except BaseException:
            await self.aclose()
            raise
        return lines

    async def _start_source(self, src: SourceConfig) -> str | None:
        plugin = registry().source(src.type)
        if plugin.simulator is None:
            return f"no simulator for {src.id} (type {src.type})"
        seed = self.options.seed
        ctx = SimContext(self.site, self.scenario, self.clock, self.wire_time, seed)
        started = await plugin.start_sim(src, ctx)
        if started is None:
            return None
        part, line = started
        self.parts.append(part)
        return line

    async def aclose(self) -> None:
        parts, self.parts = self.parts, []
        for part in reversed(parts):
            await part.aclose()
