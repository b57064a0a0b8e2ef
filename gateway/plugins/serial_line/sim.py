"""The serial-line plugin's simulator for ``gateway-sim``: an RFID reader on a pty.

It replays the scenario's script for the line's device (firmware_sim.rfid).
"""

from __future__ import annotations

from firmware_sim.rfid import RfidReader, RfidScript
from gateway.plugins.base import SimContext, SimPart
from gateway.plugins.serial_line.config import SerialLineSource
from gateway.profiles.schema import SerialLineProfile


async def start(src: SerialLineSource, ctx: SimContext) -> tuple[SimPart, str] | None:
    for dev in ctx.site.devices_of(src.id):
        prof = ctx.site.device_profiles[dev.id]
        if not isinstance(prof, SerialLineProfile):
            continue
        script = ctx.scenario.serial.get(dev.id, RfidScript())
        reader = RfidReader(dev.id, src, prof, script, ctx.clock)
        await reader.start()
        n = len(script.all_taps())
        what = f"{n} taps" + (f" every {script.loop_s:g} s" if script.loop_s else "")
        where = f"{reader.link_path} -> {reader.pty_path}"
        return reader, f"serving {src.id} on {where} reader {dev.id} ({what})"
    return None
