"""Codec tables: words in, value out, for every data type x every byte/word order."""

from __future__ import annotations

import json
import math

import pytest

from gateway.codecs import bytes_to_words, decode, decode_raw, encode, encode_raw, words_to_bytes
from gateway.errors import CodecError
from gateway.profiles.schema import DataType, ModbusPoint, Order

A, B, C, D = Order.ABCD, Order.BADC, Order.CDAB, Order.DCBA

# (type, order, words, expected raw value). Words are what the device sends.
TABLE: list[tuple[DataType, Order, list[int], object]] = [
    (DataType.UINT16, A, [0x1234], 0x1234),
    (DataType.UINT16, C, [0x1234], 0x1234),  # word order means nothing for one word
    (DataType.UINT16, B, [0x1234], 0x3412),
    (DataType.UINT16, D, [0x1234], 0x3412),
    (DataType.INT16, A, [0xFFFE], -2),
    (DataType.INT16, C, [0xFFFE], -2),
    (DataType.INT16, B, [0xFEFF], -2),
    (DataType.INT16, D, [0xFEFF], -2),
    (DataType.UINT32, A, [0x0001, 0x0002], 0x00010002),
    (DataType.UINT32, C, [0x0002, 0x0001], 0x00010002),
    (DataType.UINT32, B, [0x0100, 0x0200], 0x00010002),
    (DataType.UINT32, D, [0x0200, 0x0100], 0x00010002),
    (DataType.INT32, A, [0xFFFF, 0xFFFE], -2),
    (DataType.INT32, C, [0xFFFE, 0xFFFF], -2),
    (DataType.INT32, B, [0xFFFF, 0xFEFF], -2),
    (DataType.INT32, D, [0xFEFF, 0xFFFF], -2),
    # 12.5 as IEEE-754 single is 0x41480000
    (DataType.FLOAT32, A, [0x4148, 0x0000], 12.5),
    (DataType.FLOAT32, C, [0x0000, 0x4148], 12.5),
    (DataType.FLOAT32, B, [0x4841, 0x0000], 12.5),
    (DataType.FLOAT32, D, [0x0000, 0x4841], 12.5),
    (DataType.UINT64, A, [0x0001, 0x0002, 0x0003, 0x0004], 0x0001000200030004),
    (DataType.UINT64, C, [0x0004, 0x0003, 0x0002, 0x0001], 0x0001000200030004),
    (DataType.UINT64, B, [0x0100, 0x0200, 0x0300, 0x0400], 0x0001000200030004),
    (DataType.UINT64, D, [0x0400, 0x0300, 0x0200, 0x0100], 0x0001000200030004),
    (DataType.INT64, A, [0xFFFF, 0xFFFF, 0xFFFF, 0xFFFD], -3),
    (DataType.INT64, C, [0xFFFD, 0xFFFF, 0xFFFF, 0xFFFF], -3),
    (DataType.INT64, B, [0xFFFF, 0xFFFF, 0xFFFF, 0xFDFF], -3),
    (DataType.INT64, D, [0xFDFF, 0xFFFF, 0xFFFF, 0xFFFF], -3),
    # -1.5 as IEEE-754 double is 0xBFF8000000000000
    (DataType.FLOAT64, A, [0xBFF8, 0, 0, 0], -1.5),
    (DataType.FLOAT64, C, [0, 0, 0, 0xBFF8], -1.5),
    (DataType.FLOAT64, B, [0xF8BF, 0, 0, 0], -1.5),
    (DataType.FLOAT64, D, [0, 0, 0, 0xF8BF], -1.5),
    (DataType.STRING, A, [0x4142, 0x4344, 0x0000], "ABCD"),
    (DataType.STRING, B, [0x4241, 0x4443, 0x0000], "ABCD"),
    (DataType.STRING, C, [0x0000, 0x4344, 0x4142], "ABCD"),
    (DataType.STRING, D, [0x0000, 0x4443, 0x4241], "ABCD"),
    (DataType.STRING, A, [0x4142, 0x2020], "AB"),  # trailing blanks dropped
]


@pytest.mark.parametrize(("dtype", "order", "words", "expected"), TABLE)
def test_decode_table(dtype: DataType, order: Order, words: list[int], expected: object) -> None:
    assert decode_raw(dtype, words, order) == expected


# Blank-padded strings decode to the trimmed text; encode pads with NULs instead.
INVERSE = [row for row in TABLE if not (row[0] is DataType.STRING and row[2][-1] == 0x2020)]


@pytest.mark.parametrize(("dtype", "order", "words", "expected"), INVERSE)
def test_encode_is_inverse(
    dtype: DataType, order: Order, words: list[int], expected: object
) -> None:
    assert encode_raw(dtype, expected, order, length=len(words)) == words  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("bit", "word", "order", "expected"),
    [
        (0, 0x0001, A, True),
        (1, 0x0001, A, False),
        (15, 0x8000, A, True),
        (8, 0x0001, B, True),  # byte-swapped register: bit 0 lands at bit 8
        (0, 0x0001, B, False),
        (4, 0x0010, C, True),
    ],
)
def test_bit_in_register(bit: int, word: int, order: Order, expected: bool) -> None:
    assert decode_raw(DataType.BIT, [word], order, bit) is expected


def _pt(**kw: object) -> ModbusPoint:
    base: dict[str, object] = {"name": "p", "table": "holding_register", "address": 0}
    base.update(kw)
    return ModbusPoint.model_validate(base)


@pytest.mark.parametrize(
    ("kw", "words", "expected"),
    [
        ({"type": "int16", "scale": 0.1}, [0xFF9C], -10.0),
        ({"type": "uint16", "scale": 0.001}, [850], 0.85),
        ({"type": "uint16", "scale": 2, "offset": -40}, [30], 20.0),
        ({"type": "int32", "order": "CDAB", "scale": 0.01}, [0x86A0, 0x0001], 1000.0),
        ({"type": "float32", "offset": 1.5}, [0x4148, 0], 14.0),
        ({"type": "uint16"}, [7], 7),  # unscaled integers stay integers
    ],
)
def test_scale_and_offset(kw: dict[str, object], words: list[int], expected: float) -> None:
    value = decode(_pt(**kw), words)
    assert value == pytest.approx(expected)
    assert type(value) is type(expected)


@pytest.mark.parametrize(
    ("kw", "value"),
    [
        ({"type": "int16", "scale": 0.1}, -12.3),
        ({"type": "uint32", "order": "CDAB"}, 1_250_000),
        ({"type": "float32", "order": "DCBA"}, 3.25),
        ({"type": "int64", "order": "BADC", "scale": 0.1}, -1234.5),
        ({"type": "float64", "order": "CDAB"}, 98765.4321),
    ],
)
def test_encode_decode_round_trip(kw: dict[str, object], value: float) -> None:
    p = _pt(**kw)
    assert decode(p, encode(p, value)) == pytest.approx(value)


def test_nan_is_not_a_reading() -> None:
    words = bytes_to_words(bytes.fromhex("7fc00000"), A)
    with pytest.raises(CodecError, match="no valid reading"):
        decode(_pt(type="float32"), words)
    assert math.isnan(decode_raw(DataType.FLOAT32, words, A))  # type: ignore[arg-type]


def test_wrong_word_count_is_a_codec_error() -> None:
    with pytest.raises(CodecError, match="needs 2"):
        decode_raw(DataType.FLOAT32, [1], A)


def test_out_of_range_word_is_rejected() -> None:
    with pytest.raises(CodecError, match="not 16-bit"):
        words_to_bytes([0x10000], A)


def test_encode_saturates_integers() -> None:
    assert encode_raw(DataType.UINT16, 70000, A) == [0xFFFF]
    assert encode_raw(DataType.INT16, -40000, A) == [0x8000]


# (point fields, words, the value exactly as it must appear in JSON). Integer registers
# round to the decimals their scale and offset imply; ``decimals`` overrides; floats
# are left alone unless the profile gives ``decimals``.
ROUNDING: list[tuple[dict[str, object], list[int], str]] = [
    ({"type": "int16", "scale": 0.1}, [204], "20.4"),
    ({"type": "int16", "scale": 0.1}, [3], "0.3"),
    ({"type": "int16", "scale": 0.1}, [0xFF9C], "-10.0"),
    ({"type": "uint16", "scale": 0.01}, [2047], "20.47"),
    ({"type": "uint32", "scale": 0.01}, [0x0001, 0x86A3], "1000.03"),
    ({"type": "uint16", "scale": 0.5}, [41], "20.5"),
    ({"type": "uint16", "scale": 0.001}, [12345], "12.345"),
    ({"type": "uint16", "scale": 0.1, "offset": -273.15}, [2931], "19.95"),
    ({"type": "uint16", "scale": 2, "offset": -40}, [30], "20.0"),
    ({"type": "uint16"}, [7], "7"),  # unscaled integers stay integers
    ({"type": "uint16", "decimals": 2}, [7], "7"),
    ({"type": "uint16", "scale": 0.01, "decimals": 1}, [2047], "20.5"),
    ({"type": "int16", "scale": 0.1, "decimals": 0}, [204], "20.0"),
    ({"type": "uint16", "scale": 1 / 3}, [7], repr(7 * (1 / 3))),  # no exact decimal: as is
    ({"type": "float32"}, [0x3DCC, 0xCCCD], "0.10000000149011612"),
    ({"type": "float32", "decimals": 3}, [0x3DCC, 0xCCCD], "0.1"),
    ({"type": "float32", "scale": 0.1, "decimals": 2}, [0x4148, 0], "1.25"),
]


@pytest.mark.parametrize(("kw", "words", "shown"), ROUNDING)
def test_scaled_values_carry_no_float_noise(
    kw: dict[str, object], words: list[int], shown: str
) -> None:
    assert json.dumps(decode(_pt(**kw), words)) == shown


def test_decimals_only_for_numbers() -> None:
    with pytest.raises(ValueError, match="'decimals' is only for numeric"):
        _pt(type="string", length=2, decimals=1)
