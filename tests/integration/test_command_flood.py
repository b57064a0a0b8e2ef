"""A command flood against the real broker: few log lines and transitions, real commands answered.

The tester sent 1,000 invalid commands/s (10,000 warning lines) and 1,000
valid shelves/s (10,000 transitions). Here a flooder publishes thousands of
both as fast as it can; then another on-call user's real command must get
its reply, with only a handful of warning lines and transitions written.
No timing is asserted: the reply must come within a generous bound.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from gateway.alerting.command_config import CommandsConfig
from gateway.alerting.command_gate import CommandGate, sign_command
from gateway.model import AlarmState, SystemClock
from gateway.plugins.mqtt.commands import CommandListener, command_topic
from tests.fixtures.servers import Mosquitto
from tests.integration.test_command_channel import (
    ALARM,
    SITE,
    Harness,
    ask,
    command,
    listening,
    sink,
)

KEYS = {"li": "l" * 40, "mallory": "m" * 40}
INVALID, SHELVES = 3000, 2000


def flood(mq: Mosquitto) -> int:
    """Publish the flood (QoS 0, as fast as paho goes); return how many were sent."""
    c = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"flood-{uuid.uuid4().hex[:6]}")
    c.connect(mq.host, mq.port, keepalive=30)
    c.loop_start()
    topic = command_topic("fsg", SITE)
    sent = 0
    try:
        junk = [b"not json", b'{"cmd": "ack"}', json.dumps(command("ack", by="ghost")).encode()]
        for i in range(INVALID):
            c.publish(topic, junk[i % len(junk)], qos=0)
            sent += 1
        for _ in range(SHELVES):
            shelve = sign_command(command("shelve"), "mallory", KEYS["mallory"], SITE)
            c.publish(topic, json.dumps(shelve).encode(), qos=0)
            sent += 1
    finally:
        c.loop_stop()  # after loop_stop paho has written what it queued
        c.disconnect()
    return sent


async def test_flood_is_throttled_and_a_real_command_still_answered(
    mosquitto: Mosquitto, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    h = Harness(tmp_path)
    transitions: list[Any] = []
    engine_command = h.engine.command

    def counting(payload: Any, channel: str) -> Any:
        events, reply = engine_command(payload, channel)
        transitions.extend(events)
        return events, reply

    h.engine.command = counting  # type: ignore[method-assign]
    users = {u: {"key": k} for u, k in KEYS.items()}
    gate = CommandGate(CommandsConfig.model_validate({"users": users}), SystemClock(),
                       tmp_path / "replay.sqlite", SITE)  # fmt: skip
    listener = CommandListener(sink(mosquitto), SITE, h.handle, gate)
    async with listening(listener):
        assert await asyncio.to_thread(flood, mosquitto) == INVALID + SHELVES
        # The real command: li acknowledges. A real client resends (with a new
        # request id) when no reply comes; the broker may drop QoS 0 backlog.
        reply: dict[str, Any] | None = None
        deadline = time.monotonic() + 60
        while reply is None and time.monotonic() < deadline:
            real = sign_command(command("ack"), "li", KEYS["li"], SITE)
            try:
                reply = await asyncio.wait_for(ask(mosquitto, real), 10)
            except TimeoutError:
                continue
    assert reply is not None and reply["ok"] is True, reply
    assert reply["actor"] == "li via mqtt"
    assert h.engine.book.alarms[ALARM].acked_by == "li via mqtt"
    assert h.state() in (AlarmState.ACKED, AlarmState.SHELVED)
    warnings = [r for r in caplog.records
                if r.name.startswith("gateway") and r.levelno >= logging.WARNING]  # fmt: skip
    assert len(warnings) <= 25, "\n".join(r.getMessage() for r in warnings)
    assert any("flood" in r.getMessage() for r in warnings), "the flood is not reported"
    # mallory's shelves: the per-alarm limit lets only a few through.
    shelves = [e for e in transitions if e.action == "shelve"]
    assert 1 <= len(shelves) <= 10, len(shelves)
