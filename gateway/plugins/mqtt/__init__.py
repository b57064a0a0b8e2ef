"""The mqtt sink plugin: telemetry and alarms to an MQTT broker (implementation in ``sink``)."""

from __future__ import annotations

from gateway.plugins.base import SinkPlugin
from gateway.plugins.mqtt.config import MqttSinkConfig, MqttTls

PLUGIN = SinkPlugin(
    name="mqtt",
    config=MqttSinkConfig,
    factory="gateway.plugins.mqtt.sink:build",
    lane="gateway.plugins.mqtt.sink:build_lane",
    commands="gateway.plugins.mqtt.commands:listen",
)

__all__ = ["PLUGIN", "MqttSinkConfig", "MqttTls"]
