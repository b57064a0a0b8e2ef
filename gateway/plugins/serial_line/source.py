"""Builds a serial-line reader (gateway.sources.serial_lines) from its config and device."""

from __future__ import annotations

from collections.abc import Sequence

from gateway.plugins.base import BoundDevice, Source, SourceContext
from gateway.plugins.serial_line.config import SerialLineSource
from gateway.sources.serial_lines import SerialLineDevice


def build(cfg: SerialLineSource, devices: Sequence[BoundDevice], ctx: SourceContext) -> Source:
    (dev,) = devices  # one_device: the site loader refuses a second one
    return SerialLineDevice(cfg, dev.config, dev.profile, ctx.emit, ctx.clock, dict(ctx.site_tags))
