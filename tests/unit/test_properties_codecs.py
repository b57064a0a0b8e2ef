"""Register codecs, property-based: every type and order round-trips; garbage is a CodecError.

The table tests (test_codecs.py) pin known words to known values; these
check the same functions over many generated values and words.
"""

from __future__ import annotations

import math
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.codecs import bytes_to_words, decode, decode_raw, encode, encode_raw, words_to_bytes
from gateway.errors import CodecError
from gateway.profiles.schema import WORDS, DataType, ModbusPoint, Order, Table
from tests.unit.properties import PROPERTY

ORDERS = list(Order)
INTS: dict[DataType, tuple[int, int]] = {
    DataType.INT16: (-(2**15), 2**15 - 1),
    DataType.UINT16: (0, 2**16 - 1),
    DataType.INT32: (-(2**31), 2**31 - 1),
    DataType.UINT32: (0, 2**32 - 1),
    DataType.INT64: (-(2**63), 2**63 - 1),
    DataType.UINT64: (0, 2**64 - 1),
}
WORD = st.integers(0, 0xFFFF)


@st.composite
def int_case(draw: st.DrawFn) -> tuple[DataType, Order, int]:
    dtype = draw(st.sampled_from(sorted(INTS)))
    lo, hi = INTS[dtype]
    return dtype, draw(st.sampled_from(ORDERS)), draw(st.integers(lo, hi))


@PROPERTY
@given(int_case())
def test_integers_round_trip(case: tuple[DataType, Order, int]) -> None:
    dtype, order, value = case
    words = encode_raw(dtype, value, order)
    assert len(words) == WORDS[dtype] and all(0 <= w <= 0xFFFF for w in words)
    assert decode_raw(dtype, words, order) == value


@PROPERTY
@given(st.sampled_from(ORDERS), st.floats(width=32, allow_nan=False))
def test_float32_round_trips(order: Order, value: float) -> None:
    assert decode_raw(DataType.FLOAT32, encode_raw(DataType.FLOAT32, value, order), order) == value


@PROPERTY
@given(st.sampled_from(ORDERS), st.floats(allow_nan=False))
def test_float64_round_trips(order: Order, value: float) -> None:
    assert decode_raw(DataType.FLOAT64, encode_raw(DataType.FLOAT64, value, order), order) == value


@PROPERTY
@given(
    st.sampled_from(sorted(set(WORDS) - {DataType.BOOL, DataType.BIT}, key=str)),
    st.sampled_from(ORDERS),
    st.data(),
)
def test_device_words_round_trip(dtype: DataType, order: Order, data: st.DataObject) -> None:
    """Any words a device may send decode, and encode back to the same words."""
    words = data.draw(st.lists(WORD, min_size=WORDS[dtype], max_size=WORDS[dtype]))
    raw = decode_raw(dtype, words, order)
    if isinstance(raw, float) and math.isnan(raw):
        return  # NaN payloads need not survive a float conversion; scaled() refuses NaN
    assert encode_raw(dtype, raw, order) == words


@PROPERTY
@given(st.sampled_from(ORDERS), st.integers(1, 8), st.data())
def test_strings_round_trip(order: Order, length: int, data: st.DataObject) -> None:
    text = data.draw(
        st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=length * 2)
    )
    words = encode_raw(DataType.STRING, text, order, length)
    assert len(words) == length
    assert decode_raw(DataType.STRING, words, order) == text


@PROPERTY
@given(st.sampled_from(ORDERS), st.binary(max_size=20))
def test_bytes_words_round_trip(order: Order, data: bytes) -> None:
    words = bytes_to_words(data, order)
    padded = data + b"\x00" * (len(data) % 2)
    assert words_to_bytes(words, order) == padded


@PROPERTY
@given(
    st.sampled_from(list(DataType)),
    st.sampled_from(ORDERS),
    st.lists(st.integers(-(2**20), 2**20), max_size=6),
    st.integers(0, 15),
)
def test_any_words_give_a_value_or_a_codec_error(
    dtype: DataType, order: Order, words: list[int], bit: int
) -> None:
    """Wrong counts, out-of-range words, NaN/inf: only CodecError, never another exception."""
    point = ModbusPoint(
        name="p",
        table=Table.COIL if dtype is DataType.BOOL else Table.HOLDING_REGISTER,
        address=0,
        type=dtype,
        order=order,
        bit=bit if dtype is DataType.BIT else None,
        length=max(len(words), 1) if dtype is DataType.STRING else None,
        scale=0.1,
    )
    try:
        value = decode(point, words)
    except CodecError:
        return
    assert isinstance(value, bool | int | float | str)
    if isinstance(value, float):
        assert math.isfinite(value)


@PROPERTY
@given(
    st.sampled_from([(DataType.FLOAT32, ">f"), (DataType.FLOAT64, ">d")]),
    st.sampled_from(ORDERS),
    st.data(),
)
def test_float_bytes_decode_or_are_no_reading(
    kind: tuple[DataType, str], order: Order, data: st.DataObject
) -> None:
    """Any float bit pattern: its value, or (NaN, infinity) a CodecError, never a number."""
    dtype, fmt = kind
    value_bytes = data.draw(st.binary(min_size=struct.calcsize(fmt), max_size=struct.calcsize(fmt)))
    (raw,) = struct.unpack(fmt, value_bytes)
    point = ModbusPoint(name="p", table=Table.INPUT_REGISTER, address=0, type=dtype, order=order)
    device_words = bytes_to_words(value_bytes, order)
    if math.isfinite(raw):
        assert decode(point, device_words) == raw
    else:
        with pytest.raises(CodecError):
            decode(point, device_words)


@PROPERTY
@given(
    st.sampled_from(sorted(INTS)),
    st.sampled_from(ORDERS),
    st.sampled_from([0.1, 0.01, 0.5, 2.0, -1.0]),
    st.sampled_from([0.0, -40.0, 273.15]),
    st.data(),
)
def test_engineering_values_round_trip_within_one_step(
    dtype: DataType, order: Order, scale: float, offset: float, data: st.DataObject
) -> None:
    lo, hi = INTS[dtype]
    # Keep raw values where a float64 holds every integer exactly.
    raw = data.draw(st.integers(max(lo, -(2**50)), min(hi, 2**50)))
    value = raw * scale + offset
    point = ModbusPoint(
        name="p",
        table=Table.HOLDING_REGISTER,
        address=0,
        type=dtype,
        order=order,
        scale=scale,
        offset=offset,
    )
    got = decode(point, encode(point, value))
    assert isinstance(got, float | int)
    assert math.isclose(got, value, rel_tol=1e-9, abs_tol=abs(scale) / 2)
