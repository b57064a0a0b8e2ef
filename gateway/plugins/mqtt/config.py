"""Config model of the MQTT sink (``sinks.mqtt``): broker, topics, TLS, QoS, alarm lane."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from gateway.plugins.base import DeliverySettings, Strict


class MqttTls(Strict):
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    # Skip the server host name check (the certificate chain is still verified).
    insecure: bool = False

    @model_validator(mode="after")
    def _pair(self) -> MqttTls:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together (client certificate)")
        return self


class MqttSinkConfig(DeliverySettings):
    enabled: bool = True
    host: str = "localhost"
    port: int = Field(default=1883, ge=1, le=65535)
    # Topics: <prefix>/<site>/... (see docs/delivery.md); no wildcards or empty levels.
    prefix: str = Field(default="fsg", pattern=r"^[^+#/]+(/[^+#/]+)*$")
    client_id: str | None = None  # default: fsg-<site>
    username: str | None = None
    password: str | None = None
    protocol: Literal["3.1.1", "5"] = "3.1.1"
    tls: MqttTls | None = None
    keepalive: int = Field(default=30, ge=5, le=3600)
    # QoS 0 is not offered: the outbox cursor only advances on a PUBACK.
    qos: Literal[1, 2] = 1
    # At least one batch in flight: the worker waits for every PUBACK of a batch
    # (a small window caps MQTT throughput below what the CPU allows: docs/bench.md).
    max_inflight: int = Field(default=1000, ge=1, le=65535)
    # Alarm transitions on their own thread, outbox file and connection (client
    # id "<id>-alarms", gateway/alarm_lane.py): never queued behind telemetry.
    alarm_lane: bool = True
