"""Parsing one line of a line-oriented ASCII device: pure functions, tested as tables.

A line (without its terminator) is checked for length, printable text and,
when the profile asks for it, an XOR-8 checksum written as ``*HH`` at its end;
then matched against the profile's pattern. Anything else is a ``FrameError``
(garbage on the line), never a crash.
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
