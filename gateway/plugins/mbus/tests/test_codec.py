"""Codec tables: frames, checksums, BCD, every supported DIF coding and VIF family, telegrams."""

from __future__ import annotations

import random

import pytest

from gateway.errors import CodecError, FrameError
from gateway.plugins.mbus.codec import (
    Ack,
    FrameReader,
    LongFrame,
    SecondaryAddress,
    ShortFrame,
    checksum,
    decode_bcd,
    decode_manufacturer,
    encode_bcd,
    encode_manufacturer,
    long_frame,
    parse_frame,
    req_ud2,
    secondary_matches,
    select_frame,
    snd_nke,
)
from gateway.plugins.mbus.records import decode_records, decode_telegram, encode_record

# The variable data telegram of EN 13757-3's example (also in the M-Bus documentation,
# "variable data structure"): water meter, primary address 2, id 12345678, manufacturer PAD.
EXAMPLE = bytes.fromhex(
    "68 1F 1F 68 08 02 72 78 56 34 12 24 40 01 07 55 00 00 00"
    " 03 13 15 31 00 DA 02 3B 13 01 8B 60 04 37 18 02 18 16"
)

H = bytes.fromhex


@pytest.mark.parametrize(
    ("data", "cs"),
    [
        (b"", 0x00),
        (H("40 01"), 0x41),
        (H("FF 02"), 0x01),  # modulo 256
        (EXAMPLE[4:-2], 0x18),
    ],
)
def test_checksum(data: bytes, cs: int) -> None:
    assert checksum(data) == cs


@pytest.mark.parametrize(
    ("frame", "wire"),
    [
        (snd_nke(1), "10 40 01 41 16"),
        (snd_nke(254), "10 40 FE 3E 16"),
        (req_ud2(5, fcb=False), "10 5B 05 60 16"),
        (req_ud2(5, fcb=True), "10 7B 05 80 16"),
        (
            select_frame(SecondaryAddress.parse("12345678-PAD-01-07")),
            "68 0B 0B 68 53 FD 52 78 56 34 12 24 40 01 07 22 16",
        ),
        (
            select_frame(SecondaryAddress.parse("12345678")),
            "68 0B 0B 68 53 FD 52 78 56 34 12 FF FF FF FF B2 16",
        ),
    ],
)
def test_master_frames(frame: bytes, wire: str) -> None:
    assert frame == H(wire)


@pytest.mark.parametrize(
    ("chunks", "frames", "garbage"),
    [
        ([H("E5")], [Ack()], 0),
        ([H("10 7B 05 80 16")], [ShortFrame(0x7B, 5)], 0),
        ([EXAMPLE], [LongFrame(0x08, 0x02, 0x72, EXAMPLE[7:-2])], 0),
        # Split anywhere: a partial frame waits for the rest.
        ([EXAMPLE[:3], EXAMPLE[3:20], EXAMPLE[20:]], [LongFrame(8, 2, 0x72, EXAMPLE[7:-2])], 0),
        # Noise before a frame is skipped and counted.
        ([H("00 FF 33") + H("E5")], [Ack()], 3),
        # A long frame with a bad checksum is garbage; so is a short one with a bad stop byte.
        ([EXAMPLE[:-2] + H("19 16")], [], len(EXAMPLE)),
        ([H("10 7B 05 80 17 E5")], [Ack()], 5),
        # Lengths that disagree.
        ([H("68 05 06 00 E5")], [Ack()], 4),
    ],
)
def test_frame_reader(chunks: list[bytes], frames: list[object], garbage: int) -> None:
    reader = FrameReader()
    got: list[object] = []
    for c in chunks:
        got += reader.feed(c)
    assert got == frames
    assert reader.garbage == garbage


def test_parse_frame_rejects_trailing_bytes() -> None:
    assert parse_frame(H("E5")) == Ack()
    with pytest.raises(FrameError):
        parse_frame(H("E5 E5"))
    with pytest.raises(FrameError):
        parse_frame(EXAMPLE[:-1])


def test_long_frame_round_trip_and_limit() -> None:
    frame = long_frame(0x08, 7, 0x72, b"\x01\x02")
    assert parse_frame(frame) == LongFrame(0x08, 7, 0x72, b"\x01\x02")
    with pytest.raises(CodecError):
        long_frame(0x08, 7, 0x72, bytes(253))


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        ("78563412", 12345678),
        ("00", 0),
        ("15", 15),
        ("3718 02", 21837),
        ("0100 00F0", -1),  # top nibble F: negative
        ("99 F9", -999),
    ],
)
def test_bcd(raw: str, value: int) -> None:
    assert decode_bcd(H(raw)) == value
    assert encode_bcd(value, len(H(raw))) == H(raw)


def test_bcd_rejects_hex_digits() -> None:
    with pytest.raises(CodecError):
        decode_bcd(H("1A"))
    with pytest.raises(CodecError):
        encode_bcd(100, 1)


def test_manufacturer() -> None:
    assert decode_manufacturer(0x4024) == "PAD"
    assert encode_manufacturer("PAD") == H("24 40")
    assert decode_manufacturer(int.from_bytes(encode_manufacturer("KAM"), "little")) == "KAM"


# (record bytes, quantity, unit, value, storage, tariff, subunit, function)
RECORDS = [
    # DIF data codings: int8..int64, real, BCD 2..12 digits, variable length.
    ("01 FD 17 05", "error_flags", "", 5, 0, 0, 0, "instantaneous"),
    ("02 FD 17 04 80", "error_flags", "", 0x8004, 0, 0, 0, "instantaneous"),  # unsigned
    ("03 13 15 31 00", "volume", "m3", 12.565, 0, 0, 0, "instantaneous"),
    ("04 06 2A 00 00 00", "energy", "Wh", 42_000, 0, 0, 0, "instantaneous"),
    ("05 67 00 00 A0 41", "external_temperature", "degC", 20.0, 0, 0, 0, "instantaneous"),
    ("06 04 01 00 00 00 00 00", "energy", "Wh", 10, 0, 0, 0, "instantaneous"),
    ("07 13 00 00 00 00 01 00 00 00", "volume", "m3", 4294967.296, 0, 0, 0, "instantaneous"),
    ("09 5B 75", "supply_temperature", "degC", 75, 0, 0, 0, "instantaneous"),
    ("0A 5A 51 07", "supply_temperature", "degC", 75.1, 0, 0, 0, "instantaneous"),
    ("0A 5E 02 05", "return_temperature", "degC", 50.2, 0, 0, 0, "instantaneous"),
    ("0B 3B 56 04 00", "flow", "m3/h", 0.456, 0, 0, 0, "instantaneous"),
    ("0B 2B 50 34 01", "power", "W", 13450, 0, 0, 0, "instantaneous"),
    ("0C 06 78 56 34 12", "energy", "Wh", 12_345_678_000, 0, 0, 0, "instantaneous"),
    ("0E 06 56 34 12 00 00 00", "energy", "Wh", 123_456_000, 0, 0, 0, "instantaneous"),
    ("0D FD 0E 03 33 2E 31", "firmware_version", "", "1.3", 0, 0, 0, "instantaneous"),
    ("0D 06 C2 34 12", "energy", "Wh", 1_234_000, 0, 0, 0, "instantaneous"),
    ("02 61 C4 09", "temperature_difference", "K", 25.0, 0, 0, 0, "instantaneous"),
    ("02 61 38 FF", "temperature_difference", "K", -2.0, 0, 0, 0, "instantaneous"),  # signed
    ("02 6B E8 03", "pressure", "bar", 1000, 0, 0, 0, "instantaneous"),
    ("02 68 10 27", "pressure", "bar", 10.0, 0, 0, 0, "instantaneous"),
    ("04 0E 01 00 00 00", "energy_j", "J", 1_000_000, 0, 0, 0, "instantaneous"),
    ("04 1B 05 00 00 00", "mass", "kg", 5, 0, 0, 0, "instantaneous"),
    ("02 22 02 00", "on_time", "s", 7200, 0, 0, 0, "instantaneous"),
    ("02 27 64 00", "operating_time", "s", 8_640_000, 0, 0, 0, "instantaneous"),
    ("04 33 07 00 00 00", "power_j", "J/h", 7000, 0, 0, 0, "instantaneous"),
    ("04 53 0A 00 00 00", "mass_flow", "kg/h", 10, 0, 0, 0, "instantaneous"),
    ("04 46 03 00 00 00", "flow_per_min", "m3/min", 0.3, 0, 0, 0, "instantaneous"),
    ("02 66 E8 03", "external_temperature", "degC", 100.0, 0, 0, 0, "instantaneous"),
    ("02 FD 48 E6 00", "voltage", "V", 23.0, 0, 0, 0, "instantaneous"),
    ("02 FD 59 F4 01", "current", "A", 0.5, 0, 0, 0, "instantaneous"),
    # 0xFB extension: MWh, GJ, 100 m3, MW.
    ("04 FB 00 0A 00 00 00", "energy", "Wh", 1_000_000, 0, 0, 0, "instantaneous"),
    ("04 FB 09 02 00 00 00", "energy_j", "J", 2_000_000_000, 0, 0, 0, "instantaneous"),
    ("02 FB 10 03 00", "volume", "m3", 300, 0, 0, 0, "instantaneous"),
    ("02 FB 29 02 00", "power", "W", 2_000_000, 0, 0, 0, "instantaneous"),
    # Dates: type G (DIF int16) and type F (DIF int32).
    ("42 6C 1F 3C", "date", "", "2024-12-31", 1, 0, 0, "instantaneous"),
    ("04 6D 1E 0E 2F 36", "datetime", "", "2025-06-15T14:30:00", 0, 0, 0, "instantaneous"),
    # Storage, tariff, subunit from DIF/DIFEs; function field.
    ("DA 02 3B 13 01", "flow", "m3/h", 0.113, 5, 0, 0, "maximum"),
    ("8B 60 04 37 18 02", "energy", "Wh", 218_370, 0, 2, 1, "instantaneous"),
    ("8C 10 06 12 00 00 00", "energy", "Wh", 12_000, 0, 1, 0, "instantaneous"),
    ("CC 81 01 06 00 00 00 00", "energy", "Wh", 0, 3 + 32, 0, 0, "instantaneous"),
    ("24 13 01 00 00 00", "volume", "m3", 0.001, 0, 0, 0, "minimum"),
    ("32 5B 00 00", "supply_temperature", "degC", 0, 0, 0, 0, "error"),
    # A VIF with combinable VIFEs keeps its quantity.
    ("04 93 3C 01 00 00 00", "volume", "m3", 0.001, 0, 0, 0, "instantaneous"),
    # Special VIFs are named, not guessed.
    ("04 78 78 56 34 12", "fabrication_no", "", 0x12345678, 0, 0, 0, "instantaneous"),
    ("01 FF 01 07", "manufacturer_specific", "", 7, 0, 0, 0, "instantaneous"),
]


@pytest.mark.parametrize(
    ("hexrec", "quantity", "unit", "value", "storage", "tariff", "subunit", "function"), RECORDS
)
def test_record_table(
    hexrec: str,
    quantity: str,
    unit: str,
    value: object,
    storage: int,
    tariff: int,
    subunit: int,
    function: str,
) -> None:
    records, more, _ = decode_records(H(hexrec))
    assert not more
    assert len(records) == 1
    r = records[0]
    assert (r.quantity, r.unit, r.value) == (quantity, unit, value)
    assert (r.storage, r.tariff, r.subunit, r.function) == (storage, tariff, subunit, function)


@pytest.mark.parametrize(
    ("coding", "vib", "raw", "storage", "tariff"),
    [
        (0x0C, H("06"), 12345678, 0, 0),
        (0x04, H("14"), -5, 1, 0),
        (0x0B, H("3B"), 456, 5, 2),
        (0x02, H("FD 17"), 0x8001, 0, 0),
        (0x05, H("67"), 20.5, 0, 0),
    ],
)
def test_encode_record_round_trip(
    coding: int, vib: bytes, raw: float, storage: int, tariff: int
) -> None:
    (rec,), _, _ = decode_records(encode_record(coding, vib, raw, storage=storage, tariff=tariff))
    assert (rec.storage, rec.tariff) == (storage, tariff)
    assert rec.vib == vib and rec.dib[0] & 0x0F == coding


def test_example_telegram() -> None:
    frame = parse_frame(EXAMPLE)
    assert isinstance(frame, LongFrame) and (frame.c, frame.a, frame.ci) == (0x08, 2, 0x72)
    tg = decode_telegram(frame.ci, frame.data)
    assert (tg.ident, tg.manufacturer, tg.version, tg.medium) == (12345678, "PAD", 1, 7)
    assert (tg.access_no, tg.status, tg.more_follow) == (0x55, 0, False)
    assert [(r.quantity, r.value) for r in tg.records] == [
        ("volume", 12.565),
        ("flow", 0.113),
        ("energy", 218_370),
    ]


def test_multi_telegram_sequence() -> None:
    """Two telegrams: the first ends with DIF 0x1F, the second does not."""
    head = H("78 56 34 12 24 40 01 04 01 00 00 00")
    first = head + H("0C 06 78 56 34 12") + H("1F")
    second = head + H("0A 5A 51 07 0A 5E 02 05")
    frames = FrameReader().feed(
        long_frame(0x08, 2, 0x72, first) + long_frame(0x08, 2, 0x72, second)
    )
    assert len(frames) == 2
    tgs = [decode_telegram(f.ci, f.data) for f in frames if isinstance(f, LongFrame)]
    assert [t.more_follow for t in tgs] == [True, False]
    assert [r.quantity for t in tgs for r in t.records] == [
        "energy",
        "supply_temperature",
        "return_temperature",
    ]


@pytest.mark.parametrize(
    ("data", "more", "count", "mdata"),
    [
        ("2F 2F 09 5B 75 2F", False, 1, ""),  # idle fillers skipped
        ("09 5B 75 0F 01 02", False, 1, "01 02"),  # manufacturer data to the end
        ("09 5B 75 1F", True, 1, ""),
    ],
)
def test_special_difs(data: str, more: bool, count: int, mdata: str) -> None:
    records, got_more, got_mdata = decode_records(H(data))
    assert (len(records), got_more, got_mdata) == (count, more, H(mdata))


@pytest.mark.parametrize(
    ("ci", "data", "why"),
    [
        (0x51, H("00" * 12), "not a variable data response"),
        (0x72, H("00" * 5), "header needs 12 bytes"),
        (0x78, H("0C 06 78 56"), "ends inside the data"),
        (0x78, H("8C 80 80 80 80 80 80 80 80 80 80 80 06"), "more than 10 DIFEs"),
        (0x78, H("0C"), "ends inside the VIF"),
        (0x78, H("0A 5A 1A 07"), "invalid BCD"),
        (0x78, H("42 6C 1F 3F"), "invalid date"),
        (0x78, H("05 67 00 00 C0 7F"), "not finite"),
    ],
)
def test_bad_telegrams_raise_codec_error(ci: int, data: bytes, why: str) -> None:
    with pytest.raises(CodecError, match=why):
        decode_telegram(ci, data)


@pytest.mark.parametrize(
    ("pattern", "own", "match"),
    [
        ("12345678-PAD-01-07", "12345678-PAD-01-07", True),
        ("12345678", "12345678-PAD-01-07", True),  # any manufacturer, version, medium
        ("12345679", "12345678-PAD-01-07", False),
        ("12345678-KAM-01-07", "12345678-PAD-01-07", False),
        ("12345678-PAD-01-04", "12345678-PAD-01-07", False),
    ],
)
def test_secondary_selection(pattern: str, own: str, match: bool) -> None:
    p = SecondaryAddress.parse(pattern).to_bytes()
    o = SecondaryAddress.parse(own).to_bytes()
    assert secondary_matches(p, o) is match


def test_secondary_wildcard_nibbles() -> None:
    own = SecondaryAddress.parse("12345678-PAD-01-07").to_bytes()
    assert secondary_matches(H("F8 FF FF FF FF FF FF FF"), own)
    assert not secondary_matches(H("F7 FF FF FF FF FF FF FF"), own)


@pytest.mark.parametrize(
    "text", ["1234567", "1234567X", "12345678-pad-01-07", "12345678-PAD-1G-07"]
)
def test_secondary_address_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="secondary address"):
        SecondaryAddress.parse(text)


def test_random_records_raise_only_codec_error() -> None:
    """Whatever a broken meter sends inside a valid frame, decoding fails only as CodecError."""
    rng = random.Random(5)
    decoded = 0
    for _ in range(5000):
        data = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 60)))
        try:
            decode_telegram(0x78, data)
            decoded += 1
        except CodecError:
            pass
    assert decoded > 0
