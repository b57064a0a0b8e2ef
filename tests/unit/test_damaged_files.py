"""A damaged, half-truncated or emptied state file: moved aside, started fresh, reported.

For each of the three SQLite files (outbox, alarm state, patrol state): the
store writes real data, the file is damaged on disk, and the store opens
again. It must open (no exception: under Restart=always an exception is a
crash loop), work, keep the old file as ``<file>.damaged-<time>`` and report
an incident naming that copy and what was lost.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.alerting.store import AlertStore
from gateway.outbox import Outbox
from gateway.patrol.store import SqlitePatrolStore
from gateway.sqlite_file import FileIncident
from tests.unit.test_outbox import sample


def garbage(p: Path) -> None:
    p.write_bytes(b"\x13not a database, just noise " * 4000)


def half(p: Path) -> None:
    os.truncate(p, p.stat().st_size // 2)


def empty(p: Path) -> None:
    os.truncate(p, 0)


DAMAGE = {"garbage": garbage, "half-truncated": half, "0 bytes": empty}


async def outbox_roundtrip(path: Path, fill: bool) -> FileIncident | None:
    async with Outbox(path, ["a"]) as ob:
        if fill:
            for i in range(400):
                ob.append_sample(sample(i, pad=100))
            await ob.flush()
            return ob.incident
        assert ob.stats().rows < 400  # the old rows are gone
        ob.append_sample(sample(1))
        await ob.flush()
        assert (await ob.read("a", 10))[-1].item == sample(1)
        return ob.incident


async def alarm_state_roundtrip(path: Path, fill: bool) -> FileIncident | None:
    store = AlertStore(path)
    try:
        if fill:
            with store.transaction():
                for i in range(200):
                    store.set_meta(f"k{i}", "v" * 100)
        else:
            assert store.get_meta("k1") is None
            store.set_meta("fresh", 1)
            assert store.get_meta("fresh") == 1
        return store.incident
    finally:
        store.close()


async def patrol_state_roundtrip(path: Path, fill: bool) -> FileIncident | None:
    store = SqlitePatrolStore(path)
    try:
        if fill:
            store.save({"saved_ns": 1, "taps": ["x" * 100] * 100})
        else:
            assert "taps" not in (store.load() or {})
            store.save({"saved_ns": 2})
            assert store.load() == {"saved_ns": 2}
        return store.incident
    finally:
        store.close()


STORES: dict[str, Callable[[Path, bool], object]] = {
    "outbox": outbox_roundtrip,
    "alarm state": alarm_state_roundtrip,
    "patrol state": patrol_state_roundtrip,
}


@pytest.mark.parametrize("damage", DAMAGE)
@pytest.mark.parametrize("what", STORES)
async def test_damaged_file_is_moved_aside_and_reported(
    tmp_path: Path, what: str, damage: str
) -> None:
    roundtrip = STORES[what]
    path = tmp_path / "state.sqlite"
    assert await roundtrip(path, True) is None  # type: ignore[misc]
    DAMAGE[damage](path)
    damaged = path.read_bytes()
    incident = await roundtrip(path, False)  # type: ignore[misc]
    assert isinstance(incident, FileIncident), incident
    assert incident.what == what and incident.path == path
    assert incident.saved_as is not None and incident.saved_as.read_bytes() == damaged
    assert incident.saved_as.name.startswith("state.sqlite.damaged-")
    assert str(incident.saved_as) in incident.message and "Lost:" in incident.message
    # Reported once: the fresh file opens cleanly next time.
    assert await roundtrip(path, False) is None  # type: ignore[misc]


async def test_a_new_file_is_no_incident_but_a_vanished_one_is(tmp_path: Path) -> None:
    path = tmp_path / "patrol.sqlite"
    assert await patrol_state_roundtrip(path, True) is None
    path.unlink()
    incident = await patrol_state_roundtrip(path, False)
    assert incident is not None and incident.problem == "missing" and incident.saved_as is None
