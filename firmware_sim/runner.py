"""The whole simulated site for one run: every enabled device of every source, together.

``Simulator`` builds, from a loaded site and a resolved scenario, one
``TcpEndpoint`` per ``modbus_tcp`` source, one ``RtuLine`` per ``modbus_rtu``
source and one ``RfidReader`` per ``serial_line`` source, all reading one
injected clock. ``start`` returns one human-readable line per source saying
where it serves; ``aclose`` stops everything and removes the pty symlinks.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from firmware_sim.clock import Clock, SimClock
from firmware_sim.faults import FaultPlan
from firmware_sim.modbus_devices import DeviceModel, SimulatedUnit, effective_behaviours
from firmware_sim.rfid import RfidReader, RfidScript
from firmware_sim.rtu_server import RtuLine
from firmware_sim.scenarios import ResolvedScenario
from firmware_sim.tcp_server import TcpEndpoint
from gateway.config import ModbusRtuSource, ModbusTcpSource, SerialLineSource, Site

# plugin wiring: replaced by the registry (plugin-core)
from gateway.plugins.mbus.config import MBusSourceConfig
from gateway.plugins.mbus.sim import MBusLineSim
from gateway.profiles.schema import ModbusProfile, SerialLineProfile

# plugin wiring: replaced by the registry (plugin-core)
Part = TcpEndpoint | RtuLine | RfidReader | MBusLineSim


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
        self.wire_time = site.config.simulation.wire_time if wt is None else wt
        self.parts: list[Part] = []

    def _units(self, source_id: str) -> list[SimulatedUnit]:
        units = []
        for dev in self.site.devices_of(source_id):
            prof = self.site.device_profiles[dev.id]
            if not isinstance(prof, ModbusProfile):
                continue
            plan = self.scenario.plan(dev.id)
            model = DeviceModel(
                dev.id,
                prof,
                effective_behaviours(prof, dev.sim, plan.points),
                self.clock,
                random.Random(f"{self.options.seed}:{dev.id}"),
            )
            units.append(SimulatedUnit(dev.unit, model, FaultPlan(plan.fault, self.clock)))
        return units

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

    async def _start_source(
        self, src: ModbusTcpSource | ModbusRtuSource | SerialLineSource | MBusSourceConfig
    ) -> str | None:
        # plugin wiring: replaced by the registry (plugin-core)
        if isinstance(src, MBusSourceConfig):
            devs = self.site.devices_of(src.id)
            if src.port is None or not devs:
                return None
            line = MBusLineSim.for_site(
                src, devs, self.site.device_profiles, wire_time=self.wire_time
            )
            await line.start()
            self.parts.append(line)
            return f"serving {src.id} on {line.link_path} -> {line.pty.pty_path} (M-Bus)"
        if isinstance(src, SerialLineSource):
            return await self._start_serial(src)
        units = self._units(src.id)
        if not units:
            return None
        ids = ",".join(str(u.unit) for u in sorted(units, key=lambda u: u.unit))
        if isinstance(src, ModbusTcpSource):
            tcp = TcpEndpoint(src.host, src.port, units)
            await tcp.start()
            self.parts.append(tcp)
            return f"serving {src.id} on tcp {src.host}:{tcp.port} units {ids}"
        rtu = RtuLine(src, units, wire_time=self.wire_time)
        await rtu.start()
        self.parts.append(rtu)
        wt = f", wire time at {src.baudrate} baud" if self.wire_time else ""
        return f"serving {src.id} on {rtu.link_path} -> {rtu.pty_path} units {ids}{wt}"

    async def _start_serial(self, src: SerialLineSource) -> str | None:
        for dev in self.site.devices_of(src.id):
            prof = self.site.device_profiles[dev.id]
            if not isinstance(prof, SerialLineProfile):
                continue
            script = self.scenario.serial.get(dev.id, RfidScript())
            reader = RfidReader(dev.id, src, prof, script, self.clock)
            await reader.start()
            self.parts.append(reader)
            n = len(script.all_taps())
            what = f"{n} taps" + (f" every {script.loop_s:g} s" if script.loop_s else "")
            where = f"{reader.link_path} -> {reader.pty_path}"
            return f"serving {src.id} on {where} reader {dev.id} ({what})"
        return None

    async def aclose(self) -> None:
        parts, self.parts = self.parts, []
        for part in reversed(parts):
            await part.aclose()
