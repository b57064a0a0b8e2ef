"""The influx sink plugin: line protocol to InfluxDB 1.x/2.x/3.x (implementation in ``sink``)."""

from __future__ import annotations

from gateway.plugins.base import SinkPlugin
from gateway.plugins.influx.config import InfluxSinkConfig

PLUGIN = SinkPlugin(
    name="influx", config=InfluxSinkConfig, factory="gateway.plugins.influx.sink:build"
)

__all__ = ["PLUGIN", "InfluxSinkConfig"]
