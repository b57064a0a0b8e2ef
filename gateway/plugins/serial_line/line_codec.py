"""Framing and parsing of a line-oriented ASCII device: pure code, tested as tables.

``LineSplitter`` cuts the byte stream into lines. A line ends at the last
byte of the profile's terminator (``\n`` of ``\r\n``), so a bare newline
after line noise is a line start as well; the rest of the terminator is
stripped. A line that grows past ``max_length`` can never be valid: it is
discarded up to its end, counted once (one ``FrameError``, its bytes in
``discarded_bytes``), and the splitter resynchronises on the next line
start, so a megabyte of noise costs no valid line after it and holds at most
one line's worth of memory.

``parse_line``: a line (without its terminator) is checked for length,
printable text and, when the profile asks for it, an XOR-8 checksum written
as ``*HH`` at its end; then matched against the profile's pattern. Anything
else is a ``FrameError`` (garbage on the line), never a crash.
"""

from __future__ import annotations

import math

from gateway.errors import FrameError
from gateway.model import Value
from gateway.profiles.schema import SerialLineProfile


def xor8(data: bytes) -> int:
    """XOR of every byte: the checksum NMEA-style devices append as ``*HH``."""
    out = 0
    for b in data:
        out ^= b
    return out


def with_checksum(text: str) -> str:
    """``text`` with its ``*HH`` checksum appended (simulators, tests)."""
    return f"{text}*{xor8(text.encode('ascii')):02X}"


class LineSplitter:
    """Bytes in, lines (terminator removed) and ``FrameError`` for discarded overlong lines out."""

    def __init__(self, terminator: bytes, max_length: int) -> None:
        if not terminator:
            raise ValueError("a line terminator cannot be empty")
        self._end = terminator[-1:]
        self._head = terminator[:-1]
        self.max_length = max_length
        self._buf = b""
        self._discarding = False
        self.discarded_lines = 0
        self.discarded_bytes = 0

    @property
    def buffered(self) -> int:
        """Bytes of the current, unfinished line held."""
        return len(self._buf)

    def reset(self) -> None:
        """Forget a partial line (the port was reopened)."""
        self._buf = b""
        self._discarding = False

    def feed(self, data: bytes) -> list[bytes | FrameError]:
        out: list[bytes | FrameError] = []
        if self._discarding:
            cut = data.find(self._end)
            if cut < 0:
                self.discarded_bytes += len(data)
                return out
            self.discarded_bytes += cut + 1
            data = data[cut + 1 :]
            self._discarding = False
        buf = self._buf + data if self._buf else data
        start = 0
        while (cut := buf.find(self._end, start)) >= 0:
            line = buf[start:cut]
            start = cut + 1
            if self._head and line.endswith(self._head):
                line = line[: -len(self._head)]
            if len(line) > self.max_length:
                out.append(self._discard(len(line) + len(self._head) + 1, ended=True))
            else:
                out.append(line)
        rest = buf[start:]
        # One byte of grace: the head of a terminator may follow a full-length line.
        if len(rest) > self.max_length + len(self._head):
            out.append(self._discard(len(rest), ended=False))
            self._discarding = True
            rest = b""
        self._buf = rest
        return out

    def _discard(self, nbytes: int, *, ended: bool) -> FrameError:
        self.discarded_lines += 1
        self.discarded_bytes += nbytes
        tail = "" if ended else ", discarding up to the next line end"
        return FrameError(f"line longer than {self.max_length} bytes{tail}")


def parse_line(profile: SerialLineProfile, raw: bytes) -> dict[str, Value]:
    """One line (terminator stripped) to field values, or FrameError."""
    fmt = profile.line
    if len(raw) > fmt.max_length:
        raise FrameError(f"line of {len(raw)} bytes is longer than {fmt.max_length}")
    try:
        text = raw.decode(fmt.encoding)
    except UnicodeDecodeError as exc:
        raise FrameError(f"line is not {fmt.encoding}: {raw[:40]!r}") from exc
    if not text.isprintable():
        raise FrameError(f"line has control characters: {raw[:40]!r}")
    if fmt.checksum == "xor8":
        body, star, given = text.rpartition("*")
        if not star or len(given) != 2:
            raise FrameError(f"line has no *HH checksum: {text[:40]!r}")
        try:
            expected = int(given, 16)
        except ValueError as exc:
            raise FrameError(f"checksum {given!r} is not hex") from exc
        if xor8(body.encode(fmt.encoding)) != expected:
            raise FrameError(f"checksum mismatch in {text[:40]!r}")
        text = body
    m = profile.compiled.fullmatch(text)
    if m is None:
        raise FrameError(f"line does not match the {profile.name} format: {text[:40]!r}")
    out: dict[str, Value] = {}
    for f in profile.fields:
        got = m.group(f.name)
        if got is None:
            continue
        if f.type == "string":
            out[f.name] = got
            continue
        try:
            num: int | float = int(got) if f.type == "int" else float(got)
        except ValueError as exc:
            raise FrameError(f"field {f.name!r} is not a number: {got[:40]!r}") from exc
        # "nan" would compare false with every limit and quietly clear an alarm.
        if not math.isfinite(num):
            raise FrameError(f"field {f.name!r} is not a finite number: {got[:40]!r}")
        out[f.name] = num
    return out
