"""A fast Modbus TCP fleet for the throughput benchmark, run in its own process.

    python -m bench.fleet_sim --devices 500 --points 40 --per-endpoint 10 --stats out.json

Why not ``gateway-sim``: its TCP endpoint proxies every request through a
second TCP hop into pymodbus's server, whose ``SimDevice`` action re-encodes
the whole register image per request. That costs ~1 ms of CPU per request,
so 500 devices at 1 s would take half a core from the two this machine has
and the simulator, not the gateway, would set the ceiling. This server
answers read-holding/input-registers (FC 3/4) straight from precomputed
register images with ``asyncio.Protocol`` (no streams, no per-request
encoding): ~20 µs a request.

Values change: every ``--change-s`` the fleet switches to the next of
``VARIANTS`` precomputed images, so consecutive polls see different numbers.
Alarm latency: every ``--flip-every`` seconds one more (device, point) is
driven over the benchmark's limit for ``--flip-hold`` seconds (round robin
over devices, so no alarm repeats within a run and chatter detection stays
out of the way; several flips overlap when the hold is longer);
each flip is written as a JSON line ``{"flip": ...}`` on stdout with its
wall-clock start. SIGUSR1 stops answering (so the harness knows exactly
what was served before the gateway stops); SIGTERM/SIGINT end the process
after writing the request counters to ``--stats``.

Layout of ``--points M`` (``point_layout``): points ``p00``.. alternate
float32 (2 registers, ABCD) and uint16 (scale 0.1), packed from address 0,
in holding registers; every value sits in 20.0..29.9, the limit is 50.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import signal
import struct
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

VARIANTS = 4
LIMIT = 50.0
OVER_LIMIT = 60.0
_MBAP = struct.Struct(">HHHB")
_REQ = struct.Struct(">BHH")


@dataclass(frozen=True, slots=True)
class PointDef:
    name: str
    type: str  # "float32" or "uint16"
    address: int
    scale: float

    @property
    def words(self) -> int:
        return 2 if self.type == "float32" else 1


def point_layout(m: int) -> list[PointDef]:
    """The benchmark profile's points: float32 and uint16 alternating, contiguous."""
    out: list[PointDef] = []
    addr = 0
    for i in range(m):
        if i % 2 == 0:
            out.append(PointDef(f"p{i:02d}", "float32", addr, 1.0))
            addr += 2
        else:
            out.append(PointDef(f"p{i:02d}", "uint16", addr, 0.1))
            addr += 1
    return out


def write_profile(
    folder: Path, name: str, kind: str, m: int, *, description: str = "", unit: str = ""
) -> None:
    """Write the gateway profile of ``point_layout(m)`` as ``folder/<name>.yaml``."""
    extra = {"unit": unit} if unit else {}
    profile: dict[str, Any] = {"name": name, "kind": kind}
    if description:
        profile["description"] = description
    profile["points"] = [
        {
            "name": pt.name,
            "table": "holding_register",
            "address": pt.address,
            "type": pt.type,
            "scale": pt.scale,
            **extra,
        }
        for pt in point_layout(m)
    ]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.yaml").write_text(yaml.safe_dump(profile, sort_keys=False))


def registers_of(m: int) -> int:
    return sum(p.words for p in point_layout(m))


def _encode(p: PointDef, value: float) -> bytes:
    if p.type == "float32":
        return struct.pack(">f", value)
    return struct.pack(">H", round(value / p.scale))


def device_image(device: int, points: list[PointDef], variant: int) -> bytes:
    """Register bytes of one device: values 20.0..29.9 that differ per device, point, variant."""
    out = bytearray()
    for i, p in enumerate(points):
        out += _encode(p, 20.0 + ((device * 7 + i * 3 + variant) % 100) / 10)
    return bytes(out)


class Fleet:
    """Register images of every device, the current variant and the active flips."""

    def __init__(self, devices: int, points: int, per_endpoint: int) -> None:
        self.points = point_layout(points)
        self.n = devices
        self.per_endpoint = per_endpoint
        self.variant = 0
        self.images = [
            [device_image(d, self.points, v) for v in range(VARIANTS)] for d in range(devices)
        ]
        # device index -> images with the flipped point over the limit
        self.flipped: dict[int, list[bytes]] = {}
        self.answering = True
        self.requests = 0
        self.registers = 0
        self.per_device = [0] * devices
        self.exceptions = 0

    def device_index(self, endpoint: int, unit: int) -> int | None:
        d = endpoint * self.per_endpoint + unit - 1
        if 1 <= unit <= self.per_endpoint and d < self.n:
            return d
        return None

    def image(self, d: int) -> bytes:
        imgs = self.flipped.get(d) or self.images[d]
        return imgs[self.variant]

    def flip(self, d: int, point: PointDef) -> None:
        word = point.address * 2
        over = _encode(point, OVER_LIMIT)
        self.flipped[d] = [img[:word] + over + img[word + len(over) :] for img in self.images[d]]

    def unflip(self, d: int) -> None:
        self.flipped.pop(d, None)


class ModbusTcpFleetProtocol(asyncio.Protocol):
    """One client connection to one endpoint: FC 3/4 from the image, anything else exception 1."""

    def __init__(self, fleet: Fleet, endpoint: int) -> None:
        self.fleet = fleet
        self.endpoint = endpoint
        self.buf = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data
        out: list[bytes] = []
        fleet = self.fleet
        while len(buf) >= 7:
            tid, pid, length, unit = _MBAP.unpack_from(buf)
            end = 6 + length
            if length < 2 or length > 254:
                assert self.transport is not None
                self.transport.close()
                return
            if len(buf) < end:
                break
            pdu = buf[7:end]
            buf = buf[end:]
            if not fleet.answering:
                continue
            d = fleet.device_index(self.endpoint, unit)
            fc = pdu[0]
            if d is None:
                out.append(_MBAP.pack(tid, pid, 3, unit) + bytes((fc | 0x80, 0x0B)))
                continue
            if fc not in (3, 4) or len(pdu) != 5:
                fleet.exceptions += 1
                out.append(_MBAP.pack(tid, pid, 3, unit) + bytes((fc | 0x80, 0x01)))
                continue
            _, addr, count = _REQ.unpack(pdu)
            img = fleet.image(d)
            lo, hi = addr * 2, (addr + count) * 2
            if count < 1 or count > 125 or hi > len(img):
                fleet.exceptions += 1
                out.append(_MBAP.pack(tid, pid, 3, unit) + bytes((fc | 0x80, 0x02)))
                continue
            nbytes = hi - lo
            out.append(_MBAP.pack(tid, pid, nbytes + 3, unit) + bytes((fc, nbytes)) + img[lo:hi])
            fleet.requests += 1
            fleet.registers += count
            fleet.per_device[d] += 1
        self.buf = buf
        if out and self.transport is not None:
            self.transport.write(b"".join(out))


async def _variants(fleet: Fleet, change_s: float) -> None:
    while True:
        await asyncio.sleep(change_s)
        fleet.variant = (fleet.variant + 1) % VARIANTS


async def _flips(fleet: Fleet, every_s: float, hold_s: float, start_after_s: float) -> None:
    """Every ``every_s`` drive one more point over the limit for ``hold_s``; print each start."""
    await asyncio.sleep(start_after_s)
    loop = asyncio.get_running_loop()
    # Step through devices by a prime stride that does not divide the fleet size,
    # so flips land on different endpoints and no device repeats within a run.
    stride = next((s for s in (97, 89, 83, 79) if fleet.n % s), 1)
    d = 0
    k = 0
    float_points = [p for p in fleet.points if p.type == "float32"]
    while True:
        if d not in fleet.flipped:
            point = float_points[k % len(float_points)]
            fleet.flip(d, point)
            ev = {"flip": {"device": d, "point": point.name, "t_ns": time.time_ns()}}
            sys.stdout.write(json.dumps(ev) + "\n")
            sys.stdout.flush()
            loop.call_later(hold_s, fleet.unflip, d)
        await asyncio.sleep(every_s)
        d = (d + stride) % fleet.n
        k += 1


async def serve(args: argparse.Namespace) -> None:
    fleet = Fleet(args.devices, args.points, args.per_endpoint)
    loop = asyncio.get_running_loop()
    n_endpoints = -(-args.devices // args.per_endpoint)
    servers = []
    ports = []
    for e in range(n_endpoints):
        srv = await loop.create_server(
            functools.partial(ModbusTcpFleetProtocol, fleet, e), "127.0.0.1", 0, backlog=64
        )
        servers.append(srv)
        ports.append(int(srv.sockets[0].getsockname()[1]))
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    paused_at: list[float] = []

    def pause() -> None:
        fleet.answering = False
        paused_at.append(time.time())

    loop.add_signal_handler(signal.SIGUSR1, pause)
    tasks = [asyncio.create_task(_variants(fleet, args.change_s))]
    if args.flip_every > 0:
        tasks.append(
            asyncio.create_task(
                _flips(fleet, args.flip_every, args.flip_hold, args.flip_start_after)
            )
        )
    ready = {
        "ready": True,
        "ports": ports,
        "per_endpoint": args.per_endpoint,
        "registers": registers_of(args.points),
    }
    sys.stdout.write(json.dumps(ready) + "\n")
    sys.stdout.flush()
    start = time.monotonic()
    try:
        await asyncio.wait_for(stop.wait(), timeout=args.max_run_s)
    except TimeoutError:
        pass
    finally:
        for t in tasks:
            t.cancel()
        for srv in servers:
            srv.close()
        if args.stats:
            _write_stats(args.stats, fleet, time.monotonic() - start, paused_at)


def _write_stats(path: str, fleet: Fleet, wall_s: float, paused_at: list[float]) -> None:
    stats = {
        "requests": fleet.requests,
        "registers": fleet.registers,
        "exceptions": fleet.exceptions,
        "per_device": fleet.per_device,
        "cpu_s": time.process_time(),
        "wall_s": wall_s,
        "paused_at": paused_at[0] if paused_at else None,
    }
    Path(path).write_text(json.dumps(stats))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bench.fleet_sim", description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=500)
    ap.add_argument("--points", type=int, default=40)
    ap.add_argument("--per-endpoint", type=int, default=10, help="unit ids behind one TCP port")
    ap.add_argument("--change-s", type=float, default=1.0, help="values change this often")
    ap.add_argument("--flip-every", type=float, default=0.0, help="0: no flips")
    ap.add_argument("--flip-hold", type=float, default=1.5)
    ap.add_argument("--flip-start-after", type=float, default=5.0)
    ap.add_argument("--stats", help="write the request counters here on exit")
    ap.add_argument("--max-run-s", type=float, default=3600.0, help="safety stop")
    args = ap.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
