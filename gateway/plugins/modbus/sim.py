"""The Modbus plugin's simulator for ``gateway-sim``: a TCP endpoint or an RTU line on a pty.

Every enabled device of the source becomes a simulated unit (firmware_sim's
device models, with the scenario's point behaviours and fault); an RTU line
delays its answers by their time on the wire when the run asks for it.
"""

from __future__ import annotations

import random

from firmware_sim.faults import FaultPlan
from firmware_sim.modbus_devices import DeviceModel, SimulatedUnit, effective_behaviours
from firmware_sim.rtu_server import RtuLine
from firmware_sim.tcp_server import TcpEndpoint
from gateway.plugins.base import SimContext, SimPart
from gateway.plugins.modbus.config import ModbusRtuSource, ModbusTcpSource
from gateway.profiles.schema import ModbusProfile


def units(source_id: str, ctx: SimContext) -> list[SimulatedUnit]:
    out: list[SimulatedUnit] = []
    for dev in ctx.site.devices_of(source_id):
        prof = ctx.site.device_profiles[dev.id]
        if not isinstance(prof, ModbusProfile):
            continue
        plan = ctx.scenario.plan(dev.id)
        model = DeviceModel(
            dev.id,
            prof,
            effective_behaviours(prof, dev.sim, plan.points),
            ctx.clock,
            random.Random(f"{ctx.seed}:{dev.id}"),
        )
        out.append(SimulatedUnit(dev.unit, model, FaultPlan(plan.fault, ctx.clock)))
    return out


async def start(
    src: ModbusTcpSource | ModbusRtuSource, ctx: SimContext
) -> tuple[SimPart, str] | None:
    sim_units = units(src.id, ctx)
    if not sim_units:
        return None
    ids = ",".join(str(u.unit) for u in sorted(sim_units, key=lambda u: u.unit))
    if isinstance(src, ModbusTcpSource):
        tcp = TcpEndpoint(src.host, src.port, sim_units)
        await tcp.start()
        return tcp, f"serving {src.id} on tcp {src.host}:{tcp.port} units {ids}"
    rtu = RtuLine(src, sim_units, wire_time=ctx.wire_time)
    await rtu.start()
    wt = f", wire time at {src.baudrate} baud" if ctx.wire_time else ""
    return rtu, f"serving {src.id} on {rtu.link_path} -> {rtu.pty_path} units {ids}{wt}"
