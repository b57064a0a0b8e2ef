"""ISA-18.2 alarm book: every state transition as a table, plus latch, shelve, out of service,
suppression by design, re-alarm, chatter and flood, all on a fake clock."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.alerting.alarms import FLOOD_ALARM, AlarmBook
from gateway.alerting.config import AlertingConfig, Severity
from gateway.alerting.detector import AlarmSpec
from gateway.errors import AlarmError
from gateway.model import AlarmEvent, AlarmState, FakeClock
from tests.unit.test_rules import make_engine, sample, transitions

S = AlarmState


def spec(
    alarm_id: str = "r:dev:p", latch: bool = False, inhibited_by: tuple[str, ...] = ()
) -> AlarmSpec:
    return AlarmSpec(
        alarm_id=alarm_id, rule=alarm_id.split(":")[0], kind="limit", device="dev", point="p",
        limit="hi", limit_value=10.0, severity=Severity.HIGH, latch=latch, area="park",
        template=None, inhibited_by=inhibited_by,
    )  # fmt: skip


Op = Callable[[AlarmBook, FakeClock], list[AlarmEvent]]


def on(b: AlarmBook, c: FakeClock) -> list[AlarmEvent]:
    return b.set_active(spec(), True, 12.0, c.now_ns())


def off(b: AlarmBook, c: FakeClock) -> list[AlarmEvent]:
    return b.set_active(spec(), False, 5.0, c.now_ns())


def latched_on(b: AlarmBook, c: FakeClock) -> list[AlarmEvent]:
    return b.set_active(spec(latch=True), True, 12.0, c.now_ns())


def latched_off(b: AlarmBook, c: FakeClock) -> list[AlarmEvent]:
    return b.set_active(spec(latch=True), False, 5.0, c.now_ns())


def ack(b: AlarmBook, c: FakeClock) -> list[AlarmEvent]:
    return b.ack("r:dev:p", "wang", c.now_ns())


def reset(b: AlarmBook, c: FakeClock) -> list[AlarmEvent]:
    return b.reset("r:dev:p", "wang", c.now_ns())


def shelve(b: AlarmBook, c: FakeClock) -> list[AlarmEvent]:
    return b.shelve("r:dev:p", 3600, "wang", c.now_ns(), "known fault")


def unshelve(b: AlarmBook, c: FakeClock) -> list[AlarmEvent]:
    return b.unshelve("r:dev:p", "wang", c.now_ns())


def oos(b: AlarmBook, c: FakeClock) -> list[AlarmEvent]:
    return b.out_of_service("r:dev:p", "wang", c.now_ns())


def ins(b: AlarmBook, c: FakeClock) -> list[AlarmEvent]:
    return b.in_service("r:dev:p", "wang", c.now_ns())


def wait(seconds: float) -> Op:
    def op(b: AlarmBook, c: FakeClock) -> list[AlarmEvent]:
        c.advance(seconds)
        return b.tick(c.now_ns())

    op.__name__ = f"wait{seconds:g}"
    return op


# Each row: operations in order, then the (action, state) of the LAST operation's events.
TABLE: list[tuple[list[Op], list[tuple[str, AlarmState]]]] = [
    ([on], [("activate", S.UNACKED)]),
    ([on, ack], [("ack", S.ACKED)]),
    ([on, ack, off], [("clear", S.NORMAL)]),
    ([on, off], [("clear", S.RTN_UNACKED)]),
    ([on, off, ack], [("ack", S.NORMAL)]),
    ([on, off, on], [("activate", S.UNACKED)]),
    ([on, ack, off, on], [("activate", S.UNACKED)]),
    # latching: stays on after the condition clears, until reset
    ([latched_on, latched_off], [("condition_clear", S.UNACKED)]),
    ([latched_on, ack, latched_off], [("condition_clear", S.ACKED)]),
    ([latched_on, ack, latched_off, reset], [("reset", S.NORMAL)]),
    ([latched_on, latched_off, reset], [("reset", S.NORMAL)]),  # reset acknowledges
    # shelving
    ([on, shelve], [("shelve", S.SHELVED)]),
    ([shelve], []),  # (set up below: the alarm exists first)
    ([on, shelve, off], [("clear", S.SHELVED)]),
    ([on, shelve, unshelve], [("unshelve", S.UNACKED)]),
    ([on, shelve, off, unshelve], [("unshelve", S.NORMAL)]),
    ([on, shelve, wait(3598)], []),  # each op first advances 1 s
    ([on, shelve, wait(3600)], [("shelve_expired", S.UNACKED)]),
    ([on, ack, shelve, wait(3600)], [("shelve_expired", S.ACKED)]),
    # out of service
    ([on, oos], [("out_of_service", S.OUT_OF_SERVICE)]),
    ([on, oos, off], [("clear", S.OUT_OF_SERVICE)]),
    ([on, oos, ins], [("in_service", S.UNACKED)]),
    ([on, oos, off, ins], [("in_service", S.NORMAL)]),
    ([on, shelve, oos], [("out_of_service", S.OUT_OF_SERVICE)]),
]


@pytest.mark.parametrize(
    ("ops", "expected"),
    [row for row in TABLE if row[0] != [shelve]],
    ids=lambda v: (
        "-".join(o.__name__ for o in v) if isinstance(v, list) and v and callable(v[0]) else ""
    ),
)
def test_transition_table(ops: list[Op], expected: list[tuple[str, AlarmState]]) -> None:
    clock = FakeClock()
    book = AlarmBook(AlertingConfig())
    events: list[AlarmEvent] = []
    for op in ops:
        clock.advance(1)
        events = op(book, clock)
    assert [(e.action, e.state) for e in events] == expected
    for e in events:
        assert e.alarm_id == "r:dev:p" and e.severity == "high" and e.area == "park"


@pytest.mark.parametrize(
    ("ops", "bad", "message"),
    [
        ([], ack, "unknown alarm"),
        ([on, ack], ack, "nothing to acknowledge"),
        ([on], reset, "does not latch"),
        ([latched_on], reset, "condition is present"),
        ([latched_on, latched_off, reset], reset, "not latched"),
        ([on], unshelve, "not shelved"),
        ([on, oos], shelve, "out of service"),
        ([on, oos], oos, "already out of service"),
        ([on], ins, "not out of service"),
    ],
)
def test_illegal_transitions_are_refused_and_change_nothing(
    ops: list[Op], bad: Op, message: str
) -> None:
    clock = FakeClock()
    book = AlarmBook(AlertingConfig())
    for op in ops:
        op(book, clock)
    before = book.snapshot()
    with pytest.raises(AlarmError, match=message):
        bad(book, clock)
    assert book.snapshot() == before


def test_shelve_longer_than_site_limit_is_refused() -> None:
    clock = FakeClock()
    book = AlarmBook(AlertingConfig(max_shelve_s=7200))
    on(book, clock)
    with pytest.raises(AlarmError, match="exceeds"):
        book.shelve("r:dev:p", 7201, "wang", clock.now_ns())
    assert book.get("r:dev:p").state is S.UNACKED


def test_operator_actions_are_recorded_with_actor_and_comment() -> None:
    clock = FakeClock()
    book = AlarmBook(AlertingConfig())
    on(book, clock)
    clock.advance(30)
    ev = book.ack("r:dev:p", "wang via mqtt", clock.now_ns(), "on my way")
    assert ev[0].actor == "wang via mqtt" and ev[0].extra["comment"] == "on my way"
    assert ev[0].previous is S.UNACKED and ev[0].ts_ns == clock.now_ns()
    a = book.get("r:dev:p")
    assert a.acked_by == "wang via mqtt" and a.acked_ns == clock.now_ns()


def test_realarm_of_acknowledged_alarm_left_active() -> None:
    clock = FakeClock()
    book = AlarmBook(AlertingConfig(realarm_s=600))
    on(book, clock)
    ack(book, clock)
    clock.advance(599)
    assert book.tick(clock.now_ns()) == []
    clock.advance(1)
    ev = book.tick(clock.now_ns())
    assert [(e.action, e.state, e.previous) for e in ev] == [("realarm", S.UNACKED, S.ACKED)]
    assert book.counters["realarms"] == 1


def test_suppression_by_design() -> None:
    clock = FakeClock()
    book = AlarmBook(AlertingConfig())
    cause = spec("flame:dev:flame_failure")
    effect = spec("temp:dev:p", inhibited_by=("flame:dev:*",))
    book.set_active(cause, True, True, clock.now_ns())
    ev = book.set_active(effect, True, 30.0, clock.now_ns())
    # Created while its cause is active: suppressed from the start, never presented.
    assert [(e.action, e.state) for e in ev] == [("activate", S.SUPPRESSED)]
    ev = book.set_active(effect, False, 60.0, clock.now_ns())
    ev = book.set_active(cause, False, False, clock.now_ns())
    assert ("unsuppress", S.NORMAL) in [(e.action, e.state) for e in ev]
    # Effect active before its cause: no consequence of it, so it stays in view.
    book.set_active(effect, True, 30.0, clock.now_ns())
    ev = book.set_active(cause, True, True, clock.now_ns())
    assert [(e.alarm_id, e.action) for e in ev] == [("flame:dev:flame_failure", "activate")]
    assert book.get("temp:dev:p").state is S.UNACKED


def test_chatter_counted_and_ends_after_quiet_window() -> None:
    clock = FakeClock()
    book = AlarmBook(AlertingConfig())
    actions = []
    for _ in range(4):
        actions += [e.action for e in on(book, clock)]
        clock.advance(5)
        off(book, clock)
        clock.advance(5)
    assert actions == ["activate", "activate", "activate", "chatter_start", "activate"]
    a = book.get("r:dev:p")
    assert a.chattering and a.chatter_count == 1 and a.activation_count == 4
    assert book.counters["chatter_episodes"] == 1
    # the last activation was 10 s ago; the chatter lasts until a full quiet minute
    clock.advance(10)
    assert [e.action for e in book.tick(clock.now_ns())] == []
    clock.advance(41)
    assert [e.action for e in book.tick(clock.now_ns())] == ["chatter_end"]
    assert not book.get("r:dev:p").chattering


def test_flood_starts_above_ten_in_ten_minutes_and_ends_below_five() -> None:
    clock = FakeClock()
    book = AlarmBook(AlertingConfig())
    flood_events = []
    for i in range(11):
        ev = book.set_active(spec(f"r{i}:dev:p"), True, 1, clock.now_ns())
        flood_events += [e for e in ev if e.alarm_id == FLOOD_ALARM]
        clock.advance(30)
    assert [(e.action, e.state) for e in flood_events] == [("flood_start", S.UNACKED)]
    assert book.in_flood and book.counters["floods"] == 1
    assert flood_events[0].extra["count"] == 11
    # 10 minutes after the first one, they age out; below 5 in the window ends the flood
    clock.advance(600 - 11 * 30 + 5 * 30)
    ends = [e for e in book.tick(clock.now_ns()) if e.action == "flood_end"]
    assert not ends  # 6 still in the window
    clock.advance(60)
    ends = [e for e in book.tick(clock.now_ns()) if e.action == "flood_end"]
    assert len(ends) == 1 and not book.in_flood and ends[0].state is S.RTN_UNACKED


def test_engine_chattering_signal_held_by_deadband_and_on_delay(tmp_path: Path) -> None:
    """A leak reading bouncing around the limit: the deadband and on-delay keep it to one alarm."""
    rules = """
        rules:
          - id: leak
            kind: limit
            select: {kinds: [leakage]}
            points: [leak_ch1]
            on_delay_s: 5
            deadband: 15
            limits:
              hi: {value: 300}
          - id: raw
            kind: limit
            select: {kinds: [leakage]}
            points: [leak_ch1]
            limits:
              hi: {value: 300}
    """
    clock = FakeClock()
    eng = make_engine(tmp_path, rules, clock)
    events = []
    # bounce 295 <-> 305 every second for two minutes
    for i in range(120):
        events += eng.on_sample(sample(clock, "lk-1", {"leak_ch1": 305 if i % 2 else 295}))
        clock.advance(1)
    held = [e for e in events if e.rule == "leak"]
    raw = [e for e in events if e.rule == "raw"]
    # the filtered rule never sees 5 s continuously above: no alarm at all
    assert held == []
    # the unfiltered one chatters, and the chatter counter says so
    assert sum(1 for e in raw if e.action == "activate") == 60
    assert eng.book.get("raw:lk-1:leak_ch1:hi").chatter_count >= 1
    assert eng.counters()["chatter_episodes"] >= 1
    # Now above the limit for good: on-delay 5 s then one alarm, and the deadband holds it
    # through dips to 290 (within 15 mA of the limit).
    events = []
    for i in range(30):
        events += eng.on_sample(sample(clock, "lk-1", {"leak_ch1": 320 if i % 3 else 290}))
        clock.advance(1)
    held_now = [(e.action, e.state) for e in events if e.rule == "leak"]
    assert held_now == []  # the dips to 290 restart the on-delay (below the limit)
    for _ in range(10):
        events += eng.on_sample(sample(clock, "lk-1", {"leak_ch1": 320}))
        clock.advance(1)
    for i in range(20):
        events += eng.on_sample(sample(clock, "lk-1", {"leak_ch1": 320 if i % 2 else 290}))
        clock.advance(1)
    held_now = [(e.action, e.state) for e in events if e.rule == "leak"]
    assert held_now == [("activate", S.UNACKED)]


def test_engine_alarm_transitions_reach_the_events(tmp_path: Path) -> None:
    """The engine returns every transition, with the value and who did it."""
    rules = """
        rules:
          - id: trip
            kind: status
            select: {kinds: [leakage]}
            points: [alarm_ch1]
            latch: true
            severity: high
    """
    clock = FakeClock()
    eng = make_engine(tmp_path, rules, clock)
    ev = eng.on_sample(sample(clock, "lk-1", {"alarm_ch1": True}))
    assert transitions(ev) == [("trip:lk-1:alarm_ch1", "activate", "unacknowledged")]
    ev, reply = eng.command({"cmd": "ack", "alarm_id": "trip:lk-1:alarm_ch1", "by": "li"}, "mqtt")
    assert ev[0].actor == "li via mqtt" and reply["state"] == "acknowledged"
    with pytest.raises(AlarmError, match="condition is present"):
        eng.command({"cmd": "reset", "alarm_id": "trip:lk-1:alarm_ch1"}, "cli")
    eng.on_sample(sample(clock, "lk-1", {"alarm_ch1": False}))
    ev, reply = eng.command({"cmd": "reset", "alarm_id": "trip:lk-1:alarm_ch1"}, "cli")
    assert transitions(ev) == [("trip:lk-1:alarm_ch1", "reset", "normal")]
    assert ev[0].actor == "cli"
