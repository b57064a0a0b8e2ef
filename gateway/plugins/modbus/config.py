"""Config models of the Modbus sources: TCP (``modbus_tcp``) and RTU on a serial line."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from gateway.plugins.base import SourceConfig
from gateway.plugins.serial_port import SerialSettings


class ModbusTcpSource(SourceConfig):
    type: Literal["modbus_tcp"]
    host: str
    port: int = Field(default=502, ge=1, le=65535)


class ModbusRtuSource(SerialSettings):
    type: Literal["modbus_rtu"]
    timeout_s: float = Field(default=0.3, ge=0.05, le=60)
    # A unit that failed this many polls in a row is polled only once per
    # ``dead_unit_backoff_s`` so it cannot eat the line's time.
    dead_after: int = Field(default=3, ge=1)
    dead_unit_backoff_s: float = Field(default=10.0, ge=1, le=3600)
