"""Every alarm transition says when the alarm was raised, so a console that starts
late (it sees only the retained last transition) can still show "raised 12 min ago"."""

from __future__ import annotations

from gateway.alerting.alarms import AlarmBook
from gateway.alerting.config import AlertingConfig
from gateway.model import FakeClock
from tests.unit.test_alarms import spec


def test_transitions_after_the_activation_carry_its_time() -> None:
    clock = FakeClock()
    book = AlarmBook(AlertingConfig())
    raised = book.set_active(spec(), True, 12.0, clock.now_ns())
    assert raised[-1].extra["raised_ns"] == clock.now_ns()
    first = clock.now_ns()
    clock.advance(90)
    acked = book.ack("r:dev:p", "wang", clock.now_ns())
    assert acked[-1].extra["raised_ns"] == first
    assert acked[-1].ts_ns == first + 90 * 10**9
