"""A full disk under the outbox and the patrol state (a real 2 MB tmpfs: run as root).

Another program fills the disk. Below the floor the outbox makes room before
anything fails: it releases its reserve file, cuts its budget and evicts the
oldest telemetry (never an alarm), and says why the disk counts as full.
Filled to the last byte, a commit may fail: the batch (the alarm with it)
waits in memory and is committed once there is room. The patrol state keeps
the gateway running (a failed save is reported, not raised) and saves again
once there is room. The budget sizing at open uses a fake statvfs.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
from pathlib import Path

import pytest

from gateway.alerting.store import AlertStore
from gateway.disk_space import SpaceGuard
from gateway.errors import OutboxError
from gateway.model import FakeClock
from gateway.outbox import Outbox, RecordKind
from gateway.patrol.store import SqlitePatrolStore
from tests.fixtures.disks import fill, small_disk  # noqa: F401 - a fixture
from tests.unit.test_outbox import alarm, sample
from tests.unit.test_rules import LIMIT, make_engine, transitions
from tests.unit.test_rules import sample as rule_sample


def checkpoint(path: Path) -> None:
    db = sqlite3.connect(path)
    try:
        db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
    finally:
        db.close()


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def fill_outbox(ob: Outbox, start: int, n: int) -> None:
    for i in range(start, start + n):
        ob.append_sample(sample(i, pad=500))
    await ob.flush()


async def test_outbox_makes_room_before_the_disk_is_full(
    small_disk: Path,  # noqa: F811 - the fixture
) -> None:
    path = small_disk / "ob.sqlite"
    clock = FakeMonotonic()
    guard = SpaceGuard(path, primary=True, monotonic=clock)
    async with Outbox(path, ["a"], space_guard=guard) as ob:
        assert guard.reserve_path.exists()
        await fill_outbox(ob, 0, 600)
        checkpoint(path)  # as run_checkpointer does every second
        assert ob.stats().disk_full is None
        fill(small_disk, leave=guard.floor // 4)  # another program takes the rest
        clock.now += 1.0
        ob.append_alarm(alarm(600))
        await fill_outbox(ob, 601, 50)  # does not raise
        st = ob.stats()
        assert st.disk_full is not None and "free" in st.disk_full
        assert not guard.reserve_path.exists()  # handed over to the other files
        assert st.evicted_by_kind[RecordKind.SAMPLE.value] > 0
        assert st.evicted_by_kind[RecordKind.ALARM.value] == 0
        assert st.max_bytes < 600 * 600
        recs = await ob.read("a", 10_000)
        assert [r.item for r in recs if r.kind is RecordKind.ALARM] == [alarm(600)]
        # The newest telemetry is kept, the oldest went.
        assert recs[-1].item == sample(650, pad=500)
        assert recs[0].item != sample(0, pad=500)


async def test_a_disk_filled_to_the_last_byte_keeps_the_batch_in_memory(
    small_disk: Path,  # noqa: F811 - the fixture
) -> None:
    path = small_disk / "ob.sqlite"
    clock = FakeMonotonic()
    guard = SpaceGuard(path, primary=True, monotonic=clock)
    async with Outbox(path, ["a"], space_guard=guard) as ob:
        await fill_outbox(ob, 0, 600)
        ballast = fill(small_disk)
        # The commit may fit in the WAL's reused pages: the free-space check sees the disk.
        clock.now += 1.0
        ob.append_alarm(alarm(600))
        for i in range(601, 1200):
            ob.append_sample(sample(i, pad=500))
        with contextlib.suppress(OutboxError):
            await ob.flush()  # may fail: nothing left on the disk, not even to evict
        assert ob.stats().disk_full is not None
        ballast.unlink()  # the other program's file is removed
        await ob.flush()
        recs = await ob.read("a", 10_000)
        assert [r.item for r in recs if r.kind is RecordKind.ALARM] == [alarm(600)]
        assert recs[-1].item == sample(1199, pad=500)


def test_patrol_state_on_a_full_disk_is_reported_not_raised(
    small_disk: Path,  # noqa: F811 - the fixture
) -> None:
    store = SqlitePatrolStore(small_disk / "patrol.sqlite")
    store.save({"saved_ns": 1})
    ballast = fill(small_disk)
    store.save({"saved_ns": 2, "taps": ["x" * 1000] * 100})  # does not raise
    assert store.save_error is not None and "full" in store.save_error
    ballast.unlink()
    store.save({"saved_ns": 3, "taps": ["x" * 1000] * 100})
    assert store.save_error is None
    assert store.load() == {"saved_ns": 3, "taps": ["x" * 1000] * 100}
    store.close()


class FakeVfs:
    def __init__(self, total: int, free: int) -> None:
        self.total, self.free = total, free

    def __call__(self, _path: str) -> os.statvfs_result:
        return os.statvfs_result((4096, 4096, self.total // 4096, 0, self.free // 4096) + (0,) * 5)


@pytest.mark.parametrize("configured", [None, 100 * 1024 * 1024])
def test_max_bytes_is_sized_against_the_free_space(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, configured: int | None
) -> None:
    vfs = FakeVfs(total=1024 * 1024 * 1024, free=40 * 1024 * 1024)
    guard = SpaceGuard(tmp_path / "ob.sqlite", primary=True, statvfs=vfs)
    with caplog.at_level(logging.WARNING):
        budget = guard.open(configured, in_use=0)
    assert budget < 20 * 1024 * 1024
    assert "cannot fit" in caplog.text
    vfs.free = 900 * 1024 * 1024
    assert SpaceGuard(tmp_path / "b.sqlite", primary=True, statvfs=vfs).open(configured, 0) == (
        configured or 256 * 1024 * 1024
    )


async def test_every_state_file_opens_on_a_disk_full_to_the_last_byte(
    small_disk: Path,  # noqa: F811 - the fixture
) -> None:
    """A restart on the full disk: no crash loop (the outbox's reserve makes the room
    to open the files); an alarm that cannot be committed yet waits in memory."""
    path = small_disk / "ob.sqlite"
    async with Outbox(path, ["a"]) as ob:
        await fill_outbox(ob, 0, 600)
    AlertStore(small_disk / "alarms.sqlite").close()
    SqlitePatrolStore(small_disk / "patrol.sqlite").close()
    fill(small_disk)
    AlertStore(small_disk / "alarms.sqlite").close()
    SqlitePatrolStore(small_disk / "patrol.sqlite").close()
    async with Outbox(path, ["a"]) as ob:
        ob.append_alarm(alarm(600))
        with contextlib.suppress(OutboxError):
            await ob.flush()  # the flusher retries every second
        st = ob.stats()
        assert st.disk_full is not None
        committed = [r.item for r in await ob.read("a", 10_000)]
        assert alarm(600) in committed or st.pending == 1


def test_alarm_state_on_a_full_disk_does_not_stop_alarming(
    small_disk: Path,  # noqa: F811 - the fixture
) -> None:
    """The transitions still come out (for the outboxes); the state is saved once there is room."""
    clock = FakeClock()
    eng = make_engine(small_disk, LIMIT, clock, state=str(small_disk / "alarms.sqlite"))
    eng.on_sample(rule_sample(clock, "lk-1", {"leak_ch1": 100}))
    ballast = fill(small_disk)
    eng.on_sample(rule_sample(clock, "lk-1", {"leak_ch1": 450}))
    clock.advance(5)
    raised = eng.on_sample(rule_sample(clock, "lk-1", {"leak_ch1": 450}))  # does not raise
    assert raised and eng.state_error is not None and "full" in eng.state_error
    ballast.unlink()
    clock.advance(1)
    eng.on_sample(rule_sample(clock, "lk-1", {"leak_ch1": 450}))
    eng.tick()
    assert eng.state_error is None
    journaled, _ = eng.unpublished()
    assert transitions(raised) == [t for t in transitions(journaled) if t in transitions(raised)]
    eng.close()
    again = make_engine(small_disk, LIMIT, clock, state=str(small_disk / "alarms.sqlite"))
    assert {a.alarm_id for a in again.book.alarms.values() if a.active} == {
        e.alarm_id for e in raised
    }
    again.close()


async def test_a_wal_larger_than_the_reserve_cannot_wedge_the_full_disk(
    small_disk: Path,  # noqa: F811 - the fixture
) -> None:
    """A busy site writes more between two checkpoints than the reserve file holds.

    Filled to the last byte then, the outbox's WAL holds pages the database
    file must grow for (the checkpoint needs room) and an eviction needs room
    in the WAL: neither could run, nothing was ever freed, and every file on
    the disk (the alarm lane's outbox with it) stayed stuck. The outbox must
    get room back by itself: the alarm is committed and the floor is free again.
    """
    path = small_disk / "ob.sqlite"
    clock = FakeMonotonic()
    guard = SpaceGuard(path, primary=True, monotonic=clock)
    async with Outbox(path, ["a"], space_guard=guard) as ob:
        # No checkpoint since (the checkpointer runs once a second): a WAL past the reserve.
        for start in range(0, 800, 50):
            await fill_outbox(ob, start, 50)
        assert ob.stats().bytes > 2 * guard.reserve_bytes
        fill(small_disk)  # another program takes the rest
        ob.append_alarm(alarm(800))
        for i in range(801, 850):
            ob.append_sample(sample(i, pad=500))
        for _ in range(5):  # the flusher retries every second
            clock.now += 1.0
            with contextlib.suppress(OutboxError):
                await ob.flush()
        assert ob.stats().pending == 0
        recs = await ob.read("a", 10_000)
        assert [r.item for r in recs if r.kind is RecordKind.ALARM] == [alarm(800)]
        assert ob.stats().evicted_by_kind[RecordKind.SAMPLE.value] > 0
        assert guard.free() >= guard.floor // 2, "the outbox must hand room back"


async def test_a_batch_larger_than_the_disk_does_not_hold_the_alarm_back(
    small_disk: Path,  # noqa: F811 - the fixture
) -> None:
    """Commits failed for a while (the disk was full), so the batch waiting in memory
    grew past what the disk can hold even with all telemetry evicted: the alarm in it
    is committed anyway, with the newest telemetry that fits (the rest counted evicted)."""
    path = small_disk / "ob.sqlite"
    clock = FakeMonotonic()
    guard = SpaceGuard(path, primary=True, monotonic=clock)
    async with Outbox(path, ["a"], space_guard=guard) as ob:
        await fill_outbox(ob, 0, 200)
        fill(small_disk, leave=guard.floor // 2)
        ob.append_alarm(alarm(200))
        for i in range(201, 3200):  # about 1.8 MB of telemetry on a 2 MB disk
            ob.append_sample(sample(i, pad=500))
        for _ in range(5):  # the flusher retries every second
            clock.now += 1.0
            with contextlib.suppress(OutboxError):
                await ob.flush()
        st = ob.stats()
        assert st.pending == 0
        recs = await ob.read("a", 10_000)
        assert [r.item for r in recs if r.kind is RecordKind.ALARM] == [alarm(200)]
        assert recs[-1].item == sample(3199, pad=500)
        assert st.evicted_by_kind[RecordKind.SAMPLE.value] > 0
