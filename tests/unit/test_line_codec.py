"""Serial-line parsing as a table: good lines become values, garbage becomes FrameError.

Also the line splitter: byte chunks in, lines and discarded oversized garbage out.
"""

from __future__ import annotations

import pytest

from gateway.errors import FrameError
from gateway.plugins.serial_line.line_codec import LineSplitter, parse_line, with_checksum, xor8
from gateway.profiles.registry import ProfileRegistry
from gateway.profiles.schema import SerialLineProfile


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


# --------------------------------------------------------------------------- splitting

TAP = with_checksum("CP01,04A1B2C3D4,7").encode()
BIG = b"A" * (1 << 20)
ERR = "ERR"


def _chunks(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


@pytest.mark.parametrize(
    ("chunks", "expected", "discarded"),
    [
        # plain lines, a line split across reads, an empty line
        ([TAP + b"\r\n" + TAP + b"\r\n"], [TAP, TAP], 0),
        ([TAP[:5], TAP[5:] + b"\r", b"\n"], [TAP], 0),
        ([b"\r\n"], [b""], 0),
        # a line at the limit is a line; a line over it is discarded (counted once)
        ([b"B" * 256 + b"\r\n"], [b"B" * 256], 0),
        ([b"B" * 257 + b"\r\n" + TAP + b"\r\n"], [ERR, TAP], 259),
        # 1 MB without a newline, then the newline, then a tap: the tap is decoded
        ([*_chunks(BIG, 4095), b"\r\n" + TAP + b"\r\n"], [ERR, TAP], len(BIG) + 2),
        ([*_chunks(BIG + b"\r\n" + TAP + b"\r\n", 65536)], [ERR, TAP], len(BIG) + 2),
        # the garbage ends with a bare newline (no CR): resynchronise on it all the same
        ([*_chunks(BIG, 4096), b"\n" + TAP + b"\r\n"], [ERR, TAP], len(BIG) + 1),
        ([b"junk\n" + TAP + b"\r\n"], [b"junk", TAP], 0),
        # the terminator split right where the discarding starts
        ([BIG[:300] + b"\r", b"\n" + TAP + b"\r\n"], [ERR, TAP], 302),
        # noise that never ends stays bounded: one error, nothing kept
        ([*_chunks(BIG, 1000)], [ERR], len(BIG)),
    ],
    ids=[
        "lines", "split-read", "empty", "at-limit", "over-limit", "1MB-then-crlf",
        "1MB-one-write", "1MB-then-lf", "bare-lf", "cr-at-discard", "endless-noise",
    ],
)
def test_splitter_resynchronises_after_oversized_garbage(
    chunks: list[bytes], expected: list[bytes | str], discarded: int
) -> None:
    sp = LineSplitter(b"\r\n", 256)
    got: list[bytes | str] = []
    for c in chunks:
        for item in sp.feed(c):
            got.append(ERR if isinstance(item, FrameError) else item)
        assert sp.buffered <= 256 + 1  # never more than one line's worth held
    assert got == expected
    assert sp.discarded_bytes == discarded
    assert sp.discarded_lines == expected.count(ERR)


def test_splitter_with_a_single_byte_terminator() -> None:
    sp = LineSplitter(b"\n", 16)
    out = sp.feed(b"abc\n" + b"x" * 40 + b"\ndef\n")
    assert out[0] == b"abc" and isinstance(out[1], FrameError) and out[2:] == [b"def"]
    assert (sp.discarded_lines, sp.discarded_bytes) == (1, 41)
