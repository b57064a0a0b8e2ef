"""Builds the influx sink (gateway.sinks.influx) from its config."""

from __future__ import annotations

from gateway.plugins.base import SinkContext
from gateway.plugins.influx.config import InfluxSinkConfig
from gateway.sinks.base import Sink
from gateway.sinks.influx import InfluxSink


def build(cfg: InfluxSinkConfig, ctx: SinkContext) -> Sink:
    return InfluxSink(cfg, ctx.site)
