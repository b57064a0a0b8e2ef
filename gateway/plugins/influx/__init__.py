"""The InfluxDB sink plugin: line protocol to InfluxDB 1.x/2.x/3.x (gateway.sinks.influx)."""

from __future__ import annotations

from gateway.plugins.base import SinkContext, SinkPlugin
from gateway.plugins.influx.config import InfluxSinkConfig
from gateway.sinks.base import Sink


def build(cfg: InfluxSinkConfig, ctx: SinkContext) -> Sink:
    from gateway.sinks.influx import InfluxSink

    return InfluxSink(cfg, ctx.site)


PLUGIN = SinkPlugin(name="influx", config=InfluxSinkConfig, factory=build)

__all__ = ["PLUGIN", "InfluxSinkConfig"]
