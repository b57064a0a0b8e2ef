"""Config model of the InfluxDB sink (``sinks.influx``): v2 write API or v1 /write."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from gateway.plugins.base import DeliverySettings


class InfluxSinkConfig(DeliverySettings):
    enabled: bool = True
    # v2: influxdb-client write API (InfluxDB 2.x/3.x, 1.8+ with a v1 token
    # "user:password", VictoriaMetrics). v1: POST /write?db=&rp= for 1.x < 1.8.
    mode: Literal["v2", "v1"] = "v2"
    url: str = "http://localhost:8086"
    token: str | None = None
    org: str | None = None
    bucket: str | None = None
    database: str | None = None
    retention_policy: str | None = None
    username: str | None = None
    password: str | None = None
    gzip: bool = True
    verify_ssl: bool = True
    # v1 only: CREATE DATABASE (idempotent) on every connect, e.g. for the demo.
    create_database: bool = False
    batch_size: int = Field(default=5000, ge=1, le=100_000)
    flush_interval_s: float = Field(default=1.0, ge=0, le=60)

    @model_validator(mode="after")
    def _mode_fields(self) -> InfluxSinkConfig:
        if self.mode == "v2" and not self.bucket:
            raise ValueError("mode v2 needs bucket (and org and token for InfluxDB 2.x)")
        if self.mode == "v1" and not self.database:
            raise ValueError("mode v1 needs database")
        return self
