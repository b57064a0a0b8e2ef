"""Register words to values and back: pure functions, no I/O.

Modbus registers are 16-bit words. A multi-word value's byte order is given
per point as one of ABCD, CDAB, BADC, DCBA (written for a 32-bit value):

- the word order is reversed for CDAB and DCBA (least significant word first),
- the two bytes inside each word are swapped for BADC and DCBA.

The same two rules extend to 64-bit values and to strings. Engineering value
= raw x scale + offset for numeric types, rounded to the point's ``rounding``
(the decimals scale and offset imply, or the profile's ``decimals``); bools,
bits and strings are not scaled.
``encode`` is the exact inverse, used by the simulators so that a profile is
proven by simulating it.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence

from gateway.errors import CodecError
from gateway.profiles.schema import WORDS, DataType, ModbusPoint, Order

Value = float | int | bool | str

_STRUCT: dict[DataType, str] = {
    DataType.INT16: ">h",
    DataType.UINT16: ">H",
    DataType.INT32: ">i",
    DataType.UINT32: ">I",
    DataType.INT64: ">q",
    DataType.UINT64: ">Q",
    DataType.FLOAT32: ">f",
    DataType.FLOAT64: ">d",
}
_FLOATS = (DataType.FLOAT32, DataType.FLOAT64)
_STRUCTS = {t: struct.Struct(f) for t, f in _STRUCT.items()}


def words_to_bytes(words: Sequence[int], order: Order) -> bytes:
    """Reorder register words into big-endian value bytes."""
    seq = list(reversed(words)) if order in (Order.CDAB, Order.DCBA) else list(words)
    swap = order in (Order.BADC, Order.DCBA)
    out = bytearray()
    for w in seq:
        if not 0 <= w <= 0xFFFF:
            raise CodecError(f"register word {w} is not 16-bit")
        hi, lo = w >> 8, w & 0xFF
        out += bytes((lo, hi)) if swap else bytes((hi, lo))
    return bytes(out)


def bytes_to_words(data: bytes, order: Order) -> list[int]:
    """Inverse of ``words_to_bytes``."""
    if len(data) % 2:
        data += b"\x00"
    swap = order in (Order.BADC, Order.DCBA)
    words = [
        (data[i + 1] << 8 | data[i]) if swap else (data[i] << 8 | data[i + 1])
        for i in range(0, len(data), 2)
    ]
    return list(reversed(words)) if order in (Order.CDAB, Order.DCBA) else words


def decode_raw(
    dtype: DataType, words: Sequence[int], order: Order, bit: int | None = None
) -> Value:
    """Words of one point to its raw (unscaled) value."""
    if dtype is DataType.STRING:
        text = words_to_bytes(words, order).split(b"\x00", 1)[0]
        return text.decode("ascii", errors="replace").rstrip()
    need = WORDS[dtype]
    if len(words) != need:
        raise CodecError(f"{dtype} needs {need} register(s), got {len(words)}")
    if dtype is DataType.BIT:
        assert bit is not None
        (word,) = struct.unpack(">H", words_to_bytes(words, order))
        return bool(word >> bit & 1)
    if dtype is DataType.BOOL:
        return bool(words[0])
    (value,) = struct.unpack(_STRUCT[dtype], words_to_bytes(words, order))
    return value  # type: ignore[no-any-return]


def encode_raw(dtype: DataType, value: Value, order: Order, length: int = 1) -> list[int]:
    """Raw value to register words (``length`` registers for strings)."""
    if dtype is DataType.STRING:
        data = str(value).encode("ascii", errors="replace")[: length * 2]
        return bytes_to_words(data.ljust(length * 2, b"\x00"), order)
    if dtype in (DataType.BOOL, DataType.BIT):
        return [1 if value else 0]
    fmt = _STRUCT[dtype]
    if dtype not in _FLOATS:
        # An int stays exact: 64-bit counters go past the 53 bits a float holds.
        value = value if isinstance(value, int) else round(float(value))
        bits = struct.calcsize(fmt) * 8
        lo, hi = (
            (-(1 << (bits - 1)), (1 << (bits - 1)) - 1)
            if fmt[1].islower()
            else (0, (1 << bits) - 1)
        )
        value = min(max(value, lo), hi)  # saturate like a real device's display would
    return bytes_to_words(struct.pack(fmt, value), order)


def decode(point: ModbusPoint, words: Sequence[int]) -> Value:
    """Words of a register point to its engineering value. Raises CodecError."""
    raw = decode_raw(point.type, words, point.order, point.bit)
    if isinstance(raw, bool | str):
        return raw
    return scaled(point, raw)


def scaled(point: ModbusPoint, raw: int | float) -> Value:
    """A numeric raw value to the engineering value (NaN/inf is no reading). Raises CodecError."""
    if isinstance(raw, float) and not math.isfinite(raw):
        raise CodecError(f"point {point.name!r}: device sent {raw} (no valid reading)")
    factor = point.round_factor
    if factor is None:
        if point.scale == 1.0 and point.offset == 0.0:
            return raw
        return raw * point.scale + point.offset
    # round(x * 10**n) / 10**n: an integer over a power of ten is the double nearest
    # the decimal, so it prints short; and it is cheaper than round(x, n).
    return round((raw * point.scale + point.offset) * factor) / factor


def direct_struct(point: ModbusPoint) -> struct.Struct | None:
    """A Struct that unpacks the point's raw value straight from big-endian register bytes.

    Only for numeric points in ABCD order, where the register bytes already are
    the value's bytes: the poller then converts a whole read to bytes once and
    unpacks each point at its offset, instead of reordering words per point
    (``decode``), which profiling showed to be the poller's main cost. Other
    orders and types return None and go through ``decode``; both give the
    same value, ``scaled`` finishes either.
    """
    if point.order is Order.ABCD and point.type in _STRUCT:
        return _STRUCTS[point.type]
    return None


def encode(point: ModbusPoint, value: Value) -> list[int]:
    """Engineering value to the words the device would hold (simulators)."""
    if point.type in (DataType.STRING, DataType.BOOL, DataType.BIT) or isinstance(value, str):
        return encode_raw(point.type, value, point.order, point.length or 1)
    raw = (float(value) - point.offset) / point.scale
    return encode_raw(point.type, raw, point.order)


def decode_bits(point: ModbusPoint, bits: Sequence[bool]) -> bool:
    """A coil or discrete input point."""
    if len(bits) != 1:
        raise CodecError(f"point {point.name!r}: expected one bit, got {len(bits)}")
    return bool(bits[0])
