"""Modbus TCP and RTU sources: one pymodbus client per physical connection, polled on schedule.

One ``ModbusSource`` owns one TCP endpoint or one serial line and serialises
every request on it (an RS-485 line carries one frame at a time). Each
device keeps its own interval on an absolute schedule, so a slow or dead unit
delays a neighbour's poll at most once; a unit that failed ``dead_after``
polls in a row is only retried every ``dead_unit_backoff_s`` (its points stay
bad meanwhile) so it cannot eat the line's time. Connection loss is retried
with capped exponential back-off. Errors are counted per device and logged
once per state change, not once per cycle. A merged read refused with
exception 2 is split into the parts that read (``gateway.sources.holes``),
kept for the life of the source.

pymodbus is imported only here: its exceptions become ``SourceError`` subclasses.
"""

from __future__ import annotations

import logging
import termios
from collections.abc import Awaitable, Callable, Sequence

from pymodbus import FramerType
from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException
from pymodbus.pdu import ExceptionResponse

from gateway.config import DeviceConfig
from gateway.errors import (
    ConnectError,
    DeviceException,
    DeviceTimeout,
    FrameError,
    SourceError,
)
from gateway.model import Clock, Sample
from gateway.plugins.base import BoundDevice, Source, SourceContext
from gateway.plugins.modbus.config import ModbusRtuSource, ModbusTcpSource
from gateway.plugins.reconnect import LinkRetry
from gateway.plugins.schedule import poll_on_schedule
from gateway.profiles import computed
from gateway.profiles.schema import ModbusProfile, Table
from gateway.sources import holes
from gateway.sources.device_poll import DeviceCounters, ModbusDevice
from gateway.sources.planner import plan_profile

log = logging.getLogger(__name__)
# pymodbus logs every timeout at ERROR; we count and log state changes ourselves.
logging.getLogger("pymodbus").setLevel(logging.CRITICAL)

Emit = Callable[[Sample], Awaitable[None]]
Words = list[int] | list[bool]
# Modbus application protocol v1.1b3, section 7.
EXCEPTION_NAMES = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "server device failure",
    6: "server device busy",
    10: "gateway path unavailable",
    11: "gateway target failed to respond",
}
# A read whose every point is refused even alone is learned again only after
# this long: a device answers exception 2 to everything while it boots.
RELEARN_AFTER_S = 60.0


class ModbusClient:
    """A thin async wrapper over a pymodbus client that speaks our error tree."""

    def __init__(self, cfg: ModbusTcpSource | ModbusRtuSource) -> None:
        self.cfg = cfg
        self._rx_bytes = 0
        self._client: AsyncModbusTcpClient | AsyncModbusSerialClient
        if isinstance(cfg, ModbusTcpSource):
            self._client = AsyncModbusTcpClient(
                cfg.host,
                port=cfg.port,
                timeout=cfg.timeout_s,
                retries=0,  # retries are ours, so each one is counted
                reconnect_delay=0,  # reconnects are ours too (back-off, logging)
                trace_packet=self._trace,
            )
        else:
            self._client = AsyncModbusSerialClient(
                cfg.port,
                framer=FramerType.RTU,
                baudrate=cfg.baudrate,
                bytesize=cfg.bytesize,
                parity=cfg.parity,
                stopbits=cfg.stopbits,
                timeout=cfg.timeout_s,
                retries=0,
                reconnect_delay=0,
                trace_packet=self._trace,
            )

    def _trace(self, sending: bool, data: bytes) -> bytes:
        # Bytes that arrived but never formed a valid frame tell a garbage
        # line (bad CRC, noise) apart from a silent device.
        if not sending:
            self._rx_bytes += len(data)
        return data

    @property
    def connected(self) -> bool:
        return bool(self._client.connected)

    async def connect(self) -> None:
        try:
            ok = await self._client.connect()
        except (OSError, ModbusException, termios.error) as exc:
            # termios.error is no OSError: pyserial lets a refused tcsetattr escape.
            raise ConnectError(f"{self.cfg.id}: cannot connect: {exc}") from exc
        if not ok:
            where = (
                f"{self.cfg.host}:{self.cfg.port}"
                if isinstance(self.cfg, ModbusTcpSource)
                else self.cfg.port
            )
            raise ConnectError(f"{self.cfg.id}: cannot connect to {where}")

    def close(self) -> None:
        self._client.close()

    async def read(self, table: Table, address: int, count: int, unit: int) -> Words:
        c = self._client
        self._rx_bytes = 0
        try:
            if table is Table.HOLDING_REGISTER:
                rr = await c.read_holding_registers(address, count=count, device_id=unit)
            elif table is Table.INPUT_REGISTER:
                rr = await c.read_input_registers(address, count=count, device_id=unit)
            elif table is Table.COIL:
                rr = await c.read_coils(address, count=count, device_id=unit)
            else:
                rr = await c.read_discrete_inputs(address, count=count, device_id=unit)
        except ConnectionException as exc:
            raise ConnectError(f"connection lost: {exc}") from exc
        except ModbusIOException as exc:
            if self._rx_bytes:
                raise FrameError(
                    f"unit {unit}: garbage answer ({self._rx_bytes} bytes, no valid frame)"
                ) from exc
            raise DeviceTimeout(f"unit {unit}: no answer within {self.cfg.timeout_s:g} s") from exc
        except ModbusException as exc:
            raise FrameError(f"unit {unit}: {exc}") from exc
        if isinstance(rr, ExceptionResponse) or rr.isError():
            code = int(getattr(rr, "exception_code", 0))
            name = EXCEPTION_NAMES.get(code)
            raise DeviceException(
                f"unit {unit}: exception code {code}" + (f" ({name})" if name else ""), code
            )
        if table.is_bit:
            return list(rr.bits[:count])
        regs = list(rr.registers)
        if len(regs) != count:
            raise FrameError(f"unit {unit}: asked {count} registers, got {len(regs)}")
        return regs


class ModbusSource:
    """Polls every device behind one Modbus connection on its own interval."""

    def __init__(
        self,
        cfg: ModbusTcpSource | ModbusRtuSource,
        devices: Sequence[ModbusDevice],
        emit: Emit,
        clock: Clock,
    ) -> None:
        self.cfg = cfg
        self.devices = list(devices)
        self._emit = emit
        self._clock = clock
        self._client = ModbusClient(cfg)
        self._retry = LinkRetry(cfg, log)
        self._dead_until: dict[str, float] = {}
        # (device, table, address, count) of reads refused whole -> when to try again.
        self._refused_whole: dict[tuple[str, Table, int, int], float] = {}
        self._advised: set[str] = set()
        self.connected = False
        # None until the first connection attempt, then whether the link is up.
        self.link_ok: bool | None = None
        self.link_error = ""

    def device_counters(self) -> dict[str, DeviceCounters]:
        return {d.id: d.counters for d in self.devices}

    async def __aenter__(self) -> ModbusSource:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        self._client.close()

    async def run(self) -> None:
        """Poll until cancelled. Never raises for device or connection trouble."""
        # First polls spread over the shortest interval: not every unit in one instant.
        await poll_on_schedule(self.devices, self.poll_device, self._clock, spread=True)

    async def _ensure_connected(self) -> bool:
        if self._client.connected:
            return True
        got = await self._retry.open(
            self._client.connect, self._clock.monotonic(), f"{self.cfg.id}: connected again"
        )
        if isinstance(got, ConnectError):
            self.connected, self.link_ok, self.link_error = False, False, str(got)
        elif got:
            self.connected, self.link_ok, self.link_error = True, True, ""
        return got is True

    async def poll_device(self, dev: ModbusDevice) -> None:
        """Poll one device once and emit its Sample (possibly all-bad)."""
        c = dev.counters
        c.polls += 1
        now = self._clock.monotonic()
        if not await self._ensure_connected():
            c.connect_errors += 1
            c.consecutive_failures += 1
            await self._emit(dev.all_bad(self._clock.now_ns(), f"{self.cfg.id}: not connected"))
            return
        if self._dead_until.get(dev.id, 0.0) > now:
            await self._emit(
                dev.all_bad(self._clock.now_ns(), c.last_error or "unit not answering")
            )
            return
        results: list[Words | SourceError] = []
        failed = 0
        start = self._clock.monotonic()
        for req in dev.plan:
            res = await self._read_with_retries(dev, req.table, req.address, req.count)
            if isinstance(res, SourceError):
                failed += 1
                if isinstance(res, DeviceTimeout | ConnectError) and failed == 1:
                    # A silent unit will not answer the next request either:
                    # don't spend the line's time finding out.
                    results.append(res)
                    results.extend([res] * (len(dev.plan) - len(results)))
                    break
            results.append(res)
        ts_ns = self._clock.now_ns()
        c.last_latency_s = self._clock.monotonic() - start
        c.latency_sum_s += c.last_latency_s
        sample = dev.build_sample(results, ts_ns)
        if failed:
            c.consecutive_failures += 1
            first_error = next(r for r in results if isinstance(r, SourceError))
            if c.last_error is None:
                log.warning("%s/%s: %s", self.cfg.id, dev.id, first_error)
            c.last_error = str(first_error)
            dead_after = getattr(self.cfg, "dead_after", None)
            nothing_read = all(isinstance(r, SourceError) for r in results)
            if dead_after and c.consecutive_failures >= dead_after and nothing_read:
                self._dead_until[dev.id] = now + getattr(self.cfg, "dead_unit_backoff_s", 10.0)
        else:
            c.good_polls += 1
            if c.last_error is not None:
                log.warning("%s/%s: answering again", self.cfg.id, dev.id)
            c.last_error = None
            c.consecutive_failures = 0
            self._dead_until.pop(dev.id, None)
        await self._emit(sample)
        if failed:
            await self._learn_holes(dev, results)

    async def _learn_holes(self, dev: ModbusDevice, results: Sequence[Words | SourceError]) -> None:
        """Split each read of the last poll refused with exception 2 (gateway.sources.holes)."""

        async def read(table: Table, address: int, count: int) -> Words | SourceError:
            return await self._read_with_retries(dev, table, address, count, probing=True)

        for req, res in list(zip(dev.plan, results, strict=True)):
            key = (dev.id, req.table, req.address, req.count)
            now = self._clock.monotonic()
            if not holes.refused(res) or self._refused_whole.get(key, now) > now:
                continue
            try:
                found = await holes.learn(req, read, dev.max_gap, dev.profile.unreadable)
            except holes.Abandoned as exc:
                # Tried again on the next poll that is refused.
                where = f"{req.table} {req.address}..{req.end}"
                log.info("%s/%s: hole search in %s given up: %s", self.cfg.id, dev.id, where, exc)
                return
            for line in holes.advice(dev.id, dev.profile.name, found, dev.profile.unreadable):
                if line not in self._advised:
                    self._advised.add(line)
                    log.warning("%s", line)
            if found.whole:
                self._refused_whole[key] = now + RELEARN_AFTER_S
            else:
                dev.split(req, found.pieces)

    async def _read_with_retries(
        self, dev: ModbusDevice, table: Table, address: int, count: int, probing: bool = False
    ) -> Words | SourceError:
        """One read, retried on silence and garbage. ``probing``: a refusal (exception 2)
        is what the hole search asks about, not a device error to count."""
        last: SourceError | None = None
        for _attempt in range(self.cfg.retries + 1):
            dev.counters.requests += 1
            try:
                return await self._client.read(table, address, count, dev.config.unit)
            except DeviceException as exc:
                if not (probing and holes.refused(exc)):
                    dev.counters.count_error(exc)
                return exc  # the device answered: asking again gives the same answer
            except ConnectError as exc:
                dev.counters.count_error(exc)
                self._client.close()
                self.connected = False
                self.link_ok, self.link_error = False, str(exc)
                return exc
            except SourceError as exc:
                dev.counters.count_error(exc)
                last = exc
        assert last is not None
        return last


# --------------------------------------------------------------------------- plugin factory


def build(
    cfg: ModbusTcpSource | ModbusRtuSource, devices: Sequence[BoundDevice], ctx: SourceContext
) -> Source:
    tags = dict(ctx.site_tags)
    mdevs = [ModbusDevice(d.config, d.profile, tags) for d in devices]
    return ModbusSource(cfg, mdevs, with_computed(mdevs, ctx.emit), ctx.clock)


def with_computed(devices: Sequence[ModbusDevice], emit: Emit) -> Emit:
    """``emit`` that first adds each device's computed points (profile ``computed:``)."""
    exprs = {d.id: d.profile.expressions for d in devices if d.profile.computed}
    if not exprs:
        return emit

    async def emit_computed(sample: Sample) -> None:
        found = exprs.get(sample.device)
        await emit(computed.apply(sample, found) if found else sample)

    return emit_computed


def describe(device: DeviceConfig, profile: ModbusProfile) -> str:
    reqs = plan_profile(profile, device.max_gap)
    extra = f" + {len(profile.computed)} computed" if profile.computed else ""
    return f"{len(profile.points)} points{extra} in {len(reqs)} read(s)"


def read_plan(profile: ModbusProfile) -> list[str]:
    """The requests a poll of this profile makes (``gateway profiles show``)."""
    reqs = plan_profile(profile)
    lines = [f"read plan: {len(reqs)} request(s) for {len(profile.points)} points"]
    for r in reqs:
        names = ", ".join(p.name for p in r.points)
        lines.append(f"  {r.table} {r.address}..{r.end} ({r.count}): {names}")
    for c in profile.computed:
        lines.append(f"  computed {c.name} = {c.compute}")
    return lines
