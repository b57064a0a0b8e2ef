"""The command gate: stale, future and replayed commands are refused; the window survives restarts.

Also the terms of shelve / out of service (reason, end time, site maximum,
return to service by itself) and ``commands: false``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import tempfile
from pathlib import Path
from typing import Any

import pytest

from gateway.alerting.alarms import AlarmBook
from gateway.alerting.command_config import CommandsConfig
from gateway.alerting.command_gate import (
    Admitted,
    CommandGate,
    Refusal,
    sign_command,
    signature,
)
from gateway.alerting.commands import OutOfServiceCmd, parse_command
from gateway.alerting.config import AlertingConfig, Severity
from gateway.alerting.detector import AlarmSpec
from gateway.app import Gateway
from gateway.config import Site, SiteConfig
from gateway.errors import AlarmError, CommandError, CommandRefused
from gateway.model import AlarmState, FakeClock
from gateway.profiles.registry import ProfileRegistry

ALARM = "r:dev:p"


def cmd(clock: FakeClock, rid: str = "req-1", age_s: float = 0.0, **extra: Any) -> bytes:
    data = {"cmd": "list", "request_id": rid, "issued_at": clock.now_ns() / 1e9 - age_s, **extra}
    return json.dumps(data).encode()


def gate(clock: FakeClock, path: Path | None = None, **cfg: Any) -> CommandGate:
    return CommandGate(CommandsConfig(allow_unsigned=True, **cfg), clock, path)


def test_fresh_command_is_admitted() -> None:
    clock = FakeClock()
    admitted = gate(clock).admit(cmd(clock))
    assert admitted.payload["cmd"] == "list" and admitted.channel.startswith("mqtt")


@pytest.mark.parametrize(
    ("age_s", "message"),
    [(61, "stale: issued 61 s ago"), (3600, "stale"), (-11, "in the future"), (-86400, "future")],
)
def test_stale_or_future_command_is_refused(age_s: float, message: str) -> None:
    clock = FakeClock()
    with pytest.raises(CommandRefused, match=message):
        gate(clock).admit(cmd(clock, age_s=age_s))


def test_request_id_and_issue_time_are_required() -> None:
    clock = FakeClock()
    g = gate(clock)
    for payload in ({"cmd": "list"}, {"cmd": "list", "request_id": "r-1"},
                    {"cmd": "list", "issued_at": clock.now_ns() / 1e9}):  # fmt: skip
        with pytest.raises(CommandError, match="request_id and issued_at"):
            g.admit(json.dumps(payload))


def test_replay_is_refused_across_a_restart(tmp_path: Path) -> None:
    clock = FakeClock()
    path = tmp_path / "replay.sqlite"
    g = gate(clock, path)
    g.admit(cmd(clock, "req-1"))
    with pytest.raises(CommandRefused, match="already used"):
        g.admit(cmd(clock, "req-1"))
    g.close()
    clock.advance(30)  # still within max_age_s of its issue time
    g2 = gate(clock, path)
    with pytest.raises(CommandRefused, match="already used"):
        g2.admit(cmd(clock, "req-1", age_s=30))
    # Past max_age_s the id is forgotten, and the command is stale anyway.
    clock.advance(40)
    with pytest.raises(CommandRefused, match="stale"):
        g2.admit(cmd(clock, "req-1", age_s=70))
    g2.admit(cmd(clock, "req-2"))
    assert g2.replay.db.execute("SELECT request_id FROM seen").fetchall() == [("req-2",)]
    g2.close()


def test_full_replay_window_refuses_instead_of_forgetting() -> None:
    clock = FakeClock()
    g = gate(clock, replay_capacity=100)
    for i in range(100):
        g.admit(cmd(clock, f"r-{i}"))
    with pytest.raises(CommandRefused, match="replay window"):
        g.admit(cmd(clock, "r-new"))
    clock.advance(61)
    g.admit(cmd(clock, "r-new"))


# --------------------------------------------------------------------------- shelve, out of service


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"cmd": "out_of_service", "alarm_id": ALARM, "duration": "1h"}, "reason: Field required"),
        ({"cmd": "out_of_service", "alarm_id": ALARM, "reason": "x"}, "duration: Field required"),
        ({"cmd": "shelve", "alarm_id": ALARM, "duration": "1h"}, "reason: Field required"),
        ({"cmd": "shelve", "alarm_id": ALARM, "duration": "1h", "reason": ""}, "reason: String"),
    ],
)
def test_shelve_and_out_of_service_need_reason_and_end(
    payload: dict[str, Any], message: str
) -> None:
    with pytest.raises(CommandError, match=message):
        parse_command(payload)


def book() -> AlarmBook:
    b = AlarmBook(AlertingConfig(max_out_of_service_s=7200))
    spec = AlarmSpec(alarm_id=ALARM, rule="r", kind="limit", device="dev", point="p", limit="hi",
                     limit_value=1.0, severity=Severity.HIGH, latch=False, area=None,
                     template=None)  # fmt: skip
    b.set_active(spec, True, 2.0, 0)
    return b


def test_out_of_service_returns_to_service_when_it_ends() -> None:
    b, c = book(), FakeClock()
    c_ = parse_command({"cmd": "out_of_service", "alarm_id": ALARM, "duration": "1h",
                        "reason": "sensor swap"})  # fmt: skip
    assert isinstance(c_, OutOfServiceCmd)
    b.out_of_service(ALARM, "wang", c.now_ns(), c_.note, c_.duration)
    assert b.alarms[ALARM].state is AlarmState.OUT_OF_SERVICE
    c.advance(3599)
    assert b.tick(c.now_ns()) == []
    c.advance(1)
    events = b.tick(c.now_ns())
    assert [(e.action, e.state) for e in events] == [
        ("out_of_service_expired", AlarmState.UNACKED)
    ]
    # The end survives the store's round trip.
    b.out_of_service(ALARM, "wang", c.now_ns(), "again", 60)
    doc = b.alarms[ALARM].to_json_dict()
    assert doc["out_of_service_until_ns"] == c.now_ns() + 60 * 10**9


def test_out_of_service_longer_than_site_limit_is_refused() -> None:
    b, c = book(), FakeClock()
    with pytest.raises(AlarmError, match="exceeds the site's limit of 7200 s"):
        b.out_of_service(ALARM, "wang", c.now_ns(), "too long", 7201)
    assert b.alarms[ALARM].state is AlarmState.UNACKED


# --------------------------------------------------------------------------- commands: false


async def test_commands_false_starts_no_listener() -> None:
    d = Path(tempfile.mkdtemp())
    reg, _problems = ProfileRegistry.load([])
    counts = []
    for flag in (True, False):
        cfg = SiteConfig.model_validate({
            "site": "p", "sources": [{"id": "t", "type": "modbus_tcp", "host": "127.0.0.1"}],
            "devices": [{"id": "blr-1", "profile": "boiler-controller", "source": "t"}],
            "sinks": {"mqtt": {"host": "127.0.0.1"}}, "outbox": {"path": str(d / "o.sqlite")},
            "alerting": {"state_db": str(d / "a.sqlite")}, "commands": flag,
        })  # fmt: skip
        assert cfg.commands.enabled is flag
        site = Site(cfg, d / "site.yaml", reg, {"blr-1": reg.get("boiler-controller")})
        tasks = Gateway(site, FakeClock(), state_dir=d)._extra_tasks()
        counts.append(len(tasks))
        for t in tasks:
            t.close()
    assert counts == [1, 0]


# --------------------------------------------------------------------------- signatures

KEY = "0123456789abcdef0123456789abcdef"
SITE = "park"


def signed_gate(clock: FakeClock, **cfg: Any) -> CommandGate:
    users = {"li": {"key": KEY}, "guard": {"key": "g" * 32, "allow": ["list"]}}
    return CommandGate(CommandsConfig.model_validate({"users": users, **cfg}), clock, None, SITE)


def ack(clock: FakeClock, rid: str = "s-1", **extra: Any) -> dict[str, Any]:
    return {"cmd": "ack", "alarm_id": ALARM, "request_id": rid,
            "issued_at": clock.now_ns() / 1e9, **extra}  # fmt: skip


def test_signed_command_records_the_verified_user() -> None:
    clock = FakeClock()
    raw = json.dumps(sign_command(ack(clock), "li", KEY, SITE))
    admitted = signed_gate(clock).admit(raw)
    assert admitted.payload["by"] == "li" and admitted.channel == "mqtt"


def test_signature_is_over_the_canonical_payload() -> None:
    clock = FakeClock()
    data = sign_command(ack(clock), "li", KEY, SITE)
    body = {k: v for k, v in data.items() if k != "sig"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    assert data["sig"] == hmac.new(KEY.encode(), text.encode(), hashlib.sha256).hexdigest()
    # Key order and spacing on the wire do not matter.
    shuffled = json.dumps(dict(reversed(list(data.items()))), indent=2)
    signed_gate(clock).admit(shuffled)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"alarm_id": "trip:lk-2:alarm_ch1"}, "does not verify"),  # tampered after signing
        ({"user": "guard"}, "does not verify"),
        ({"user": "nobody"}, "does not verify"),
        ({"sig": "0" * 64}, "does not verify"),
    ],
)
def test_tampered_or_unknown_signatures_are_refused(change: dict[str, Any], message: str) -> None:
    clock = FakeClock()
    data = {**sign_command(ack(clock), "li", KEY, SITE), **change}
    with pytest.raises(CommandRefused, match=message):
        signed_gate(clock).admit(json.dumps(data))


def resign(data: dict[str, Any], key: str = KEY) -> str:
    return json.dumps({**data, "sig": signature(data, key)})


def test_signed_command_must_name_this_site_and_its_signer() -> None:
    clock = FakeClock()
    g = signed_gate(clock)
    with pytest.raises(CommandRefused, match="signed for site 'other'"):
        g.admit(resign(ack(clock, user="li", site="other")))
    with pytest.raises(CommandRefused, match="signed for site None"):
        g.admit(resign(ack(clock, user="li")))
    with pytest.raises(CommandRefused, match="by 'chief' does not match the signing user 'li'"):
        g.admit(resign(ack(clock, user="li", site=SITE, by="chief")))
    with pytest.raises(CommandRefused, match="user 'guard' may not ack"):
        g.admit(resign(ack(clock, user="guard", site=SITE), "g" * 32))


def test_unsigned_commands_only_where_the_site_allows_them() -> None:
    clock = FakeClock()
    with pytest.raises(CommandRefused, match="unsigned commands are not accepted"):
        signed_gate(clock).admit(json.dumps(ack(clock, by="ghost")))
    admitted = signed_gate(clock, allow_unsigned=True).admit(json.dumps(ack(clock, by="ghost")))
    assert admitted.channel == "mqtt (unverified)" and admitted.payload["by"] == "ghost"


def test_commands_config_defaults_and_keys() -> None:
    cfg = CommandsConfig()
    assert cfg.enabled and not cfg.allow_unsigned and cfg.users == {}
    with pytest.raises(ValueError, match="at least 32 characters"):
        CommandsConfig.model_validate({"users": {"li": {"key": "short"}}})
    with pytest.raises(ValueError, match="unexpanded"):
        CommandsConfig.model_validate({"users": {"li": {"key": "${FSG_CMD_KEY_LI}" + "x" * 30}}})
    shown = CommandsConfig.model_validate({"users": {"li": {"key": KEY}}})
    assert KEY not in repr(shown) and KEY not in shown.model_dump_json()


# --------------------------------------------------------------------------- rate limits


def test_invalid_flood_is_dropped_silently_and_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock()
    g = signed_gate(clock)
    verdicts = [g.check(b"not json") for _ in range(1000)]
    answered = [v for v in verdicts if isinstance(v, Refusal) and v.reply is not None]
    assert len(answered) == 20  # invalid_burst; the rest dropped without a reply
    assert all(isinstance(v, Refusal) for v in verdicts)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) <= 12 and sum("command flood" in m for m in lines) == 1, lines
    # A valid signed command is not held back by the flood.
    assert isinstance(g.check(json.dumps(sign_command(ack(clock), "li", KEY, SITE))), Admitted)
    clock.advance(61)
    g.check(b"not json")
    assert any("in the last 61 s" in r.getMessage() for r in caplog.records)


def test_one_user_is_limited_per_alarm_and_overall_without_locking_out_others() -> None:
    clock = FakeClock()
    users = {"li": {"key": KEY}, "mallory": {"key": "m" * 32}}
    g = CommandGate(CommandsConfig.model_validate({"users": users}), clock, None, SITE)

    def shelve(user: str, key: str, i: int) -> Admitted | Refusal:
        data = {**ack(clock, f"{user}-{i}"), "cmd": "shelve", "reason": "r", "duration": 60}
        return g.check(json.dumps(sign_command(data, user, key, SITE)))

    verdicts = [shelve("mallory", "m" * 32, i) for i in range(100)]
    admitted = [v for v in verdicts if isinstance(v, Admitted)]
    replies = [v.reply for v in verdicts if isinstance(v, Refusal) and v.reply is not None]
    assert len(admitted) == 5  # alarm_burst
    assert len(replies) == 1 and "rate limited" in replies[0]["message"]
    assert isinstance(shelve("li", KEY, 0), Admitted)
    clock.advance(5)  # alarm_per_s 0.2: one more token
    assert isinstance(shelve("mallory", "m" * 32, 1000), Admitted)
