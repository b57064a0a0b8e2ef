"""CJ/T 188 wire codec (Chinese household water/heat/gas meters): frames and the 901F data. Pure.

Owns: the frame ``FE.. 68 T A0..A6 C L DATA CS 16`` (T meter type, A0..A6
the 7-byte BCD address low byte first, C control code, L data length, CS the
byte sum from 68 to the end of DATA), splitting a byte stream into frames
(``Cjt188Reader``: wake-up FE bytes are skipped, anything else that forms no
valid frame is dropped and counted as garbage), the read-data request
(C 0x01, DATA = DI SER), and the 901F "current data" answer decoded into
``records.Record``s in canonical units, plus the encoder the simulator uses.

Sources relied on (public; no copy of the standard was available here):
- CJ/T 188-2004 meter types, control codes (01 read, 81 reply, C1 error reply)
  and the 901F field offsets for water/gas and heat meters: the ``cj188.h``
  of github.com/xijunzhou/sdqr_energy_node_class-20180705 (Src/meter/cj188.h).
- Unit codes (05 kWh, 08 MWh, 11 GJ, 17 kW, 2C m3, 35 m3/h, ...) and the
  DI byte order (2004 sends 901F as ``90 1F``, 2018 as ``1F 90``):
  github.com/shiyuecamus/ng-gateway, ng-gateway-southward/cjt188
  (protocol/frame/defs.rs) and its manual (ng-gateway.com/southward/cjt188).
- A heat meter's real 901F exchange (L = 0x2E), the test vector in
  test_cjt188.py: "CJ/T-188 冷热量表协议解析2", cnblogs.com/llguanli/p/8683992.html.
  That meter sends each value's unit byte *before* its four BCD bytes, where
  ng-gateway's decoder takes it after them: vendors differ, so
  ``unit_first`` says which (the source's ``cjt188_unit_first``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from gateway.errors import CodecError
from gateway.plugins.mbus.codec import StreamBuffer, decode_bcd, encode_bcd
from gateway.plugins.mbus.records import Record

START, STOP, WAKE = 0x68, 0x16, 0xFE
C_READ, C_REPLY, C_ERROR = 0x01, 0x81, 0xC1
DIR_REPLY, ERR_FLAG = 0x80, 0x40
DI_CURRENT = 0x901F
HEADER = 11  # 68 T A0..A6 C L
BROADCAST = bytes([0xAA] * 7)
ADDRESS_RE = re.compile(r"^(?:[0-9]{2}|AA){7}$")

# Unit code -> (canonical unit, power of ten from the code's unit to canonical).
UNIT_CODES: dict[int, tuple[str, int]] = {
    0x01: ("J", 0), 0x02: ("Wh", 0), 0x03: ("Wh", 1), 0x04: ("Wh", 2),
    0x05: ("Wh", 3), 0x06: ("Wh", 4), 0x07: ("Wh", 5),
    0x08: ("Wh", 6), 0x09: ("Wh", 7), 0x0A: ("Wh", 8),
    0x0B: ("J", 3), 0x0C: ("J", 4), 0x0D: ("J", 5), 0x0E: ("J", 6), 0x0F: ("J", 7),
    0x10: ("J", 8), 0x11: ("J", 9), 0x12: ("J", 10), 0x13: ("J", 11),
    0x14: ("W", 0), 0x15: ("W", 1), 0x16: ("W", 2), 0x17: ("W", 3), 0x18: ("W", 4),
    0x19: ("W", 5), 0x1A: ("W", 6), 0x1B: ("W", 7), 0x1C: ("W", 8),
    0x29: ("m3", -3), 0x2A: ("m3", -2), 0x2B: ("m3", -1),
    0x2C: ("m3", 0), 0x2D: ("m3", 1), 0x2E: ("m3", 2),
    0x32: ("m3/h", -3), 0x33: ("m3/h", -2), 0x34: ("m3/h", -1),
    0x35: ("m3/h", 0), 0x36: ("m3/h", 1), 0x37: ("m3/h", 2),
}  # fmt: skip
# The codes the simulator writes, first one the value fits in (kWh until 999999.99, then MWh ...),
# as meters change their display unit when a totaliser outgrows it.
SIM_UNITS = {"Wh": (0x05, 0x08, 0x09, 0x0A), "J": (0x11, 0x12, 0x13), "W": (0x17, 0x1A),
             "m3": (0x2C, 0x2D, 0x2E), "m3/h": (0x35, 0x36, 0x37)}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Field:
    """One 901F field: what it is, its bytes (unit byte excluded) and decimals."""

    quantity: str
    size: int
    decimals: int
    storage: int = 0
    unit: str | None = None  # fixed unit; None: a unit code byte comes with the value


# 901F after DI and SER. Heat meters (T 0x20..0x29): 46-byte data field (L = 0x2E).
HEAT_901F = (
    Field("energy", 4, 2, storage=1),  # heat on the settlement date
    Field("energy", 4, 2),  # current heat
    Field("power", 4, 2),
    Field("flow", 4, 4),
    Field("volume", 4, 2),  # accumulated flow
    Field("supply_temperature", 3, 2, unit="degC"),
    Field("return_temperature", 3, 2, unit="degC"),
    Field("operating_time", 3, 0, unit="h"),  # accumulated working hours
    Field("datetime", 7, 0, unit=""),
    Field("status", 2, 0, unit=""),  # ST: valve (D0-D1), battery (D2), vendor bits
)
# Water (0x10..0x19) and gas (0x30..0x39) meters: 22-byte data field (L = 0x16).
FLOW_901F = (
    Field("volume", 4, 2),  # current accumulated flow
    Field("volume", 4, 2, storage=1),  # accumulated flow on the settlement date
    Field("datetime", 7, 0, unit=""),
    Field("status", 2, 0, unit=""),
)


def layout(meter_type: int) -> tuple[Field, ...]:
    """The 901F fields a meter of this type answers with."""
    if 0x20 <= meter_type <= 0x29:
        return HEAT_901F
    if 0x10 <= meter_type <= 0x19 or 0x30 <= meter_type <= 0x39:
        return FLOW_901F
    raise CodecError(f"no 901F layout known for meter type 0x{meter_type:02X}")


def quantities(meter_type: int) -> set[tuple[str, int]]:
    """(quantity, storage) pairs the 901F answer of this meter type carries."""
    return {(f.quantity, f.storage) for f in layout(meter_type)}


def field_bytes(f: Field) -> int:
    return f.size + (1 if f.unit is None else 0)


def data_length(meter_type: int) -> int:
    """L of the 901F answer: DI, SER and the fields."""
    return 3 + sum(field_bytes(f) for f in layout(meter_type))


# --------------------------------------------------------------------------- address


def parse_address(text: str) -> bytes:
    """``"00000040314132"`` as printed on the meter (A6..A0) -> wire order A0..A6."""
    t = text.strip().upper()
    if not ADDRESS_RE.match(t):
        raise ValueError(f"CJ/T 188 address {text!r}: want 14 digits (or AA wildcard pairs)")
    return bytes.fromhex(t)[::-1]


def format_address(wire: bytes) -> str:
    return wire[::-1].hex().upper()


# --------------------------------------------------------------------------- frames


@dataclass(frozen=True, slots=True)
class Cjt188Frame:
    meter_type: int
    address: bytes  # wire order A0..A6
    c: int
    data: bytes

    @property
    def is_reply(self) -> bool:
        return bool(self.c & DIR_REPLY)

    @property
    def is_error(self) -> bool:
        return bool(self.c & ERR_FLAG)


def encode_frame(meter_type: int, address: bytes, c: int, data: bytes, wake: int = 0) -> bytes:
    if len(address) != 7 or len(data) > 255:
        raise CodecError(f"bad CJ/T 188 frame: address {address.hex()}, {len(data)} data bytes")
    body = bytes([START, meter_type]) + address + bytes([c, len(data)]) + data
    return bytes([WAKE] * wake) + body + bytes([sum(body) & 0xFF, STOP])


def read_request(meter_type: int, address: bytes, ser: int, *, wake: int = 2) -> bytes:
    """Read data (C 0x01) for DI 901F, sent high byte first as CJ/T 188-2004 does."""
    return encode_frame(
        meter_type, address, C_READ, DI_CURRENT.to_bytes(2, "big") + bytes([ser]), wake
    )


class Cjt188Reader(StreamBuffer):
    """Splits a byte stream into frames; same counters as the M-Bus ``FrameReader``."""

    def feed(self, data: bytes) -> list[Cjt188Frame]:
        self._buf += data
        out: list[Cjt188Frame] = []
        buf = self._buf
        while buf:
            if buf[0] == WAKE:
                del buf[0]  # wake-up preamble, not noise
                continue
            if buf[0] != START:
                self._drop(1)
                continue
            total = _complete(buf, 0)
            if total is None:
                # Incomplete, or a stray 68 whose bogus L asks for more: a whole valid
                # frame further on means the 68 here was noise.
                if not any(
                    (_complete(buf, i) or 0) > 0 for i in range(1, len(buf)) if buf[i] == START
                ):
                    break
                self._drop(1, frame=True)
                continue
            if total < 0:
                self._drop(1, frame=True)
                continue
            out.append(Cjt188Frame(buf[1], bytes(buf[2:9]), buf[9], bytes(buf[HEADER : total - 2])))
            del buf[:total]
        return out


def _complete(buf: bytearray, at: int) -> int | None:
    """Length of the frame starting at ``at``: None if incomplete, -1 if it does not check out."""
    if len(buf) - at < HEADER:
        return None
    total = HEADER + buf[at + 10] + 2
    if len(buf) - at < total:
        return None
    end = at + total
    if buf[end - 2] != sum(buf[at : end - 2]) & 0xFF or buf[end - 1] != STOP:
        return -1
    return total


# --------------------------------------------------------------------------- 901F data


def _unit(code: int) -> tuple[str, int]:
    return UNIT_CODES.get(code, (f"cjt188_unit_{code:02x}", 0))


def _datetime(raw: bytes) -> str:
    ss, mm, hh, dd, mo, yl, yh = (decode_bcd(bytes([b])) for b in raw)
    try:
        return datetime(yh * 100 + yl, mo, dd, hh, mm, ss).isoformat()
    except ValueError as exc:
        raise CodecError(f"invalid CJ/T 188 date/time {raw.hex(' ')}") from exc


def split_di(data: bytes) -> tuple[int, int]:
    """(DI, SER) of a read answer; either DI byte order is taken (901F is 90 1F or 1F 90)."""
    if len(data) < 3:
        raise CodecError(f"CJ/T 188 answer of {len(data)} bytes has no DI and SER")
    di = int.from_bytes(data[:2], "big")
    if di == 0x1F90:
        di = DI_CURRENT
    return di, data[2]


def decode_901f(meter_type: int, data: bytes, *, unit_first: bool = False) -> list[Record]:
    """The records of a 901F answer's data field (DI, SER, fields), values in canonical units."""
    fields = layout(meter_type)
    if len(data) != data_length(meter_type):
        raise CodecError(
            f"901F answer of meter type 0x{meter_type:02X} has {len(data)} data bytes,"
            f" expected {data_length(meter_type)}"
        )
    pos, out = 3, []
    for i, f in enumerate(fields):
        raw = data[pos : pos + field_bytes(f)]
        pos += len(raw)
        value: int | float | str
        if f.unit is None:
            code, digits = (raw[0], raw[1:]) if unit_first else (raw[-1], raw[:-1])
            unit, exp = _unit(code)
            value = round(decode_bcd(digits) * 10.0 ** (exp - f.decimals), 9)
        elif f.quantity == "datetime":
            unit, value = f.unit, _datetime(raw)
        elif f.quantity == "status":
            unit, value = f.unit, int.from_bytes(raw, "little")
        else:
            unit = f.unit
            value = (
                decode_bcd(raw) if f.decimals == 0 else round(decode_bcd(raw) / 10**f.decimals, 9)
            )
        out.append(Record(i, f.quantity, unit, value, storage=f.storage))
    return out


def encode_901f(
    meter_type: int, values: dict[tuple[str, int], int | float | str], ser: int, *,
    unit_first: bool = False,
) -> bytes:  # fmt: skip
    """A 901F answer's data field from canonical values (missing ones are zero): the simulator's."""
    out = bytearray(DI_CURRENT.to_bytes(2, "big") + bytes([ser]))
    for f in layout(meter_type):
        v = values.get((f.quantity, f.storage), 0)
        if f.quantity == "datetime":
            t = datetime.fromisoformat(str(v)) if v else datetime(2000, 1, 1)
            parts = (t.second, t.minute, t.hour, t.day, t.month, t.year % 100, t.year // 100)
            out += b"".join(encode_bcd(p, 1) for p in parts)
        elif f.quantity == "status":
            out += int(v).to_bytes(2, "little")
        elif f.unit is None:
            canonical = {"energy": "Wh", "power": "W", "flow": "m3/h", "volume": "m3"}[f.quantity]
            code, digits = _fitting(SIM_UNITS[canonical], float(v), f)
            out += bytes([code]) + digits if unit_first else digits + bytes([code])
        else:
            out += encode_bcd(round(float(v) * 10**f.decimals), f.size)
    return bytes(out)


def _fitting(codes: tuple[int, ...], value: float, f: Field) -> tuple[int, bytes]:
    """The first unit code whose digits hold ``value`` (canonical), and those digits."""
    for code in codes:
        raw = round(value / 10.0 ** (UNIT_CODES[code][1] - f.decimals))
        if abs(raw) < 10 ** (2 * f.size):
            return code, encode_bcd(raw, f.size)
    raise CodecError(f"{f.quantity} {value} does not fit in {2 * f.size} BCD digits")
