"""The OPC UA source: one asyncua session per server, data changes or polls into Samples.

``OpcUaSource`` owns one endpoint. It connects (security policy, user
identity), resolves each point's node (NodeId, or browse path from the
Objects folder), and then either subscribes to data changes or polls. Every
point keeps its latest value, quality and the server's source timestamp; a
device's Sample is emitted when a change arrives and at least once per
device ``interval_s`` (so no-data detection and time series stay fed while a
value holds still). ``Sample.ts_ns`` is the gateway's receive time,
``Sample.source_ts_ns`` the server's SourceTimestamp per point.

A lost connection (socket closed, watchdog probe failed, subscription dead)
marks every point bad, then the source reconnects with capped exponential
back-off and a new session, re-resolves browse paths (a restarted server may
renumber nodes) and subscribes again. Trouble is logged once per episode.

asyncua is imported only here and in ``sim``: its errors become ``SourceError``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from asyncua import ua
from asyncua.client.client import Client
from asyncua.common.node import Node
from asyncua.common.subscription import DataChangeNotif
from asyncua.crypto.security_policies import SecurityPolicyBasic256Sha256
from asyncua.ua.uaerrors import UaError, UaStatusCodeError

from gateway.config import DeviceConfig
from gateway.errors import CodecError, ConnectError, SourceError
from gateway.model import Clock, Quality, Sample, Value
from gateway.plugins.base import BoundDevice, Source, SourceContext
from gateway.plugins.opcua.config import OpcUaSourceConfig
from gateway.plugins.opcua.profile import OpcUaPoint, OpcUaProfile, browse_path
from gateway.plugins.opcua.quality import convert, status_quality, to_ns
from gateway.sources.device_poll import DeviceCounters

log = logging.getLogger(__name__)
# asyncua logs every failed close of a dead session with a traceback; the
# source logs connection state changes itself, once per episode.
logging.getLogger("asyncua").setLevel(logging.CRITICAL)

Emit = Callable[[Sample], Awaitable[None]]


@dataclass
class OpcUaDevice:
    """One configured device: its profile's points, their latest state, its counters."""

    config: DeviceConfig
    profile: OpcUaProfile
    site_tags: dict[str, str] = field(default_factory=dict)
    counters: DeviceCounters = field(default_factory=DeviceCounters)

    def __post_init__(self) -> None:
        self.tags = {**self.site_tags, **self.config.tags}
        self.values: dict[str, Value] = {}
        self.quality: dict[str, Quality] = {}
        self.source_ts: dict[str, int] = {}
        self.errors: dict[str, str] = {}
        self.dirty = False
        self.next_emit = 0.0
        self.set_all_bad("not read yet")

    @property
    def id(self) -> str:
        return self.config.id

    def set_all_bad(self, reason: str) -> None:
        self.values.clear()
        for p in self.profile.points:
            self.quality[p.name] = Quality.BAD
            self.errors[p.name] = reason

    def set_bad(self, point: OpcUaPoint, reason: str) -> None:
        self.values.pop(point.name, None)
        self.quality[point.name] = Quality.BAD
        self.errors[point.name] = reason
        self.dirty = True

    def update(self, point: OpcUaPoint, dv: ua.DataValue) -> None:
        """Take one DataValue of ``point``: a Bad status or an unfitting value leaves no value."""
        code = dv.StatusCode.value if dv.StatusCode is not None else 0
        src_ns = to_ns(dv.SourceTimestamp)
        if src_ns is not None:
            self.source_ts[point.name] = src_ns
        self.dirty = True
        q = status_quality(code)
        if q is Quality.BAD:
            self.set_bad(point, f"{point.name}: {ua.StatusCode(ua.UInt32(code)).name}")
            return
        raw = dv.Value.Value if dv.Value is not None else None
        try:
            self.values[point.name] = convert(point, raw)
        except CodecError as exc:
            self.counters.decode_errors += 1
            self.set_bad(point, str(exc))
            return
        self.quality[point.name] = q
        if q is Quality.UNCERTAIN:
            self.errors[point.name] = f"{point.name}: {ua.StatusCode(ua.UInt32(code)).name}"
        else:
            self.errors.pop(point.name, None)

    def sample(self, ts_ns: int) -> Sample:
        """The device's current state as a Sample, counted as one poll."""
        self.dirty = False
        c = self.counters
        c.polls += 1
        quality: dict[str, Quality] = {
            k: q for k, q in self.quality.items() if q is not Quality.GOOD
        }
        bad = [k for k, q in quality.items() if q is Quality.BAD]
        error = "; ".join(dict.fromkeys(self.errors[k] for k in bad if k in self.errors)) or None
        if bad:
            c.consecutive_failures += 1
            c.last_error = error
        else:
            c.good_polls += 1
            c.consecutive_failures = 0
            c.last_error = None
        return Sample(
            device=self.id,
            kind=self.profile.kind,
            ts_ns=ts_ns,
            values=dict(self.values),
            quality=quality,
            tags=self.tags,
            error=error,
            source_ts_ns=dict(self.source_ts),
        )


class _Handler:
    """asyncua's subscription callbacks: update the points, wake the source."""

    def __init__(self, source: OpcUaSource) -> None:
        self._source = source

    def datachange_notification(self, node: Node, val: Any, data: DataChangeNotif) -> None:
        self._source.on_change(node.nodeid, data.monitored_item.Value)

    def status_change_notification(self, status: ua.StatusChangeNotification) -> None:
        if status_quality(status.Status.value) is not Quality.GOOD:
            self._source.on_lost(f"subscription status {status.Status.name}")


class OpcUaSource:
    """Reads every device behind one OPC UA endpoint through one session."""

    def __init__(
        self,
        cfg: OpcUaSourceConfig,
        devices: Sequence[OpcUaDevice],
        emit: Emit,
        clock: Clock,
    ) -> None:
        self.cfg = cfg
        self.devices = list(devices)
        self._emit = emit
        self._clock = clock
        self._backoff = cfg.reconnect_min_s
        self._by_node: dict[ua.NodeId, list[tuple[OpcUaDevice, OpcUaPoint]]] = {}
        self._wake = asyncio.Event()
        self._lost: str | None = None
        self._down_logged = False
        self.connected = False
        # None until the first connection attempt, then whether the link is up.
        self.link_ok: bool | None = None
        self.link_error = ""
        self.sessions = 0  # sessions opened so far (a reconnect opens a new one)

    async def __aenter__(self) -> OpcUaSource:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Nothing to close: ``run`` closes its session when cancelled."""

    # ------------------------------------------------------------------ callbacks


    def device_counters(self) -> dict[str, DeviceCounters]:
        return {d.id: d.counters for d in self.devices}
    def on_change(self, nodeid: ua.NodeId, dv: ua.DataValue) -> None:
        for dev, point in self._by_node.get(nodeid, ()):
            dev.update(point, dv)
        self._wake.set()

    def on_lost(self, reason: str) -> None:
        if self._lost is None:
            self._lost = reason
        self._wake.set()

    # ------------------------------------------------------------------ running

    async def run(self) -> None:
        """Read until cancelled. Never raises for server or connection trouble."""
        if not self.devices:
            return
        while True:
            try:
                await self._session()
                reason = "session ended"
            except SourceError as exc:
                reason = str(exc)
            except Exception as exc:  # an asyncua surprise must not end the gateway
                reason = f"{self.cfg.id}: {type(exc).__name__}: {exc}"
            self._went_down(reason)
            await self._while_down(reason, self._clock.monotonic() + self._backoff)
            self._backoff = min(self._backoff * 2, self.cfg.reconnect_max_s)

    def _went_down(self, reason: str) -> None:
        self.connected = False
        self.link_ok = False
        self.link_error = reason
        if not self._down_logged:
            log.warning(
                "%s; reconnecting with back-off up to %g s", reason, self.cfg.reconnect_max_s
            )
            self._down_logged = True
        for dev in self.devices:
            dev.counters.connect_errors += 1
            dev.set_all_bad(reason)
            dev.next_emit = 0.0  # tell at once that the points went bad

    async def _while_down(self, reason: str, until: float) -> None:
        """Emit all-bad samples on each device's interval until ``until`` (monotonic)."""
        while True:
            now = self._clock.monotonic()
            await self._emit_due(now)
            if now >= until:
                return
            nxt = min([until, *(d.next_emit for d in self.devices)])
            await asyncio.sleep(max(0.0, nxt - now))

    async def _emit_due(self, now: float, changed: bool = False) -> None:
        ts_ns = self._clock.now_ns()
        for dev in self.devices:
            if now >= dev.next_emit or (changed and dev.dirty):
                dev.next_emit = now + dev.config.interval_s
                await self._emit(dev.sample(ts_ns))

    def _client(self) -> Client:
        cfg = self.cfg
        client = Client(cfg.endpoint, timeout=cfg.timeout_s, watchdog_intervall=cfg.watchdog_s)
        client.session_timeout = int(cfg.session_timeout_s * 1000)
        client.application_uri = cfg.security.application_uri
        client.name = client.description = f"facility-safety-gateway {cfg.id}"
        if cfg.username is not None and cfg.password is not None:
            client.set_user(cfg.username)
            client.set_password(cfg.password)
        return client

    async def _open(self, client: Client) -> None:
        sec = self.cfg.security
        if sec.policy == "Basic256Sha256":
            assert sec.certificate is not None and sec.private_key is not None
            # Without a pinned server certificate this asks the endpoint for its own.
            await client.set_security(
                SecurityPolicyBasic256Sha256,
                certificate=sec.certificate,
                private_key=sec.private_key,
                private_key_password=sec.private_key_password,
                server_certificate=sec.server_certificate,
                mode=getattr(ua.MessageSecurityMode, sec.mode),
            )
        await client.connect()

    async def _connect(self, client: Client) -> None:
        # Hello, channel, session and activation: a few round trips, bounded as one.
        try:
            await asyncio.wait_for(self._open(client), self.cfg.timeout_s * 4)
        except (OSError, TimeoutError, UaError, ValueError) as exc:
            what = str(exc) or type(exc).__name__
            raise ConnectError(
                f"{self.cfg.id}: cannot connect to {self.cfg.endpoint}: {what}"
            ) from exc

    async def _resolve(self, client: Client) -> list[Node]:
        """Every point's node; a browse path that does not resolve leaves its point bad."""
        self._by_node = {}
        for dev in self.devices:
            for p in dev.profile.points:
                steps = browse_path(p.node)
                try:
                    node = (
                        client.get_node(p.node)
                        if steps is None
                        else await client.nodes.objects.get_child(steps)
                    )
                except UaStatusCodeError as exc:
                    dev.set_bad(p, f"{p.name}: {p.node}: {exc}")
                    continue
                self._by_node.setdefault(node.nodeid, []).append((dev, p))
        return [client.get_node(n) for n in self._by_node]

    async def _session(self) -> None:
        client = self._client()
        client.connection_lost_callback = self._connection_lost
        self._lost = None
        try:
            await self._connect(client)
            self.sessions += 1
            try:
                nodes = await self._resolve(client)
                if self.cfg.mode == "subscription" and nodes:
                    await self._subscribe(client, nodes)
            except (OSError, TimeoutError, UaError) as exc:
                raise ConnectError(f"{self.cfg.id}: session setup failed: {exc}") from exc
            self.connected = True
            self.link_ok = True
            self.link_error = ""
            self._backoff = self.cfg.reconnect_min_s
            if self._down_logged:
                log.warning("%s: connected again", self.cfg.id)
                self._down_logged = False
            await self._serve(client)
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.disconnect(), self.cfg.timeout_s)

    async def _connection_lost(self, exc: Exception) -> None:
        self.on_lost(f"{self.cfg.id}: connection lost: {exc or type(exc).__name__}")

    async def _subscribe(self, client: Client, nodes: list[Node]) -> None:
        sub = await client.create_subscription(
            self.cfg.publishing_interval_s * 1000, _Handler(self)
        )
        results = await sub.subscribe_data_change(
            nodes, sampling_interval=ua.Double(self.cfg.sampling_interval_s * 1000)
        )
        for node, res in zip(nodes, results, strict=True):
            if isinstance(res, ua.StatusCode):
                for dev, p in self._by_node[node.nodeid]:
                    dev.set_bad(p, f"{p.name}: {p.node}: {res.name}")

    async def _poll(self, client: Client, now: float) -> None:
        due = [d for d in self.devices if now >= d.next_emit]
        pairs = [(n, d, p) for n, owners in self._by_node.items() for d, p in owners if d in due]
        if not pairs:
            return
        start = self._clock.monotonic()
        try:
            dvs = await client.read_attributes([client.get_node(n) for n, _, _ in pairs])
        except (OSError, TimeoutError, UaError) as exc:
            raise ConnectError(f"{self.cfg.id}: read failed: {exc or type(exc).__name__}") from exc
        latency = self._clock.monotonic() - start
        for (_, dev, point), dv in zip(pairs, dvs, strict=True):
            dev.update(point, dv)
        for dev in due:
            dev.counters.requests += 1
            dev.counters.last_latency_s = latency
            dev.counters.latency_sum_s += latency

    async def _serve(self, client: Client) -> None:
        """Emit changes and due samples until the connection is lost."""
        polling = self.cfg.mode == "polling"
        now = self._clock.monotonic()
        for dev in self.devices:
            # Subscriptions send every value at once: the first sample carries them.
            dev.next_emit = now if polling else now + dev.config.interval_s
        while True:
            self._wake.clear()
            if self._lost is not None:
                raise ConnectError(self._lost)
            now = self._clock.monotonic()
            if polling:
                await self._poll(client, now)
            await self._emit_due(now, changed=not polling)
            nxt = min(d.next_emit for d in self.devices)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(0.0, nxt - self._clock.monotonic()))


def build(cfg: OpcUaSourceConfig, devices: Sequence[BoundDevice], ctx: SourceContext) -> Source:
    """The plugin's factory (gateway.plugins): one session per OPC UA server."""
    tags = dict(ctx.site_tags)
    return OpcUaSource(
        cfg, [OpcUaDevice(d.config, d.profile, tags) for d in devices], ctx.emit, ctx.clock
    )
