"""RFID checkpoint reader simulator: tap lines on a pty, on a schedule, faster than real time.

Each tap is written as the reader's profile frames it: the profile's fields
joined by commas (``reader,card,seq`` for the built-in reader), then ``*HH``
(the XOR of every byte before the ``*``, when the profile's checksum is
``xor8``) and the line terminator. Every line is checked against the
profile's pattern when the script is loaded, so a script cannot send what the
profile would reject, except on purpose (``garbage_at_s``: a line whose
checksum is wrong, as line noise produces).

A scenario's ``serial`` block maps a serial-line device id to an
``RfidScript`` (validated here, ``extra="forbid"``): patrol ``rounds``
(route, card, start times, walking time between checkpoints, rounds walked
implausibly fast, checkpoints skipped), single ``taps`` (an unknown card),
``garbage_at_s`` and ``unplug`` windows (the pty is closed and its symlink
removed, as when the reader's cable is pulled; a new pty appears at the same
path when it is plugged back), and ``floods``: ``count`` taps of distinct
unknown cards at the given readers in turn, back to back at ``rate_per_s``
or as fast as the line takes them (a stuck or malicious reader). Every
flood line is delivered, waiting while the pty's buffer is full, so ``sent``
is exactly what the gateway was given. Times are simulation seconds from
the start of the run, so ``--speed`` plays a night in minutes; ``loop_s``
replays the script for ever (the demo).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from firmware_sim.clock import Clock
from firmware_sim.ptylink import PtyLink
from gateway.config import SerialLineSource
from gateway.profiles.schema import SerialLineProfile

log = logging.getLogger(__name__)

Seconds = Annotated[float, Field(ge=0)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Tap(_Strict):
    at_s: Seconds
    reader: str
    card: str


class Rounds(_Strict):
    """One guard's patrol rounds over a route."""

    route: list[str] = Field(min_length=1)
    card: str
    start_s: list[Seconds] = Field(default_factory=lambda: [0.0], min_length=1)
    walk_s: float = Field(default=240.0, gt=0)
    # Rounds (0-based index into start_s) walked implausibly fast: a faked record.
    faked: list[int] = Field(default_factory=list)
    fake_walk_s: float = Field(default=10.0, gt=0)
    # Round index -> checkpoints of the route the guard does not tap in that round.
    skip_checkpoints: dict[int, list[str]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _indexes(self) -> Rounds:
        n = len(self.start_s)
        for i in [*self.faked, *self.skip_checkpoints]:
            if not 0 <= i < n:
                raise ValueError(f"round index {i} is outside start_s (0..{n - 1})")
        for i, cps in self.skip_checkpoints.items():
            unknown = set(cps) - set(self.route)
            if unknown:
                raise ValueError(f"round {i}: skip_checkpoints {sorted(unknown)} are not in route")
        return self

    def taps(self) -> list[Tap]:
        out: list[Tap] = []
        for i, start in enumerate(self.start_s):
            walk = self.fake_walk_s if i in self.faked else self.walk_s
            skipped = set(self.skip_checkpoints.get(i, []))
            for k, cp in enumerate(self.route):
                if cp not in skipped:
                    out.append(Tap(at_s=start + k * walk, reader=cp, card=self.card))
        return out


class Flood(_Strict):
    """``count`` taps of distinct cards (``card_prefix`` + a hex serial) at ``readers`` in turn."""

    at_s: Seconds
    readers: list[str] = Field(min_length=1)
    count: int = Field(ge=1, le=1_000_000)
    card_prefix: str = Field(default="F100", pattern=r"^[0-9A-F]{0,8}$")
    # Lines per simulated second; None: as fast as the line takes them.
    rate_per_s: float | None = Field(default=None, gt=0)

    def card(self, i: int) -> str:
        return f"{self.card_prefix}{i:08X}"


class Unplug(_Strict):
    after_s: Seconds
    duration_s: float | None = Field(default=None, gt=0)


class RfidScript(_Strict):
    rounds: list[Rounds] = Field(default_factory=list)
    taps: list[Tap] = Field(default_factory=list)
    garbage_at_s: list[Seconds] = Field(default_factory=list)
    floods: list[Flood] = Field(default_factory=list)
    unplug: list[Unplug] = Field(default_factory=list)
    seq_start: int = Field(default=1, ge=0)
    loop_s: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _loop_covers_script(self) -> RfidScript:
        if self.loop_s is not None:
            times = [t.at_s for t in self.all_taps()] + [f.at_s for f in self.floods]
            last = max(times + list(self.garbage_at_s), default=0.0)
            if last >= self.loop_s:
                raise ValueError(f"loop_s {self.loop_s} must exceed the last tap at {last:g} s")
            if self.unplug:
                raise ValueError("unplug cannot be combined with loop_s")
        return self

    def all_taps(self) -> list[Tap]:
        taps = [t for r in self.rounds for t in r.taps()] + list(self.taps)
        return sorted(taps, key=lambda t: t.at_s)


EventKind = Literal["tap", "garbage", "flood", "unplug", "plug"]


@dataclass(frozen=True, order=True)
class Event:
    at_s: float
    order: int  # unplug before taps at the same instant, plug after
    kind: EventKind
    reader: str = ""
    card: str = ""
    flood: int = -1  # index into the script's floods


def events(script: RfidScript) -> Iterator[Event]:
    """The script's events in time order (endless when ``loop_s`` is set)."""
    once: list[Event] = [Event(t.at_s, 1, "tap", t.reader, t.card) for t in script.all_taps()]
    once += [Event(t, 1, "garbage") for t in script.garbage_at_s]
    once += [Event(f.at_s, 1, "flood", flood=i) for i, f in enumerate(script.floods)]
    for u in script.unplug:
        once.append(Event(u.after_s, 0, "unplug"))
        if u.duration_s is not None:
            once.append(Event(u.after_s + u.duration_s, 2, "plug"))
    once.sort()
    if script.loop_s is None:
        yield from once
        return
    k = 0
    while True:
        off = k * script.loop_s
        for e in once:
            yield Event(e.at_s + off, e.order, e.kind, e.reader, e.card, e.flood)
        k += 1


def xor8(data: bytes) -> int:
    out = 0
    for b in data:
        out ^= b
    return out


class LineBuilder:
    """Frames taps as the profile's lines and checks each against the profile's pattern."""

    def __init__(self, profile: SerialLineProfile) -> None:
        self.profile = profile
        self._pattern = re.compile(profile.line.pattern)

    def body(self, values: dict[str, str]) -> str:
        return ",".join(values.get(f.name, "") for f in self.profile.fields)

    def tap_line(self, reader: str, card: str, seq: int) -> bytes:
        body = self.body({"reader": reader, "card": card, "seq": str(seq)})
        if not self._pattern.match(body):
            raise ValueError(
                f"line {body!r} does not match profile {self.profile.name!r} pattern"
                f" {self.profile.line.pattern!r}"
            )
        return self._frame(body, good=True)

    def garbage_line(self, reader: str, seq: int) -> bytes:
        body = self.body({"reader": reader, "card": "DEADBEEF", "seq": str(seq)})
        return self._frame(body, good=False)

    def _frame(self, body: str, good: bool) -> bytes:
        line = self.profile.line
        data = body.encode(line.encoding)
        if line.checksum == "xor8":
            cs = xor8(data) ^ (0 if good else 0x5A)
            data += b"*" + f"{cs:02X}".encode()
        elif not good:
            data = data[: max(1, len(data) // 2)] + b"\x7f\x00" + data[len(data) // 2 :]
        return data + line.terminator.encode(line.encoding)

    def check(self, script: RfidScript) -> list[str]:
        """Problems with the script's taps (each would be rejected by the gateway)."""
        problems = []
        for t in script.all_taps():
            try:
                self.tap_line(t.reader, t.card, script.seq_start)
            except ValueError as exc:
                problems.append(f"tap at {t.at_s:g} s: {exc}")
        for f in script.floods:
            for reader in f.readers:
                try:
                    self.tap_line(reader, f.card(f.count - 1), script.seq_start)
                except ValueError as exc:
                    problems.append(f"flood at {f.at_s:g} s: {exc}")
        return problems


class RfidReader:
    """One reader on its serial line: a pty at the source's port path, written on schedule."""

    def __init__(
        self,
        device_id: str,
        source: SerialLineSource,
        profile: SerialLineProfile,
        script: RfidScript,
        clock: Clock,
    ) -> None:
        self.device_id = device_id
        self.source = source
        self.script = script
        self.clock = clock
        self.builder = LineBuilder(profile)
        self.pty = PtyLink(source.port)
        self.sent: list[bytes] = []
        self.lost: list[Event] = []  # taps made while the reader was unplugged
        self._seq = script.seq_start
        self._task: asyncio.Task[None] | None = None

    @property
    def link_path(self) -> str:
        return str(self.pty.link)

    @property
    def pty_path(self) -> str:
        return self.pty.pty_path

    async def __aenter__(self) -> RfidReader:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def start(self) -> None:
        self.pty.open()
        self._task = asyncio.create_task(self._run())

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self.pty.close()

    async def _run(self) -> None:
        for e in events(self.script):
            await self._fire(e)

    async def _fire(self, e: Event) -> None:
        await self.clock.sleep_until(e.at_s)
        if e.kind == "unplug":
            log.info("%s: reader unplugged", self.device_id)
            self.pty.close()
        elif e.kind == "plug":
            self.pty.open()
            log.info("%s: reader plugged back in at %s", self.device_id, self.pty.pty_path)
        elif not self.pty.is_open:
            self.lost.append(e)
        elif e.kind == "tap":
            line = self.builder.tap_line(e.reader, e.card, self._seq)
            self._seq += 1
            self._write(line)
        elif e.kind == "flood":
            await self._flood(self.script.floods[e.flood])
        else:
            self._write(self.builder.garbage_line(self.device_id, self._seq))

    async def _flood(self, f: Flood) -> None:
        log.info("%s: flooding %d unknown cards at %s", self.device_id, f.count, f.readers)
        for i in range(f.count):
            if f.rate_per_s is not None:
                await self.clock.sleep_until(f.at_s + i / f.rate_per_s)
            reader = f.readers[i % len(f.readers)]
            line = self.builder.tap_line(reader, f.card(i), self._seq)
            self._seq += 1
            if not await self._write_all(line):
                self.lost.append(Event(self.clock.now(), 1, "tap", reader, f.card(i)))
                continue
            self.sent.append(line)
            if i % 64 == 63:
                await asyncio.sleep(0)  # a flood must not stall the simulator's other devices

    async def _write_all(self, data: bytes) -> bool:
        """Write every byte, waiting while the line's buffer is full; False if the line closed."""
        while data:
            fd = self.pty.master_fd
            if fd < 0:
                return False
            try:
                n = os.write(fd, data)
            except BlockingIOError:
                await asyncio.sleep(0.002)
                continue
            except OSError:
                return False
            data = data[n:]
        return True

    def _write(self, line: bytes) -> None:
        self.sent.append(line)
        if not self.pty.write(line):
            log.debug("%s: line not delivered (nobody reading)", self.device_id)
