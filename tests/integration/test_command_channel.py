"""The MQTT command channel against a real Mosquitto: retained commands never run.

The listener runs in this process with the real alert engine behind it; the
commands come from separate MQTT clients, as from an on-call phone.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from gateway.alerting.command_config import CommandsConfig
from gateway.alerting.command_gate import CommandGate, sign_command
from gateway.alerting.commands import error_reply
from gateway.alerting.engine import AlertEngine
from gateway.config import MqttSinkConfig
from gateway.errors import AlarmError, CommandError
from gateway.loader import load_site
from gateway.model import AlarmState, FakeClock, SystemClock
from gateway.plugins.mqtt.commands import CommandListener, command_topic, reply_topic
from tests.fixtures.servers import Mosquitto
from tests.integration.test_deploy import GATEWAY_USER, Broker
from tests.integration.test_deploy import broker as broker  # the shipped config, a fixture
from tests.simproc import bin_path
from tests.unit.test_commands import ALARM, RULES
from tests.unit.test_rules import make_engine, sample

SITE = "test-park"
WAIT_S = 15.0


def command(cmd: str, **fields: Any) -> dict[str, Any]:
    """A well-formed command as a current sender writes it."""
    data: dict[str, Any] = {"cmd": cmd, "request_id": uuid.uuid4().hex, "issued_at": time.time()}
    if cmd in ("ack", "shelve", "unshelve", "reset", "out_of_service", "in_service"):
        data["alarm_id"] = ALARM
    if cmd in ("shelve", "out_of_service"):
        data.update(reason="pump replaced", duration="1h")
    data.update(fields)
    return data


class Harness:
    """An engine with one active alarm, and the handler the app would give the listener."""

    def __init__(self, tmp_path: Path) -> None:
        self.clock = FakeClock(time.time_ns())
        self.engine: AlertEngine = make_engine(tmp_path, RULES, self.clock)
        self.engine.on_sample(sample(self.clock, "lk-1", {"alarm_ch1": True}))
        self.handled: list[Any] = []

    def handle(self, payload: bytes | dict[str, Any], channel: str) -> dict[str, Any]:
        self.handled.append(payload)
        try:
            _events, reply = self.engine.command(payload, channel)
        except (CommandError, AlarmError) as exc:
            return error_reply(payload, exc)
        return reply

    def state(self) -> AlarmState:
        return self.engine.book.alarms[ALARM].state


def sink(mq: Mosquitto, **overrides: Any) -> MqttSinkConfig:
    return MqttSinkConfig.model_validate(mq.sink_config(retry_min_s=0.2, **overrides))


@contextlib.asynccontextmanager
async def listening(listener: CommandListener) -> AsyncIterator[CommandListener]:
    task = asyncio.create_task(listener.run())
    try:
        async with asyncio.timeout(WAIT_S):
            await listener.listening.wait()
        yield listener
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def client(mq: Mosquitto) -> aiomqtt.Client:
    """A sender: anonymous on the test broker, or the given account on the shipped one."""
    return aiomqtt.Client(mq.host, mq.port, username=mq.username, password=mq.password,
                          identifier=f"t-{uuid.uuid4().hex[:6]}")  # fmt: skip


async def publish(
    mq: Mosquitto, payload: dict[str, Any] | bytes, retain: bool = False, site: str = SITE
) -> None:
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    async with client(mq) as c:
        await c.publish(command_topic("fsg", site), raw, qos=1, retain=retain)


async def ask(mq: Mosquitto, payload: dict[str, Any], site: str = SITE) -> dict[str, Any]:
    """Publish one live command and return the gateway's reply to it."""
    async with client(mq) as c:
        await c.subscribe(reply_topic("fsg", site), qos=1)
        await c.publish(command_topic("fsg", site), json.dumps(payload).encode(), qos=1)
        async with asyncio.timeout(WAIT_S):
            async for msg in c.messages:
                reply = json.loads(bytes(msg.payload))  # type: ignore[arg-type]
                if reply.get("request_id") == payload["request_id"]:
                    return reply  # type: ignore[no-any-return]
    raise AssertionError("no reply")


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
async def test_retained_command_never_runs_not_even_after_a_restart(
    mosquitto: Mosquitto, tmp_path: Path, protocol: str
) -> None:
    h = Harness(tmp_path)
    cfg = sink(mosquitto, protocol=protocol)
    # The tester's attack: a retained out-of-service command waiting on the broker.
    attack = command("out_of_service", by="ghost")
    await publish(mosquitto, attack, retain=True)
    for _restart in range(2):
        async with listening(CommandListener(cfg, SITE, h.handle)):
            # Retained messages arrive right after SUBACK, before this live one.
            reply = await ask(mosquitto, command("list"))
            assert reply["ok"] is True
        assert h.state() is AlarmState.UNACKED
        assert all(p.get("request_id") != attack["request_id"] for p in h.handled
                   if isinstance(p, dict))  # fmt: skip
        assert not any(attack["request_id"].encode() in p for p in h.handled
                       if isinstance(p, bytes))  # fmt: skip


async def test_command_published_retained_while_listening_is_refused_with_mqtt5(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    """MQTT 5 "retain as published": a live retained publish is seen as retained, and cleared."""
    h = Harness(tmp_path)
    listener = CommandListener(sink(mosquitto, protocol="5"), SITE, h.handle)
    async with listening(listener):
        await publish(mosquitto, command("out_of_service"), retain=True)
        reply = await ask(mosquitto, command("list"))
        assert reply["ok"] is True
        assert listener.retained_ignored == 1
    assert h.state() is AlarmState.UNACKED
    # The listener cleared it: a new subscriber gets no retained command.
    async with aiomqtt.Client(mosquitto.host, mosquitto.port, identifier="t-late") as c:
        await c.subscribe(command_topic("fsg", SITE), qos=1)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(1.0):
                async for msg in c.messages:
                    assert not msg.payload, "a retained command is still on the broker"


async def test_stale_and_replayed_commands_are_refused_over_mqtt(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    h = Harness(tmp_path)
    gate = CommandGate(CommandsConfig(allow_unsigned=True), SystemClock(), tmp_path / "r.sqlite")
    async with listening(CommandListener(sink(mosquitto), SITE, h.handle, gate)):
        ack = command("ack")
        assert (await ask(mosquitto, ack))["ok"] is True
        again = await ask(mosquitto, ack)
        assert again["error"] == "refused" and "replay" in again["message"]
        old = await ask(mosquitto, command("list", issued_at=time.time() - 3600))
        assert old["error"] == "refused" and "stale" in old["message"]


async def test_hostile_values_over_mqtt_get_bad_command_and_no_traceback(
    mosquitto: Mosquitto, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    h = Harness(tmp_path)
    gate = CommandGate(CommandsConfig(allow_unsigned=True), SystemClock(), None)
    hostile = [
        b'{"request_id": "deep", "x": ' + b"[" * 5000 + b"]" * 5000 + b"}",
        b'{"cmd": "shelve", "alarm_id": "' + ALARM.encode() + b'", "reason": "r",'
        b' "duration": NaN, "request_id": "nan"}',
        json.dumps(command("shelve", request_id="bidi", by="evil\u202eexe")).encode(),
    ]
    listener = CommandListener(sink(mosquitto), SITE, h.handle, gate)
    client = aiomqtt.Client(mosquitto.host, mosquitto.port, identifier="t-hostile")
    async with listening(listener), client as c:
        await c.subscribe(reply_topic("fsg", SITE), qos=1)
        for raw in hostile:
            await c.publish(command_topic("fsg", SITE), raw, qos=1)
        replies: list[dict[str, Any]] = []  # in order: one connection, QoS 1
        async with asyncio.timeout(WAIT_S):
            async for msg in c.messages:
                replies.append(json.loads(bytes(msg.payload)))  # type: ignore[arg-type]
                if len(replies) == len(hostile):
                    break
    assert [r["error"] for r in replies] == ["bad_command"] * 3, replies
    assert "nested deeper" in replies[0]["message"]  # its request id cannot be read: None
    assert "NaN" in replies[1]["message"] and replies[1]["request_id"] == "nan"
    assert "U+202E" in replies[2]["message"] and replies[2]["request_id"] == "bidi"
    assert h.state() is AlarmState.UNACKED
    assert not [r for r in caplog.records if r.levelname == "ERROR" or r.exc_info], caplog.text


# --------------------------------------------------------------------------- the shipped ACL

SHIPPED_SITE = "riverside-park"  # the site the shipped ACL names
KEYS = {"li": "k" * 40, "chief": "c" * 40}


def account(b: Broker, user: str) -> Mosquitto:
    """Connection settings for one account of the shipped broker (on its own listener)."""
    port = b.port if user == GATEWAY_USER[0] else b.people_port
    return Mosquitto("127.0.0.1", port, b.server, user, b.passwords[user])


async def test_signed_commands_through_the_shipped_acl(broker: Broker, tmp_path: Path) -> None:
    """Gateway account on its listener; on-call on the people's; only signed commands act."""
    h = Harness(tmp_path)
    users = {u: {"key": k, "allow": ["ack", "list"] if u == "li" else ["list"]}
             for u, k in KEYS.items()}  # fmt: skip
    gate = CommandGate(CommandsConfig.model_validate({"users": users}), SystemClock(),
                       tmp_path / "replay.sqlite", SHIPPED_SITE)  # fmt: skip
    oncall = account(broker, "oncall")
    gw = sink(account(broker, GATEWAY_USER[0]))

    def signed(user: str, cmd: str, **fields: Any) -> dict[str, Any]:
        return sign_command(command(cmd, **fields), user, KEYS[user], SHIPPED_SITE)

    # on-call may publish retained (the broker cannot refuse it): the gateway ignores it.
    await publish(oncall, signed("li", "ack"), retain=True, site=SHIPPED_SITE)
    async with listening(CommandListener(gw, SHIPPED_SITE, h.handle, gate)) as listener:
        forged = await ask(oncall, command("ack", by="ghost"), SHIPPED_SITE)
        assert forged["error"] == "refused" and "unsigned" in forged["message"]
        as_other = await ask(oncall, signed("li", "ack", by="chief") | {"by": "chief"},
                             SHIPPED_SITE)  # fmt: skip
        assert as_other["error"] == "refused"
        not_allowed = await ask(oncall, signed("chief", "ack"), SHIPPED_SITE)
        assert not_allowed["error"] == "refused" and "may not ack" in not_allowed["message"]
        assert h.state() is AlarmState.UNACKED
        assert listener.retained_ignored == 1
        ok = await ask(oncall, signed("li", "ack", by="li"), SHIPPED_SITE)
    assert ok["ok"] is True and ok["actor"] == "li via mqtt", ok
    assert h.state() is AlarmState.ACKED


# --------------------------------------------------------------------------- the CLI


def cli_site(tmp_path: Path, mq: Mosquitto) -> Path:
    """A site file the CLI loads: this broker, and li's key from the environment."""
    text = f"""
site: {SITE}
sources: [{{id: t, type: modbus_tcp, host: 127.0.0.1}}]
devices: [{{id: lk-1, profile: leakage-monitor, source: t, interval_s: 5}}]
sinks:
  mqtt: {{host: 127.0.0.1, port: {mq.port}}}
alerting: {{state_db: {tmp_path}/alarms.sqlite}}
commands:
  users:
    li: {{key: "${{FSG_CMD_KEY_LI}}"}}
"""
    path = tmp_path / "site.yaml"
    path.write_text(text)
    return path


async def test_cli_sends_signed_fresh_commands_with_reason_and_end(
    mosquitto: Mosquitto, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = Harness(tmp_path)
    monkeypatch.setenv("FSG_CMD_KEY_LI", "li-key-" + "9" * 32)
    env = dict(os.environ)
    site = load_site(cli_site(tmp_path, mosquitto))
    gate = CommandGate(site.config.commands, SystemClock(), tmp_path / "r.sqlite", SITE)

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([bin_path("gateway"), "alarms", *args, "--site", str(site.path)],
                              capture_output=True, text=True, timeout=60, env=env)  # fmt: skip

    async with listening(CommandListener(sink(mosquitto), SITE, h.handle, gate)):
        unsigned = await asyncio.to_thread(cli, "ack", ALARM, "--by", "li")
        assert unsigned.returncode != 0 and "signed commands only" in unsigned.stderr
        shelve = await asyncio.to_thread(
            cli, "shelve", ALARM, "--for", "30m", "--reason", "pump swap", "--user", "li"
        )
        assert shelve.returncode == 0, shelve.stdout + shelve.stderr
        oos = await asyncio.to_thread(
            cli, "out_of_service", ALARM, "--for", "2h", "--reason", "rewiring", "--user", "li"
        )
        assert oos.returncode == 0, oos.stdout + oos.stderr
    reply = json.loads(oos.stdout)
    assert reply["ok"] is True and reply["actor"] == "li via mqtt"
    a = h.engine.book.alarms[ALARM]
    assert a.state is AlarmState.OUT_OF_SERVICE and a.comment == "rewiring"
    assert a.out_of_service_until_ns is not None

