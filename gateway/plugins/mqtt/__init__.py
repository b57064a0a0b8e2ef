"""The MQTT sink plugin: telemetry and alarms to a broker (gateway.sinks.mqtt)."""

from __future__ import annotations

from gateway.plugins.base import SinkContext, SinkPlugin
from gateway.plugins.mqtt.config import MqttSinkConfig, MqttTls
from gateway.sinks.base import Sink


def build(cfg: MqttSinkConfig, ctx: SinkContext) -> Sink:
    # Imported here so a console-only gateway never loads the network libraries.
    from gateway.sinks.mqtt import MqttSink

    return MqttSink(cfg, ctx.site, units=ctx.units)


PLUGIN = SinkPlugin(name="mqtt", config=MqttSinkConfig, factory=build)

__all__ = ["PLUGIN", "MqttSinkConfig", "MqttTls"]
