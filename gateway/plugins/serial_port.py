"""The settings of a serial port, shared by every source type that owns one."""

from __future__ import annotations

from typing import Literal

from gateway.plugins.base import SourceConfig


class SerialSettings(SourceConfig):
    port: str
    baudrate: Literal[1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200] = 9600
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1
    bytesize: Literal[7, 8] = 8

    @property
    def bits_per_char(self) -> int:
        return 1 + self.bytesize + (0 if self.parity == "N" else 1) + self.stopbits
