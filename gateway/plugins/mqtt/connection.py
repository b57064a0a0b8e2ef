"""One MQTT connection: a paho-mqtt client driven by the asyncio event loop.

This is the gateway's one MQTT layer: the sink and its alarm lane, the
command listener, ``gateway alarms`` and the console all use it. It relies on paho's
public API for running a client on someone else's event loop: the
``on_socket_*`` callbacks, ``loop_read``/``loop_write``/``loop_misc``, and the
``on_connect``/``on_disconnect``/``on_publish``/``on_subscribe``/``on_message``
callbacks (paho-mqtt 2.x, callback API version 2).

Owning the loop lets the connection say at once that it is gone (``lost``)
instead of letting waits for CONNACK or PUBACK run into their timeouts, and
lets the sink count a batch's acknowledgements with one callback per PUBACK
(``on_ack``) instead of a task and a timer per message.

Every failure is a ``SinkError`` (``SinkAuthError`` when the broker refuses the
credentials) whose text starts with ``mqtt host:port``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from gateway.errors import SinkAuthError, SinkError

# How long a closed handshake waits for the CONNACK that explains it: a broker
# that refuses a login sends CONNACK and closes at once, and the close can be
# seen first; "refused the credentials" tells the operator what to fix.
HANDSHAKE_VERDICT_S = 0.5
# CONNACK codes that mean "your credentials": 3.1.1 (4, 5) and 5.0 (134, 135).
_AUTH_CODES = {4, 5, 134, 135}
# Received messages waiting for the reader; past this they are dropped and counted.
MAX_QUEUED_MESSAGES = 10_000


@dataclass(frozen=True, slots=True)
class Message:
    topic: str
    payload: bytes
    qos: int
    retain: bool


class PahoLog(logging.LoggerAdapter[logging.Logger]):
    """paho logs every failed attempt at ERROR; the delivery worker already logs
    one line per outage, so paho's go to debug. The last error is kept to
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


class MqttConnection:
    """Connect with ``async with`` (or ``connect``/``aclose``); publish, subscribe, read."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        client_id: str,
        v5: bool = False,
        username: str | None = None,
        password: str | None = None,
        tls: ssl.SSLContext | None = None,
        keepalive: int = 60,
        timeout_s: float = 10.0,
        will: tuple[str, bytes] | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        self.where = f"{host}:{port}"
        self.timeout_s = timeout_s
        self._host, self._port, self._keepalive = host, port, keepalive
        self.log = PahoLog(logger or logging.getLogger(__name__), {})
        c = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=paho.MQTTv5 if v5 else paho.MQTTv311,
            # Our outbox is the session state; a broker-side session adds nothing.
            clean_session=None if v5 else True,
        )
        if username is not None:
            c.username_pw_set(username, password)
        if tls is not None:
            c.tls_set_context(tls)
        if will is not None:
            c.will_set(will[0], will[1], qos=1, retain=True)
        # 0 = no limit in paho: the sink keeps its own window, and paho rescans
        # every in-flight message on each PUBACK when it has a limit.
        c.max_inflight_messages_set(0)
        c.connect_timeout = timeout_s
        c.enable_logger(self.log)  # type: ignore[arg-type]
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_publish = self._on_publish
        c.on_subscribe = self._on_subscribe
        c.on_message = self._on_message
        c.on_socket_open = self._on_socket_open
        c.on_socket_close = self._on_socket_close
        c.on_socket_register_write = self._on_register_write
        c.on_socket_unregister_write = self._on_unregister_write
        self._client = c
        self._loop: asyncio.AbstractEventLoop | None = None
        self._fd = -1
        # Set once closed: a connect still running in its thread must not revive it.
        self._closed = False
        self._misc: asyncio.Task[None] | None = None
        self._connack: asyncio.Future[ReasonCode] | None = None
        # Done with a reason when the connection goes, for any reason.
        self.lost: asyncio.Future[str] | None = None
        # Acks awaited by ``publish``/``subscribe``; any other PUBACK goes to ``on_ack``.
        self._acks: dict[int, asyncio.Future[Any]] = {}
        self.on_ack: Callable[[int], None] | None = None
        self._messages: asyncio.Queue[Message] = asyncio.Queue(MAX_QUEUED_MESSAGES)
        self.dropped = 0

    # ------------------------------------------------------------------ connect / close

    async def __aenter__(self) -> MqttConnection:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def connect(self) -> None:
        """Connect and wait for the broker's CONNACK; raise SinkError / SinkAuthError."""
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._connack = loop.create_future()
        lost = self.lost = loop.create_future()
        try:
            # paho's connect blocks on DNS, TCP and the TLS handshake. asyncio.wait, not
            # wait_for: on Python 3.11 wait_for can swallow a cancel that arrives as the
            # connect finishes, and the caller would never stop.
            tcp = loop.run_in_executor(None, self._paho_connect)
            tcp.add_done_callback(_retrieve)
            if not (await asyncio.wait([tcp], timeout=self.timeout_s))[0]:
                raise TimeoutError(f"no TCP/TLS connection within {self.timeout_s:g} s")
            tcp.result()
            await asyncio.wait(
                [self._connack, lost], timeout=self.timeout_s, return_when=asyncio.FIRST_COMPLETED
            )
            if not self._connack.done() and lost.done():
                await asyncio.wait([self._connack], timeout=HANDSHAKE_VERDICT_S)
        except (OSError, ValueError, TimeoutError) as exc:
            self._force_close()
            why = self.log.last_error or str(exc) or "timed out"
            raise SinkError(f"mqtt {self.where}: cannot connect: {why}") from exc
        except BaseException:
            self._force_close()
            raise
        if not self._connack.done():
            self._force_close()
            if lost.done():
                # The socket closed before CONNACK (e.g. TLS refused our certificate).
                why = self.log.last_error or lost.result()
                raise SinkError(f"mqtt {self.where}: connection closed during the handshake: {why}")
            raise SinkError(f"mqtt {self.where}: no CONNACK within {self.timeout_s:g} s")
        rc = self._connack.result()
        if rc.is_failure:
            self._force_close()
            if rc.value in _AUTH_CODES:
                raise SinkAuthError(f"mqtt {self.where}: broker refused the credentials: {rc}")
            raise SinkError(f"mqtt {self.where}: connection refused: {rc}")

    def _paho_connect(self) -> None:
        self._client.connect(self._host, self._port, self._keepalive)

    async def aclose(self, timeout_s: float = 2.0) -> None:
        """Disconnect cleanly (no last will), or drop the socket if that does not finish."""
        lost = self.lost
        if (
            lost is not None
            and not lost.done()
            and self._client.disconnect() == paho.MQTT_ERR_SUCCESS
        ):
            await asyncio.wait([lost], timeout=timeout_s)
        self._force_close()

    def _force_close(self) -> None:
        self._closed = True
        loop, fd = self._loop, self._fd
        self._fd = -1
        if loop is not None and fd >= 0 and not loop.is_closed():
            loop.remove_reader(fd)
            loop.remove_writer(fd)
        if self._misc is not None:
            self._misc.cancel()
        sock = self._client.socket()
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()
        self._mark_lost("closed")
        for fut in self._acks.values():
            if not fut.done():
                fut.cancel()
        self._acks.clear()

    def _mark_lost(self, reason: str) -> None:
        if self.lost is not None and not self.lost.done():
            self.lost.set_result(reason)

    # ------------------------------------------------------------------ sending / receiving

    def publish_nowait(self, topic: str, payload: bytes, qos: int, retain: bool) -> int | None:
        """Hand one message to paho; the message id whose ack ``on_ack`` will get, or
        None when it needs none (QoS 0). Raise SinkError when paho refuses it."""
        info = self._client.publish(topic, payload, qos, retain)
        if info.rc != paho.MQTT_ERR_SUCCESS:
            raise SinkError(f"mqtt {self.where}: publish failed: {paho.error_string(info.rc)}")
        return None if info.is_published() else info.mid

    async def publish(
        self,
        topic: str,
        payload: bytes,
        qos: int = 1,
        retain: bool = False,
        timeout_s: float | None = None,
    ) -> None:
        """Publish one message; return when the broker acknowledged it."""
        info = self._client.publish(topic, payload, qos, retain)
        if info.rc != paho.MQTT_ERR_SUCCESS:
            raise SinkError(f"mqtt {self.where}: publish failed: {paho.error_string(info.rc)}")
        if not info.is_published():
            await self._wait_ack(info.mid, "PUBACK", timeout_s)

    async def subscribe(self, topic: str, qos: int = 1, retain_as_published: bool = False) -> None:
        """Subscribe and wait for the SUBACK; raise SinkError when the broker refuses."""
        if retain_as_published:
            opts = SubscribeOptions(qos=qos, retainAsPublished=True)
            rc, mid = self._client.subscribe(topic, options=opts)
        else:
            rc, mid = self._client.subscribe(topic, qos)
        if rc != paho.MQTT_ERR_SUCCESS or mid is None:
            raise SinkError(f"mqtt {self.where}: subscribe failed: {paho.error_string(rc)}")
        codes: list[ReasonCode] = await self._wait_ack(mid, "SUBACK")
        if any(c.is_failure for c in codes):
            raise SinkError(f"mqtt {self.where}: subscription to {topic!r} refused: {codes}")

    async def _wait_ack(self, mid: int, what: str, timeout_s: float | None = None) -> Any:
        lost = self.lost
        if lost is None or self._loop is None:
            raise SinkError(f"mqtt {self.where}: not connected")
        ack: asyncio.Future[Any] = self._loop.create_future()
        self._acks[mid] = ack
        try:
            timeout_s = self.timeout_s if timeout_s is None else timeout_s
            await asyncio.wait([ack, lost], timeout=timeout_s, return_when="FIRST_COMPLETED")
        finally:
            self._acks.pop(mid, None)
        if ack.done() and not ack.cancelled():
            return ack.result()
        if lost.done():
            why = lost.result()
            raise SinkError(f"mqtt {self.where}: connection lost before the {what} ({why})")
        raise SinkError(f"mqtt {self.where}: no {what} within {timeout_s:g} s")

    async def messages(self) -> AsyncIterator[Message]:
        """Received messages until the connection goes (then SinkError)."""
        lost = self.lost
        if lost is None:
            raise SinkError(f"mqtt {self.where}: not connected")
        while True:
            if self._messages.empty():
                get: asyncio.Future[Message] = asyncio.ensure_future(self._messages.get())
                try:
                    either: list[asyncio.Future[Any]] = [get, lost]
                    await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    get.cancel()
                if not get.done() or get.cancelled():
                    raise SinkError(f"mqtt {self.where}: connection lost ({lost.result()})")
                yield get.result()
            else:
                yield self._messages.get_nowait()

    # ------------------------------------------------------------------ paho callbacks

    def _soon(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` on the loop: paho calls some callbacks from the connecting thread."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            fn()
        else:
            loop.call_soon_threadsafe(fn)

    def _on_connect(self, _c: Any, _u: Any, _flags: Any, rc: ReasonCode, _p: Any) -> None:
        def done() -> None:
            if self._connack is not None and not self._connack.done():
                self._connack.set_result(rc)

        self._soon(done)

    def _on_disconnect(self, _c: Any, _u: Any, _flags: Any, rc: Any, _p: Any) -> None:
        self._soon(lambda: self._mark_lost(str(rc)))

    def _on_publish(self, _c: Any, _u: Any, mid: int, _rc: Any, _p: Any) -> None:
        # Called on the loop's thread, from the socket reader below.
        ack = self._acks.pop(mid, None) if self._acks else None
        if ack is not None:
            if not ack.done():
                ack.set_result(None)
        elif self.on_ack is not None:
            self.on_ack(mid)

    def _on_subscribe(self, _c: Any, _u: Any, mid: int, codes: Any, _p: Any) -> None:
        ack = self._acks.pop(mid, None)
        if ack is not None and not ack.done():
            ack.set_result(list(codes))

    def _on_message(self, _c: Any, _u: Any, msg: paho.MQTTMessage) -> None:
        try:
            m = Message(msg.topic, bytes(msg.payload), msg.qos, bool(msg.retain))
            self._messages.put_nowait(m)
        except asyncio.QueueFull:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                self.log.warning(
                    "mqtt %s: %d received messages dropped (reader behind)",
                    self.where,
                    self.dropped,
                )

    def _on_socket_open(self, client: paho.Client, _u: Any, sock: Any) -> None:
        fd = sock.fileno()

        def readable() -> None:
            try:
                while True:
                    client.loop_read()
                    # A TLS socket may hold decoded bytes that select() cannot see.
                    s = client.socket()
                    pending = getattr(s, "pending", None)
                    if pending is None or pending() <= 0:
                        break
            except Exception as exc:  # a broken connection: paho may not have noticed
                self._mark_lost(str(exc))

        def add() -> None:
            loop = self._loop
            if loop is None or sock.fileno() < 0:
                return  # closed before we got here
            if self._closed:
                with contextlib.suppress(OSError):
                    sock.close()
                return
            self._fd = fd
            loop.add_reader(fd, readable)
            self._misc = loop.create_task(self._misc_loop())

        self._soon(add)

    def _on_socket_close(self, _c: Any, _u: Any, sock: Any) -> None:
        def remove() -> None:
            loop, fd = self._loop, self._fd
            self._fd = -1
            if loop is not None and fd >= 0:
                loop.remove_reader(fd)
                loop.remove_writer(fd)
            if self._misc is not None:
                self._misc.cancel()

        self._soon(remove)

    def _on_register_write(self, client: paho.Client, _u: Any, sock: Any) -> None:
        def writable() -> None:
            try:
                client.loop_write()
            except Exception as exc:  # a broken pipe: the connection is gone
                self._mark_lost(str(exc))

        def add() -> None:
            # The socket may have closed meanwhile (a handshake refused first):
            # adding a closed descriptor would log "Bad file descriptor".
            fd = sock.fileno()
            loop = self._loop
            if loop is None or fd < 0:
                return
            with contextlib.suppress(OSError, ValueError):
                loop.add_writer(fd, writable)

        self._soon(add)

    def _on_unregister_write(self, _c: Any, _u: Any, sock: Any) -> None:
        def remove() -> None:
            fd = sock.fileno()
            if self._loop is not None and fd >= 0:
                self._loop.remove_writer(fd)

        self._soon(remove)

    async def _misc_loop(self) -> None:
        # Keepalive pings and paho's own timeouts.
        while self._client.loop_misc() == paho.MQTT_ERR_SUCCESS:  # noqa: ASYNC110
            await asyncio.sleep(1)


def _retrieve(fut: asyncio.Future[None]) -> None:
    """Read a finished connect's error, so a cancelled caller's is not logged as never retrieved."""
    if not fut.cancelled():
        fut.exception()
