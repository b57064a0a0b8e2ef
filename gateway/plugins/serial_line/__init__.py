"""The serial-line source plugin: one line-oriented ASCII device (gateway.sources.serial_lines).

Its devices are the patrol's checkpoint readers: the patrol reports their
unreadable lines and overruns.
"""

from __future__ import annotations

from collections.abc import Sequence

from gateway.plugins.base import BoundDevice, Source, SourceContext, SourcePlugin
from gateway.plugins.serial_line.config import SerialLineSource


def build(cfg: SerialLineSource, devices: Sequence[BoundDevice], ctx: SourceContext) -> Source:
    from gateway.sources.serial_lines import SerialLineDevice

    (dev,) = devices  # one_device: the loader checked it
    return SerialLineDevice(cfg, dev.config, dev.profile, ctx.emit, ctx.clock, dict(ctx.site_tags))


PLUGIN = SourcePlugin(
    name="serial_line",
    config=SerialLineSource,
    factory=build,
    profile_protocols=frozenset({"serial_line"}),
    one_device=True,
    patrol_reader=True,
)

__all__ = ["PLUGIN", "SerialLineSource"]
