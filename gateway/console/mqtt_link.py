"""The console's one MQTT connection: what it watches comes in, signed commands go out.

Subscribes (QoS 1) under ``<prefix>/<site>/`` (``+`` for every site) to
``alarms/#``, ``+/availability``, ``gateway/status``, ``+/telemetry``
(the gateway's and each device's health record, and device readings, which
``ConsoleState`` only timestamps), ``events`` and ``replies``, and feeds
``ConsoleState``. ``command`` publishes one command on the site's command
topic and waits for the reply with the same ``request_id``.

Commands are signed with the console's own key (``commands.users.<console>``
on each gateway, with ``on_behalf: true``) and name the logged-in operator
in ``by``; the gateway records ``<operator> via <console>``. A lost broker is
shown (``state.broker_connected``) and reconnected with capped back-off;
commands fail at once while it is down, rather than wait.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any

from gateway.alerting.command_gate import signature
from gateway.alerting.commands import build_command
from gateway.config import MqttSinkConfig
from gateway.console.state import ConsoleState
from gateway.errors import CommandError, ConsoleError, SinkError
from gateway.plugins.mqtt.commands import command_client, command_topic
from gateway.plugins.mqtt.connection import MqttConnection
from gateway.plugins.mqtt.sink import topic_level

log = logging.getLogger(__name__)

# Commands waiting for their reply at once; past this the console says it is busy.
MAX_PENDING = 256


@dataclass(frozen=True)
class Signer:
    """The console's identity towards the gateways: its user name and key (None: unsigned)."""

    user: str
    key: str | None

    def sign(self, payload: dict[str, Any], site: str) -> dict[str, Any]:
        if self.key is None:
            return payload
        data = {**payload, "user": self.user, "site": site}
        data["sig"] = signature(data, self.key)
        return data


class Unavailable(ConsoleError):
    """The broker is not connected: the command was not sent."""


class NoReply(ConsoleError):
    """The command was sent but the gateway did not answer in time."""


class MqttLink:
    def __init__(
        self,
        cfg: MqttSinkConfig,
        state: ConsoleState,
        signer: Signer,
        site: str = "+",
        reply_timeout_s: float = 10.0,
        client_id: str | None = None,
    ) -> None:
        self.cfg = cfg
        self.state = state
        self.signer = signer
        self.base = f"{cfg.prefix}/{site if site == '+' else topic_level(site)}"
        self.reply_timeout_s = reply_timeout_s
        self.client_id = client_id or f"fsg-console-{uuid.uuid4().hex[:8]}"
        self._client: MqttConnection | None = None
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self.subscribed = asyncio.Event()

    def topics(self) -> list[str]:
        b = self.base
        return [
            f"{b}/alarms/#",
            f"{b}/+/availability",
            f"{b}/gateway/status",
            f"{b}/+/telemetry",
            f"{b}/events",
            f"{b}/replies",
        ]

    async def run(self) -> None:
        """Watch until cancelled; reconnect with capped back-off."""
        delay, logged = self.cfg.retry_min_s, False
        while True:
            try:
                async with command_client(self.cfg, self.client_id) as client:
                    for t in self.topics():
                        await client.subscribe(t, qos=1)
                    self._client = client
                    self.state.set_broker(True)
                    self.subscribed.set()
                    if logged:
                        log.warning("console: MQTT broker %s:%d back", self.cfg.host, self.cfg.port)
                    delay, logged = self.cfg.retry_min_s, False
                    async for msg in client.messages():
                        raw = msg.payload
                        topic = msg.topic
                        try:
                            if topic.endswith("/replies"):
                                self._reply(raw)
                            else:
                                self.state.handle(topic, raw)
                        except Exception:  # a bug must not stop the console watching
                            self.state.ignored += 1
                            log.exception("console: could not apply a message on %s", topic)
            except SinkError as exc:
                if not logged:
                    log.warning(
                        "console: MQTT broker %s:%d: %s; retrying",
                        self.cfg.host,
                        self.cfg.port,
                        exc,
                    )
                    logged = True
            finally:
                self._client = None
                self.subscribed.clear()
                self.state.set_broker(False)
                for fut in self._pending.values():
                    if not fut.done():
                        fut.set_exception(Unavailable("lost the MQTT broker before the reply"))
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.cfg.retry_max_s)

    def _reply(self, raw: bytes) -> None:
        try:
            reply = json.loads(raw)
        except (ValueError, RecursionError):
            return
        if not isinstance(reply, dict):
            return
        fut = self._pending.get(str(reply.get("request_id")))
        if fut is not None and not fut.done():
            fut.set_result(reply)

    async def command(
        self,
        site: str,
        cmd: str,
        alarm_id: str | None,
        by: str,
        *,
        duration: str | float | None = None,
        reason: str | None = None,
        comment: str | None = None,
    ) -> dict[str, Any]:
        """Publish one command for ``by`` on ``site``; the gateway's reply (a dict with ``ok``).
        ``alarm_id`` is None for a gateway command (``reload``).

        CommandError when the command is malformed (nothing is sent), Unavailable
        when the broker is down, NoReply when the gateway did not answer in time.
        """
        rid = uuid.uuid4().hex
        payload = build_command(
            cmd,
            alarm_id,
            duration=duration,
            reason=reason,
            by=by,
            comment=comment,
            request_id=rid,
            issued_at=round(time.time(), 3),
        )
        client = self._client
        if client is None:
            raise Unavailable("the console is not connected to the MQTT broker")
        if len(self._pending) >= MAX_PENDING:
            raise Unavailable("too many commands waiting for replies; try again")
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[rid] = fut
        try:
            data = self.signer.sign(payload, site)
            topic = command_topic(self.cfg.prefix, site)
            try:
                await client.publish(topic, json.dumps(data).encode(), qos=1)
            except SinkError as exc:
                raise Unavailable(f"could not publish the command: {exc}") from exc
            try:
                async with asyncio.timeout(self.reply_timeout_s):
                    return await fut
            except TimeoutError:
                raise NoReply(
                    f"no reply from site {site!r} within {self.reply_timeout_s:g} s"
                    " (is its gateway running?)"
                ) from None
        finally:
            del self._pending[rid]


__all__ = ["CommandError", "MqttLink", "NoReply", "Signer", "Unavailable"]
