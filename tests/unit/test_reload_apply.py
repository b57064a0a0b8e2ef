"""Applying a reload to a gateway in this process (gateway/reloader.py, AlertEngine.reconfigure).

The gateway is built from real site files by the real loader, on a fake
clock; samples go through its pipeline as a source's would. Its sources are
not started (their polling without a gap is tests/integration/test_reload.py's
part): here it is the alarm book, the patrol state and the reload's own rules.
"""

from __future__ import annotations

import asyncio
import copy
import io
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.alerting.command_config import CommandsConfig
from gateway.alerting.command_gate import CommandGate, sign_command
from gateway.app import Gateway
from gateway.errors import CommandRefused
from gateway.loader import load_site
from gateway.model import AlarmState, FakeClock, Sample

LATCH = "leak-latch:steady:leak_ch1:hihi"
PLAIN = "leak-hi:steady:leak_ch2:hi"
SHELVED = "leak-3:steady:leak_ch3:hi"
GONE_DEVICE = "leak-latch:old-1:leak_ch1:hihi"
GONE_RULE = "leak-4:steady:leak_ch4:hi"


def limit_rule(rule_id: str, point: str, limit: str, value: float, latch: bool = False) -> Any:
    return {"id": rule_id, "kind": "limit", "select": {"kinds": ["leakage"]}, "points": [point],
            "limits": {limit: {"value": value, "severity": "high", "latch": latch}}}  # fmt: skip


RULES_V1 = {"rules": [
    limit_rule("leak-latch", "leak_ch1", "hihi", 300, latch=True),
    limit_rule("leak-hi", "leak_ch2", "hi", 250),
    limit_rule("leak-3", "leak_ch3", "hi", 50),
    limit_rule("leak-4", "leak_ch4", "hi", 10),
]}  # fmt: skip
RULES_V2 = {"rules": [
    limit_rule("leak-latch", "leak_ch1", "hihi", 500, latch=True),
    limit_rule("leak-hi", "leak_ch2", "hi", 150),
    limit_rule("leak-3", "leak_ch3", "hi", 50),
]}  # fmt: skip

PATROL = {
    "max_gap_s": 3600,
    "checkpoints": [{"id": "cp-1"}, {"id": "cp-2"}],
    "guards": [{"id": "wang", "card": "04A1B2C3D4"}],
    "routes": [{"id": "r", "checkpoints": ["cp-1", "cp-2"]}],
}


def device(dev_id: str, unit: int) -> dict[str, Any]:
    return {"id": dev_id, "profile": "leakage-monitor", "source": "tcp", "unit": unit,
            "interval_s": 5}  # fmt: skip


def site_doc(tmp: Path, devices: list[dict[str, Any]], patrol: dict[str, Any]) -> dict[str, Any]:
    return {
        "site": "apply",
        "sources": [{"id": "tcp", "type": "modbus_tcp", "host": "127.0.0.1", "port": 1502}],
        "devices": devices,
        "sinks": {"console": {"enabled": True}},
        "outbox": {"path": str(tmp / "outbox.sqlite")},
        "rules": ["rules.yaml"],
        "alerting": {"state_db": str(tmp / "alarms.sqlite")},
        "patrol": patrol,
    }


def write(tmp: Path, site: dict[str, Any], rules: dict[str, Any] | str) -> Path:
    (tmp / "rules.yaml").write_text(rules if isinstance(rules, str) else yaml.safe_dump(rules))
    (tmp / "site.yaml").write_text(yaml.safe_dump(site))
    return tmp / "site.yaml"


def sample(clock: FakeClock, dev: str, **values: float) -> Sample:
    return Sample(device=dev, kind="leakage", ts_ns=clock.now_ns(), values=dict(values))


def tap(clock: FakeClock, reader: str) -> Sample:
    values: dict[str, Any] = {"reader": reader, "card": "04A1B2C3D4"}
    return Sample(device="rfid", kind="patrol_tap", ts_ns=clock.now_ns(), values=values)


@pytest.fixture
async def gateway(tmp_path: Path) -> tuple[Gateway, FakeClock]:
    # Built in the event loop, as the sources' clients expect.
    site = write(tmp_path, site_doc(tmp_path, [device("steady", 1), device("old-1", 2)], PATROL),
                 RULES_V1)  # fmt: skip
    clock = FakeClock()
    return Gateway(load_site(site), clock, io.StringIO(), state_dir=tmp_path), clock


def alarm(gw: Gateway, alarm_id: str) -> Any:
    assert gw.alerts is not None
    return gw.alerts.book.alarms[alarm_id]


async def test_reload_keeps_alarm_state_retires_orphans_and_applies_new_limits(
    tmp_path: Path, gateway: tuple[Gateway, FakeClock]
) -> None:
    gw, clock = gateway
    assert gw.alerts is not None
    async with gw.alerts:
        gw._process(sample(clock, "steady", leak_ch1=450, leak_ch2=200, leak_ch3=60, leak_ch4=20))
        gw._process(sample(clock, "old-1", leak_ch1=450))
        reply = gw.handle_command(
            {"cmd": "shelve", "alarm_id": SHELVED, "duration": "2h", "reason": "CT replaced"}, "t"
        )
        assert reply["ok"], reply
        assert alarm(gw, LATCH).latched_on and alarm(gw, GONE_DEVICE).latched_on
        assert PLAIN not in gw.alerts.book.alarms  # 200 under 250

        write(tmp_path, site_doc(tmp_path, [device("steady", 1)], PATROL), RULES_V2)
        result = await gw.reloader.reload()
        assert result.outcome == "applied" and result.change is not None
        assert result.change.devices_removed == ["old-1"]
        assert result.change.rules_removed == ["leak-4"]
        # Survivors: latched, shelved.
        assert alarm(gw, LATCH).latched_on and alarm(gw, LATCH).state is AlarmState.UNACKED
        assert alarm(gw, SHELVED).state is AlarmState.SHELVED
        # Orphans: back to normal, with why.
        for alarm_id, why in ((GONE_DEVICE, "device 'old-1' removed"),
                              (GONE_RULE, "rule 'leak-4' removed")):  # fmt: skip
            a = alarm(gw, alarm_id)
            assert a.state is AlarmState.NORMAL and not a.latched_on, alarm_id
            assert a.comment == f"{why} (config reload)"
        # The saved book says the same (a restart would not bring them back).
        assert gw.alerts.store is not None
        saved = {d["spec"]["alarm_id"]: d for d in gw.alerts.store.load_alarms()}
        assert saved[GONE_DEVICE]["state"] == "normal" and saved[SHELVED]["state"] == "shelved"

        # New limits on the next sample: 450 < 500 clears the condition (still latched),
        # 200 > 150 raises the plain alarm.
        clock.advance(5)
        gw._process(sample(clock, "steady", leak_ch1=450, leak_ch2=200, leak_ch3=60, leak_ch4=20))
        assert not alarm(gw, LATCH).active and alarm(gw, LATCH).latched_on
        assert alarm(gw, PLAIN).active and alarm(gw, PLAIN).spec.limit_value == 150
        assert alarm(gw, SHELVED).state is AlarmState.SHELVED
        # leak_ch4 has no rule any more: its alarm stays normal.
        assert alarm(gw, GONE_RULE).state is AlarmState.NORMAL


async def test_patrol_change_keeps_rounds_and_raised_gaps(
    tmp_path: Path, gateway: tuple[Gateway, FakeClock]
) -> None:
    gw, clock = gateway
    assert gw.alerts is not None and gw.patrol is not None
    async with gw.alerts:
        clock.advance(3700)  # past max_gap_s inside the night window: one overdue gap
        gw.tick()
        overdue = [a for a in gw.alerts.book.alarms.values() if "overdue" in a.alarm_id]
        assert len(overdue) == 1 and overdue[0].active
        gw._process(tap(clock, "cp-1"))  # a round opens
        before = gw.patrol.state()
        assert [r["visited"] for r in before["open_rounds"]] == [["cp-1"]]

        patrol = copy.deepcopy(PATROL)
        patrol["checkpoints"].append({"id": "cp-3"})
        patrol["routes"][0]["checkpoints"].append("cp-3")
        write(tmp_path, site_doc(tmp_path, [device("steady", 1), device("old-1", 2)], patrol),
              RULES_V1)  # fmt: skip
        result = await gw.reloader.reload()
        assert result.outcome == "applied" and result.change is not None
        assert result.change.patrol_changed and not result.change.alerting_rebind
        after = gw.patrol.state()
        assert [r["visited"] for r in after["open_rounds"]] == [["cp-1"]]
        assert after["open_rounds"][0]["remaining"] == ["cp-2", "cp-3"]  # the new config applies
        assert after["overdue_alarms"] == before["overdue_alarms"] != []
        activations = overdue[0].activation_count
        gw.tick()  # the gap already raised is not raised again
        assert overdue[0].active and overdue[0].activation_count == activations


async def test_broken_config_keeps_the_running_one_and_alarms_until_a_good_reload(
    tmp_path: Path, gateway: tuple[Gateway, FakeClock]
) -> None:
    gw, _ = gateway
    assert gw.alerts is not None
    async with gw.alerts:
        running = gw.site
        (tmp_path / "rules.yaml").write_text(
            "rules:\n  - id: x\n    kind: limit\n    points: [a]\n    limits: {hi: {value: 1}}\n"
            "    nope: 1\n"
        )
        result = await gw.reloader.reload()
        assert result.outcome == "rejected" and gw.site is running
        assert any("rules.yaml:6" in p for p in result.problems), result.problems
        cfg = alarm(gw, "gateway:config")
        assert cfg.active and "rules.yaml:6" in cfg.message
        gw.tick()  # the health signal holds it while the bad file is there
        assert alarm(gw, "gateway:config").active
        write(tmp_path, site_doc(tmp_path, [device("steady", 1)], PATROL), RULES_V1)
        result = await gw.reloader.reload()
        assert result.outcome == "applied" and gw.site is not running
        assert not alarm(gw, "gateway:config").active
        status = (tmp_path / "reload-status.json").read_text()
        assert '"outcome": "applied"' in status and result.hash in status


async def test_reloads_are_serialised_and_ignored_once_stopping(
    tmp_path: Path, gateway: tuple[Gateway, FakeClock]
) -> None:
    gw, _ = gateway
    assert gw.alerts is not None
    async with gw.alerts:
        inside = 0
        overlaps: list[int] = []
        real_stop = gw.source_set.stop

        async def slow_stop(ids: set[str] | None = None) -> None:
            nonlocal inside
            inside += 1
            overlaps.append(inside)
            await asyncio.sleep(0)  # let another reload run if it could
            await real_stop(ids)
            inside -= 1

        gw.source_set.stop = slow_stop  # type: ignore[method-assign]
        write(tmp_path, site_doc(tmp_path, [device("steady", 1)], PATROL), RULES_V1)
        results = await asyncio.wait_for(
            asyncio.gather(*(gw.reloader.reload() for _ in range(3))), 10
        )
        assert [r.generation for r in results] == [1, 2, 3]
        assert [r.outcome for r in results] == ["applied"] * 3
        assert max(overlaps) == 1
        assert results[0].change is not None and results[0].change.devices_removed == ["old-1"]
        assert results[1].change is not None and results[1].change.empty

        await gw.reloader.stop()
        write(tmp_path, site_doc(tmp_path, [device("steady", 1), device("old-1", 2)], PATROL),
              RULES_V1)  # fmt: skip
        ignored = await gw.reloader.reload()
        assert ignored.outcome == "ignored" and gw.reloader.generation == 3
        assert "old-1" not in {d.id for d in gw.site.config.devices}


# --------------------------------------------------------------------------- the reload command

KEY = "0123456789abcdef0123456789abcdef"


def reload_cmd(clock: FakeClock, rid: str) -> dict[str, Any]:
    return {"cmd": "reload", "request_id": rid, "issued_at": clock.now_ns() / 1e9}


def test_reload_command_needs_a_signature_from_a_user_allowed_to_reload() -> None:
    clock = FakeClock()
    users = {"ops": {"key": KEY, "allow": ["reload"]}, "li": {"key": "l" * 32}}
    cfg = CommandsConfig.model_validate({"users": users, "allow_unsigned": True})
    gate = CommandGate(cfg, clock, None, "apply")
    with pytest.raises(CommandRefused, match="reload must be signed"):
        gate.admit(json.dumps(reload_cmd(clock, "r-1")))  # unsigned, even where allowed
    with pytest.raises(CommandRefused, match="'li' may not reload"):  # default allow: alarms
        gate.admit(json.dumps(sign_command(reload_cmd(clock, "r-2"), "li", "l" * 32, "apply")))
    admitted = gate.admit(json.dumps(sign_command(reload_cmd(clock, "r-3"), "ops", KEY, "apply")))
    assert admitted.payload["cmd"] == "reload" and admitted.payload["by"] == "ops"


async def test_reload_command_starts_a_reload_and_answers_at_once(
    tmp_path: Path, gateway: tuple[Gateway, FakeClock]
) -> None:
    gw, clock = gateway
    assert gw.alerts is not None
    async with gw.alerts:
        write(tmp_path, site_doc(tmp_path, [device("steady", 1)], PATROL), RULES_V1)
        reply = gw.handle_command({**reload_cmd(clock, "r-9"), "by": "ops"}, "mqtt")
        assert reply == {"ok": True, "cmd": "reload", "request_id": "r-9", "accepted": True,
                         "hash": gw.reloader.hash}  # fmt: skip
        (task,) = gw.reloader._tasks
        result = await asyncio.wait_for(task, 10)
        assert result.outcome == "applied" and result.change is not None
        assert result.change.devices_removed == ["old-1"]
        # Alarm commands still reach the alarm book.
        listed = gw.handle_command({"cmd": "list"}, "t")
        assert listed["ok"] and listed["cmd"] == "list"


async def test_rules_added_to_a_site_without_alerting_wait_for_a_restart(tmp_path: Path) -> None:
    bare = site_doc(tmp_path, [device("steady", 1)], PATROL)
    del bare["rules"], bare["alerting"]
    gw = Gateway(load_site(write(tmp_path, bare, RULES_V1)), FakeClock(), io.StringIO(),
                 state_dir=tmp_path)  # fmt: skip
    assert gw.alerts is None
    write(tmp_path, site_doc(tmp_path, [device("steady", 1)], PATROL), RULES_V1)
    result = await gw.reloader.reload()
    assert result.outcome == "applied" and result.change is not None
    assert result.change.restart_needed == ["alerting", "rules"]
