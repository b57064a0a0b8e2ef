"""The limit rule, property-based, against a reference model written from the specification.

Specification (one hi limit L with deadband D; lo mirrors it):
- a reading is *past* the limit when x >= L, and *back* only when x < L - D
  (the deadband applies on the way back);
- the alarm activates once the readings have been past the limit for the
  on-delay: from the first of an unbroken run of past readings since the
  alarm last changed, until a reading or a tick at least on-delay later;
- it clears the same way with back readings and the off-delay.
A reading inside the deadband while active is not back: it interrupts a
clearing run. Time moves by a fake clock; ticks fire delays that ran out
between readings.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from gateway.model import FakeClock
from tests.unit.properties import PROPERTY
from tests.unit.test_rules import make_engine, sample

STEP = st.sampled_from([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0])  # exact in binary: no ns rounding
DELAY = st.sampled_from([0.0, 0.5, 1.0, 2.0, 3.0, 5.0])


@dataclass(frozen=True)
class Case:
    upper: bool  # hi (True) or lo
    limit: int
    deadband: int
    on_s: float
    off_s: float
    # ("sample", seconds since the previous event, value) or ("tick", seconds, None)
    events: tuple[tuple[str, float, int | None], ...]


@st.composite
def cases(draw: st.DrawFn) -> Case:
    limit = draw(st.integers(-50, 50))
    deadband = draw(st.integers(0, 3))
    # Values around the limit and the deadband edge, so every boundary is hit.
    value = st.integers(limit - deadband - 3, limit + deadband + 3)
    event = st.one_of(
        st.tuples(st.just("sample"), STEP, value),
        st.tuples(st.just("tick"), STEP, st.none()),
    )
    return Case(
        upper=draw(st.booleans()),
        limit=limit,
        deadband=deadband,
        on_s=draw(DELAY),
        off_s=draw(DELAY),
        events=tuple(draw(st.lists(event, min_size=1, max_size=40))),
    )


def reference(case: Case) -> list[bool]:
    """The alarm's state after each event, computed from the specification above."""

    def past(x: int) -> bool:
        return x >= case.limit if case.upper else x <= case.limit

    def back(x: int) -> bool:
        edge = case.limit - case.deadband if case.upper else case.limit + case.deadband
        return x < edge if case.upper else x > edge

    active = False
    now = 0.0
    run: list[float] = []  # times of the unbroken run of contrary readings since the last change
    states = []
    for kind, dt, x in case.events:
        now += dt
        if kind == "sample":
            assert x is not None
            contrary = back(x) if active else past(x)
            run = [*run, now] if contrary else []
        delay = case.off_s if active else case.on_s
        if run and now - run[0] >= delay:
            active = not active
            run = []
        states.append(active)
    return states


RULE = """
rules:
  - id: prop
    kind: limit
    select: {{devices: [lk-1]}}
    points: [leak_ch1]
    on_delay_s: {on}
    off_delay_s: {off}
    deadband: {db}
    limits:
      {name}: {{value: {limit}}}
"""


@PROPERTY
@given(cases())
def test_limit_alarm_follows_the_reference_model(case: Case) -> None:
    name = "hi" if case.upper else "lo"
    rule = RULE.format(on=case.on_s, off=case.off_s, db=case.deadband, name=name, limit=case.limit)
    alarm = f"prop:lk-1:leak_ch1:{name}"
    clock = FakeClock()
    with tempfile.TemporaryDirectory() as tmp:
        eng = make_engine(Path(tmp), rule, clock)
        active = False
        got = []
        for kind, dt, x in case.events:
            clock.advance(dt)
            events = (
                eng.on_sample(sample(clock, "lk-1", {"leak_ch1": x}))
                if kind == "sample"
                else eng.tick()
            )
            for e in events:
                if e.alarm_id == alarm and e.action in ("activate", "clear"):
                    active = e.action == "activate"
            got.append(active)
    assert got == reference(case)
