"""The Modbus source plugin: ``modbus_tcp`` and ``modbus_rtu`` (implementation in ``source``)."""

from __future__ import annotations

from gateway.plugins.base import ProfileKindPlugin, SourcePlugin
from gateway.plugins.modbus.config import ModbusRtuSource, ModbusTcpSource
from gateway.profiles.schema import ModbusProfile

PLUGINS: list[SourcePlugin | ProfileKindPlugin] = [
    ProfileKindPlugin(
        name="modbus", model=ModbusProfile, explain="gateway.plugins.modbus.source:read_plan"
    ),
    *(
        SourcePlugin(
            name=name,
            config=model,
            factory="gateway.plugins.modbus.source:build",
            profile_protocols=frozenset({"modbus"}),
            unit_addressed=True,
            describe_device="gateway.plugins.modbus.source:describe",
        simulator="gateway.plugins.modbus.sim:start",
        )
        for name, model in (("modbus_tcp", ModbusTcpSource), ("modbus_rtu", ModbusRtuSource))
    ),
]

__all__ = ["PLUGINS", "ModbusRtuSource", "ModbusTcpSource"]
