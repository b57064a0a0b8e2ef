"""The ``mbus`` source's site configuration (one M-Bus line: a serial port or a TCP converter).

Defaults follow real meter buses: 2400 baud 8E1 and timeouts long enough for
slow meters (EN 13757-2 allows a slave 330 bit times + 50 ms before it
answers, and a full long frame takes over a second at 2400 baud). This
module must not import ``gateway.config`` (which imports it for the union).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from gateway.errors import CodecError
from gateway.plugins.base import SourceConfig
from gateway.plugins.mbus import cjt188
from gateway.plugins.mbus.codec import SecondaryAddress
from gateway.plugins.mbus.profile import MBusProfile

ID = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=64)]


class MBusSourceConfig(SourceConfig):
    type: Literal["mbus"]
    id: ID
    # The link layer on the wire: EN 13757-2/-3, or CJ/T 188 (gateway.plugins.mbus.cjt188).
    protocol: Literal["en13757", "cjt188"] = "en13757"
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
    # CJ/T 188: device id -> the meter's 14-digit address as printed on it (A6..A0); a
    # device not listed is addressed by its unit, zero-padded to 14 digits.
    addresses: dict[str, str] = Field(default_factory=dict)
    # CJ/T 188: FE wake-up bytes before each request; whether a value's unit code comes
    # before its BCD digits (some vendors) instead of after them.
    cjt188_wakeup: int = Field(default=2, ge=0, le=8)
    cjt188_unit_first: bool = False

    @field_validator("secondary", "addresses")
    @classmethod
    def _addresses(cls, v: dict[str, str], info: ValidationInfo) -> dict[str, str]:
        parse = SecondaryAddress.parse if info.field_name == "secondary" else cjt188.parse_address
        for addr in v.values():
            parse(addr)
        return v

    @model_validator(mode="after")
    def _transport(self) -> MBusSourceConfig:
        serial, tcp = self.port is not None, self.host is not None or self.tcp_port is not None
        if serial == tcp:
            raise ValueError("give either 'port' (serial) or 'host' and 'tcp_port' (TCP converter)")
        if tcp and (self.host is None or self.tcp_port is None):
            raise ValueError("a TCP converter needs both 'host' and 'tcp_port'")
        if self.protocol == "cjt188" and self.secondary:
            raise ValueError("'secondary' is EN 13757 addressing; CJ/T 188 meters take 'addresses'")
        if self.protocol == "en13757" and self.addresses:
            raise ValueError("'addresses' are CJ/T 188 addresses; set protocol: cjt188")
        return self

    def addresses_by_unit(self, device_id: str) -> bool:
        # A secondary or CJ/T 188 address leaves unit unused.
        return device_id not in self.secondary and device_id not in self.addresses

    def check_profile(self, device_id: str, profile: object) -> list[str]:
        """A CJ/T 188 source needs profiles made for it (meter_type, 901F quantities), and back."""
        if not isinstance(profile, MBusProfile):
            return []
        where = f"device {device_id!r}: profile {profile.name!r}"
        if self.protocol == "en13757":
            if profile.meter_type is None:
                return []
            return [f"{where} is for CJ/T 188 (meter_type set); source {self.id!r} is en13757"]
        if profile.meter_type is None:
            return [f"{where} has no meter_type, which CJ/T 188 source {self.id!r} needs"]
        try:
            carried = cjt188.quantities(profile.meter_type)
        except CodecError as exc:
            return [f"{where}: {exc}"]
        count = len(cjt188.layout(profile.meter_type))
        problems = []
        for p in profile.points:
            sel = p.record
            if sel is not None and (sel.quantity, sel.storage) not in carried:
                problems.append(
                    f"{where}: point {p.name!r}: CJ/T 188 901F carries no {sel.quantity}"
                    f" at storage {sel.storage} (it has: "
                    + ", ".join(f"{q}/{s}" for q, s in sorted(carried)) + ")"
                )
            elif p.index is not None and p.index >= count:
                problems.append(f"{where}: point {p.name!r}: 901F has {count} records only")
        return problems

    def check_devices(self, device_ids: set[str]) -> list[str]:
        """Problems with the devices this source names (those must be on this source)."""
        return [
            f"source {self.id!r}: {key}: device {dev!r} is not a device of this source"
            for key, named in (("secondary", self.secondary), ("addresses", self.addresses))
            for dev in named
            if dev not in device_ids
        ]

    def cjt188_address(self, device_id: str, unit: int) -> bytes:
        """The device's CJ/T 188 address in wire order."""
        return cjt188.parse_address(self.addresses.get(device_id, f"{unit:014d}"))

    @property
    def bits_per_char(self) -> int:
        return 1 + 8 + (0 if self.parity == "N" else 1) + self.stopbits

    def wire_time_s(self, nbytes: int) -> float:
        return nbytes * self.bits_per_char / self.baudrate

    def address_of(self, device_id: str) -> SecondaryAddress | None:
        text = self.secondary.get(device_id)
        return None if text is None else SecondaryAddress.parse(text)
