"""Builds a Modbus source (gateway.sources.modbus) from its config and bound devices."""

from __future__ import annotations

from collections.abc import Sequence

from gateway.config import DeviceConfig
from gateway.plugins.base import BoundDevice, Source, SourceContext
from gateway.plugins.modbus.config import ModbusRtuSource, ModbusTcpSource
from gateway.profiles.schema import ModbusProfile
from gateway.sources.device_poll import ModbusDevice
from gateway.sources.modbus import ModbusSource
from gateway.sources.planner import plan_profile


def build(
    cfg: ModbusTcpSource | ModbusRtuSource, devices: Sequence[BoundDevice], ctx: SourceContext
) -> Source:
    tags = dict(ctx.site_tags)
    mdevs = [ModbusDevice(d.config, d.profile, tags) for d in devices]
    return ModbusSource(cfg, mdevs, ctx.emit, ctx.clock)


def describe(device: DeviceConfig, profile: ModbusProfile) -> str:
    reqs = plan_profile(profile, device.max_gap)
    return f"{len(profile.points)} points in {len(reqs)} read(s)"
