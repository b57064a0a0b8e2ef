"""``gateway scan``: which unit ids answer on a line, with which line settings and function codes.

For each line setting (baud rate x parity on a serial line; one for TCP) and
each unit id, the scanner asks for one item at a low address with FC3, FC4,
FC1 and FC2 in turn, all within the unit's time budget (``timeout``):

- no answer to the first request: nobody is there (the budget is spent),
- any answer, an exception reply included, proves the unit alive; the
  remaining function codes are asked only while the budget lasts, and not at
  all when the unit is too slow to answer another within it (its late answer
  would land in the next unit's window),
- exception 10 or 11 comes from a Modbus TCP gateway saying the unit behind
  it did not answer: not alive,
- bytes without a valid frame (noise, a wrong baud rate or parity, another
  unit's late answer) are asked once more, then reported as garbled, not alive.

So a scan ends within units x settings x timeout (plus connecting), which
it prints before it starts.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any, TextIO

from gateway.commissioning.link import LinkConfig, connected, describe
from gateway.commissioning.table import render
from gateway.errors import CommandError, ConnectError, DeviceException, DeviceTimeout, FrameError
from gateway.plugins.modbus.config import ModbusRtuSource
from gateway.plugins.modbus.source import ModbusClient
from gateway.profiles.schema import Table

UNIT_MIN, UNIT_MAX = 1, 247
FUNCTIONS: tuple[tuple[int, Table], ...] = (
    (3, Table.HOLDING_REGISTER),
    (4, Table.INPUT_REGISTER),
    (1, Table.COIL),
    (2, Table.DISCRETE_INPUT),
)
# A Modbus TCP gateway's "path unavailable" / "target failed to respond".
GATEWAY_NO_UNIT = frozenset({10, 11})
OK, NO_ANSWER, GARBLED, NOT_TRIED = "ok", "no answer", "garbled", "not tried"


def parse_units(text: str) -> list[int]:
    """``1-20,31`` -> [1..20, 31], sorted, each once. Raises CommandError naming the bad part."""
    units: set[int] = set()
    for part in (p.strip() for p in text.split(",")):
        lo_text, dash, hi_text = part.partition("-")
        try:
            lo = int(lo_text)
            hi = int(hi_text) if dash else lo
        except ValueError:
            raise CommandError(
                f"--units {text!r}: {part!r} is not a unit id or a range like 1-20"
            ) from None
        if hi < lo:
            raise CommandError(f"--units {text!r}: the range {part!r} runs backwards")
        if lo < UNIT_MIN or hi > UNIT_MAX:
            raise CommandError(
                f"--units {text!r}: unit ids are {UNIT_MIN}..{UNIT_MAX} (0 is broadcast)"
            )
        units.update(range(lo, hi + 1))
    return sorted(units)


def where(link: LinkConfig) -> str:
    """The line without its settings: ``serial /dev/ttyUSB0`` or ``tcp host:port``."""
    if isinstance(link, ModbusRtuSource):
        return f"serial {link.port}"
    return describe(link)


def line_label(link: LinkConfig) -> str:
    if isinstance(link, ModbusRtuSource):
        return f"{link.baudrate} {link.bytesize}{link.parity}{link.stopbits}"
    return "tcp"


@dataclass
class UnitResult:
    unit: int
    line: str
    functions: dict[int, str] = field(
        default_factory=lambda: {fc: NOT_TRIED for fc, _ in FUNCTIONS}
    )
    rtt_s: float | None = None  # of the first answer

    @property
    def exceptions(self) -> list[int]:
        return [int(v.split()[1]) for v in self.functions.values() if v.startswith("exception")]

    @property
    def alive(self) -> bool:
        return OK in self.functions.values() or any(
            c not in GATEWAY_NO_UNIT for c in self.exceptions
        )

    @property
    def garbled(self) -> bool:
        return not self.alive and GARBLED in self.functions.values()

    @property
    def status(self) -> str:
        if OK in self.functions.values():
            return "answers"
        if self.alive:
            return f"answers (exception {self.exceptions[0]})"
        if self.garbled:
            return "garbled answer"
        if self.exceptions:
            return f"no unit (gateway: exception {self.exceptions[0]})"
        return NO_ANSWER


async def scan_unit(
    client: ModbusClient,
    unit: int,
    link: LinkConfig,
    address: int = 0,
    monotonic: Callable[[], float] = time.monotonic,
) -> UnitResult:
    """Ask one unit FC3/FC4/FC1/FC2 within ``link.timeout_s`` (see the module docstring)."""
    res = UnitResult(unit, line_label(link))
    start = monotonic()
    deadline = start + link.timeout_s
    for i, (fc, table) in enumerate(FUNCTIONS):
        remaining = deadline - monotonic()
        if i and (res.rtt_s is None or remaining < 2 * res.rtt_s):
            break
        retried = False
        while True:
            t0 = monotonic()
            try:
                # The first request runs on the client's own timeout (the whole
                # budget); later ones are cut at what is left of it.
                limit = link.timeout_s * 2 if i == 0 else max(remaining, 0.001)
                await asyncio.wait_for(client.read(table, address, 1, unit), limit)
                outcome = OK
            except DeviceException as exc:
                outcome = f"exception {exc.code}"
            except (DeviceTimeout, TimeoutError):
                outcome = NO_ANSWER
            except FrameError:
                remaining = deadline - monotonic()
                if not retried and remaining > 0.01:
                    retried = True
                    continue
                outcome = GARBLED
            break
        res.functions[fc] = outcome
        if res.rtt_s is None and outcome not in (NO_ANSWER, GARBLED):
            res.rtt_s = monotonic() - t0
        if not res.alive:
            break  # silent, garbled or no unit behind the gateway: nothing more to learn
    return res


@dataclass
class ScanReport:
    links: list[LinkConfig]
    units: list[int]
    address: int
    results: list[UnitResult]
    bound_s: float
    elapsed_s: float
    # Line settings the port refused: (line, why).
    unopened: list[tuple[str, str]] = field(default_factory=list)

    @property
    def found(self) -> list[UnitResult]:
        return [r for r in self.results if r.alive]

    @property
    def garbled(self) -> list[UnitResult]:
        return [r for r in self.results if r.garbled]


def bound_s(links: Sequence[LinkConfig], units: Sequence[int]) -> float:
    """The time a scan takes at most (nobody answering): units x settings x timeout."""
    return sum(len(units) * link.timeout_s for link in links)


class Progress:
    """Progress on stderr: a bar on a terminal, a line per found unit and per tenth otherwise."""

    def __init__(self, total: int, stream: TextIO | None, quiet: bool = False) -> None:
        self.total = total
        self.stream = None if quiet else stream
        self.tty = bool(self.stream is not None and self.stream.isatty())
        self.done = 0
        self._tenth = 0

    def say(self, text: str) -> None:
        if self.stream is not None:
            if self.tty:
                self.stream.write("\r\x1b[K")
            self.stream.write(text + "\n")
            self.stream.flush()

    def step(self, res: UnitResult, found: int) -> None:
        self.done += 1
        if self.stream is None:
            return
        if self.tty:
            # A found unit gets a line of its own above the bar, which is redrawn below it.
            if res.alive:
                self.say(f"unit {res.unit} {res.status} ({res.line})")
            width = 30
            filled = width * self.done // max(self.total, 1)
            bar = "#" * filled + "-" * (width - filled)
            self.stream.write(
                f"\r\x1b[K[{bar}] {self.done}/{self.total} unit {res.unit} {res.line}"
                f"  found {found}"
            )
            self.stream.flush()
            return
        if res.alive:
            self.say(f"scan: unit {res.unit} {res.status} ({res.line})")
        tenth = 10 * self.done // max(self.total, 1)
        if tenth > self._tenth:
            self._tenth = tenth
            self.say(f"scan: {self.done}/{self.total} ({tenth * 10}%), found {found}")

    def finish(self) -> None:
        if self.stream is not None and self.tty:
            self.stream.write("\r\x1b[K")
            self.stream.flush()


async def run_scan(
    links: Sequence[LinkConfig],
    units: Sequence[int],
    *,
    address: int = 0,
    progress: Progress | None = None,
    monotonic: Callable[[], float] = time.monotonic,
) -> ScanReport:
    """Scan every unit with every line setting; reconnects once if the link drops.

    A line setting the port refuses (a pty refuses parity, an adapter a baud
    rate) is reported and skipped; when no setting opens, the first refusal
    is raised (ConnectError).
    """
    progress = progress or Progress(len(units) * len(links), None)
    start = monotonic()
    results: list[UnitResult] = []
    unopened: list[tuple[str, str]] = []
    first_refusal: ConnectError | None = None
    for link in links:
        async with AsyncExitStack() as stack:
            try:
                client = await stack.enter_async_context(connected(link))
            except ConnectError as exc:
                first_refusal = first_refusal or exc
                unopened.append((line_label(link), str(exc)))
                progress.say(f"scan: {exc}")
                progress.done += len(units)
                continue
            for unit in units:
                try:
                    res = await scan_unit(client, unit, link, address, monotonic)
                except ConnectError:
                    client.close()
                    await client.connect()  # a second loss ends the scan (ConnectError)
                    res = await scan_unit(client, unit, link, address, monotonic)
                results.append(res)
                progress.step(res, sum(r.alive for r in results))
    progress.finish()
    if first_refusal is not None and len(unopened) == len(links):
        raise first_refusal
    return ScanReport(
        list(links),
        list(units),
        address,
        results,
        bound_s(links, units),
        monotonic() - start,
        unopened,
    )


# --------------------------------------------------------------------------- output


def _fc_cell(outcome: str) -> str:
    if outcome.startswith("exception"):
        return "exc " + outcome.split()[1]
    return {NO_ANSWER: "-", NOT_TRIED: ""}.get(outcome, outcome)


def render_text(report: ScanReport) -> list[str]:
    order = {line_label(link): i for i, link in enumerate(report.links)}
    shown = sorted(report.found + report.garbled, key=lambda r: (r.unit, order[r.line]))
    rows = [
        [
            str(r.unit),
            r.line,
            r.status,
            "-" if r.rtt_s is None else f"{r.rtt_s * 1000:.1f} ms",
            *(_fc_cell(r.functions[fc]) for fc, _ in FUNCTIONS),
        ]
        for r in shown
    ]
    headers = ["unit", "line", "status", "rtt", *(f"FC{fc}" for fc, _ in FUNCTIONS)]
    lines = render(headers, rows, right={0, 3}) if rows else []
    lines += [f"not scanned at {line}: {why}" for line, why in report.unopened]
    lines.append(
        f"{len(report.found)} unit(s) answered on {where(report.links[0])}:"
        f" {len(report.units)} unit id(s) x {len(report.links)} line setting(s)"
        f" at address {report.address},"
        f" {report.elapsed_s:.1f} s (bound {report.bound_s:.1f} s)"
    )
    return lines


def _row_json(r: UnitResult, link: LinkConfig) -> dict[str, Any]:
    return {
        "unit": r.unit,
        "line": r.line,
        "baud": link.baudrate if isinstance(link, ModbusRtuSource) else None,
        "parity": link.parity if isinstance(link, ModbusRtuSource) else None,
        "status": r.status,
        "alive": r.alive,
        "exception": r.exceptions[0] if r.exceptions and OK not in r.functions.values() else None,
        "rtt_ms": None if r.rtt_s is None else round(r.rtt_s * 1000, 3),
        "functions": {str(fc): r.functions[fc] for fc, _ in FUNCTIONS},
    }


def to_json(report: ScanReport) -> dict[str, Any]:
    by_line = {line_label(link): link for link in report.links}
    return {
        "links": [describe(link) for link in report.links],
        "units_asked": len(report.units),
        "address": report.address,
        "timeout_s": [link.timeout_s for link in report.links],
        "bound_s": round(report.bound_s, 3),
        "elapsed_s": round(report.elapsed_s, 3),
        "found": [_row_json(r, by_line[r.line]) for r in report.found],
        "garbled": [_row_json(r, by_line[r.line]) for r in report.garbled],
        "unopened": [{"line": line, "error": why} for line, why in report.unopened],
    }


def announce(links: Sequence[LinkConfig], units: Sequence[int]) -> str:
    """The line printed before a scan: what it asks and the time it takes at most."""
    per = "/".join(f"{t:g}" for t in sorted({link.timeout_s for link in links}))
    return (
        f"scanning {len(units)} unit id(s) x {len(links)} line setting(s) on {where(links[0])},"
        f" {per} s per unit: done within {bound_s(links, units):.1f} s"
    )
