"""The alarm journal: a transition saved with the alarm stays until the outbox confirms it."""

from __future__ import annotations

from pathlib import Path

from gateway.model import FakeClock
from tests.unit.test_rules import LIMIT, make_engine, sample, transitions


def test_transitions_stay_journaled_until_confirmed_and_survive_a_reopen(tmp_path: Path) -> None:
    clock = FakeClock()
    eng = make_engine(tmp_path, LIMIT, clock, state=None)
    eng.on_sample(sample(clock, "lk-1", {"leak_ch1": 450}))
    clock.advance(5)
    raised = eng.on_sample(sample(clock, "lk-1", {"leak_ch1": 450}))
    assert raised
    journaled, head = eng.unpublished()
    assert transitions(journaled) == transitions(raised)
    eng.close()  # a crash before the outbox committed: nothing confirmed

    again = make_engine(tmp_path, LIMIT, clock, state=None)
    journaled, head = again.unpublished()
    assert transitions(journaled) == transitions(raised)
    again.confirm_published(head)
    assert again.unpublished()[0] == []
    again.close()
