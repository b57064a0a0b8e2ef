"""Serial-line parsing as a table: good lines become values, garbage becomes FrameError."""

from __future__ import annotations

import pytest

from gateway.errors import FrameError
from gateway.profiles.registry import ProfileRegistry
from gateway.profiles.schema import SerialLineProfile
from gateway.sources.line_codec import parse_line, with_checksum, xor8


def rfid() -> SerialLineProfile:
    reg, _ = ProfileRegistry.load()
    prof = reg.get("rfid-checkpoint-reader")
    assert isinstance(prof, SerialLineProfile)
    return prof


def test_xor8_known_value() -> None:
    assert xor8(b"GPGLL") == 0x47 ^ 0x50 ^ 0x47 ^ 0x4C ^ 0x4C
    assert with_checksum("A") == "A*41"


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (with_checksum("CP01,04A1B2C3D4,17"), {"reader": "CP01", "card": "04A1B2C3D4", "seq": 17}),
        (
            with_checksum("gate-north,0000000000000001,0"),
            {"reader": "gate-north", "card": "0000000000000001", "seq": 0},
        ),
    ],
)
def test_good_lines(line: str, expected: dict[str, object]) -> None:
    assert parse_line(rfid(), line.encode()) == expected


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (b"CP01,04A1B2C3D4,17", r"no \*HH checksum"),
        (b"CP01,04A1B2C3D4,17*00", "checksum mismatch"),
        (b"CP01,04A1B2C3D4,17*ZZ", "not hex"),
        (with_checksum("CP01,04a1b2c3d4,17").encode(), "does not match"),  # lower-case UID
        (with_checksum("CP01,04A1,17").encode(), "does not match"),  # UID too short
        (b"\xff\xfe\x00garbage", "not ascii"),
        (b"CP01\x07,04A1B2C3D4,17*00", "control characters"),
        (b"A" * 300, "longer than"),
    ],
)
def test_garbage_is_a_frame_error(raw: bytes, why: str) -> None:
    with pytest.raises(FrameError, match=why):
        parse_line(rfid(), raw)
