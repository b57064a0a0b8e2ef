"""The outbox: append/read/ack per sink, resume after reopen, pruning, eviction, stats."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

import pytest

from gateway.model import AlarmEvent, AlarmState, FakeClock, Quality, Sample
from gateway.outbox import Event, Outbox, RecordKind


def sample(i: int, device: str = "d1", pad: int = 0) -> Sample:
    return Sample(
        device=device,
        kind="meter",
        ts_ns=1_000_000_000 * i,
        values={"i": i, "x": float(i) / 2, "pad": "p" * pad},
        quality={"bad_point": Quality.BAD},
        tags={"area": "park"},
    )


def alarm(i: int) -> AlarmEvent:
    return AlarmEvent(
        alarm_id=f"a{i}",
        ts_ns=1_000_000_000 * i,
        state=AlarmState.UNACKED,
        previous=AlarmState.NORMAL,
        action="raise",
        severity="high",
        device="d1",
        point="i",
        rule="r1",
        message=f"alarm {i}",
        value=i,
    )


async def test_roundtrip_per_sink_cursors_and_resume(tmp_path: Path) -> None:
    path = tmp_path / "ob.sqlite"
    async with Outbox(path, ["a", "b"]) as ob:
        for i in range(10):
            ob.append_sample(sample(i))
        ob.append_alarm(alarm(10))
        ob.append_event(Event(kind="patrol.late", ts_ns=11, data={"route": "north"}))
        last = await ob.flush()
        recs = await ob.read("a", 5)
        assert [r.item.ts_ns for r in recs] == [i * 1_000_000_000 for i in range(5)]
        assert recs[0].item == sample(0)
        await ob.ack("a", recs[-1].seq)
        assert ob.stats().sinks["a"].backlog == 7
        assert ob.stats().sinks["b"].backlog == 12
    # Reopen: cursors resume where they were, nothing is lost.
    async with Outbox(path, ["a", "b"]) as ob:
        recs_a = await ob.read("a", 100)
        assert [r.kind for r in recs_a][-2:] == [RecordKind.ALARM, RecordKind.EVENT]
        assert len(recs_a) == 7
        assert recs_a[-1].seq == last
        assert recs_a[-2].item == alarm(10)
        assert recs_a[-1].item == Event(kind="patrol.late", ts_ns=11, data={"route": "north"})
        recs_b = await ob.read("b", 100)
        assert len(recs_b) == 12
        # Sink a done; sink b done: every row is pruned.
        await ob.ack("a", last)
        assert ob.stats().rows == 12  # b still needs them
        await ob.ack("b", last)
        assert ob.stats().rows == 12  # pruned by the next commit (group commit)
        await ob.flush()
        st = ob.stats()
        assert st.rows == 0 and st.bytes == 0
        assert st.sinks["a"].backlog == 0 and st.sinks["b"].oldest_ts_ns is None
        # A new append after full pruning gets a fresh, larger seq (never reused).
        ob.append_sample(sample(99))
        assert await ob.flush() == last + 1
        assert [r.seq for r in await ob.read("a", 10)] == [last + 1]


async def test_new_sink_starts_at_oldest_row_and_stale_cursor_is_dropped(tmp_path: Path) -> None:
    path = tmp_path / "ob.sqlite"
    async with Outbox(path, ["a", "old"]) as ob:
        for i in range(3):
            ob.append_sample(sample(i))
        last = await ob.flush()
        await ob.ack("a", last)
    async with Outbox(path, ["a", "new"]) as ob:
        # "old" no longer pins the rows; "new" receives everything still retained.
        assert len(await ob.read("new", 10)) == 3
        assert ob.stats().sinks["new"].backlog == 3
    with sqlite3.connect(path) as db:
        assert {r[0] for r in db.execute("SELECT sink FROM cursors")} == {"a", "new"}


async def test_eviction_keeps_alarms_and_counts(tmp_path: Path) -> None:
    path = tmp_path / "ob.sqlite"
    max_bytes = 40_000
    async with Outbox(path, ["a"], max_bytes=max_bytes) as ob:
        for i in range(5):
            ob.append_alarm(alarm(i))
        await ob.flush()
        for i in range(5, 400):
            ob.append_sample(sample(i, pad=200))
            if i % 50 == 0:
                await ob.flush()
        await ob.flush()
        st = ob.stats()
        assert st.bytes <= max_bytes
        assert st.evicted > 0
        assert st.evicted_by_kind["sample"] == st.evicted
        assert st.evicted_by_kind["alarm"] == 0
        recs = await ob.read("a", 10_000)
        alarms = [r.item for r in recs if isinstance(r.item, AlarmEvent)]
        assert [a.alarm_id for a in alarms] == [f"a{i}" for i in range(5)]
        samples = [r.item.ts_ns // 1_000_000_000 for r in recs if r.kind is RecordKind.SAMPLE]
        # Oldest telemetry went first: what is left is the newest, contiguous.
        assert samples == list(range(400 - len(samples), 400))
        assert len(samples) + st.evicted == 395
        assert st.sinks["a"].backlog == len(recs)
        evicted = st.evicted
    # The eviction count survives a restart.
    async with Outbox(path, ["a"], max_bytes=max_bytes) as ob:
        assert ob.stats().evicted == evicted


async def test_alarms_are_kept_even_past_max_bytes(tmp_path: Path) -> None:
    async with Outbox(tmp_path / "ob.sqlite", ["a"], max_bytes=2_000) as ob:
        for i in range(50):
            ob.append_alarm(alarm(i))
            ob.append_sample(sample(i))
        await ob.flush()
        recs = await ob.read("a", 1000)
        assert sum(r.kind is RecordKind.ALARM for r in recs) == 50
        assert ob.stats().evicted_by_kind["sample"] >= 45


async def test_pending_bound_drops_telemetry_not_alarms(tmp_path: Path) -> None:
    async with Outbox(tmp_path / "ob.sqlite", ["a"], max_pending=10) as ob:
        ob.append_alarm(alarm(0))
        for i in range(1, 30):
            ob.append_sample(sample(i))
        ob.append_alarm(alarm(30))
        await ob.flush()
        recs = await ob.read("a", 100)
        assert [r.kind for r in recs].count(RecordKind.ALARM) == 2
        assert len(recs) == 10
        assert ob.stats().evicted == 31 - 10


async def test_stats_age_uses_injected_clock(tmp_path: Path) -> None:
    clock = FakeClock(start_ns=100 * 1_000_000_000)
    async with Outbox(tmp_path / "ob.sqlite", ["a"], clock=clock) as ob:
        assert ob.stats().oldest_undelivered_age_s == 0.0
        ob.append_sample(sample(40))
        ob.append_sample(sample(50))
        await ob.flush()
        assert ob.stats().oldest_undelivered_age_s == pytest.approx(60.0)
        clock.advance(10)
        assert ob.stats().sinks["a"].oldest_age_s == pytest.approx(70.0)
        recs = await ob.read("a", 1)
        await ob.ack("a", recs[0].seq)
        assert ob.stats().oldest_undelivered_age_s == pytest.approx(60.0)


async def test_flusher_commits_in_background_and_wakes_readers(tmp_path: Path) -> None:
    async with Outbox(tmp_path / "ob.sqlite", ["a"], flush_interval_s=0.01) as ob:
        task = asyncio.create_task(ob.run_flusher())
        try:
            ob.clear_new_data("a")
            assert await ob.read("a", 10) == []
            ob.append_sample(sample(1))
            await asyncio.wait_for(ob.wait_for_data("a", 5.0), 5.0)
            assert len(await ob.read("a", 10)) == 1
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


async def test_wal_mode_and_synchronous(tmp_path: Path) -> None:
    path = tmp_path / "ob.sqlite"
    async with Outbox(path, ["a"], synchronous="full") as ob:
        ob.append_sample(sample(1))
        await ob.flush()
        # Another connection sees the committed row while the outbox is open (WAL).
        with sqlite3.connect(path) as db:
            assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            assert db.execute("SELECT COUNT(*) FROM records").fetchone()[0] == 1


async def test_append_throughput(tmp_path: Path) -> None:
    """5k samples of 10 points commit and read back well within a second each way."""
    async with Outbox(tmp_path / "ob.sqlite", ["a", "b"], synchronous="full") as ob:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        for i in range(5000):
            s = sample(i)
            s.values.update({f"p{k}": k * 1.5 for k in range(10)})
            ob.append_sample(s)
        await ob.flush()
        t_write = loop.time() - t0
        t0 = loop.time()
        n = 0
        while True:
            recs = await ob.read("a", 1000)
            if not recs:
                break
            n += len(recs)
            await ob.ack("a", recs[-1].seq)
        t_read = loop.time() - t0
        assert n == 5000
        assert t_write < 2.0 and t_read < 2.0, (t_write, t_read)


async def test_lanes_split_kinds_and_move_over_other_rows(tmp_path: Path) -> None:
    lanes = {"main": (RecordKind.SAMPLE, RecordKind.EVENT), "alarms": (RecordKind.ALARM,)}
    async with Outbox(tmp_path / "ob.sqlite", ["main", "alarms"], lanes=lanes) as ob:
        ob.append_sample(sample(1))
        ob.append_alarm(alarm(2))
        ob.append_sample(sample(3))
        await ob.flush()
        recs, upto = await ob.read_batch("alarms", 100)
        assert [r.kind for r in recs] == [RecordKind.ALARM] and upto is not None
        await ob.ack("alarms", upto)  # over the samples too: they are not its business
        main, main_upto = await ob.read_batch("main", 100)
        assert [r.kind for r in main] == [RecordKind.SAMPLE, RecordKind.SAMPLE]
        assert ob.stats().sinks["alarms"].backlog == 0
        assert ob.stats().rows == 3  # the main lane has not delivered yet: nothing pruned
        assert main_upto is not None
        await ob.ack("main", main_upto)
        await ob.flush()
        assert ob.stats().rows == 0  # both lanes are past every row: pruned
        # Only rows of the other lane: nothing to send, but the scan still moves on.
        ob.append_sample(sample(4))
        await ob.flush()
        none, scanned = await ob.read_batch("alarms", 100)
        assert none == [] and scanned is not None
        await ob.ack("alarms", scanned)
        assert await ob.read_batch("alarms", 100) == ([], None)


async def test_acks_are_written_by_the_next_commit(tmp_path: Path) -> None:
    """Group commit: an ack moves the cursor at once and reaches the file with the next commit."""
    path = tmp_path / "ob.sqlite"

    def saved_cursor() -> int:
        with sqlite3.connect(path) as db:
            return int(db.execute("SELECT seq FROM cursors WHERE sink = 'a'").fetchone()[0])

    async with Outbox(path, ["a"], flush_interval_s=0.01) as ob:
        for i in range(4):
            ob.append_sample(sample(i))
        last = await ob.flush()
        await ob.ack("a", last)
        assert ob.stats().sinks["a"].backlog == 0
        assert await ob.read_batch("a", 10) == ([], None)  # the next read starts after it
        assert saved_cursor() == 0
        task = asyncio.create_task(ob.run_flusher())
        try:
            # The flusher commits the moved cursor without any new row to write.
            for _ in range(500):
                if saved_cursor() == last:
                    break
                await asyncio.sleep(0.01)
            assert saved_cursor() == last
            assert ob.stats().rows == 0
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


async def test_reads_from_the_cache_and_from_sqlite_agree(tmp_path: Path) -> None:
    """A sink reading fresh rows (cache) and one resuming after a restart (SQLite) see the same."""
    path = tmp_path / "ob.sqlite"
    async with Outbox(path, ["a", "b"]) as ob:
        for i in range(6):
            ob.append_sample(sample(i))
        ob.append_alarm(alarm(6))
        await ob.flush()
        fresh = await ob.read("a", 100)
    async with Outbox(path, ["a", "b"]) as ob:
        resumed = await ob.read("b", 100)
    assert [(r.seq, r.kind, r.ts_ns, r.item) for r in fresh] == [
        (r.seq, r.kind, r.ts_ns, r.item) for r in resumed
    ]
    assert len(fresh) == 7


async def test_a_batch_being_committed_still_counts_as_backlog(tmp_path: Path) -> None:
    """Between taking the batch and the commit's return, stats() must not say "caught up".

    (It did: a test that waited for backlog 0 stopped while the last rows were
    still on their way into the file, and they were delivered only at the
    next start.)
    """
    async with Outbox(tmp_path / "ob.sqlite", ["a"]) as ob:
        gate = threading.Event()
        inside = threading.Event()
        real = ob._store.insert

        def slow_insert(*args: object) -> object:
            inside.set()
            gate.wait(10)
            return real(*args)  # type: ignore[arg-type]

        ob._store.insert = slow_insert  # type: ignore[method-assign]
        for i in range(3):
            ob.append_sample(sample(i))
        flushing = asyncio.create_task(ob.flush())
        await asyncio.to_thread(inside.wait, 10)
        assert ob.stats().sinks["a"].backlog == 3  # not 0: the rows are in flight
        gate.set()
        await flushing
        assert ob.stats().sinks["a"].backlog == 3
        recs = await ob.read("a", 10)
        await ob.ack("a", recs[-1].seq)
        assert ob.stats().sinks["a"].backlog == 0


async def test_undecodable_rows_are_quarantined_not_a_wall(tmp_path: Path) -> None:
    path = tmp_path / "ob.sqlite"
    async with Outbox(path, ["a", "b"]) as ob:
        ob.append_sample(sample(0))
        await ob.flush()
    db = sqlite3.connect(path)
    db.execute("INSERT INTO records(kind, ts_ns, size, body) VALUES (1, 1, 50, '{not json')")
    db.execute("INSERT INTO records(kind, ts_ns, size, body) VALUES (9, 2, 50, '{}')")
    db.commit()
    db.close()
    async with Outbox(path, ["a", "b"]) as ob:
        ob.append_sample(sample(3))
        await ob.flush()
        assert ob.stats().sinks["a"].backlog == 4
        recs = await ob.read("a", 100)
        assert [r.item for r in recs] == [sample(0), sample(3)]
        st = ob.stats()
        assert (st.quarantined, st.quarantined_new, st.rows) == (2, 2, 2)
        assert st.sinks["a"].backlog == st.sinks["b"].backlog == 2
        assert [r.item for r in await ob.read("b", 100)] == [sample(0), sample(3)]
    async with Outbox(path, ["a", "b"]) as ob:
        assert (ob.stats().quarantined, ob.stats().quarantined_new) == (2, 0)
    db = sqlite3.connect(path)
    kept = db.execute("SELECT seq, kind, body, error FROM quarantine ORDER BY seq").fetchall()
    db.close()
    assert [(k[1], k[2]) for k in kept] == [(1, "{not json"), (9, "{}")]
    assert "JSONDecodeError" in kept[0][3] and "KeyError" in kept[1][3]
