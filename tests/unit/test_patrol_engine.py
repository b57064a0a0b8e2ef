"""The patrol engine with an injected clock: every finding, midnight, the night window's edges."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from gateway.lineprotocol import event_line
from gateway.model import FakeClock, Sample
from gateway.outbox import Event
from gateway.patrol import (
    Finding,
    FindingType,
    MemoryPatrolStore,
    PatrolConfig,
    PatrolEngine,
    PatrolOutput,
    alarms_of,
    to_events,
)

NS = 1_000_000_000
WANG = "04A1B2C3D4"
LI = "04E5F60718"
ROUTE = ["gate-north", "lakeside", "playground", "boiler-house", "east-gate"]


def cfg(**over: Any) -> PatrolConfig:
    data: dict[str, Any] = {
        "timezone": "UTC",
        "night": {"start": "22:00", "end": "06:00"},
        "max_gap_s": 3 * 3600,
        "duplicate_window_s": 60,
        "checkpoints": [{"id": c, "device": "rfid-gate"} for c in ROUTE]
        + [{"id": "shed", "reader": "rd-shed", "device": "rfid-shed"}],
        "guards": [{"id": "wang", "card": WANG}, {"id": "li", "card": LI}],
        "routes": [
            {"id": "night", "checkpoints": ROUTE, "max_duration_s": 3600, "default_min_walk_s": 60}
        ],
        "walks": [{"between": ["gate-north", "lakeside"], "min_s": 150}],
    }
    data.update(over)
    return PatrolConfig.model_validate(data)


def at(h: int, m: int = 0, s: int = 0, day: int = 1) -> int:
    return int(datetime(2026, 1, day, h, m, s, tzinfo=UTC).timestamp()) * NS


class Rig:
    def __init__(self, config: PatrolConfig | None = None, start: int = at(12)) -> None:
        self.config = config or cfg()
        self.clock = FakeClock(start)
        self.store = MemoryPatrolStore()
        self.engine = PatrolEngine(self.config, self.clock, self.store)
        self.seq = 0

    def goto(self, ts: int) -> None:
        assert ts >= self.clock.now_ns()
        self.clock.advance((ts - self.clock.now_ns()) / NS)

    def tap(self, reader: str, card: str = WANG, device: str = "rfid-gate") -> list[PatrolOutput]:
        self.seq += 1
        s = Sample(device, "patrol_tap", self.clock.now_ns(), {"reader": reader, "card": card,
                                                               "seq": self.seq})
        return self.engine.on_tap_sample(s)

    def tick_at(self, ts: int) -> list[PatrolOutput]:
        self.goto(ts)
        return self.engine.tick()

    def round(self, start: int, walk_s: float = 300, route: list[str] = ROUTE,
              card: str = WANG) -> list[PatrolOutput]:
        out: list[PatrolOutput] = []
        for i, cp in enumerate(route):
            self.goto(start + int(i * walk_s * NS))
            out += self.tap(cp, card)
        return out


def findings(out: list[PatrolOutput], kind: FindingType | None = None) -> list[Finding]:
    return [o for o in out if isinstance(o, Finding) and (kind is None or o.type is kind)]


def records(out: list[PatrolOutput], record: str, status: str | None = None) -> list[Event]:
    return [
        o for o in out
        if isinstance(o, Event) and o.tags["record"] == record
        and (status is None or o.tags.get("status") == status)
    ]


# --------------------------------------------------------------------------- rounds


def test_complete_ordered_round_gives_one_round_record_and_no_findings() -> None:
    rig = Rig()
    out = rig.round(at(22, 30))
    assert findings(out) == []
    assert len(records(out, "tap", "ok")) == 5
    (rnd,) = records(out, "round", "complete")
    assert rnd.data["start_ns"] == at(22, 30)
    assert rnd.data["end_ns"] == at(22, 50)
    assert rnd.data["duration_s"] == 1200.0
    assert rnd.data["missed"] == ""
    assert rnd.tags["guard"] == "wang"
    assert rnd.measurement == "patrol"
    st = rig.engine.state()
    assert st["open_rounds"] == []
    assert st["last_complete_round"]["end_ns"] == at(22, 50)
    assert [c["taps"] for c in st["checkpoints"][:5]] == [1] * 5


def test_round_spanning_midnight_completes_with_its_own_start_and_end() -> None:
    rig = Rig()
    out = rig.round(at(23, 50), walk_s=300)
    (rnd,) = records(out, "round", "complete")
    assert rnd.data["start_ns"] == at(23, 50)
    assert rnd.data["end_ns"] == at(0, 10, day=2)
    assert rnd.data["round"] == "20260101-235000-wang"
    # Completed after midnight, so the next gap runs from 00:10 on the same night.
    assert rig.engine.next_due_ns() == at(3, 10, day=2)
    assert findings(out) == []


def test_two_guards_walk_separate_rounds_at_the_same_time() -> None:
    rig = Rig()
    out: list[PatrolOutput] = []
    for i, cp in enumerate(ROUTE):
        rig.goto(at(22) + i * 300 * NS)
        out += rig.tap(cp, WANG)
        out += rig.tap(cp, LI)
    done = records(out, "round", "complete")
    assert sorted(r.tags["guard"] for r in done) == ["li", "wang"]
    assert findings(out) == []


def test_unordered_route_accepts_any_order() -> None:
    c = cfg(routes=[{"id": "any", "checkpoints": ROUTE, "ordered": False}], walks=[])
    rig = Rig(c)
    out = rig.round(at(22, 30), route=list(reversed(ROUTE)))
    assert findings(out) == []
    assert len(records(out, "round", "complete")) == 1


# --------------------------------------------------------------------------- missed, order, speed


def test_round_timing_out_reports_each_missed_checkpoint_once() -> None:
    rig = Rig()
    rig.round(at(22, 30), route=ROUTE[:3])
    assert rig.tick_at(at(23, 29, 59)) == []
    out = rig.tick_at(at(23, 31))
    (rnd,) = records(out, "round", "abandoned")
    assert rnd.ts_ns == at(23, 30)  # the round's deadline, not the tick that noticed it
    assert rnd.data["missed"] == "boiler-house,east-gate"
    missed = findings(out, FindingType.CHECKPOINT_MISSED)
    assert [f.checkpoint for f in missed] == ["boiler-house", "east-gate"]
    assert all(not f.alarm and f.round_id == "20260101-223000-wang" for f in missed)
    assert rig.tick_at(at(23, 40)) == []
    assert rig.engine.state()["last_complete_round"] is None


def test_tapping_a_visited_checkpoint_closes_the_round_and_starts_the_next() -> None:
    rig = Rig()
    rig.round(at(22, 30), route=ROUTE[:2])
    rig.goto(at(22, 45))
    out = rig.tap("gate-north")
    (rnd,) = records(out, "round", "abandoned")
    assert rnd.data["missed"] == "playground,boiler-house,east-gate"
    assert len(findings(out, FindingType.CHECKPOINT_MISSED)) == 3
    (tap,) = records(out, "tap", "ok")
    assert tap.data["round"] == "20260101-224500-wang"
    assert tap.data["step"] == 1


def test_swapped_checkpoints_are_out_of_order_and_the_round_still_completes() -> None:
    rig = Rig()
    order = ["gate-north", "playground", "lakeside", "boiler-house", "east-gate"]
    out = rig.round(at(22, 30), route=order)
    f, g = findings(out)
    assert f.type is g.type is FindingType.OUT_OF_ORDER
    assert (f.checkpoint, f.data["expected"]) == ("playground", "lakeside")
    assert (g.checkpoint, g.data["expected"]) == ("lakeside", "boiler-house")
    assert not f.alarm and not g.alarm
    (rnd,) = records(out, "round", "complete")
    assert rnd.data["out_of_order"] == 2


def test_skipped_checkpoint_is_one_out_of_order_and_one_missed() -> None:
    rig = Rig()
    rig.round(at(22, 30), route=["gate-north", "lakeside", "boiler-house", "east-gate"])
    out = rig.tick_at(at(23, 31))
    (missed,) = findings(out, FindingType.CHECKPOINT_MISSED)
    assert missed.checkpoint == "playground"
    (rnd,) = records(out, "round", "abandoned")
    assert rnd.data["out_of_order"] == 1


def test_round_not_starting_at_the_first_checkpoint_is_out_of_order() -> None:
    rig = Rig()
    rig.goto(at(22, 30))
    out = rig.tap("lakeside")
    (f,) = findings(out)
    assert f.type is FindingType.OUT_OF_ORDER and f.data["expected"] == "gate-north"


def test_faked_round_flags_every_fast_leg_and_raises_one_alarm() -> None:
    rig = Rig()
    out = rig.round(at(22, 30), walk_s=10)
    fast = findings(out, FindingType.TOO_FAST)
    assert len(fast) == 4
    assert fast[0].data == {"from": "gate-north", "elapsed_s": 10.0, "min_s": 150.0}
    assert fast[1].data["min_s"] == 60.0  # the route's default for pairs without a walk entry
    (alarm,) = alarms_of(out)
    assert alarm.type is FindingType.FAKED_ROUND
    assert alarm.alarm_key == "patrol/faked/20260101-223000-wang"
    assert alarm.alarm_action == "pulse"
    assert alarm.severity == "high"
    (rnd,) = records(out, "round", "complete")
    assert rnd.data["suspect"] is True and rnd.data["too_fast"] == 4


@pytest.mark.parametrize("counts", [False, True])
def test_faked_round_does_not_reset_the_overdue_clock_unless_configured(counts: bool) -> None:
    rig = Rig(cfg(faked_rounds_count=counts))
    rig.round(at(23), walk_s=10)
    assert (rig.engine.state()["last_complete_round"] is not None) is counts
    got = rig.tick_at(at(1, day=2))
    assert len(overdue(got)) == (0 if counts else 1)


def test_walk_exactly_at_the_minimum_is_not_too_fast() -> None:
    rig = Rig()
    rig.goto(at(22, 30))
    rig.tap("gate-north")
    rig.goto(at(22, 32, 30))  # 150 s
    assert findings(rig.tap("lakeside")) == []


def test_faked_min_legs_tolerates_one_fast_leg() -> None:
    rig = Rig(cfg(faked_min_legs=2))
    rig.goto(at(22, 30))
    rig.tap("gate-north")
    rig.goto(at(22, 31))
    out = rig.tap("lakeside")
    assert [f.type for f in findings(out)] == [FindingType.TOO_FAST]
    assert alarms_of(out) == []
    rig.goto(at(22, 31, 30))
    out = rig.tap("playground")
    assert [f.type for f in alarms_of(out)] == [FindingType.FAKED_ROUND]


# --------------------------------------------------------------------------- taps that do not count


def test_duplicate_tap_inside_the_window_is_ignored_and_counted() -> None:
    rig = Rig()
    rig.goto(at(22, 30))
    rig.tap("gate-north")
    rig.goto(at(22, 30, 59))
    out = rig.tap("gate-north")
    assert [f.type for f in findings(out)] == [FindingType.DUPLICATE_TAP]
    assert len(records(out, "tap", "duplicate")) == 1
    assert records(out, "round") == []
    st = rig.engine.state()
    assert st["counters"]["duplicates"] == 1
    assert st["counters"]["duplicates.gate-north"] == 1
    assert st["open_rounds"][0]["visited"] == ["gate-north"]
    # Past the window it is a real tap again (here: starting over).
    rig.goto(at(22, 31, 1))
    out = rig.tap("gate-north")
    assert len(records(out, "round", "abandoned")) == 1


def test_duplicate_window_edge_a_tap_60_s_later_counts() -> None:
    rig = Rig(cfg(routes=[{"id": "any", "checkpoints": ROUTE, "ordered": False}], walks=[]))
    rig.goto(at(22, 30))
    rig.tap("gate-north")
    rig.goto(at(22, 31))  # exactly the window: a new tap (starts the round over)
    out = rig.tap("gate-north")
    assert findings(out, FindingType.DUPLICATE_TAP) == []
    assert len(records(out, "round", "abandoned")) == 1


def test_duplicate_window_is_per_card_and_reader() -> None:
    rig = Rig()
    rig.goto(at(22, 30))
    rig.tap("gate-north", WANG)
    out = rig.tap("gate-north", LI)
    assert findings(out, FindingType.DUPLICATE_TAP) == []


def test_unknown_card_raises_an_alarm_and_starts_no_round() -> None:
    rig = Rig()
    rig.goto(at(22, 30))
    out = rig.tap("lakeside", "DEADBEEF00")
    (f,) = findings(out)
    assert f.type is FindingType.UNKNOWN_CARD
    assert f.alarm and f.alarm_key == "patrol/unknown_card/lakeside"
    assert "DEADBEEF00" in f.message and f.data["count"] == 1
    assert f.alarm_action == "pulse"
    assert f.guard == "unknown" and f.checkpoint == "lakeside"
    assert len(records(out, "tap", "unknown_card")) == 1
    assert rig.engine.state()["open_rounds"] == []


def test_unknown_cards_are_one_alarm_per_reader_with_a_count() -> None:
    rig = Rig(cfg(unknown_card_report_s=60))
    rig.goto(at(22, 30))
    out: list[PatrolOutput] = []
    cards = [f"F1{i:08X}" for i in range(500)]
    for i, card in enumerate(cards):
        out += rig.tap("lakeside" if i % 2 else "gate-north", card)
        rig.clock.advance(0.01)
    # The first card at each reader raises its alarm at once; the rest are counted.
    first = findings(out, FindingType.UNKNOWN_CARD)
    assert [(f.alarm_key, f.data["count"]) for f in first] == [
        ("patrol/unknown_card/gate-north", 1),
        ("patrol/unknown_card/lakeside", 1),
    ]
    assert len(records(out, "tap", "unknown_card")) == 500  # every tap is still recorded
    # Within the interval nothing more; at its end, one report per reader with its total.
    assert findings(rig.tick_at(at(22, 30, 30)), FindingType.UNKNOWN_CARD) == []
    reports = findings(rig.tick_at(at(22, 31, 1)), FindingType.UNKNOWN_CARD)
    by_key = {f.alarm_key: f for f in reports}
    assert sorted(by_key) == ["patrol/unknown_card/gate-north", "patrol/unknown_card/lakeside"]
    north = by_key["patrol/unknown_card/gate-north"]
    assert (north.data["count"], north.data["new"]) == (250, 249)
    assert north.alarm_action == "pulse" and north.severity == "high"
    assert "250 unknown card taps at gate-north" in north.message
    assert north.data["cards"].split(",") == cards[490:499:2]  # the last five, oldest first
    assert cards[498] in north.message
    assert cards[499] in by_key["patrol/unknown_card/lakeside"].message
    # State stays bounded: one burst per reader, a few card ids each.
    st = rig.store.load()
    assert st is not None and sorted(st["unknown"]) == ["gate-north", "lakeside"]
    assert all(len(u["cards"]) == 5 for u in st["unknown"].values())
    # Quiet for an interval: the burst ends, and the next card is reported at once as count 1.
    assert findings(rig.tick_at(at(22, 32, 2)), FindingType.UNKNOWN_CARD) == []
    assert rig.engine.state()["counters"]["unknown_cards"] == 500
    (again,) = findings(rig.tap("lakeside", "0BADC0DE99"), FindingType.UNKNOWN_CARD)
    assert again.data["count"] == 1 and again.alarm_key == "patrol/unknown_card/lakeside"


def test_unknown_card_burst_survives_a_restart() -> None:
    rig = Rig(cfg(unknown_card_report_s=60))
    rig.goto(at(22, 30))
    rig.tap("lakeside", "F100000001")
    rig.tap("lakeside", "F100000002")
    # Restarted with a config that no longer has that checkpoint: still reported, no crash.
    routes = [{"id": "night", "checkpoints": [c for c in ROUTE if c != "lakeside"]}]
    smaller = cfg(checkpoints=[{"id": c, "device": "rfid-gate"} for c in ROUTE if c != "lakeside"],
                  routes=routes, walks=[])
    engine = PatrolEngine(smaller, rig.clock, rig.store)
    rig.goto(at(22, 31, 1))
    (f,) = findings(engine.tick(), FindingType.UNKNOWN_CARD)
    assert f.data["count"] == 2 and f.data["cards"] == "F100000001,F100000002"
    assert f.checkpoint == "lakeside" and f.alarm_key == "patrol/unknown_card/lakeside"


def test_reader_flood_is_one_alarm_per_line_reported_at_most_once_per_interval() -> None:
    rig = Rig()
    (f,) = rig.engine.reader_overflow("rfid-gate", 4000)
    assert isinstance(f, Finding) and f.type is FindingType.READER_FLOOD
    assert f.alarm and f.alarm_key == "patrol/reader_flood/rfid-gate" and f.alarm_action == "pulse"
    assert f.data["count"] == 4000 and "4000 line(s) dropped" in f.message
    assert rig.engine.reader_overflow("rfid-gate", 4500) == []
    rig.clock.advance(300)
    (g,) = rig.engine.reader_overflow("rfid-gate", 4500)
    assert isinstance(g, Finding) and g.data["count"] == 500
    assert rig.engine.reader_overflow("rfid-gate", 0) == []  # the source restarted


def test_unknown_reader_is_recorded_not_alarmed() -> None:
    rig = Rig()
    out = rig.tap("rooftop")
    (f,) = findings(out)
    assert f.type is FindingType.UNKNOWN_READER and not f.alarm
    assert f.data["reader"] == "rooftop"
    assert len(records(out, "tap", "unknown_reader")) == 1


def test_checkpoint_on_no_route_is_off_route() -> None:
    rig = Rig()
    out = rig.tap("rd-shed", device="rfid-shed")
    (f,) = findings(out)
    assert f.type is FindingType.OFF_ROUTE and f.checkpoint == "shed"
    assert rig.engine.state()["open_rounds"] == []


def test_other_samples_and_malformed_taps_are_ignored() -> None:
    rig = Rig()
    assert rig.engine.on_tap_sample(Sample("boiler-1", "boiler", at(12), {"t": 1.0})) == []
    bad = Sample("rfid-gate", "patrol_tap", at(12), {"reader": "gate-north"})
    assert rig.engine.on_tap_sample(bad) == []
    assert rig.engine.state()["counters"]["malformed"] == 1


# --------------------------------------------------------------------------- readers


def test_reader_offline_is_reported_once_and_back_online_on_the_next_tap() -> None:
    rig = Rig()
    gone = Sample("rfid-gate", "patrol_tap", at(12), {}, error="port vanished")
    (f,) = rig.engine.on_tap_sample(gone)
    assert isinstance(f, Finding) and f.type is FindingType.READER_OFFLINE
    assert f.data["checkpoints"] == ",".join(ROUTE)  # all five readers hang on that line
    assert not f.alarm
    assert rig.engine.on_tap_sample(gone) == []
    assert rig.engine.reader_status("rfid-gate", False, "silent") == []
    st = rig.engine.state()
    assert not st["checkpoints"][0]["reader_ok"]
    rig.goto(at(22))
    out = rig.tap("gate-north")
    assert [f.type for f in findings(out)] == [FindingType.READER_ONLINE]
    assert rig.engine.state()["checkpoints"][0]["reader_ok"]


def test_reader_status_from_the_app() -> None:
    rig = Rig()
    (off,) = rig.engine.reader_status("rfid-shed", False, "no line for 600 s")
    assert isinstance(off, Finding) and off.checkpoint == "shed"
    (on,) = rig.engine.reader_status("rfid-shed", True)
    assert isinstance(on, Finding) and on.type is FindingType.READER_ONLINE


def test_garbage_lines_are_reported_at_most_once_per_interval() -> None:
    rig = Rig()
    (f,) = rig.engine.reader_frame_errors("rfid-gate", 3)
    assert isinstance(f, Finding) and f.type is FindingType.READER_GARBAGE
    assert f.data["count"] == 3
    assert rig.engine.reader_frame_errors("rfid-gate", 5) == []
    assert rig.engine.reader_frame_errors("rfid-gate", 5) == []
    rig.clock.advance(300)
    (g,) = rig.engine.reader_frame_errors("rfid-gate", 6)
    assert isinstance(g, Finding) and g.data["count"] == 3
    rig.clock.advance(300)
    assert rig.engine.reader_frame_errors("rfid-gate", 6) == []


# ------------------------------------------------------------------ overdue and the night window


def overdue(out: list[PatrolOutput]) -> list[Finding]:
    return findings(out, FindingType.OVERDUE)


def test_no_round_all_night_raises_once_per_missed_gap_and_clears_at_window_end() -> None:
    rig = Rig()
    got: list[PatrolOutput] = []
    ts = at(21)
    while ts <= at(7, day=2):  # tick every 10 s through the night
        got += rig.tick_at(ts)
        ts += 10 * NS
    raised = overdue(got)
    # The clock starts at 22:00: due 01:00 and 04:00; 07:00 is past the window end.
    assert [f.ts_ns for f in raised] == [at(1, day=2), at(4, day=2)]
    assert [f.alarm_key for f in raised] == [
        "patrol/overdue/2026-01-02T01:00",
        "patrol/overdue/2026-01-02T04:00",
    ]
    assert all(f.alarm and f.alarm_action == "raise" and f.severity == "high" for f in raised)
    cleared = findings(got, FindingType.OVERDUE_CLEARED)
    assert [(f.alarm_key, f.ts_ns, f.alarm_action) for f in cleared] == [
        ("patrol/overdue/2026-01-02T01:00", at(6, day=2), "clear"),
        ("patrol/overdue/2026-01-02T04:00", at(6, day=2), "clear"),
    ]
    assert len(got) == 4


def test_overdue_boundary_is_exact() -> None:
    rig = Rig()
    assert rig.tick_at(at(22)) == []
    assert rig.tick_at(at(0, 59, 59, day=2)) == []
    (f,) = rig.tick_at(at(1, day=2))
    assert isinstance(f, Finding) and f.type is FindingType.OVERDUE
    rig.tick_at(at(5, 59, 59, day=2))
    assert rig.engine.state()["overdue_alarms"] == ["patrol/overdue/2026-01-02T01:00",
                                                    "patrol/overdue/2026-01-02T04:00"]
    assert len(findings(rig.tick_at(at(6, day=2)), FindingType.OVERDUE_CLEARED)) == 2
    assert rig.engine.state()["overdue_alarms"] == []


def test_round_before_the_window_does_not_move_the_overdue_clock() -> None:
    rig = Rig()
    rig.round(at(21, 0))  # completes 21:20, outside the window
    assert overdue(rig.tick_at(at(0, 30, day=2))) == []
    assert len(overdue(rig.tick_at(at(1, day=2)))) == 1


def test_complete_round_moves_the_clock_and_clears_the_overdue_alarm() -> None:
    rig = Rig()
    rig.round(at(22, 40))  # ends 23:00
    assert rig.engine.next_due_ns() == at(2, day=2)
    (f,) = rig.tick_at(at(2, day=2))
    assert isinstance(f, Finding) and f.alarm_key == "patrol/overdue/2026-01-02T02:00"
    out = rig.round(at(2, 30, day=2))  # ends 02:50
    (clr,) = findings(out, FindingType.OVERDUE_CLEARED)
    assert clr.alarm_key == f.alarm_key and clr.alarm_action == "clear"
    assert clr.ts_ns == at(2, 50, day=2)
    assert rig.engine.state()["overdue_alarms"] == []
    # 02:50 + 3 h = 05:50, still inside the window.
    got: list[PatrolOutput] = []
    for m in range(0, 200, 1):
        got += rig.tick_at(at(3, day=2) + m * 60 * NS)
    assert [f.ts_ns for f in overdue(got)] == [at(5, 50, day=2)]


def test_no_overdue_when_the_gap_ends_at_or_after_the_window_end() -> None:
    rig = Rig(cfg(max_gap_s=4 * 3600))  # dues 02:00 and 06:00; 06:00 is the end
    got: list[PatrolOutput] = []
    for h in range(22, 32):
        got += rig.tick_at(at(h % 24, day=1 if h < 24 else 2))
    assert [f.ts_ns for f in overdue(got)] == [at(2, day=2)]


def test_no_overdue_during_the_day() -> None:
    rig = Rig(start=at(6, day=1))
    got: list[PatrolOutput] = []
    for m in range(0, 16 * 60, 5):
        got += rig.tick_at(at(6) + m * 60 * NS)
    assert got == []


def test_round_late_in_the_night_leaves_no_gap_before_morning() -> None:
    rig = Rig()
    rig.tick_at(at(22))
    rig.round(at(0, 30, day=2))
    rig.round(at(3, 30, day=2))  # ends 03:50; +3 h = 06:50 is past the end
    got: list[PatrolOutput] = []
    for m in range(0, 6 * 60, 10):
        got += rig.tick_at(at(4, day=2) + m * 60 * NS)
    assert overdue(got) == []


def test_tap_after_a_due_time_reports_the_gap_first() -> None:
    rig = Rig()
    rig.tick_at(at(22))
    rig.goto(at(1, 5, day=2))
    out = rig.tap("gate-north")
    assert isinstance(out[0], Finding) and out[0].type is FindingType.OVERDUE
    assert out[0].ts_ns == at(1, day=2)
    assert isinstance(out[1], Event) and out[1].tags["record"] == "tap"


def test_window_not_spanning_midnight() -> None:
    rig = Rig(cfg(night={"start": "01:00", "end": "05:00"}, max_gap_s=3600), start=at(0))
    got: list[PatrolOutput] = []
    for m in range(0, 6 * 60, 1):
        got += rig.tick_at(at(0) + m * 60 * NS)
    assert [f.ts_ns for f in overdue(got)] == [at(2), at(3), at(4)]


def test_timezone_window_is_local_time() -> None:
    # 22:00 in Shanghai is 14:00 UTC; the first gap falls due at 01:00 local = 17:00 UTC.
    rig = Rig(cfg(timezone="Asia/Shanghai"), start=at(13))
    got: list[PatrolOutput] = []
    for m in range(0, 5 * 60, 1):
        got += rig.tick_at(at(13) + m * 60 * NS)
    (f,) = overdue(got)
    assert f.ts_ns == at(17)
    assert f.alarm_key == "patrol/overdue/2026-01-02T01:00"


def test_engine_started_mid_night_does_not_blame_the_time_before_it_ran() -> None:
    rig = Rig(start=at(2, day=2))
    got: list[PatrolOutput] = []
    for m in range(0, 5 * 60, 5):
        got += rig.tick_at(at(2, day=2) + m * 60 * NS)
    # Started 02:00: the gap would end 05:00, which is inside the window.
    assert [f.ts_ns for f in overdue(got)] == [at(5, day=2)]


# --------------------------------------------------------------------------- records


def test_records_at_the_same_instant_have_distinct_series_keys() -> None:
    rig = Rig()
    out = rig.round(at(22, 30), walk_s=10)  # taps, too-fast, faked, round: several per instant
    out += rig.tick_at(at(2, day=2))
    by_ts: dict[int, set[str]] = {}
    for ev in to_events(out):
        line = event_line(ev, "demo")
        assert line is not None
        key = line.rsplit(" ", 2)[0]  # measurement + tags
        assert key not in by_ts.setdefault(ev.ts_ns, set()), line
        by_ts[ev.ts_ns].add(key)
        assert ev.measurement == "patrol"
    assert any(len(keys) >= 3 for keys in by_ts.values())


def test_field_types_are_stable_across_records() -> None:
    rig = Rig()
    out = rig.round(at(22, 30), walk_s=10)
    out += rig.round(at(23, 30), walk_s=300)
    out += rig.tick_at(at(3, day=2))
    types: dict[str, type] = {}
    for ev in to_events(out):
        for k, v in ev.data.items():
            assert types.setdefault(k, type(v)) is type(v), k


@pytest.mark.parametrize("walk_s", [10, 300])
def test_alarms_of_returns_only_alarm_findings(walk_s: float) -> None:
    rig = Rig()
    out = rig.round(at(22, 30), walk_s=walk_s)
    assert all(f.alarm for f in alarms_of(out))
    assert len(alarms_of(out)) == (1 if walk_s == 10 else 0)
