"""Operator commands over MQTT: acknowledge, shelve, reset alarms from a phone or a console.

The listener subscribes (QoS 1) to ``<prefix>/<site>/commands`` and answers
every message on ``<prefix>/<site>/replies`` with a JSON reply that echoes the
command's ``request_id``. A malformed payload gets an error reply and is
logged; it never changes state and never stops the listener. The broker's
ACL should let on-call users publish only to the commands topic (see
deploy/mosquitto/acl). The connection is its own (client id ``<id>-cmd``), so
a burst of telemetry never delays an acknowledgement.

A retained command is never run: it would run again at every restart. MQTT
3.1.1 and 5 both set the retain flag on a message delivered because a new
subscription matched a retained one; with MQTT 5 the listener also asks for
"retain as published", so a command published retained while it listens is
recognised too. The listener then clears the retained message (an empty
retained publish) so nobody else receives it either.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from gateway.config import MqttSinkConfig
from gateway.errors import SinkError
from gateway.plugins.base import CommandContext, CommandGateLike
from gateway.plugins.mqtt.connection import MqttConnection
from gateway.plugins.mqtt.sink import tls_context, topic_level
from gateway.printable import printable_json

log = logging.getLogger(__name__)

MAX_COMMAND_BYTES = 16 * 1024
Handler = Callable[[bytes | dict[str, Any], str], dict[str, Any]]


def command_topic(prefix: str, site: str) -> str:
    return f"{prefix}/{topic_level(site)}/commands"


def reply_topic(prefix: str, site: str) -> str:
    return f"{prefix}/{topic_level(site)}/replies"


def command_client(cfg: MqttSinkConfig, identifier: str) -> MqttConnection:
    """A connection for the command channel (the listener, ``gateway alarms``, the console)."""
    return MqttConnection(
        cfg.host,
        cfg.port,
        client_id=identifier,
        v5=cfg.protocol == "5",
        username=cfg.username,
        password=cfg.password,
        tls=tls_context(cfg),
        keepalive=cfg.keepalive,
        timeout_s=cfg.timeout_s,
    )


class CommandListener:
    """Receives commands, hands them to ``handler``, publishes its replies."""

    def __init__(
        self,
        config: MqttSinkConfig,
        site: str,
        handler: Handler,
        gate: CommandGateLike | None = None,
    ) -> None:
        self.config = config
        self.site = site
        self.handler = handler
        self.gate = gate
        self.command_topic = command_topic(config.prefix, site)
        self.reply_topic = reply_topic(config.prefix, site)
        self.connected = False
        # Set while subscribed: tests and the app wait on it instead of polling.
        self.listening = asyncio.Event()
        self.received = 0
        self.retained_ignored = 0

    def _client(self) -> MqttConnection:
        cfg = self.config
        return command_client(cfg, f"{cfg.client_id or f'fsg-{self.site}'}-cmd")

    def answer(self, payload: bytes, retained: bool = False) -> dict[str, Any] | None:
        """The reply to one raw payload, None for no reply (never raises)."""
        if not payload:  # the empty retained message that clears one
            return None
        if retained:
            self.retained_ignored += 1
            if self.retained_ignored == 1 or self.retained_ignored % 100 == 0:
                log.warning(
                    "mqtt commands: ignored a retained command on %s (%d so far); clearing it",
                    self.command_topic,
                    self.retained_ignored,
                )
            return None
        if len(payload) > MAX_COMMAND_BYTES:
            return {"ok": False, "error": f"command larger than {MAX_COMMAND_BYTES} bytes"}
        try:
            if self.gate is None:
                return self.handler(payload, "mqtt")
            return self.gate.answer(payload, self.handler)
        except Exception as exc:  # a bug must not kill the command channel
            log.exception("command handler failed")
            return {"ok": False, "error": f"internal error: {exc}"}

    async def _subscribe(self, client: MqttConnection) -> None:
        # MQTT 5: keep the publisher's retain flag on live deliveries too.
        v5 = self.config.protocol == "5"
        await client.subscribe(self.command_topic, qos=1, retain_as_published=v5)

    async def run(self) -> None:
        """Listen until cancelled; reconnect with capped back-off."""
        try:
            await self._listen()
        finally:
            if self.gate is not None:
                self.gate.close()

    async def _listen(self) -> None:
        delay = self.config.retry_min_s
        logged = False
        while True:
            try:
                async with self._client() as client:
                    await self._subscribe(client)
                    self.connected = True
                    self.listening.set()
                    if logged:
                        log.warning("mqtt commands: listening again on %s", self.command_topic)
                    logged = False
                    delay = self.config.retry_min_s
                    async for msg in client.messages():
                        self.received += 1
                        raw = msg.payload
                        reply = self.answer(raw, retained=msg.retain)
                        if msg.retain and raw:
                            await client.publish(self.command_topic, b"", qos=1, retain=True)
                        if reply is None:
                            # Let the socket be read between dropped messages of a flood.
                            await asyncio.sleep(0)
                            continue
                        await client.publish(
                            self.reply_topic,
                            printable_json(reply).encode(),
                            qos=1,
                        )
            except SinkError as exc:
                self.connected = False
                self.listening.clear()
                if not logged:
                    log.warning(
                        "mqtt commands: %s; retrying up to every %g s", exc, self.config.retry_max_s
                    )
                    logged = True
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.config.retry_max_s)


def listen(cfg: MqttSinkConfig, ctx: CommandContext) -> Coroutine[Any, Any, None]:
    """The plugin's command channel: listen on the site's command topic until cancelled."""
    return CommandListener(cfg, ctx.site, ctx.handle, ctx.gate).run()
