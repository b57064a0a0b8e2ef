"""Patrol state across restarts: nothing lost, nothing fired twice (SQLite store, fake clock)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from gateway.model import FakeClock, Sample
from gateway.outbox import Event
from gateway.patrol import FindingType, PatrolEngine, PatrolOutput, SqlitePatrolStore
from gateway.patrol.findings import Finding
from gateway.patrol.store import PatrolStoreError
from tests.unit.test_patrol_engine import NS, ROUTE, WANG, at, cfg


class Gateway:
    """One gateway process: its engine over a state file, on a clock shared across restarts."""

    def __init__(self, path: Path, clock: FakeClock) -> None:
        self.clock = clock
        self.store = SqlitePatrolStore(path)
        self.engine = PatrolEngine(cfg(), clock, self.store)

    def tap(self, reader: str, card: str = WANG) -> list[PatrolOutput]:
        return self.engine.on_tap_sample(
            Sample("rfid-gate", "patrol_tap", self.clock.now_ns(), {"reader": reader, "card": card})
        )

    def stop(self) -> None:
        self.store.close()


def goto(clock: FakeClock, ts: int) -> None:
    clock.advance((ts - clock.now_ns()) / NS)


def kinds(out: list[PatrolOutput]) -> list[str]:
    return [o.type.value if isinstance(o, Finding) else o.tags["record"] for o in out]


def test_open_round_survives_a_restart(tmp_path: Path) -> None:
    clock = FakeClock(at(12))
    gw = Gateway(tmp_path / "patrol.sqlite", clock)
    for i, cp in enumerate(ROUTE[:2]):
        goto(clock, at(22, 30) + i * 300 * NS)
        gw.tap(cp)
    gw.stop()
    gw = Gateway(tmp_path / "patrol.sqlite", clock)
    out: list[PatrolOutput] = []
    for i, cp in enumerate(ROUTE[2:], start=2):
        goto(clock, at(22, 30) + i * 300 * NS)
        out += gw.tap(cp)
    rounds = [o for o in out if isinstance(o, Event) and o.tags["record"] == "round"]
    (rnd,) = rounds
    assert rnd.tags["status"] == "complete"
    assert rnd.data["round"] == "20260101-223000-wang"
    assert rnd.data["visited"] == ",".join(ROUTE)
    assert [o for o in out if isinstance(o, Finding)] == []


def test_raised_gap_is_not_raised_again_after_restart_and_clears_later(tmp_path: Path) -> None:
    clock = FakeClock(at(12))
    gw = Gateway(tmp_path / "p.sqlite", clock)
    goto(clock, at(22))
    gw.engine.tick()
    goto(clock, at(1, day=2))
    assert kinds(gw.engine.tick()) == ["overdue"]
    gw.stop()
    gw = Gateway(tmp_path / "p.sqlite", clock)
    assert gw.engine.tick() == []
    clock.advance(30)
    assert gw.engine.tick() == []
    assert gw.engine.state()["overdue_alarms"] == ["patrol/overdue/2026-01-02T01:00"]
    out: list[PatrolOutput] = []
    for i, cp in enumerate(ROUTE):
        goto(clock, at(1, 30, day=2) + i * 300 * NS)
        out += gw.tap(cp)
    (clr,) = [o for o in out if isinstance(o, Finding)]
    assert clr.type is FindingType.OVERDUE_CLEARED
    assert clr.alarm_key == "patrol/overdue/2026-01-02T01:00"


def test_gap_that_fell_due_while_the_gateway_was_down_is_raised_once(tmp_path: Path) -> None:
    clock = FakeClock(at(12))
    gw = Gateway(tmp_path / "p.sqlite", clock)
    goto(clock, at(0, 30, day=2))
    assert gw.engine.tick() == []
    gw.stop()
    goto(clock, at(2, day=2))  # down from 00:30 to 02:00
    gw = Gateway(tmp_path / "p.sqlite", clock)
    (f,) = gw.engine.tick()
    assert isinstance(f, Finding) and f.type is FindingType.OVERDUE
    assert f.ts_ns == at(1, day=2) and f.data["detected_ns"] == at(2, day=2)
    clock.advance(10)
    assert gw.engine.tick() == []


def test_window_end_passed_while_down_still_clears_the_alarm(tmp_path: Path) -> None:
    clock = FakeClock(at(12))
    gw = Gateway(tmp_path / "p.sqlite", clock)
    goto(clock, at(22))
    gw.engine.tick()
    goto(clock, at(4, 30, day=2))
    assert kinds(gw.engine.tick()) == ["overdue", "overdue"]
    gw.stop()
    goto(clock, at(9, day=2))
    gw = Gateway(tmp_path / "p.sqlite", clock)
    out = gw.engine.tick()
    assert kinds(out) == ["overdue_cleared", "overdue_cleared"]
    assert all(o.ts_ns == at(6, day=2) for o in out)


def test_duplicate_window_survives_a_restart(tmp_path: Path) -> None:
    clock = FakeClock(at(22))
    gw = Gateway(tmp_path / "p.sqlite", clock)
    gw.tap("gate-north")
    gw.stop()
    clock.advance(20)
    gw = Gateway(tmp_path / "p.sqlite", clock)
    assert kinds(gw.tap("gate-north")) == ["tap", "duplicate_tap"]


def test_every_tap_is_saved_before_the_engine_returns(tmp_path: Path) -> None:
    clock = FakeClock(at(22))
    gw = Gateway(tmp_path / "p.sqlite", clock)
    gw.tap("gate-north")
    # Read the file through a second connection, as a restarted process would.
    other = sqlite3.connect(tmp_path / "p.sqlite")
    body = other.execute("SELECT body FROM patrol_state").fetchone()
    other.close()
    assert '"gate-north"' in body[0] and "20260101-220000-wang" in body[0]


def test_state_of_another_version_is_refused(tmp_path: Path) -> None:
    clock = FakeClock(at(22))
    Gateway(tmp_path / "p.sqlite", clock).stop()
    db = sqlite3.connect(tmp_path / "p.sqlite")
    db.execute("UPDATE patrol_state SET version = 99")
    db.commit()
    db.close()
    with pytest.raises(PatrolStoreError, match="version 99"):
        Gateway(tmp_path / "p.sqlite", clock)


def test_round_of_a_removed_route_is_dropped_on_restart(tmp_path: Path) -> None:
    clock = FakeClock(at(22))
    gw = Gateway(tmp_path / "p.sqlite", clock)
    gw.tap("gate-north")
    gw.stop()
    store = SqlitePatrolStore(tmp_path / "p.sqlite")
    other = cfg(routes=[{"id": "short", "checkpoints": ROUTE[:2]}])
    engine = PatrolEngine(other, clock, store)
    assert engine.state()["open_rounds"] == []
