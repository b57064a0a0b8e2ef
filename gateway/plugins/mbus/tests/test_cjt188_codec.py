"""CJ/T 188 codec tables: frames, the reader, addresses, unit codes, 901F of heat and water meters.

The heat meter vectors are a real exchange published in "CJ/T-188 冷热量表协议解析2"
(cnblogs.com/llguanli/p/8683992.html): meter type 0x20, address 00000040314132,
its unit code before the digits; the water meter payload is the one ng-gateway's
decoder is tested with (ng-gateway-southward/cjt188/src/codec/di_parser.rs).
"""

from __future__ import annotations

import pytest

from gateway.errors import CodecError
from gateway.plugins.mbus.cjt188 import (
    C_REPLY,
    Cjt188Frame,
    Cjt188Reader,
    data_length,
    decode_901f,
    encode_901f,
    encode_frame,
    format_address,
    parse_address,
    read_request,
    split_di,
)

H = bytes.fromhex
JY_ADDR = "00000040314132"
JY_REQUEST = H("FE FE FE FE 68 20 32 41 31 40 00 00 00 01 03 90 1F 01 20 16")
JY_REPLY = H(
    "FE FE FE FE 68 20 32 41 31 40 00 00 00 81 2E 90 1F 01"
    " 08 02 00 00 00  08 02 00 00 00  17 00 00 00 00  35 00 00 00 00  2C 34 10 00 00"
    " 35 25 00  66 25 00  00 00 00  53 00 12 10 07 15 20  00 00  31 16"
)
JY_VALUES = [
    ("energy", 1, "Wh", 20000.0),  # 0.02 MWh on the settlement date
    ("energy", 0, "Wh", 20000.0),
    ("power", 0, "W", 0.0),
    ("flow", 0, "m3/h", 0.0),
    ("volume", 0, "m3", 10.34),
    ("supply_temperature", 0, "degC", 25.35),
    ("return_temperature", 0, "degC", 25.66),
    ("operating_time", 0, "h", 0),
    ("datetime", 0, "", "2015-07-10T12:00:53"),
    ("status", 0, "", 0),
]


def table(records: list[object]) -> list[tuple[object, ...]]:
    return [(r.quantity, r.storage, r.unit, r.value) for r in records]  # type: ignore[attr-defined]


def test_read_request_is_the_published_one() -> None:
    assert read_request(0x20, parse_address(JY_ADDR), 1, wake=4) == JY_REQUEST


def test_published_heat_meter_answer_decodes() -> None:
    reader = Cjt188Reader()
    (frame,) = reader.feed(JY_REPLY)
    assert reader.garbage == 0 and reader.pending == 0
    assert frame.meter_type == 0x20 and frame.c == C_REPLY and frame.is_reply
    assert format_address(frame.address) == JY_ADDR
    assert len(frame.data) == data_length(0x20) == 0x2E
    assert split_di(frame.data) == (0x901F, 1)
    assert table(decode_901f(0x20, frame.data, unit_first=True)) == JY_VALUES  # type: ignore[arg-type]


def test_water_meter_answer_with_units_after_digits() -> None:
    payload = H("00 34 12 00 2C  00 00 10 00 2C  00 30 14 08 01 26 20  00 00")
    data = H("1F 90 05") + payload  # the 2018 byte order of the DI is taken too
    assert split_di(data) == (0x901F, 5)
    assert table(decode_901f(0x10, data)) == [  # type: ignore[arg-type]
        ("volume", 0, "m3", 1234.0),
        ("volume", 1, "m3", 1000.0),
        ("datetime", 0, "", "2026-01-08T14:30:00"),
        ("status", 0, "", 0),
    ]


@pytest.mark.parametrize(
    ("unit", "digits", "quantity", "canonical", "value"),
    [
        (0x05, "23 01 00 00", "energy", "Wh", 1230.0),  # 1.23 kWh
        (0x08, "00 50 12 00", "energy", "Wh", 1_250_000_000.0),  # 1250.00 MWh
        (0x11, "50 00 00 00", "energy", "J", 500_000_000.0),  # 0.50 GJ
        (0x0A, "01 00 00 00", "energy", "Wh", 1_000_000.0),  # 0.01 MWh x 100
        (0x17, "50 40 00 00", "power", "W", 40500.0),  # 40.50 kW
        (0x14, "99 99 99 99", "power", "W", 999999.99),
        (0x35, "00 34 12 00", "flow", "m3/h", 12.34),  # flow has 4 decimals
        (0x32, "00 00 50 00", "flow", "m3/h", 0.05),  # 500.0000 l/h
        (0x2C, "00 00 20 08", "volume", "m3", 82000.0),
        (0x29, "00 50 00 00", "volume", "m3", 0.05),  # 50.00 l
        (0x7F, "01 00 00 00", "energy", "cjt188_unit_7f", 0.01),  # unknown code: says so
    ],
)
def test_unit_codes(unit: int, digits: str, quantity: str, canonical: str, value: float) -> None:
    fields = {"energy": 1, "power": 2, "flow": 3, "volume": 4}  # positions in the heat layout
    data = bytearray(encode_901f(0x20, {}, 0))
    pos = 3 + 5 * fields[quantity]
    data[pos : pos + 5] = H(digits) + bytes([unit])
    rec = decode_901f(0x20, bytes(data))[fields[quantity]]
    assert (rec.quantity, rec.unit, rec.value) == (quantity, canonical, value)


@pytest.mark.parametrize("unit_first", [False, True])
@pytest.mark.parametrize("meter_type", [0x20, 0x21, 0x10, 0x30])
def test_encode_decode_round_trip(meter_type: int, unit_first: bool) -> None:
    values: dict[tuple[str, int], int | float | str] = {
        ("energy", 0): 1_234_560.0, ("energy", 1): 1_000_000.0, ("power", 0): 40_500.0,
        ("flow", 0): 1.2345, ("volume", 0): 8_200.25, ("volume", 1): 8_000.5,
        ("supply_temperature", 0): 75.12, ("return_temperature", 0): 50.05,
        ("operating_time", 0): 4321, ("datetime", 0): "2026-11-29T13:05:07", ("status", 0): 0x0104,
    }  # fmt: skip
    data = encode_901f(meter_type, values, 0x42, unit_first=unit_first)
    assert len(data) == data_length(meter_type) and split_di(data) == (0x901F, 0x42)
    for r in decode_901f(meter_type, data, unit_first=unit_first):
        assert r.value == values[(r.quantity, r.storage)], r


@pytest.mark.parametrize(
    ("meter_type", "data", "why"),
    [
        (0x20, H("90 1F 01 00"), "has 4 data bytes, expected 46"),
        (0x55, H("90 1F 01"), "no 901F layout known for meter type 0x55"),
        (0x10, H("90 1F 01") + H("0A 00 00 00 2C") + bytes(14), "invalid BCD"),
        (
            0x10,
            H("90 1F 01") + bytes(10) + H("00 00 25 32 13 26 20 00 00"),
            "invalid CJ/T 188 date",
        ),
        (0x10, H("90"), "no DI and SER"),
    ],
)
def test_bad_data_is_a_codec_error(meter_type: int, data: bytes, why: str) -> None:
    with pytest.raises(CodecError, match=why):
        split_di(data)
        decode_901f(meter_type, data)


def test_reader_skips_wakeup_counts_garbage_and_waits_for_the_rest() -> None:
    good = encode_frame(0x20, parse_address(JY_ADDR), C_REPLY, H("90 1F 07"), wake=3)
    broken = bytearray(good)
    broken[-2] ^= 0xFF  # checksum
    reader = Cjt188Reader()
    noise = H("00 13 68 99")  # a stray 68 whose "frame" never checks out
    frames = reader.feed(noise + bytes(broken) + good[:9])
    assert frames == [] and reader.pending > 0
    frames = reader.feed(good[9:])
    assert frames == [Cjt188Frame(0x20, parse_address(JY_ADDR), C_REPLY, H("90 1F 07"))]
    # Wake-up bytes are not noise; the noise and the whole broken frame are.
    assert reader.garbage == len(noise) + len(broken) - 3
    assert reader.bad_frames >= 2 and reader.pending == 0


@pytest.mark.parametrize(
    ("text", "wire"),
    [
        (JY_ADDR, H("32 41 31 40 00 00 00")),
        ("AAAAAAAAAAAAAA", bytes([0xAA] * 7)),
        ("aaaaaaaaaaaa01", H("01 AA AA AA AA AA AA")),
    ],
)
def test_addresses(text: str, wire: bytes) -> None:
    assert parse_address(text) == wire
    assert format_address(wire) == text.upper()


@pytest.mark.parametrize("text", ["1234", "0000004031413A", "000000403141321", "AB000040314132"])
def test_bad_addresses_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="14 digits"):
        parse_address(text)


def test_simulator_changes_unit_when_a_total_outgrows_kwh() -> None:
    data = encode_901f(0x20, {("energy", 0): 1_200_000_000.0, ("volume", 0): 1_234_567.8}, 0)
    assert data[3 + 5 + 4] == 0x08  # current heat in MWh: 1200.00
    assert data[3 + 20 + 4] == 0x2D  # accumulated flow in m3 x 10
    recs = {(r.quantity, r.storage): r.value for r in decode_901f(0x20, data)}
    assert recs[("energy", 0)] == 1_200_000_000.0 and recs[("volume", 0)] == 1_234_567.8
    with pytest.raises(CodecError, match="does not fit"):
        encode_901f(0x20, {("power", 0): 1e15}, 0)
