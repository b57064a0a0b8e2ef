"""M-Bus wire codec (EN 13757-2 link layer, EN 13757-3 variable data): pure functions, no I/O.

Owns: building the master's frames (SND_NKE, REQ_UD2 with its FCB, the
secondary-address selection), splitting a byte stream into frames
(``FrameReader``: ACK ``E5``, short ``10 C A CS 16``, long ``68 L L 68 C A
CI data CS 16``; garbage is skipped and counted), the CI=0x72 variable data
header, and the data records (DIF/DIFE/VIF/VIFE) decoded into values in
canonical units (Wh, m3, W, m3/h, degC, K, bar, s). The simulator's encoders
live here too, so one table serves both directions.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from gateway.errors import CodecError, FrameError

ACK = 0xE5
SHORT_START, LONG_START, STOP = 0x10, 0x68, 0x16
C_SND_NKE = 0x40
C_REQ_UD2 = 0x5B  # FCV set; FCB (0x20) toggles per new telegram
C_SND_UD = 0x53
C_RSP_UD = 0x08
FCB = 0x20
CI_SELECT = 0x52
CI_RSP_VARIABLE = 0x72
ADDR_SELECTED = 253
MAX_LONG_DATA = 252  # L counts C, A, CI and data: at most 255

# DIF data field (low nibble): data length in bytes.
DATA_LEN = {0x0: 0, 0x1: 1, 0x2: 2, 0x3: 3, 0x4: 4, 0x5: 4, 0x6: 6, 0x7: 8, 0x8: 0,
             0x9: 1, 0xA: 2, 0xB: 3, 0xC: 4, 0xE: 6}  # fmt: skip
BCD_CODINGS = frozenset({0x9, 0xA, 0xB, 0xC, 0xE})
DIF_MORE_RECORDS = 0x1F
DIF_MANUFACTURER = 0x0F
DIF_IDLE_FILLER = 0x2F
FUNCTIONS = ("instantaneous", "maximum", "minimum", "error")


def checksum(data: bytes) -> int:
    """The M-Bus checksum: arithmetic sum of the bytes, modulo 256."""
    return sum(data) & 0xFF


def short_frame(c: int, a: int) -> bytes:
    return bytes([SHORT_START, c, a, (c + a) & 0xFF, STOP])


def long_frame(c: int, a: int, ci: int, data: bytes = b"") -> bytes:
    if len(data) > MAX_LONG_DATA:
        raise CodecError(f"long frame data of {len(data)} bytes exceeds {MAX_LONG_DATA}")
    body = bytes([c, a, ci]) + data
    n = len(body)
    return bytes([LONG_START, n, n, LONG_START]) + body + bytes([checksum(body), STOP])


def snd_nke(a: int) -> bytes:
    """Link reset: the slave answers E5 and restarts its telegram sequence (FCB)."""
    return short_frame(C_SND_NKE, a)


def req_ud2(a: int, fcb: bool) -> bytes:
    return short_frame(C_REQ_UD2 | (FCB if fcb else 0), a)


@dataclass(frozen=True, slots=True)
class SecondaryAddress:
    """The 8-byte secondary address: id (8 BCD digits), manufacturer, version, medium."""

    ident: int
    manufacturer: str
    version: int
    medium: int

    @classmethod
    def parse(cls, text: str) -> SecondaryAddress:
        """``"12345678"`` (any manufacturer/version/medium) or ``"12345678-PAD-01-07"``."""
        parts = text.split("-")
        if not (len(parts) in (1, 4) and len(parts[0]) == 8 and parts[0].isdigit()):
            raise ValueError(f"secondary address {text!r}: want 8 digits or 8 digits-MAN-VV-MM")
        if len(parts) == 1:
            return cls(int(parts[0]), "", 0xFF, 0xFF)
        man, ver, med = parts[1:]
        if not (len(man) == 3 and man.isalpha() and man.isupper()):
            raise ValueError(f"secondary address {text!r}: manufacturer must be 3 letters A-Z")
        try:
            return cls(int(parts[0]), man, int(ver, 16), int(med, 16))
        except ValueError:
            raise ValueError(f"secondary address {text!r}: version, medium are hex bytes") from None

    def to_bytes(self) -> bytes:
        """Wire form; empty manufacturer / 0xFF version or medium are wildcards."""
        man = encode_manufacturer(self.manufacturer) if self.manufacturer else b"\xff\xff"
        return encode_bcd(self.ident, 4) + man + bytes([self.version, self.medium])


def select_frame(addr: SecondaryAddress) -> bytes:
    """Secondary-address selection (SND_UD, CI=0x52 to address 253): a match answers E5."""
    return long_frame(C_SND_UD, ADDR_SELECTED, CI_SELECT, addr.to_bytes())


def secondary_matches(pattern: bytes, own: bytes) -> bool:
    """Whether a selection pattern matches an 8-byte address (0xF nibbles and 0xFF are wild)."""
    if len(pattern) != 8 or len(own) != 8:
        return False
    for p, o in zip(pattern[:4], own[:4], strict=True):  # BCD id: wildcard per nibble
        if (p >> 4) != 0xF and (p >> 4) != (o >> 4):
            return False
        if (p & 0xF) != 0xF and (p & 0xF) != (o & 0xF):
            return False
    if pattern[4:6] != b"\xff\xff" and pattern[4:6] != own[4:6]:
        return False
    return all(p in (0xFF, o) for p, o in zip(pattern[6:], own[6:], strict=True))


# --------------------------------------------------------------------------- frames


@dataclass(frozen=True, slots=True)
class Ack:
    pass


@dataclass(frozen=True, slots=True)
class ShortFrame:
    c: int
    a: int


@dataclass(frozen=True, slots=True)
class LongFrame:
    c: int
    a: int
    ci: int
    data: bytes


Frame = Ack | ShortFrame | LongFrame


class StreamBuffer:
    """The bytes a frame reader holds between calls, and what it dropped.

    ``garbage`` counts bytes dropped (noise, bad checksums, wrong lengths);
    ``bad_frames`` counts frame-shaped garbage; ``pending`` is a partial
    frame kept for the next call.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self.garbage = 0
        self.bad_frames = 0

    def reset(self) -> None:
        self._buf.clear()

    @property
    def pending(self) -> int:
        return len(self._buf)

    def _drop(self, n: int, *, frame: bool = False) -> None:
        del self._buf[:n]
        self.garbage += n
        if frame:
            self.bad_frames += 1


class FrameReader(StreamBuffer):
    """Splits a byte stream into frames; bytes that form no valid frame are skipped and counted.

    ``feed`` returns the complete frames found so far; a partial frame stays
    buffered for the next call.
    """

    def feed(self, data: bytes) -> list[Frame]:
        self._buf += data
        out: list[Frame] = []
        while self._buf:
            b = self._buf[0]
            if b == ACK:
                del self._buf[0]
                out.append(Ack())
                continue
            if b == SHORT_START:
                if len(self._buf) < 5:
                    break
                c, a, cs, stop = self._buf[1:5]
                if cs == (c + a) & 0xFF and stop == STOP:
                    del self._buf[:5]
                    out.append(ShortFrame(c, a))
                else:
                    self._drop(1, frame=True)
                continue
            if b == LONG_START:
                if len(self._buf) < 4:
                    break
                n, n2, start2 = self._buf[1:4]
                if n != n2 or start2 != LONG_START or n < 3:
                    self._drop(1, frame=True)
                    continue
                total = n + 6
                if len(self._buf) < total:
                    break
                body = bytes(self._buf[4 : 4 + n])
                if self._buf[4 + n] != checksum(body) or self._buf[5 + n] != STOP:
                    self._drop(1, frame=True)
                    continue
                del self._buf[:total]
                out.append(LongFrame(body[0], body[1], body[2], body[3:]))
                continue
            self._drop(1)
        return out


def parse_frame(data: bytes) -> Frame:
    """Exactly one frame, or ``FrameError`` saying why not."""
    reader = FrameReader()
    frames = reader.feed(data)
    if len(frames) != 1 or reader.pending or reader.garbage:
        raise FrameError(f"not one valid M-Bus frame: {data.hex(' ')}")
    return frames[0]


# --------------------------------------------------------------------------- numbers


def decode_bcd(raw: bytes) -> int:
    """Little-endian packed BCD; a top nibble 0xF means negative (EN 13757-3 annex B)."""
    digits = []
    for byte in reversed(raw):
        digits += [byte >> 4, byte & 0xF]
    sign = 1
    if digits and digits[0] == 0xF:
        sign, digits[0] = -1, 0
    if any(d > 9 for d in digits):
        raise CodecError(f"invalid BCD {raw.hex()}")
    value = 0
    for d in digits:
        value = value * 10 + d
    return sign * value


def encode_bcd(value: int, size: int) -> bytes:
    neg = value < 0
    digits = f"{abs(value):0{size * 2}d}"
    if len(digits) > size * 2 or (neg and digits[0] != "0"):
        raise CodecError(f"{value} does not fit in {size * 2} BCD digits")
    if neg:
        digits = "F" + digits[1:]
    return bytes.fromhex(digits)[::-1]


def decode_manufacturer(raw: int) -> str:
    return "".join(chr(((raw >> s) & 0x1F) + 64) for s in (10, 5, 0))


def encode_manufacturer(man: str) -> bytes:
    v = 0
    for ch in man:
        v = (v << 5) | (ord(ch) - 64)
    return v.to_bytes(2, "little")


def decode_type_g(raw: bytes) -> str:
    day, month = raw[0] & 0x1F, raw[1] & 0x0F
    year = ((raw[0] & 0xE0) >> 5) | ((raw[1] & 0xF0) >> 1)
    try:
        return date(2000 + year, month, day).isoformat()
    except ValueError as exc:
        raise CodecError(f"invalid date (type G) {raw.hex()}") from exc


def decode_type_f(raw: bytes) -> str:
    if raw[0] & 0x80:
        raise CodecError(f"date/time (type F) {raw.hex()} flagged invalid")
    minute, hour = raw[0] & 0x3F, raw[1] & 0x1F
    d = decode_type_g(raw[2:4])
    try:
        return datetime.fromisoformat(d).replace(hour=hour, minute=minute).isoformat()
    except ValueError as exc:
        raise CodecError(f"invalid date/time (type F) {raw.hex()}") from exc
