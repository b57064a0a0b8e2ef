"""The Modbus source plugin: ``modbus_tcp`` and ``modbus_rtu`` (gateway.sources.modbus)."""

from __future__ import annotations

from collections.abc import Sequence

from gateway.plugins.base import BoundDevice, Source, SourceContext, SourcePlugin
from gateway.plugins.modbus.config import ModbusRtuSource, ModbusTcpSource


def build(
    cfg: ModbusTcpSource | ModbusRtuSource, devices: Sequence[BoundDevice], ctx: SourceContext
) -> Source:
    # Imported here: validating a site must not load pymodbus.
    from gateway.sources.device_poll import ModbusDevice
    from gateway.sources.modbus import ModbusSource

    tags = dict(ctx.site_tags)
    mdevs = [ModbusDevice(d.config, d.profile, tags) for d in devices]
    return ModbusSource(cfg, mdevs, ctx.emit, ctx.clock)


PLUGINS = [
    SourcePlugin(
        name=name,
        config=model,
        factory=build,
        profile_protocols=frozenset({"modbus"}),
        unit_addressed=True,
    )
    for name, model in (("modbus_tcp", ModbusTcpSource), ("modbus_rtu", ModbusRtuSource))
]

__all__ = ["PLUGINS", "ModbusRtuSource", "ModbusTcpSource"]
