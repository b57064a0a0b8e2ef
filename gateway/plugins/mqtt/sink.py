"""Builds the mqtt sink (gateway.sinks.mqtt) from its config."""

from __future__ import annotations

from gateway.plugins.base import SinkContext
from gateway.plugins.mqtt.config import MqttSinkConfig
from gateway.sinks.base import Sink
from gateway.sinks.mqtt import MqttSink


def build(cfg: MqttSinkConfig, ctx: SinkContext) -> Sink:
    return MqttSink(cfg, ctx.site, units=ctx.units)


# The alarm lane's sink name (its outbox cursor, connection and stats key).
ALARM_LANE = "mqtt-alarms"


def build_lane(cfg: MqttSinkConfig, ctx: SinkContext) -> Sink | None:
    """Alarms on their own thread, outbox and connection (gateway/alarm_lane.py): never
    behind the telemetry, neither on the event loop nor in a backlog after an outage."""
    if not cfg.alarm_lane:
        return None
    return MqttSink(cfg, ctx.site, name=ALARM_LANE, alarms_only=True)
