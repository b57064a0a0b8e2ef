"""``gateway probe``: one read of one device with its profile, by point and by request.

The read goes through the gateway's own parts: the planner makes the
requests (``plan_profile`` via ``ModbusDevice``), the Modbus client sends them,
and ``ModbusDevice.build_sample`` decodes the answers with ``codecs`` exactly
as a poll would, sensor-fault bits included. Probe adds what an integrator
needs beside the values: the raw registers of each point, each request's
round-trip time or the reason it failed, every multi-register value in all
four word/byte orders (``--orders``), and advice lines (``advice``) when the
device refuses a merged read. As in a poll, a unit that did not answer one
request is not asked the rest (its late answer would meet the next request).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

from gateway.codecs import Value, decode
from gateway.commissioning.advice import ILLEGAL_DATA_ADDRESS, ReadFn, unreadable_advice
from gateway.commissioning.link import LinkConfig, connected, describe
from gateway.commissioning.table import render
from gateway.config import DeviceConfig
from gateway.errors import CodecError, ConnectError, DeviceException, DeviceTimeout, SourceError
from gateway.model import Quality
from gateway.plugins.modbus.source import ModbusClient
from gateway.profiles.schema import DataType, ModbusPoint, ModbusProfile, Order, Table
from gateway.sources.device_poll import ModbusDevice
from gateway.sources.planner import ReadRequest

Words = list[int] | list[bool]
NOT_SENT = "not sent: the unit did not answer an earlier request"
WATCH_MIN_S, WATCH_MAX_S = 0.2, 3600.0


@dataclass(frozen=True)
class ProbeTarget:
    """What to read: a device name, its link, unit id, profile and the site's max_gap override."""

    name: str
    link: LinkConfig
    unit: int
    profile: ModbusProfile
    max_gap: int | None = None


@dataclass
class RequestResult:
    request: ReadRequest
    rtt_s: float | None = None  # None: not sent
    data: Words | None = None
    error: str | None = None


@dataclass
class PointRow:
    point: ModbusPoint
    raw: list[str]
    value: Value | None
    quality: Quality
    reason: str = ""
    orders: dict[str, str] = field(default_factory=dict)


@dataclass
class ProbeResult:
    target: ProbeTarget
    ts_ns: int
    requests: list[RequestResult]
    points: list[PointRow]
    advice: list[str]

    @property
    def answered(self) -> bool:
        """Whether any request brought data back."""
        return any(r.data is not None for r in self.requests)


# --------------------------------------------------------------------------- pure parts


def format_value(value: Value | None, dtype: DataType | None = None) -> str:
    """A value as shown: a float32 register to its 7 significant digits, others in full."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and dtype is DataType.FLOAT32:
        return f"{value:.7g}"
    return str(value)


def all_orders(point: ModbusPoint, words: Sequence[int]) -> dict[str, str]:
    """The point's value decoded in each of the four orders (empty for one-register points)."""
    if point.table.is_bit or point.count < 2 or point.type is DataType.BIT:
        return {}
    out: dict[str, str] = {}
    for order in Order:
        other = ModbusPoint.model_validate({**point.model_dump(), "order": order})
        try:
            out[order.value] = format_value(decode(other, words), point.type)
        except CodecError:
            out[order.value] = "invalid"
    return out


def _raw(point: ModbusPoint, data: Words, offset: int) -> tuple[list[str], list[int]]:
    chunk = data[offset : offset + point.count]
    if point.table.is_bit:
        return ["1" if b else "0" for b in chunk], []
    words = [int(w) for w in chunk]
    return [f"{w:04X}" for w in words], words


def point_rows(
    device: ModbusDevice, results: Sequence[RequestResult], ts_ns: int, orders: bool
) -> list[PointRow]:
    """Rows in profile order, decoded by ``device.build_sample`` as a poll would."""
    sample = device.build_sample(
        [r.data if r.data is not None else SourceError(r.error or NOT_SENT) for r in results],
        ts_ns,
    )
    where: dict[str, RequestResult] = {p.name: r for r in results for p in r.request.points}
    guards = {t: p.name for p in device.profile.points for t in p.fault_of}
    rows = []
    for p in device.profile.points:
        res = where[p.name]
        quality = sample.quality.get(p.name, Quality.GOOD)
        row = PointRow(p, [], sample.values.get(p.name), quality)
        if res.data is None:
            row.reason = res.error or NOT_SENT
            rows.append(row)
            continue
        row.raw, words = _raw(p, res.data, p.address - res.request.address)
        if orders and words:
            row.orders = all_orders(p, words)
        if quality is Quality.FAULT:
            row.reason = f"sensor fault: {guards.get(p.name, '?')} is set"
        elif quality is Quality.BAD and words:
            try:
                decode(p, words)
            except CodecError as exc:
                row.reason = str(exc)
        rows.append(row)
    return rows


def _rtt(r: RequestResult) -> str:
    return "-" if r.rtt_s is None else f"{r.rtt_s * 1000:.1f} ms"


def render_text(result: ProbeResult, orders: bool = False) -> list[str]:
    t = result.target
    prof = t.profile
    lines = [
        f"probe {t.name}: unit {t.unit} on {describe(t.link)}, profile {prof.name}"
        f" ({len(prof.points)} points in {len(result.requests)} request(s))",
        "",
    ]
    headers = ["point", "table", "addr", "raw", "value", "unit", "quality"]
    shown_orders = [o.value for o in Order] if orders else []
    headers += shown_orders
    with_reason = any(r.reason for r in result.points)
    if with_reason:
        headers.append("reason")
    rows = []
    for r in result.points:
        cells = [
            r.point.name,
            str(r.point.table),
            str(r.point.address),
            " ".join(r.raw) or "-",
            format_value(r.value, r.point.type),
            r.point.unit,
            str(r.quality),
        ]
        for o in shown_orders:
            v = r.orders.get(o, "")
            cells.append(f"{v}*" if v and o == r.point.order.value else v)
        if with_reason:
            cells.append(r.reason)
        rows.append(cells)
    lines += render(headers, rows, right={2})
    if orders:
        lines.append("(* the profile's order; one-register points have none to choose)")
    lines.append("")
    req_rows = [
        [str(q.table), str(q.address), str(q.count), _rtt(r), r.error or "ok"]
        for r in result.requests
        for q in (r.request,)
    ]
    lines += render(["request", "start", "count", "rtt", "result"], req_rows, right={1, 2, 3})
    if result.advice:
        lines += ["", "advice:"] + [f"  {a}" for a in result.advice]
    return lines


def to_json(result: ProbeResult) -> dict[str, Any]:
    t = result.target
    return {
        "device": t.name,
        "unit": t.unit,
        "link": describe(t.link),
        "profile": t.profile.name,
        "ts_ns": result.ts_ns,
        "answered": result.answered,
        "points": [
            {
                "name": r.point.name,
                "table": str(r.point.table),
                "address": r.point.address,
                "raw": r.raw,
                "value": r.value,
                "unit": r.point.unit,
                "quality": str(r.quality),
                "reason": r.reason or None,
                **({"orders": r.orders} if r.orders else {}),
            }
            for r in result.points
        ],
        "requests": [
            {
                "table": str(r.request.table),
                "start": r.request.address,
                "count": r.request.count,
                "points": [p.name for p in r.request.points],
                "sent": r.rtt_s is not None,
                "rtt_ms": None if r.rtt_s is None else round(r.rtt_s * 1000, 3),
                "ok": r.data is not None,
                "error": r.error,
            }
            for r in result.requests
        ],
        "advice": result.advice,
    }


# --------------------------------------------------------------------------- reading


async def probe_once(
    client: ModbusClient,
    target: ProbeTarget,
    *,
    orders: bool = False,
    now_ns: Callable[[], int] = time.time_ns,
    monotonic: Callable[[], float] = time.monotonic,
) -> ProbeResult:
    """Read every request of the target's plan once; decode; advise on refused merged reads."""
    device = ModbusDevice(
        DeviceConfig(
            id=target.name,
            profile=target.profile.name,
            source=target.link.id,
            unit=target.unit,
            max_gap=target.max_gap,
        ),
        target.profile,
    )

    async def read(table: Table, address: int, count: int) -> Words:
        return await client.read(table, address, count, target.unit)

    results: list[RequestResult] = []
    refused: list[ReadRequest] = []
    silent = False
    for req in device.plan:
        res = RequestResult(req)
        results.append(res)
        if silent:
            res.error = NOT_SENT
            continue
        t0 = monotonic()
        try:
            res.data = await read(req.table, req.address, req.count)
        except SourceError as exc:
            res.error = str(exc)
            silent = isinstance(exc, DeviceTimeout | ConnectError)
            if isinstance(exc, DeviceException) and exc.code == ILLEGAL_DATA_ADDRESS:
                refused.append(req)
        res.rtt_s = monotonic() - t0
    advice = await _advise(read, refused, len(refused) == len(results), target)
    ts_ns = now_ns()
    return ProbeResult(target, ts_ns, results, point_rows(device, results, ts_ns, orders), advice)


async def _advise(
    read: ReadFn, refused: Sequence[ReadRequest], nothing_read: bool, target: ProbeTarget
) -> list[str]:
    """Advice on the requests refused with exception 2 (``advice`` finds the holes)."""
    if not refused:
        return []
    if nothing_read:
        # One point alone tells a map with holes from a unit that refuses everything.
        p = refused[0].points[0]
        try:
            await read(p.table, p.address, p.count)
        except DeviceException as exc:
            if exc.code == ILLEGAL_DATA_ADDRESS:
                return [
                    f"unit {target.unit} refuses every read (exception 2): is it the device"
                    f" {target.profile.name} describes, at this unit id?"
                ]
        except SourceError:
            pass
    gap = target.profile.max_gap if target.max_gap is None else target.max_gap
    advice: list[str] = []
    for req in refused:
        advice += await unreadable_advice(read, req, target.name, target.profile, gap)
    return advice


@dataclass(frozen=True)
class ProbeOptions:
    orders: bool = False
    as_json: bool = False
    watch_s: float | None = None  # None: one read
    count: int | None = None  # refreshes when watching; None: until Ctrl-C


async def run_probe(target: ProbeTarget, opts: ProbeOptions, out: TextIO) -> int:
    """Probe once, or every ``watch_s`` seconds; 0 when the last read got data, else 1."""
    shown = 0
    n = 0
    answered = False
    async with connected(target.link) as client:
        while True:
            result = await probe_once(client, target, orders=opts.orders)
            answered = result.answered
            n += 1
            if opts.as_json:
                out.write(json.dumps(to_json(result), ensure_ascii=False) + "\n")
            else:
                lines = render_text(result, opts.orders)
                if opts.watch_s is not None:
                    stamp = time.strftime("%H:%M:%S", time.localtime(result.ts_ns / 1e9))
                    lines = [f"{stamp}  read {n}, every {opts.watch_s:g} s (Ctrl-C ends)", *lines]
                    if out.isatty() and shown:
                        # Back over the previous frame and clear below: refresh in place.
                        out.write(f"\x1b[{shown}F\x1b[J")
                    elif shown:
                        out.write("\n")
                out.write("\n".join(lines) + "\n")
                shown = len(lines)
            out.flush()
            if opts.watch_s is None or (opts.count is not None and n >= opts.count):
                break
            await asyncio.sleep(opts.watch_s)
    return 0 if answered else 1
