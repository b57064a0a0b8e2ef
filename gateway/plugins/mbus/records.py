"""EN 13757-3 application layer: the variable data header and its data records. Pure.

Owns the VIF tables (primary, 0xFB and 0xFD extensions) and the DIF/DIFE
data codings, decoding a RSP_UD's data into a ``Telegram`` of ``Record``s
whose values are in canonical units (energy Wh, volume m3, power W, flow
m3/h, temperatures degC, temperature difference K, pressure bar, durations
s), and encoding records back for the simulator.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import NamedTuple

from gateway.errors import CodecError
from gateway.plugins.mbus.codec import (
    BCD_CODINGS,
    CI_RSP_VARIABLE,
    DATA_LEN,
    DIF_IDLE_FILLER,
    DIF_MORE_RECORDS,
    FUNCTIONS,
    decode_bcd,
    decode_manufacturer,
    decode_type_f,
    decode_type_g,
    encode_bcd,
    encode_manufacturer,
)

CI_RSP_NO_HEADER = 0x78
MAX_DIFE = 10
MAX_VIFE = 10
Value = int | float | str


class VifInfo(NamedTuple):
    """What a VIF means: quantity name, canonical unit, value = raw x factor x 10^exp."""

    quantity: str
    unit: str
    exp: int = 0
    factor: int = 1


_DURATION = ((1, "s"), (60, "s"), (3600, "s"), (86400, "s"))


def _primary(vif: int) -> VifInfo:
    v = vif & 0x7F
    n = v & 0x07
    nn = v & 0x03
    match v >> 3:
        case 0x0:
            return VifInfo("energy", "Wh", n - 3)
        case 0x1:
            return VifInfo("energy_j", "J", n)
        case 0x2:
            return VifInfo("volume", "m3", n - 6)
        case 0x3:
            return VifInfo("mass", "kg", n - 3)
        case 0x4:
            name = "on_time" if v < 0x24 else "operating_time"
            return VifInfo(name, "s", 0, _DURATION[nn][0])
        case 0x5:
            return VifInfo("power", "W", n - 3)
        case 0x6:
            return VifInfo("power_j", "J/h", n)
        case 0x7:
            return VifInfo("flow", "m3/h", n - 6)
        case 0x8:
            return VifInfo("flow_per_min", "m3/min", n - 7)
        case 0x9:
            return VifInfo("flow_per_s", "m3/s", n - 9)
        case 0xA:
            return VifInfo("mass_flow", "kg/h", n - 3)
        case 0xB:
            name = "supply_temperature" if v < 0x5C else "return_temperature"
            return VifInfo(name, "degC", nn - 3)
        case 0xC:
            name = "temperature_difference" if v < 0x64 else "external_temperature"
            return VifInfo(name, "K" if v < 0x64 else "degC", nn - 3)
        case 0xD:
            if v < 0x6C:
                return VifInfo("pressure", "bar", nn - 3)
            return {0x6C: VifInfo("date", ""), 0x6D: VifInfo("datetime", "")}.get(
                v, VifInfo("hca_units" if v == 0x6E else f"vif_{v:02x}", "")
            )
        case 0xE:
            name = "averaging_duration" if v < 0x74 else "actuality_duration"
            return VifInfo(name, "s", 0, _DURATION[nn][0])
    special = {0x78: "fabrication_no", 0x79: "enhanced_id", 0x7A: "bus_address",
               0x7C: "plain_text", 0x7E: "any", 0x7F: "manufacturer_specific"}  # fmt: skip
    return VifInfo(special.get(v, f"vif_{v:02x}"), "")


# 0xFB extension: the large units (MWh, GJ, 100 m3, t, MW, GJ/h) as canonical unit and exponent.
_FB = {0x00: ("energy", "Wh", 5), 0x08: ("energy_j", "J", 8), 0x10: ("volume", "m3", 2),
       0x18: ("mass", "kg", 5), 0x28: ("power", "W", 5), 0x30: ("power_j", "J/h", 8)}  # fmt: skip


def _ext_fb(code: int) -> VifInfo:
    c = code & 0x7F
    n = c & 0x01
    hit = _FB.get(c & 0x7E)
    if hit is None:
        return VifInfo(f"vif_fb_{c:02x}", "")
    return VifInfo(hit[0], hit[1], hit[2] + n)


def _ext_fd(code: int) -> VifInfo:
    c = code & 0x7F
    if c == 0x17:
        return VifInfo("error_flags", "")
    if c in (0x0E, 0x0F):
        return VifInfo("firmware_version" if c == 0x0E else "software_version", "")
    if 0x40 <= c <= 0x4F:
        return VifInfo("voltage", "V", (c & 0x0F) - 9)
    if 0x50 <= c <= 0x5F:
        return VifInfo("current", "A", (c & 0x0F) - 12)
    return VifInfo(f"vif_fd_{c:02x}", "")


def vif_info(vif: bytes) -> VifInfo:
    """The meaning of a VIF (with, for 0xFB/0xFD, its first VIFE)."""
    if vif[0] in (0xFB, 0xFD):
        if len(vif) < 2:
            raise CodecError(f"extension VIF {vif[0]:02x} without its code")
        return _ext_fb(vif[1]) if vif[0] == 0xFB else _ext_fd(vif[1])
    return _primary(vif[0])


# Quantities whose integer data is a bit field or an identifier, never a signed number.
_UNSIGNED = frozenset({"error_flags", "fabrication_no", "enhanced_id", "bus_address"})


@dataclass(frozen=True, slots=True)
class Record:
    """One decoded data record; ``value`` in ``unit`` (canonical, see module docstring)."""

    index: int
    quantity: str
    unit: str
    value: Value
    storage: int = 0
    tariff: int = 0
    subunit: int = 0
    function: str = "instantaneous"
    dib: bytes = b""
    vib: bytes = b""


@dataclass(frozen=True, slots=True)
class Telegram:
    """A RSP_UD's application data: header (CI 0x72) and records."""

    ident: int | None
    manufacturer: str
    version: int
    medium: int
    access_no: int
    status: int
    records: tuple[Record, ...]
    more_follow: bool = False
    manufacturer_data: bytes = field(default=b"", repr=False)


def _scaled(raw: int | float, info: VifInfo) -> int | float:
    if isinstance(raw, float):
        return raw * info.factor * 10.0**info.exp
    if info.exp >= 0:
        return int(raw * info.factor * 10**info.exp)
    # Round to the decimals the exponent gives: 12565 x 10^-3 is 12.565, not 12.565000000000001.
    return round(raw * info.factor * 10.0**info.exp, -info.exp)


def _decode_value(coding: int, raw: bytes, info: VifInfo) -> Value:
    if info.quantity == "date" and coding == 0x2:
        return decode_type_g(raw)
    if info.quantity == "datetime" and coding == 0x4:
        return decode_type_f(raw)
    if coding in BCD_CODINGS:
        return _scaled(decode_bcd(raw), info)
    if coding == 0x5:
        f = float(struct.unpack("<f", raw)[0])
        if f != f or f in (float("inf"), float("-inf")):
            raise CodecError(f"real value {raw.hex()} is not finite")
        return _scaled(f, info)
    signed = info.quantity not in _UNSIGNED
    return _scaled(int.from_bytes(raw, "little", signed=signed), info)


def _variable(data: bytes, pos: int, info: VifInfo) -> tuple[Value, int]:
    lvar = data[pos]
    pos += 1
    if lvar < 0xC0:
        return data[pos : pos + lvar][::-1].decode("latin-1"), pos + lvar
    if lvar <= 0xDF:
        n = lvar & 0x0F
        value = decode_bcd(data[pos : pos + n]) * (-1 if lvar >= 0xD0 else 1)
        return _scaled(value, info), pos + n
    if lvar <= 0xEF:
        n = lvar - 0xE0
        return _scaled(int.from_bytes(data[pos : pos + n], "little"), info), pos + n
    raise CodecError(f"variable-length LVAR 0x{lvar:02x} not supported")


def decode_records(data: bytes, offset: int = 0) -> tuple[list[Record], bool, bytes]:
    """Records from ``data[offset:]``; returns (records, more_follow, manufacturer data)."""
    records: list[Record] = []
    pos = offset
    end = len(data)

    def need(n: int, what: str) -> None:
        if pos + n > end:
            raise CodecError(f"record {len(records)}: telegram ends inside the {what}")

    while pos < end:
        dif = data[pos]
        if dif == DIF_IDLE_FILLER:
            pos += 1
            continue
        if dif & 0x0F == 0x0F:
            # 0x0F / 0x1F: manufacturer data up to the end; 0x1F also "more records follow".
            return records, dif == DIF_MORE_RECORDS, data[pos + 1 :]
        start = pos
        pos += 1
        storage, tariff, subunit = (dif >> 6) & 1, 0, 0
        ext, i = dif & 0x80, 0
        while ext:
            need(1, "DIFE")
            if i >= MAX_DIFE:
                raise CodecError(f"record {len(records)}: more than {MAX_DIFE} DIFEs")
            dife = data[pos]
            pos += 1
            storage |= (dife & 0x0F) << (1 + 4 * i)
            tariff |= ((dife >> 4) & 0x03) << (2 * i)
            subunit |= ((dife >> 6) & 0x01) << i
            ext, i = dife & 0x80, i + 1
        dib = data[start:pos]
        vstart = pos
        need(1, "VIF")
        vif = data[pos]
        pos += 1
        if vif & 0x7F == 0x7C:  # plain-text unit: length and ASCII follow the VIF
            need(1, "plain-text VIF")
            pos += 1 + data[pos]
        ext, i = vif & 0x80, 0
        while ext:
            need(1, "VIFE")
            if i >= MAX_VIFE:
                raise CodecError(f"record {len(records)}: more than {MAX_VIFE} VIFEs")
            ext, i = data[pos] & 0x80, i + 1
            pos += 1
        vib = data[vstart:pos]
        info = vif_info(vib)
        coding = dif & 0x0F
        value: Value
        if coding == 0x0D:
            need(1, "LVAR")
            value, pos = _variable(data, pos, info)
            if pos > end:
                raise CodecError(f"record {len(records)}: telegram ends inside the data")
        else:
            n = DATA_LEN[coding]
            need(n, "data")
            raw = data[pos : pos + n]
            pos += n
            value = _decode_value(coding, raw, info) if n else ""
        function = FUNCTIONS[(dif >> 4) & 0x03]
        records.append(
            Record(len(records), info.quantity, info.unit, value, storage, tariff, subunit,
                   function, dib, vib)
        )
    return records, False, b""


def decode_telegram(ci: int, data: bytes) -> Telegram:
    """The application data of a RSP_UD long frame (CI 0x72 with header, 0x78 without)."""
    if ci == CI_RSP_NO_HEADER:
        records, more, mdata = decode_records(data)
        return Telegram(None, "", 0, 0, 0, 0, tuple(records), more, mdata)
    if ci != CI_RSP_VARIABLE:
        raise CodecError(f"CI 0x{ci:02x} is not a variable data response")
    if len(data) < 12:
        raise CodecError(f"variable data header needs 12 bytes, got {len(data)}")
    ident = decode_bcd(data[0:4])
    man = decode_manufacturer(int.from_bytes(data[4:6], "little"))
    records, more, mdata = decode_records(data, 12)
    return Telegram(ident, man, data[6], data[7], data[8], data[9], tuple(records), more, mdata)


# --------------------------------------------------------------------------- encoding (simulator)


def encode_header(
    ident: int, manufacturer: str, version: int, medium: int, access_no: int, status: int
) -> bytes:
    return (
        encode_bcd(ident, 4)
        + encode_manufacturer(manufacturer)
        + bytes([version, medium, access_no & 0xFF, status])
        + b"\x00\x00"
    )


def encode_record(
    coding: int,
    vib: bytes,
    raw: int | float,
    *,
    storage: int = 0,
    tariff: int = 0,
    function: int = 0,
) -> bytes:
    """One record with data coding ``coding`` (DIF low nibble) and raw (unscaled) value."""
    if not (0 <= storage < 32 and 0 <= tariff < 4):
        raise CodecError("encode_record supports storage < 32 and tariff < 4 (one DIFE)")
    dif = coding | (function << 4) | ((storage & 1) << 6)
    dife = b""
    if storage > 1 or tariff:
        dif |= 0x80
        dife = bytes([(storage >> 1) | (tariff << 4)])
    n = DATA_LEN[coding]
    if coding in BCD_CODINGS:
        body = encode_bcd(int(raw), n)
    elif coding == 0x5:
        body = struct.pack("<f", float(raw))
    else:
        body = int(raw).to_bytes(n, "little", signed=int(raw) < 0)
    return bytes([dif]) + dife + vib + body
