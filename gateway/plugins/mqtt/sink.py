"""The MQTT sink (aiomqtt on paho-mqtt): topic scheme, JSON payloads, PUBACK-confirmed sends.

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

Acknowledgement: paho calls ``on_publish`` on PUBACK (QoS 1) / PUBCOMP
(QoS 2), so ``send`` returns only when the broker has every message. A batch
is handed to aiomqtt's paho client in order (paho sends them in that order
over one connection, which keeps per-device order) with at most
``max_inflight`` unacknowledged: past that the sink waits until half the
window is acknowledged, and ONE future waits for the batch's last
acknowledgement. The window is ours, not paho's: with a limit set, paho
rescans every in-flight message on each PUBACK. aiomqtt's own ``publish``
would cost a task, a timer and an Event per message, and scans every pending
call on each one (quadratic in the batch): profiling at 1,600 messages/s
showed that starving the MQTT worker.
If the connection drops, ``send`` also watches the client's disconnect
future so an outage is noticed at once, not at the timeout.

Secrets (password) may be ``${ENV}`` references in the site file.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Mapping, Sequence
from typing import Any, Self, cast

import aiomqtt
import orjson
import paho.mqtt.client as paho_mqtt
from aiomqtt.exceptions import MqttConnectError

from gateway.errors import SinkAuthError, SinkError
from gateway.model import HEALTH_KINDS, AlarmEvent, Sample
from gateway.outbox import Event, Record
from gateway.plugins.base import SinkContext
from gateway.plugins.mqtt.config import MqttSinkConfig
from gateway.sinks.base import Sink, iso_utc

log = logging.getLogger(__name__)

# How long a closed handshake waits for the CONNACK that explains it.
HANDSHAKE_VERDICT_S = 0.5

# Publishes between two turns of the event loop (see _publish_all).
_YIELD_EVERY = 100
# CONNACK codes that mean "your credentials": 3.1.1 (4, 5) and 5.0 (134, 135).
_AUTH_CODES = {4, 5, 134, 135}


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


class _PahoLog(logging.LoggerAdapter[logging.Logger]):
    """paho/aiomqtt log every failed attempt at ERROR; the delivery worker already
    logs one line per outage, so theirs go to debug. The last error is kept to
    explain a failed connect (e.g. the TLS alert)."""

    last_error: str | None = None

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        # paho logs every packet (debug): bail out early, it is on the hot path.
        if level < logging.WARNING:
            if self.logger.isEnabledFor(logging.DEBUG):
                super().log(logging.DEBUG, msg, *args, **kwargs)
            return
        try:
            self.last_error = str(msg) % args if args else str(msg)
        except (TypeError, ValueError):
            self.last_error = str(msg)
        super().log(logging.DEBUG, msg, *args, **kwargs)


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
        self._client: aiomqtt.Client | None = None
        self._lost: asyncio.Future[str] | None = None
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
        where = f"{cfg.host}:{cfg.port}"
        v5 = cfg.protocol == "5"
        paho_log = _PahoLog(logging.getLogger(f"{__name__}.paho"))
        client = aiomqtt.Client(
            cfg.host,
            cfg.port,
            username=cfg.username,
            password=cfg.password,
            identifier=(cfg.client_id or f"fsg-{self.site}")
            + ("-alarms" if self.alarms_only else ""),
            protocol=aiomqtt.ProtocolVersion.V5 if v5 else aiomqtt.ProtocolVersion.V311,
            will=None
            if self.alarms_only
            else aiomqtt.Will(self.status_topic, b"offline", qos=1, retain=True),
            # Our outbox is the session state; a broker-side session adds nothing.
            clean_session=None if v5 else True,
            keepalive=cfg.keepalive,
            timeout=cfg.timeout_s,
            tls_context=tls_context(self.config),
            # 0 = paho never queues: the window is ours (see _publish_all). paho
            # rescans every in-flight message on each PUBACK when it has a limit
            # (quadratic: 7 % of the gateway's CPU at 50,000 points/s).
            max_inflight_messages=0,
            logger=cast(logging.Logger, paho_log),
        )
        # A batch is hundreds of concurrent publishes by design: silence that warning.
        client.pending_calls_threshold = 1_000_000
        lost = self._watch_connection(client)
        self._watch_acks(client)
        _guard_register_write(client)
        enter = asyncio.ensure_future(client.__aenter__())
        # If we are cancelled while it fails, nobody reads its error; read it on
        # completion so asyncio never logs "Task exception was never retrieved"
        # (the outage is reported by the delivery worker, once).
        enter.add_done_callback(_retrieve)
        first: set[asyncio.Future[Any]] = {enter, lost}
        try:
            await asyncio.wait(first, return_when=asyncio.FIRST_COMPLETED)
            if not enter.done():
                # A broker that refuses the login sends CONNACK and closes at once; the
                # close can be seen first. Let the CONNACK's verdict land: "refused the
                # credentials" tells the operator what to fix, "connection closed" does not.
                await asyncio.wait([enter], timeout=HANDSHAKE_VERDICT_S)
        finally:
            if not enter.done():
                enter.cancel()
                await asyncio.wait([enter])
        if enter.cancelled():
            # The socket closed before CONNACK (e.g. TLS refused our certificate);
            # aiomqtt would only notice at its timeout.
            why = paho_log.last_error or (lost.result() if lost.done() else "closed")
            raise SinkError(f"mqtt {where}: connection closed during the handshake: {why}")
        exc = enter.exception()
        if isinstance(exc, MqttConnectError):
            code = getattr(exc.rc, "value", exc.rc)
            if code in _AUTH_CODES:
                raise SinkAuthError(
                    f"mqtt {where}: broker refused the credentials (user {cfg.username!r}): {exc}"
                ) from exc
            raise SinkError(f"mqtt {where}: connection refused: {exc}") from exc
        if isinstance(exc, aiomqtt.MqttError | OSError):
            why = paho_log.last_error or str(exc)
            raise SinkError(f"mqtt {where}: cannot connect: {why}") from exc
        if exc is not None:
            raise exc
        self._client = client
        self._lost = lost
        self._availability = {}
        if self.alarms_only:
            return self
        try:
            await self._publish_all([(self.status_topic, b"online", True)])
        except BaseException:
            await self.aclose()
            raise
        return self

    def _watch_connection(self, client: aiomqtt.Client) -> asyncio.Future[str]:
        """A future that completes when paho sees the connection go, for any reason.

        aiomqtt fails neither a pending CONNACK nor pending PUBACK waits when
        the socket closes (they run into their timeout), so we chain paho's
        on_disconnect callback. ``_client`` is aiomqtt's paho client: there is
        no public hook for this in aiomqtt 2.5.
        """
        loop = asyncio.get_running_loop()
        lost: asyncio.Future[str] = loop.create_future()
        paho_client = client._client
        chained = paho_client.on_disconnect

        def mark(reason: str) -> None:
            if not lost.done():
                lost.set_result(reason)

        def on_disconnect(*args: Any) -> None:
            if chained is not None:
                chained(*args)
            reason = args[3] if len(args) > 3 else "disconnected"
            loop.call_soon_threadsafe(mark, str(reason))

        paho_client.on_disconnect = on_disconnect
        return lost

    def _watch_acks(self, client: aiomqtt.Client) -> None:
        """Route acks of our batches to the batch future; others to aiomqtt as before.

        Like ``_watch_connection``, this chains a callback on aiomqtt's paho
        client (no public hook in aiomqtt 2.5). paho calls it on the event
        loop's thread, from the socket reader aiomqtt registered.
        """
        paho_client = client._client
        chained = paho_client.on_publish

        def on_publish(*args: Any) -> None:
            waiting = self._batch
            mid = args[2]
            if waiting is not None and mid in waiting:
                waiting.discard(mid)
                wait = self._batch_wait
                if len(waiting) <= self._batch_low and wait is not None and not wait.done():
                    wait.set_result(None)
                return
            if chained is not None:
                chained(*args)

        paho_client.on_publish = on_publish

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        if self._lost is not None and not self._lost.done() and not self.alarms_only:
            # A clean disconnect does not fire the will: say offline ourselves.
            with contextlib.suppress(aiomqtt.MqttError):
                await client.publish(self.status_topic, b"offline", qos=1, retain=True, timeout=2.0)
        try:
            await client.__aexit__(None, None, None)
        except aiomqtt.MqttError:
            pass
        finally:
            _retrieve(getattr(client, "_disconnected", None))

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
        client = self._client
        if client is None:
            raise SinkError("mqtt: not connected")
        if not messages:
            return
        qos = self.config.qos
        window = self.config.max_inflight
        where = f"{self.config.host}:{self.config.port}"
        paho_client = client._client
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
                info = paho_client.publish(t, p, qos, rt)
                if info.rc != paho_mqtt.MQTT_ERR_SUCCESS:
                    why = paho_mqtt.error_string(info.rc)
                    raise SinkError(f"mqtt {where}: publish failed: {why}")
                if not info.is_published():
                    waiting.add(info.mid)
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
        waiters: set[asyncio.Future[Any]] = {done}
        if self._lost is not None:
            waiters.add(self._lost)
        await asyncio.wait(
            waiters, timeout=self.config.timeout_s, return_when=asyncio.FIRST_COMPLETED
        )
        if done.done():
            return
        where = f"{self.config.host}:{self.config.port}"
        if self._lost is not None and self._lost.done():
            why = self._lost.result()
            raise SinkError(f"mqtt {where}: connection lost before every PUBACK ({why})")
        raise SinkError(
            f"mqtt {where}: {len(waiting)} of {total} messages not acknowledged"
            f" within {self.config.timeout_s:g} s"
        )


def _guard_register_write(client: aiomqtt.Client) -> None:
    """aiomqtt's "socket wants writing" hook, but tolerant of a socket closed meanwhile.

    paho calls it from the thread that connects; aiomqtt then schedules
    ``add_writer`` for the socket on the loop. When the handshake fails first
    (a broker refusing a TLS client without a certificate), the socket is
    closed before that runs and asyncio logs "Bad file descriptor" at ERROR
    on top of the outage the worker already reports. Same callback as
    aiomqtt 2.5's, checked; ``_client``, ``_loop`` and ``_disconnected`` are
    aiomqtt internals (no public hook).
    """
    paho_client = client._client
    loop = client._loop

    def on_register_write(c: paho_mqtt.Client, userdata: Any, sock: Any) -> None:
        def writable() -> None:
            try:
                c.loop_write()
            except Exception as exc:  # a broken pipe: the connection is gone
                if not client._disconnected.done():
                    client._disconnected.set_exception(exc)

        def add() -> None:
            fd = sock.fileno()
            if fd < 0:
                return  # closed before we got here: nothing to write
            with contextlib.suppress(OSError, ValueError):
                loop.add_writer(fd, writable)

        loop.call_soon_threadsafe(add)

    paho_client.on_socket_register_write = on_register_write


def _retrieve(fut: object) -> BaseException | None:
    """Read a finished future's exception so asyncio does not log it as never retrieved."""
    if isinstance(fut, asyncio.Future) and fut.done() and not fut.cancelled():
        return fut.exception()
    return None


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
