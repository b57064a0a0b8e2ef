"""Builds the mqtt sink (gateway.sinks.mqtt) from its config."""

from __future__ import annotations

from gateway.plugins.base import SinkContext
from gateway.plugins.mqtt.config import MqttSinkConfig
from gateway.sinks.base import Sink
from gateway.sinks.mqtt import MqttSink


def build(cfg: MqttSinkConfig, ctx: SinkContext) -> Sink:
    return MqttSink(cfg, ctx.site, units=ctx.units)
