"""The serial-line source plugin: one line-oriented ASCII device per serial port.

Its devices are the patrol's checkpoint readers: the patrol reports their
unreadable lines and overruns.
"""

from __future__ import annotations

from gateway.plugins.base import ProfileKindPlugin, SourcePlugin
from gateway.plugins.serial_line.config import SerialLineSource
from gateway.profiles.schema import SerialLineProfile

SOURCE = SourcePlugin(
    name="serial_line",
    config=SerialLineSource,
    factory="gateway.plugins.serial_line.source:build",
    profile_protocols=frozenset({"serial_line"}),
    one_device=True,
    patrol_reader=True,
    simulator="gateway.plugins.serial_line.sim:start",
)
PLUGINS = [SOURCE, ProfileKindPlugin(name="serial_line", model=SerialLineProfile)]

__all__ = ["PLUGINS", "SerialLineSource"]
