"""The serial line codec, property-based: garbage is a FrameError, valid lines always get through.

``parse_line`` is checked on arbitrary bytes for every shipped line profile
and for a loose profile whose groups match anything; the framing is checked
end to end: a ``SerialLineDevice`` reads a real pseudo-terminal while
generated garbage and valid taps are written into it.
"""

from __future__ import annotations

import asyncio
import math
import os
import queue
import threading
import time
import tty
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import Phase, given, settings
from hypothesis import strategies as st

from gateway.config import DeviceConfig, SerialLineSource
from gateway.errors import ConfigError, FrameError
from gateway.model import Sample, SystemClock
from gateway.plugins.serial_line.line_codec import LineSplitter, parse_line, with_checksum
from gateway.plugins.serial_line.source import SerialLineDevice
from gateway.profiles.registry import ProfileRegistry, load_profile_file
from gateway.profiles.schema import SerialLineProfile
from tests.unit.properties import PROPERTY


def _shipped() -> list[SerialLineProfile]:
    reg, _ = ProfileRegistry.load()
    return [p for n in reg.names() if isinstance(p := reg.get(n), SerialLineProfile)]


SHIPPED = _shipped()
RFID = next(p for p in SHIPPED if p.name == "rfid-checkpoint-reader")
# Groups that match anything, typed as numbers: the codec must still only raise FrameError.
LOOSE = SerialLineProfile.model_validate(
    {
        "name": "loose",
        "protocol": "serial_line",
        "kind": "loose",
        "line": {"encoding": "utf-8", "pattern": r"(?P<a>[^;]*);(?P<b>[^;]*);(?P<c>.*)"},
        "fields": [
            {"name": "a", "type": "int"},
            {"name": "b", "type": "float"},
            {"name": "c", "type": "string"},
        ],
    }
)
PROFILES = [*SHIPPED, LOOSE]


def _check_values(values: dict[str, object]) -> None:
    for v in values.values():
        assert isinstance(v, int | str | float)
        if isinstance(v, float):
            assert math.isfinite(v)  # NaN would silently clear a limit alarm


@PROPERTY
@given(st.sampled_from(PROFILES), st.binary(max_size=300))
def test_random_bytes_give_values_or_a_frame_error(profile: SerialLineProfile, raw: bytes) -> None:
    try:
        values = parse_line(profile, raw)
    except FrameError:
        return
    _check_values(values)


NUMBERISH = st.text(st.sampled_from("0123456789+-._eEinfatyINFATY٣"), max_size=12)


@PROPERTY
@given(NUMBERISH, NUMBERISH, st.text(max_size=20))
def test_loose_numeric_fields_give_values_or_a_frame_error(a: str, b: str, c: str) -> None:
    try:
        values = parse_line(LOOSE, f"{a};{b};{c}".encode())
    except FrameError:
        return
    _check_values(values)


READER = st.from_regex(r"[A-Za-z0-9_-]{1,32}", fullmatch=True)
CARD = st.from_regex(r"[0-9A-F]{8,20}", fullmatch=True)


@PROPERTY
@given(READER, CARD, st.integers(0, 999_999_999))
def test_valid_taps_parse_to_their_fields(reader: str, card: str, seq: int) -> None:
    raw = with_checksum(f"{reader},{card},{seq}").encode()
    assert parse_line(RFID, raw) == {"reader": reader, "card": card, "seq": seq}


@PROPERTY
@given(READER, CARD, st.integers(0, 999_999_999), st.integers(0, 255))
def test_a_changed_byte_is_never_read_as_another_tap(
    reader: str, card: str, seq: int, flip: int
) -> None:
    raw = bytearray(with_checksum(f"{reader},{card},{seq}").encode())
    i = flip % len(raw)
    raw[i] ^= 1 << (flip % 7)  # one bit: the XOR checksum catches every single-bit error
    with pytest.raises(FrameError):
        parse_line(RFID, bytes(raw))


def test_unknown_line_encoding_is_a_profile_error(tmp_path: Path) -> None:
    path = tmp_path / "odd.yaml"
    path.write_text(
        "name: odd\nprotocol: serial_line\nkind: odd\n"
        "line: {encoding: klingon, pattern: '(?P<a>.*)'}\nfields: [{name: a}]\n"
    )
    with pytest.raises(ConfigError, match=r"odd.yaml:4: .*unknown encoding 'klingon'"):
        load_profile_file(path)


# --------------------------------------------------------------------------- framing


def _chunks(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


LONG_GARBAGE = st.binary(max_size=3 * RFID.line.max_length)
TAP = st.builds(
    lambda r, c, n: with_checksum(f"{r},{c},{n}").encode(), READER, CARD, st.integers(0, 999)
)


@PROPERTY
@given(LONG_GARBAGE, TAP, LONG_GARBAGE, st.lists(st.integers(0, 10_000), max_size=8))
def test_splitter_finds_a_valid_line_between_any_garbage(
    before: bytes, tap: bytes, after: bytes, cuts: list[int]
) -> None:
    """Garbage of any length (overlong lines included), split anywhere: the tap comes out whole."""
    splitter = LineSplitter(b"\r\n", RFID.line.max_length)
    out: list[bytes | FrameError] = []
    for chunk in _chunks(before + b"\r\n" + tap + b"\r\n" + after, cuts):
        out += splitter.feed(chunk)
    lines = [x for x in out if isinstance(x, bytes)]
    assert tap in lines
    assert all(len(x) <= RFID.line.max_length and b"\n" not in x for x in lines)
    assert splitter.buffered <= RFID.line.max_length + 1


@PROPERTY
@given(st.lists(TAP, max_size=20), st.lists(st.integers(0, 10_000), max_size=8))
def test_splitter_returns_clean_lines_as_sent(taps: list[bytes], cuts: list[int]) -> None:
    splitter = LineSplitter(b"\r\n", RFID.line.max_length)
    out: list[bytes | FrameError] = []
    for chunk in _chunks(b"".join(t + b"\r\n" for t in taps), cuts):
        out += splitter.feed(chunk)
    assert out == taps


# --------------------------------------------------------------------------- framing, on a pty


class _Reader:
    """A SerialLineDevice on a real pty, run by an event loop on its own thread."""

    def __init__(self, tmp: Path) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        link = tmp / "rfid"
        link.symlink_to(os.ttyname(self.slave))
        # Rate limits off the table: this is about framing, not floods.
        cfg = SerialLineSource(
            id="rfid",
            type="serial_line",
            port=str(link),
            max_lines_per_s=10_000,
            max_burst_lines=100_000,
        )
        dev = DeviceConfig(id="rfid-1", profile=RFID.name, source="rfid")
        self.samples: queue.Queue[Sample] = queue.Queue()
        self.loop = asyncio.new_event_loop()

        async def emit(s: Sample) -> None:
            self.samples.put(s)

        self.device = SerialLineDevice(cfg, dev, RFID, emit, SystemClock())
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.task = asyncio.run_coroutine_threadsafe(self.device.run(), self.loop)
        self.seq = 0

    def tap(self, garbage_before: bytes, garbage_after: bytes) -> int:
        """Write garbage, a valid tap, garbage; return the tap's sequence number."""
        self.seq += 1
        line = with_checksum(f"CP01,04A1B2C3D4,{self.seq}").encode()
        os.write(self.master, garbage_before + b"\r\n" + line + b"\r\n" + garbage_after + b"\r\n")
        return self.seq

    def wait_for(self, seq: int) -> None:
        while True:
            s = self.samples.get(timeout=5)
            if s.values.get("seq") == seq and s.values.get("card") == "04A1B2C3D4":
                return

    def close(self) -> None:
        self.task.cancel()

        async def _close() -> None:
            await self.device.aclose()

        asyncio.run_coroutine_threadsafe(_close(), self.loop).result(timeout=10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()
        os.close(self.master)
        os.close(self.slave)


@pytest.fixture(scope="module")
def reader(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Reader]:
    r = _Reader(tmp_path_factory.mktemp("pty"))
    try:
        # Opening the port flushes its input: write only once it is open.
        deadline = time.monotonic() + 10
        while not r.device.connected:
            assert time.monotonic() < deadline, "the reader did not open the pty"
            time.sleep(0.01)
        r.wait_for(r.tap(b"", b""))
        yield r
    finally:
        r.close()


# Fewer examples and no shrinking: every failing example would wait out a timeout.
@settings(parent=PROPERTY, max_examples=60, phases=[Phase.explicit, Phase.generate])
@given(LONG_GARBAGE, LONG_GARBAGE)
def test_valid_tap_survives_garbage_around_it(reader: _Reader, before: bytes, after: bytes) -> None:
    reader.wait_for(reader.tap(before, after))
