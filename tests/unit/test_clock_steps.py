"""Wall-clock steps and replay speed: durations run on monotonic clocks, timestamps on the wall.

Most tests step the fake wall clock alone (``FakeClock.step_wall``), an hour
forward or back, as NTP or an operator setting the time would, and check
that on-delays, off-delays, no-data timeouts, health delays, shelving,
re-alarm, chatter and flood windows and the outbox's backlog age still count
elapsed time. The gateway's own health measures real time even when a
replay runs the site's clock fast (``ScaledClock``).
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest

from gateway.alerting.alarms import AlarmBook
from gateway.alerting.config import AlertingConfig
from gateway.alerting.engine import AlertEngine
from gateway.alerting.flood import FLOOD_ALARM
from gateway.alerting.store import QueuedNotification
from gateway.clockwatch import STEP_SIGNAL_S, WallStepWatch
from gateway.model import FakeClock, Sample, ScaledClock
from gateway.outbox import Outbox
from gateway.patrol import Finding, FindingType
from tests.unit.test_alarms import ack, on, spec
from tests.unit.test_patrol_engine import ROUTE, Rig, at, findings, records
from tests.unit.test_rules import make_engine, sample, transitions

HOUR = 3600.0
STEPS = [pytest.param(HOUR, id="+1h"), pytest.param(-HOUR, id="-1h")]

DELAYS = """
    rules:
      - id: leak
        kind: limit
        select: {kinds: [leakage]}
        points: ["leak_ch1"]
        on_delay_s: 5
        off_delay_s: 5
        limits:
          hi: {value: 200, severity: medium}
"""

HI = "leak:lk-1:leak_ch1:hi"
SHELVE = {"cmd": "shelve", "alarm_id": HI, "duration": 600, "reason": "sensor swap"}
# Shelving and taking out of service for a while: the command, its state, its end.
TIMED = [
    pytest.param("shelve", "shelved", "shelve_expired", id="shelve"),
    pytest.param("out_of_service", "out_of_service", "out_of_service_expired", id="oos"),
]


def raised(tmp_path: Path, clock: FakeClock, state: str | None = ":memory:") -> AlertEngine:
    """An engine whose ``HI`` alarm has just been raised (after its 5 s on-delay)."""
    eng = make_engine(tmp_path, DELAYS, clock, state=state)
    eng.on_sample(sample(clock, "lk-1", {"leak_ch1": 250}))
    clock.advance(5)
    assert transitions(eng.tick()) == [(HI, "activate", "unacknowledged")]
    return eng


@pytest.mark.parametrize("step", STEPS)
def test_on_delay_counts_elapsed_time_across_a_wall_step(tmp_path: Path, step: float) -> None:
    clock = FakeClock()
    eng = make_engine(tmp_path, DELAYS, clock)
    assert eng.on_sample(sample(clock, "lk-1", {"leak_ch1": 250})) == []
    clock.step_wall(step)
    clock.advance(0.1)
    assert eng.tick() == []
    assert eng.on_sample(sample(clock, "lk-1", {"leak_ch1": 250})) == []
    clock.advance(4.8)
    assert eng.tick() == []
    clock.advance(0.2)
    ev = eng.tick()
    assert transitions(ev) == [(HI, "activate", "unacknowledged")]
    # The event carries the (stepped) wall time.
    assert ev[0].ts_ns == clock.now_ns()


@pytest.mark.parametrize("step", STEPS)
def test_off_delay_counts_elapsed_time_across_a_wall_step(tmp_path: Path, step: float) -> None:
    clock = FakeClock()
    eng = raised(tmp_path, clock)
    assert eng.on_sample(sample(clock, "lk-1", {"leak_ch1": 100})) == []
    clock.step_wall(step)
    clock.advance(0.1)
    assert eng.on_sample(sample(clock, "lk-1", {"leak_ch1": 100})) == []
    assert eng.tick() == []
    clock.advance(4.9)
    assert transitions(eng.tick()) == [(HI, "clear", "rtn_unacknowledged")]


NODATA = """
    rules:
      - id: silent
        kind: no_data
        select: {devices: [lk-1]}
        timeout_s: 30
"""


@pytest.mark.parametrize("step", STEPS)
def test_no_data_timeout_counts_elapsed_time_across_a_wall_step(
    tmp_path: Path, step: float
) -> None:
    clock = FakeClock()
    eng = make_engine(tmp_path, NODATA, clock)
    eng.on_sample(sample(clock, "lk-1", {"leak_ch1": 1}))
    clock.advance(10)
    clock.step_wall(step)
    assert eng.tick() == []
    clock.advance(19)
    assert eng.tick() == []
    clock.advance(2)
    assert transitions(eng.tick()) == [("silent:lk-1", "activate", "unacknowledged")]
    # A sample clears it at once (no off-delay), wall time or not.
    ev = eng.on_sample(sample(clock, "lk-1", {"leak_ch1": 1}))
    assert transitions(ev) == [("silent:lk-1", "clear", "rtn_unacknowledged")]
    assert ev[0].ts_ns == clock.now_ns()


@pytest.mark.parametrize("step", STEPS)
def test_health_on_delay_counts_elapsed_time_across_a_wall_step(
    tmp_path: Path, step: float
) -> None:
    rules = """
        rules:
          - id: sinks
            kind: health
            signals: ["sink:*"]
            on_delay_s: 30
    """
    clock = FakeClock()
    eng = make_engine(tmp_path, rules, clock)
    assert eng.health("sink:mqtt", False, "connection refused") == []
    clock.step_wall(step)
    clock.advance(1)
    assert eng.health("sink:mqtt", False, "connection refused") == []
    assert eng.tick() == []
    clock.advance(29)
    assert transitions(eng.tick()) == [("gateway:sink:mqtt", "activate", "unacknowledged")]


@pytest.mark.parametrize(("cmd", "state", "end"), TIMED)
@pytest.mark.parametrize("step", STEPS)
def test_shelve_expires_after_its_duration_across_a_wall_step(
    tmp_path: Path, step: float, cmd: str, state: str, end: str
) -> None:
    clock = FakeClock()
    eng = raised(tmp_path, clock)
    _, reply = eng.command({**SHELVE, "cmd": cmd}, "wang")
    assert reply["state"] == state
    clock.advance(1)
    clock.step_wall(step)
    assert eng.tick() == []
    clock.advance(598)
    assert eng.tick() == []
    assert eng.book.get(HI).state == state
    clock.advance(1)
    ev = eng.tick()
    assert transitions(ev) == [(HI, end, "unacknowledged")]


def test_shelve_after_a_restart_keeps_the_wall_clock_deadline(tmp_path: Path) -> None:
    """Monotonic time does not survive a reboot: across a restart the wall deadline holds."""
    clock = FakeClock()
    eng = raised(tmp_path, clock, state=None)
    eng.command(SHELVE, "wang")
    clock.advance(100)
    eng.tick()
    eng.close()
    # A new process (its monotonic clock starts elsewhere) 200 s later by the wall clock.
    later = FakeClock(start_ns=clock.now_ns() + 200 * 10**9)
    eng = make_engine(tmp_path, DELAYS, later, state=None)
    assert eng.tick() == []
    later.advance(299)
    assert eng.tick() == []
    later.advance(1)
    assert transitions(eng.tick()) == [(HI, "shelve_expired", "unacknowledged")]
    eng.close()


@pytest.mark.parametrize("step", STEPS)
def test_realarm_counts_elapsed_time_across_a_wall_step(step: float) -> None:
    clock = FakeClock()
    book = AlarmBook(AlertingConfig(realarm_s=600))
    book.tick(clock.now_ns(), clock.mono_ns())  # as the engine does: wall and monotonic known
    on(book, clock)
    ack(book, clock)
    clock.step_wall(step)
    clock.advance(599)
    assert book.tick(clock.now_ns(), clock.mono_ns()) == []
    clock.advance(1)
    ev = book.tick(clock.now_ns(), clock.mono_ns())
    assert [e.action for e in ev] == ["realarm"]


@pytest.mark.parametrize("step", STEPS)
def test_chatter_window_counts_elapsed_time_across_a_wall_step(step: float) -> None:
    clock = FakeClock()
    book = AlarmBook(AlertingConfig())
    book.tick(clock.now_ns(), clock.mono_ns())
    for _ in range(2):
        book.set_active(spec(), True, 12.0, clock.now_ns())
        clock.advance(5)
        book.set_active(spec(), False, 5.0, clock.now_ns())
        clock.advance(5)
    clock.step_wall(step)
    book.tick(clock.now_ns(), clock.mono_ns())
    # The third activation within a minute of elapsed time is chatter, whatever the wall says.
    ev = book.set_active(spec(), True, 12.0, clock.now_ns())
    assert [e.action for e in ev] == ["activate", "chatter_start"]
    clock.advance(59)
    assert book.tick(clock.now_ns(), clock.mono_ns()) == []
    clock.advance(2)
    assert [e.action for e in book.tick(clock.now_ns(), clock.mono_ns())] == ["chatter_end"]


@pytest.mark.parametrize("step", STEPS)
def test_flood_window_counts_elapsed_time_across_a_wall_step(step: float) -> None:
    clock = FakeClock()
    book = AlarmBook(AlertingConfig())
    book.tick(clock.now_ns(), clock.mono_ns())
    for i in range(11):
        if i == 6:
            clock.step_wall(step)
            book.tick(clock.now_ns(), clock.mono_ns())
        ev = book.set_active(spec(f"r{i}:dev:p"), True, 1, clock.now_ns())
        clock.advance(1)
    assert [e.action for e in ev if e.alarm_id == FLOOD_ALARM] == ["flood_start"]
    # Ten minutes of elapsed time later every activation has aged out: the flood ends.
    clock.advance(590)
    assert [e.action for e in book.tick(clock.now_ns(), clock.mono_ns())] == []
    clock.advance(10)
    assert [e.action for e in book.tick(clock.now_ns(), clock.mono_ns())] == ["flood_end"]


# --------------------------------------------------------------------------- outbox ages


def reading(ts_ns: int) -> Sample:
    return Sample("d1", "test", ts_ns, {"v": 1})


@pytest.mark.parametrize("step", STEPS)
async def test_backlog_age_counts_elapsed_time_across_a_wall_step(
    tmp_path: Path, step: float
) -> None:
    clock = FakeClock()
    async with Outbox(tmp_path / "ob.sqlite", ["a"], clock=clock) as ob:
        ob.append_sample(reading(clock.now_ns() - 20 * 10**9))
        ob.append_sample(reading(clock.now_ns()))
        await ob.flush()
        clock.advance(10)
        assert ob.stats().oldest_undelivered_age_s == pytest.approx(30.0)
        clock.step_wall(step)
        clock.advance(5)
        assert ob.stats().oldest_undelivered_age_s == pytest.approx(35.0)
        # The next head was committed before the step: its age is elapsed time too.
        recs = await ob.read("a", 1)
        await ob.ack("a", recs[0].seq)
        assert ob.stats().oldest_undelivered_age_s == pytest.approx(15.0)


async def test_backlog_age_is_real_time_when_a_replay_runs_the_clock_fast(
    tmp_path: Path,
) -> None:
    """At 600x a sink's 1 s batching is 1 s of backlog, not 10 minutes."""
    clock = ScaledClock(FakeClock().now_ns(), 600)
    async with Outbox(tmp_path / "ob.sqlite", ["a"], clock=clock) as ob:
        start = clock.now_ns()
        ob.append_sample(reading(start))
        await ob.flush()
        await asyncio.sleep(0.05)
        age = ob.stats().oldest_undelivered_age_s
        site_s = (clock.now_ns() - start) / 1e9
    # No more real time can have passed than the site's time over the speed.
    assert 0 < age <= site_s / 600


# --------------------------------------------------------------------------- step detection


@pytest.mark.parametrize("step", STEPS)
def test_a_wall_step_is_logged_once_and_signalled_for_a_while(
    step: float, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()
    watch = WallStepWatch(clock)
    assert watch.check() is None and watch.signal()[1]
    clock.advance(1)
    clock.step_wall(step)
    with caplog.at_level(logging.WARNING, logger="gateway.clockwatch"):
        assert watch.check() == int(step * 1e9)
        clock.advance(1)
        assert watch.check() is None
    msgs = [r.getMessage() for r in caplog.records]
    assert len(msgs) == 1 and msgs[0].startswith(f"wall clock stepped {step:+.1f} s")
    assert (watch.steps, watch.last_step_s) == (1, step)
    name, ok, detail = watch.signal()
    assert (name, ok) == ("clock:wall_step", False) and f"{step:+.1f} s" in detail
    clock.advance(STEP_SIGNAL_S + 1)
    assert watch.signal()[1]


def test_slewing_and_small_corrections_are_not_steps() -> None:
    clock = FakeClock()
    watch = WallStepWatch(clock)
    for _ in range(100):
        clock.advance(1)
        clock.step_wall(0.5)  # far faster than NTP ever slews
        assert watch.check() is None
    assert watch.steps == 0


# --------------------------------------------------------------------------- notification timers

# Nothing listens on port 1: every send fails at once, and is retried.
NOTIFY: dict[str, Any] = {
    "group_window_s": 0,
    "channels": [{"type": "webhook", "name": "chat", "url": "http://127.0.0.1:1/hook"}],
    "routes": [
        {
            "name": "safety",
            "match": {"min_severity": "medium"},
            "channels": ["chat"],
            "escalation": [{"after_s": 0}, {"after_s": 600}],
        }
    ],
    "retry": {"min_s": 5, "max_s": 60},
}


def queued(eng: AlertEngine, what: str) -> list[QueuedNotification]:
    assert eng.store is not None
    return [q for q in eng.store.pending() if q.item["what"] == what]


@pytest.mark.parametrize("step", STEPS)
def test_escalation_counts_elapsed_time_across_a_wall_step(tmp_path: Path, step: float) -> None:
    clock = FakeClock()
    eng = make_engine(tmp_path, DELAYS, clock, **NOTIFY)
    eng.on_sample(sample(clock, "lk-1", {"leak_ch1": 250}))
    clock.advance(5)
    eng.tick()
    assert len(queued(eng, "alarm")) == 1
    clock.step_wall(step)
    clock.advance(599)
    eng.tick()
    assert queued(eng, "escalation") == []
    clock.advance(1)
    eng.tick()
    assert len(queued(eng, "escalation")) == 1


@pytest.mark.parametrize("step", STEPS)
async def test_retry_backoff_counts_elapsed_time_across_a_wall_step(
    tmp_path: Path, step: float
) -> None:
    clock = FakeClock()
    eng = make_engine(tmp_path, DELAYS, clock, **NOTIFY)
    assert eng.notifier is not None
    eng.on_sample(sample(clock, "lk-1", {"leak_ch1": 250}))
    clock.advance(5)
    eng.tick()
    await eng.notifier.deliver_due()
    assert [q.attempts for q in queued(eng, "alarm")] == [1]
    clock.step_wall(step)
    clock.advance(4)
    await eng.notifier.deliver_due()
    assert [q.attempts for q in queued(eng, "alarm")] == [1]
    clock.advance(1)
    await eng.notifier.deliver_due()
    assert [q.attempts for q in queued(eng, "alarm")] == [2]


# --------------------------------------------------------------------------- patrol


def stepped(rig: Rig, step: float) -> None:
    """Step the wall clock and tell the patrol, as the gateway's clock watch does."""
    rig.clock.step_wall(step)
    rig.engine.wall_stepped(int(step * 1e9))


@pytest.mark.parametrize("step", STEPS)
def test_patrol_round_keeps_its_elapsed_time_across_a_wall_step(step: float) -> None:
    """No timeout of a round in progress, no walk 'too fast' or an hour long: elapsed time holds."""
    rig = Rig()
    out = rig.round(at(22, 30), route=ROUTE[:3])
    stepped(rig, step)
    out += rig.engine.tick()
    rig.clock.advance(300)
    out += rig.tap(ROUTE[3])
    rig.clock.advance(300)
    out += rig.tap(ROUTE[4])
    assert findings(out) == []
    (rnd,) = records(out, "round", "complete")
    assert rnd.data["duration_s"] == 1200.0
    # Timestamps follow the new wall time.
    assert rnd.data["end_ns"] == at(22, 50) + int(step * 1e9)


@pytest.mark.parametrize("step", STEPS)
def test_patrol_overdue_gap_counts_elapsed_time_across_a_wall_step(step: float) -> None:
    rig = Rig()
    # Complete at 23:50: the next is due 3 h later (and the step keeps it inside the night).
    rig.round(at(23, 30))
    rig.tick_at(at(0, day=2))
    stepped(rig, step)
    t = rig.clock.now_ns()
    assert findings(rig.tick_at(t + int((3 * 3600 - 601) * 1e9))) == []
    (f,) = findings(rig.tick_at(t + int((3 * 3600 - 600) * 1e9)))
    assert f.type is FindingType.OVERDUE and f.ts_ns == rig.clock.now_ns()


@pytest.mark.parametrize("step", STEPS)
def test_reader_garbage_report_interval_counts_elapsed_time_across_a_wall_step(
    step: float,
) -> None:
    rig = Rig()
    assert len(rig.engine.reader_frame_errors("rfid-gate", 3)) == 1
    stepped(rig, step)
    rig.clock.advance(299)
    assert rig.engine.reader_frame_errors("rfid-gate", 5) == []
    rig.clock.advance(1)
    (f,) = rig.engine.reader_frame_errors("rfid-gate", 6)
    assert isinstance(f, Finding) and f.data["count"] == 3


@pytest.mark.parametrize("step", STEPS)
async def test_grouping_window_counts_elapsed_time_across_a_wall_step(
    tmp_path: Path, step: float
) -> None:
    """The first page goes at once; what follows waits the window since it, in elapsed time."""
    bus = {"type": "mqtt", "name": "bus", "topic": "pager"}
    route = {"name": "all", "match": {"min_severity": "medium"}, "channels": ["bus"]}
    clock = FakeClock()
    eng = make_engine(tmp_path, DELAYS, clock, group_window_s=30, channels=[bus], routes=[route])
    assert eng.notifier is not None
    published: list[dict[str, Any]] = []

    async def publish(topic: str, payload: dict[str, Any]) -> None:
        published.append(payload)

    eng.notifier.publish = publish
    for dev in ("lk-1", "lk-2"):
        eng.on_sample(sample(clock, dev, {"leak_ch1": 250}))
    clock.advance(5)
    eng.on_sample(sample(clock, "lk-1", {"leak_ch1": 250}))
    assert await eng.notifier.deliver_due() == 1
    clock.step_wall(step)
    eng.wall_stepped(int(step * 1e9))  # as the gateway's clock watch does
    clock.advance(1)
    eng.on_sample(sample(clock, "lk-2", {"leak_ch1": 250}))
    clock.advance(28)
    assert await eng.notifier.deliver_due() == 0
    clock.advance(1)
    assert await eng.notifier.deliver_due() == 1
    assert [p["alarms"][0]["alarm_id"] for p in published] == [HI, "leak:lk-2:leak_ch1:hi"]


# --------------------------------------------------------------------------- a step, then a restart


@pytest.mark.parametrize(("cmd", "state", "end"), TIMED)
@pytest.mark.parametrize("step", STEPS)
def test_a_restart_after_a_wall_step_keeps_the_shelve_and_escalation_deadlines(
    tmp_path: Path, step: float, cmd: str, state: str, end: str
) -> None:
    """Stored deadlines are wall-clock times: the step moves them, so a restart keeps them."""
    clock = FakeClock()
    eng = make_engine(tmp_path, DELAYS, clock, state=None, **NOTIFY)
    for dev in ("lk-1", "lk-2"):
        eng.on_sample(sample(clock, dev, {"leak_ch1": 250}))
    clock.advance(5)
    assert len(eng.tick()) == 2
    assert eng.command({**SHELVE, "cmd": cmd}, "wang")[1]["state"] == state
    clock.advance(100)
    clock.step_wall(step)
    eng.wall_stepped(int(step * 1e9))  # as the gateway's clock watch does
    eng.close()
    # A new process right away: its monotonic clock starts elsewhere.
    clock = FakeClock(start_ns=clock.now_ns())
    eng = make_engine(tmp_path, DELAYS, clock, state=None, **NOTIFY)
    clock.advance(499)
    assert eng.tick() == []
    assert queued(eng, "escalation") == []
    clock.advance(1)
    assert transitions(eng.tick()) == [(HI, end, "unacknowledged")]
    assert [q.item["alarm_id"] for q in queued(eng, "escalation")] == ["leak:lk-2:leak_ch1:hi"]
    eng.close()
