"""The MQTT sink: topic scheme, JSON payloads, PUBACK-confirmed sends.

Topics, under ``<prefix>/<site>/`` (prefix ``fsg`` by default):

============================  =======  ==========================================
``<device>/telemetry``        QoS 1    one message per Sample (JSON below)
``<device>/availability``     retained ``online`` / ``offline`` from the device's polls
                                       only (offline: the poll failed or every point
                                       is bad); health records never change it
``alarms/<alarm id>``         retained current state of the alarm (AlarmEvent JSON)
``events``                    QoS 1    every alarm transition and generic event
``<channel topic>``           QoS 1    notifications of an MQTT channel (its ``topic``)
``gateway/status``            retained ``online``; the last will sets ``offline``
============================  =======  ==========================================

A ``config.applied`` event clears the retained availability of each device in
its ``devices_removed`` (an empty retained message) before it is published.

Telemetry JSON: ``{"ts": ISO 8601 UTC, "ts_ns": int, "device", "kind",
"values": {point: value}, "quality": {point: "bad"|"fault"|"uncertain"}
(only points that are not good), "units": {point: unit} (when known),
"tags": {...}, "error": str (when the poll failed)}``.

Acknowledgement: the connection (``connection.py``) reports each PUBACK
(QoS 1) / PUBCOMP (QoS 2) to ``_on_ack``, so ``send`` returns only when the
broker has every message. A batch is handed to paho in order (paho sends
them in that order over one connection, which keeps per-device order) with
at most ``max_inflight`` unacknowledged: past that the sink waits until half
the window is acknowledged, and ONE future waits for the batch's last
acknowledgement, rather than a task and a timer per message. The window is
ours, not paho's: with a limit set, paho rescans every in-flight message on
each PUBACK. ``send`` also watches the connection's ``lost`` future, so an
outage is noticed at once, not at the timeout.

Secrets (password) may be ``${ENV}`` references in the site file.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Mapping, Sequence
from typing import Any, Self

import orjson

from gateway.errors import SinkError
from gateway.model import HEALTH_KINDS, AlarmEvent, Sample
from gateway.outbox import Event, Record
from gateway.plugins.base import SinkContext
from gateway.plugins.mqtt.config import MqttSinkConfig
from gateway.plugins.mqtt.connection import MqttConnection
from gateway.sinks.base import Sink, iso_utc

log = logging.getLogger(__name__)

# Publishes between two turns of the event loop (see _publish_all).
_YIELD_EVERY = 100


def topic_level(name: str) -> str:
    """Make ``name`` one topic level: no separators or wildcards, never empty."""
    cleaned = name.replace("/", "_").replace("+", "_").replace("#", "_")
    return cleaned or "_"


def telemetry_payload(sample: Sample, units: Mapping[str, str] | None = None) -> dict[str, Any]:
    d: dict[str, Any] = {
        "ts": iso_utc(sample.ts_ns),
        "ts_ns": sample.ts_ns,
        "device": sample.device,
        "kind": sample.kind,
        "values": sample.values,
        "quality": {k: str(v) for k, v in sample.quality.items()},
    }
    if units:
        # Usually every point has a value and a unit: reuse the device's map as is.
        known = (
            units
            if units.keys() == sample.values.keys()
            else {p: units[p] for p in sample.values if p in units}
        )
        if known:
            d["units"] = known
    if sample.tags:
        d["tags"] = sample.tags
    if sample.error is not None:
        d["error"] = sample.error
    if sample.source_ts_ns:
        d["source_ts_ns"] = sample.source_ts_ns
    return d


def availability(sample: Sample) -> str | None:
    """``offline`` when the poll failed or no point has a usable value; None for a
    health record, which has values (counters) even while the unit is silent."""
    if sample.kind in HEALTH_KINDS:
        return None
    # ``values`` holds only points with a value (good or uncertain), so an
    # empty one means every point is bad or fault.
    if sample.error is not None or not sample.values:
        return "offline"
    return "online"


def tls_context(config: MqttSinkConfig) -> ssl.SSLContext | None:
    """The TLS context of an MQTT connection (sink, command listener, CLI), or None."""
    tls = config.tls
    if tls is None:
        return None
    try:
        ctx = ssl.create_default_context(cafile=tls.ca_file)
        if tls.cert_file and tls.key_file:
            ctx.load_cert_chain(tls.cert_file, tls.key_file)
    except (OSError, ssl.SSLError) as exc:
        raise SinkError(f"mqtt: cannot load TLS files: {exc}") from exc
    # insecure skips only the host name check; the chain is still verified.
    ctx.check_hostname = not tls.insecure
    return ctx


def _dumps(d: Mapping[str, Any]) -> bytes:
    # orjson: compact UTF-8 like json.dumps(separators=(",", ":"), ensure_ascii=False).
    return orjson.dumps(d)


class MqttSink:
    """Publish outbox records to an MQTT broker (see the module docstring)."""

    def __init__(
        self,
        config: MqttSinkConfig,
        site: str,
        *,
        name: str = "mqtt",
        units: Mapping[str, Mapping[str, str]] | None = None,
        alarms_only: bool = False,
    ) -> None:
        self.config = config
        self.site = site
        self.name = name
        # The alarm lane: its own connection, no gateway status or last will
        # (the main connection owns those), and never a lingering batch.
        self.alarms_only = alarms_only
        self.batch_size = config.batch_size
        self.flush_interval_s = 0.0 if alarms_only else config.flush_interval_s
        self.retry_min_s = config.retry_min_s
        self.retry_max_s = config.retry_max_s
        self._units = units or {}
        self._base = f"{config.prefix}/{topic_level(site)}"
        self.status_topic = f"{self._base}/gateway/status"
        self.events_topic = f"{self._base}/events"
        self._conn: MqttConnection | None = None
        # The batch being sent: message ids still waiting for their ack, and the
        # future of the wait in progress, done once at most ``_batch_low`` remain.
        self._batch: set[int] | None = None
        self._batch_wait: asyncio.Future[None] | None = None
        self._batch_low = 0
        # Last availability published per device on this connection.
        self._availability: dict[str, str] = {}

    def telemetry_topic(self, device: str) -> str:
        return f"{self._base}/{topic_level(device)}/telemetry"

    def availability_topic(self, device: str) -> str:
        return f"{self._base}/{topic_level(device)}/availability"

    def alarm_topic(self, alarm_id: str) -> str:
        return f"{self._base}/alarms/{topic_level(alarm_id)}"

    # ------------------------------------------------------------------ connection

    async def __aenter__(self) -> Self:
        cfg = self.config
        client_id = cfg.client_id or f"fsg-{self.site}"
        conn = MqttConnection(
            cfg.host,
            cfg.port,
            client_id=client_id + ("-alarms" if self.alarms_only else ""),
            v5=cfg.protocol == "5",
            username=cfg.username,
            password=cfg.password,
            tls=tls_context(cfg),
            keepalive=cfg.keepalive,
            timeout_s=cfg.timeout_s,
            will=None if self.alarms_only else (self.status_topic, b"offline"),
            logger=logging.getLogger(f"{__name__}.paho"),
        )
        conn.on_ack = self._on_ack
        await conn.connect()
        self._conn = conn
        self._availability = {}
        if self.alarms_only:
            return self
        try:
            await self._publish_all([(self.status_topic, b"online", True)])
        except BaseException:
            await self.aclose()
            raise
        return self

    def _on_ack(self, mid: int) -> None:
        """A PUBACK of the batch being sent (called on the loop, from the socket reader)."""
        waiting = self._batch
        if waiting is not None and mid in waiting:
            waiting.discard(mid)
            wait = self._batch_wait
            if len(waiting) <= self._batch_low and wait is not None and not wait.done():
                wait.set_result(None)

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        if conn.lost is not None and not conn.lost.done() and not self.alarms_only:
            # A clean disconnect does not fire the will: say offline ourselves.
            with contextlib.suppress(SinkError):
                await conn.publish(self.status_topic, b"offline", 1, True, timeout_s=2.0)
        await conn.aclose()

    # ------------------------------------------------------------------ sending

    def _messages(self, records: Sequence[Record]) -> list[tuple[str, bytes, bool]]:
        out: list[tuple[str, bytes, bool]] = []
        for r in records:
            item = r.item
            if isinstance(item, Sample):
                units = self._units.get(item.device)
                payload = _dumps(telemetry_payload(item, units))
                out.append((self.telemetry_topic(item.device), payload, False))
                avail = availability(item)
                if avail is not None and self._availability.get(item.device) != avail:
                    out.append((self.availability_topic(item.device), avail.encode(), True))
                    self._availability[item.device] = avail
            elif isinstance(item, AlarmEvent):
                d = {"ts": iso_utc(item.ts_ns), **item.to_json_dict()}
                out.append((self.alarm_topic(item.alarm_id), _dumps(d), True))
                out.append((self.events_topic, _dumps({"type": "alarm", **d}), False))
            elif isinstance(item, Event):
                channel_topic = item.data.get("topic") if item.kind == "notification" else None
                if isinstance(channel_topic, str):
                    # An MQTT notification channel's message, on that channel's topic.
                    d = {"type": "notification", "ts": iso_utc(item.ts_ns), **item.data}
                    out.append((f"{self._base}/{channel_topic}", _dumps(d), False))
                    continue
                if item.kind == "config.applied":
                    out.extend(self._forget(item.data.get("devices_removed")))
                d = {"type": "event", "ts": iso_utc(item.ts_ns), **item.to_json_dict()}
                out.append((self.events_topic, _dumps(d), False))
        return out

    def _forget(self, devices: object) -> list[tuple[str, bytes, bool]]:
        """Clear the retained availability of devices a reload removed (empty retained
        payload): nothing retained is left behind for a device that no longer exists."""
        if not isinstance(devices, list):
            return []
        out: list[tuple[str, bytes, bool]] = []
        for dev in devices:
            if isinstance(dev, str):
                self._availability.pop(dev, None)
                out.append((self.availability_topic(dev), b"", True))
        return out

    async def send(self, records: Sequence[Record]) -> None:
        """Publish the batch; return when the broker acknowledged every message."""
        try:
            await self._publish_all(self._messages(records))
        except BaseException:
            # Availability we thought we published may not have arrived: resend next time.
            self._availability = {}
            raise

    async def _publish_all(self, messages: Sequence[tuple[str, bytes, bool]]) -> None:
        """Publish in order with at most ``max_inflight`` unacknowledged; wait for all acks."""
        conn = self._conn
        if conn is None:
            raise SinkError("mqtt: not connected")
        if not messages:
            return
        qos = self.config.qos
        window = self.config.max_inflight
        waiting: set[int] = set()
        self._batch = waiting
        try:
            for i, (t, p, rt) in enumerate(messages):
                if len(waiting) >= window:
                    # Window full: refill once half of it is acknowledged.
                    await self._acked_down_to(waiting, window // 2, len(messages))
                elif i and i % _YIELD_EVERY == 0:
                    # A 500-message batch is ~20 ms of work: let the pollers and
                    # the alarm lane run in between.
                    await asyncio.sleep(0)
                mid = conn.publish_nowait(t, p, qos, rt)
                if mid is not None:
                    waiting.add(mid)
            if waiting:
                await self._acked_down_to(waiting, 0, len(messages))
        finally:
            self._batch = None
            self._batch_wait = None

    async def _acked_down_to(self, waiting: set[int], low: int, total: int) -> None:
        """Wait until at most ``low`` of ``waiting`` lack their ack; raise on loss or timeout."""
        if len(waiting) <= low:
            return
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._batch_wait = done
        self._batch_low = low
        lost = self._conn.lost if self._conn is not None else None
        waiters: set[asyncio.Future[Any]] = {done}
        if lost is not None:
            waiters.add(lost)
        await asyncio.wait(
            waiters, timeout=self.config.timeout_s, return_when=asyncio.FIRST_COMPLETED
        )
        if done.done():
            return
        where = f"{self.config.host}:{self.config.port}"
        if lost is not None and lost.done():
            why = lost.result()
            raise SinkError(f"mqtt {where}: connection lost before every PUBACK ({why})")
        raise SinkError(
            f"mqtt {where}: {len(waiting)} of {total} messages not acknowledged"
            f" within {self.config.timeout_s:g} s"
        )


# --------------------------------------------------------------------------- plugin factory


def build(cfg: MqttSinkConfig, ctx: SinkContext) -> Sink:
    return MqttSink(cfg, ctx.site, units=ctx.units)


# The alarm lane's sink name (its outbox cursor, connection and stats key).
ALARM_LANE = "mqtt-alarms"


def build_lane(cfg: MqttSinkConfig, ctx: SinkContext) -> Sink | None:
    """Alarms on their own thread, outbox and connection (gateway/alarm_lane.py): never
    behind the telemetry, neither on the event loop nor in a backlog after an outage."""
    if not cfg.alarm_lane:
        return None
    return MqttSink(cfg, ctx.site, name=ALARM_LANE, alarms_only=True)
