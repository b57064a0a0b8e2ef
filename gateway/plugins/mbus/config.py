"""The ``mbus`` source's site configuration (one M-Bus line: a serial port or a TCP converter).

Defaults follow real meter buses: 2400 baud 8E1 and timeouts long enough for
slow meters (EN 13757-2 allows a slave 330 bit times + 50 ms before it
answers, and a full long frame takes over a second at 2400 baud). This
module must not import ``gateway.config`` (which imports it for the union).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from gateway.plugins.base import SourceConfig
from gateway.plugins.mbus.codec import SecondaryAddress

ID = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=64)]


class MBusSourceConfig(SourceConfig):
    type: Literal["mbus"]
    id: ID
    # Exactly one transport: a serial port, or a TCP transparent converter (host, tcp_port).
    port: str | None = None
    host: str | None = None
    tcp_port: int | None = Field(default=None, ge=1, le=65535)
    baudrate: Literal[300, 600, 1200, 2400, 4800, 9600, 19200, 38400] = 2400
    parity: Literal["N", "E", "O"] = "E"
    stopbits: Literal[1, 2] = 1
    # Wait this long for a frame to begin; once it has, the frame gets its wire time on top.
    timeout_s: float = Field(default=0.5, ge=0.1, le=10)
    retries: int = Field(default=1, ge=0, le=5)
    # SND_NKE before each read restarts the meter's telegram sequence (primary addressing).
    reset_before_read: bool = True
    # Bound on the telegrams of one multi-telegram read (DIF 0x1F "more records follow").
    max_telegrams: int = Field(default=8, ge=1, le=64)
    reconnect_min_s: float = Field(default=1.0, ge=0.05, le=60)
    reconnect_max_s: float = Field(default=60.0, ge=0.1, le=3600)
    # A meter that failed this many reads in a row is only retried every
    # dead_meter_backoff_s, so it cannot eat the shared line's time.
    dead_after: int = Field(default=2, ge=1, le=100)
    dead_meter_backoff_s: float = Field(default=60.0, ge=1, le=3600)
    # Devices read by secondary address: device id -> "12345678" or "12345678-MAN-VV-MM".
    secondary: dict[str, str] = Field(default_factory=dict)

    @field_validator("secondary")
    @classmethod
    def _addresses(cls, v: dict[str, str]) -> dict[str, str]:
        for addr in v.values():
            SecondaryAddress.parse(addr)
        return v

    @model_validator(mode="after")
    def _transport(self) -> MBusSourceConfig:
        serial, tcp = self.port is not None, self.host is not None or self.tcp_port is not None
        if serial == tcp:
            raise ValueError("give either 'port' (serial) or 'host' and 'tcp_port' (TCP converter)")
        if tcp and (self.host is None or self.tcp_port is None):
            raise ValueError("a TCP converter needs both 'host' and 'tcp_port'")
        if self.reconnect_min_s > self.reconnect_max_s:
            raise ValueError("reconnect_min_s must not exceed reconnect_max_s")
        return self

    def addresses_by_unit(self, device_id: str) -> bool:
        return device_id not in self.secondary  # a secondary address leaves unit unused

    def check_devices(self, device_ids: set[str]) -> list[str]:
        """Problems with the devices this source names (those must be on this source)."""
        return [
            f"source {self.id!r}: secondary: device {dev!r} is not a device of this source"
            for dev in self.secondary
            if dev not in device_ids
        ]

    @property
    def bits_per_char(self) -> int:
        return 1 + 8 + (0 if self.parity == "N" else 1) + self.stopbits

    def wire_time_s(self, nbytes: int) -> float:
        return nbytes * self.bits_per_char / self.baudrate

    def address_of(self, device_id: str) -> SecondaryAddress | None:
        text = self.secondary.get(device_id)
        return None if text is None else SecondaryAddress.parse(text)
