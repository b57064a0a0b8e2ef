"""Suppression by design may hide only consequences: per-limit ``suppressed_by``, the
alarm book never hiding an alarm that was there before its suppressor, the shipped rule
files reviewed, and ``gateway check`` warning when a milder alarm can hide a graver one."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from gateway.alerting.alarms import AlarmBook
from gateway.alerting.config import AlertingConfig
from gateway.alerting.rules import load_rules
from gateway.alerting.suppression import suppression_warnings, suppressions
from gateway.cli import main
from gateway.errors import ConfigError
from gateway.model import AlarmEvent, AlarmState, FakeClock
from tests.unit.test_alarms import spec
from tests.unit.test_config_errors import GOOD_SITE, write
from tests.unit.test_rules import make_engine, rules_from, sample, transitions

S = AlarmState
ROOT = Path(__file__).resolve().parents[2]
SHIPPED = [
    p for p in sorted((ROOT / "rules").glob("*.yaml")) if "rules" in yaml.safe_load(p.read_text())
]
HIHI = "boiler-supply-temp:blr-1:supply_temp:hihi"
HI = "boiler-supply-temp:blr-1:supply_temp:hi"
LO = "boiler-supply-temp:blr-1:supply_temp:lo"
FLAME = "boiler-flame-failure:blr-1:flame_failure"


# --------------------------------------------------------------------------- shipped rules


def test_flame_failure_does_not_hide_over_temperature(tmp_path: Path) -> None:
    """97 °C, unacknowledged, then the burner locks out: the over-temperature stays in view."""
    clock = FakeClock()
    eng = make_engine(tmp_path, load_rules([ROOT / "rules" / "boilers.yaml"]), clock)

    def poll(temp: float, flame_failure: bool, after_s: float = 1) -> list[tuple[str, str, str]]:
        clock.advance(after_s)
        vals = {"supply_temp": temp, "flame_failure": flame_failure}
        return transitions(eng.on_sample(sample(clock, "blr-1", vals)))

    poll(97.0, False)
    assert ("boiler-supply-temp:blr-1:supply_temp:hihi", "activate", "unacknowledged") in poll(
        97.0, False, after_s=10
    )
    got = poll(97.0, True)
    assert (FLAME, "activate", "unacknowledged") in got
    assert not [t for t in got if t[0] in (HIHI, HI)], got
    assert eng.book.get(HIHI).state is S.UNACKED
    assert eng.book.get(HI).state is S.UNACKED
    # The water cools with the flame out: the over-temperature returns to normal in view,
    # still waiting for someone to acknowledge it.
    got = poll(80.0, True)
    assert (HIHI, "clear", "rtn_unacknowledged") in got
    assert eng.book.get(HIHI).state is S.RTN_UNACKED
    # The low temperature that follows is the flame failure's consequence: suppressed.
    poll(30.0, True)
    got = poll(30.0, True, after_s=300)
    assert (LO, "activate", "suppressed") in got
    eng.close()


def test_over_temperature_after_a_flame_failure_is_presented(tmp_path: Path) -> None:
    clock = FakeClock()
    eng = make_engine(tmp_path, load_rules([ROOT / "rules" / "boilers.yaml"]), clock)
    eng.on_sample(sample(clock, "blr-1", {"flame_failure": True, "supply_temp": 97.0}))
    clock.advance(10)
    got = transitions(eng.on_sample(sample(clock, "blr-1", {"supply_temp": 97.0})))
    assert (HIHI, "activate", "unacknowledged") in got
    assert (HI, "activate", "unacknowledged") in got
    eng.close()


# Every suppression the shipped rule files allow, reviewed by hand: (rule, limit) -> patterns.
# Each one hides only a consequence of its suppressor. A new entry needs the same review.
REVIEWED = {
    ("boiler-supply-temp", "lo"): ("boiler-flame-failure",),
}


def test_shipped_rules_suppress_only_reviewed_consequences() -> None:
    assert SHIPPED and all(p.name != "patrol.yaml" for p in SHIPPED)
    ruleset = load_rules(SHIPPED)
    got = {(s.rule.rule.id, s.limit): s.patterns for s in suppressions(ruleset)}
    assert got == REVIEWED


def test_shipped_rules_never_let_a_milder_alarm_hide_a_graver_one() -> None:
    ruleset = load_rules(SHIPPED)
    for s in suppressions(ruleset):
        for cause in s.causes:
            assert cause.severity.rank >= s.severity.rank, (s, cause)
    assert suppression_warnings(ruleset) == []


# --------------------------------------------------------------------------- rule files

PER_LIMIT = """
    rules:
      - id: temp
        kind: limit
        select: {kinds: [boiler]}
        points: [supply_temp]
        limits:
          hihi: {value: 95, severity: critical}
          lo: {value: 45, severity: medium, suppressed_by: [flame]}
      - id: flame
        kind: status
        select: {kinds: [boiler]}
        points: [flame_failure]
        severity: critical
"""


def test_suppression_is_per_limit(tmp_path: Path) -> None:
    clock = FakeClock()
    eng = make_engine(tmp_path, PER_LIMIT, clock)
    eng.on_sample(sample(clock, "blr-1", {"flame_failure": True}))
    clock.advance(1)
    got = transitions(eng.on_sample(sample(clock, "blr-1", {"supply_temp": 30.0})))
    assert got == [("temp:blr-1:supply_temp:lo", "activate", "suppressed")]
    clock.advance(1)
    got = transitions(eng.on_sample(sample(clock, "blr-1", {"supply_temp": 99.0})))
    assert ("temp:blr-1:supply_temp:hihi", "activate", "unacknowledged") in got
    eng.close()


def test_rule_level_suppression_on_a_rule_with_limits_is_refused(tmp_path: Path) -> None:
    wide = "        suppressed_by: [flame]\n        limits:\n"
    text = PER_LIMIT.replace("        limits:\n", wide)
    with pytest.raises(ConfigError) as info:
        rules_from(tmp_path, text)
    msg = "\n".join(info.value.problems)
    assert "rules.yaml:3" in msg and "rule 'temp'" in msg
    assert "limits.lo.suppressed_by" in msg


def test_rule_level_suppression_stays_for_single_condition_rules(tmp_path: Path) -> None:
    text = PER_LIMIT + "        suppressed_by: [temp]\n"
    (flame,) = [s for s in suppressions(rules_from(tmp_path, text)) if s.rule.rule.id == "flame"]
    assert flame.limit is None and flame.patterns == ("temp",)


# A low-severity status can hide the critical limit (and the low one, which is fine).
MILD_HIDES_GRAVE = (
    PER_LIMIT.replace("severity: critical}", "severity: critical, suppressed_by: [door*]}")
    .replace("severity: medium, suppressed_by: [flame]", "severity: low, suppressed_by: [door*]")
    .replace("id: flame", "id: door-open")
    .replace("severity: critical\n", "severity: low\n")
    + """
      - id: gone
        kind: no_data
        severity: high
        suppressed_by: [nothing-like-this]
"""
)


def test_warnings_name_the_graver_alarm_and_unknown_suppressors(tmp_path: Path) -> None:
    warnings = suppression_warnings(rules_from(tmp_path, MILD_HIDES_GRAVE))
    assert len(warnings) == 2, warnings
    grave, unknown = warnings
    assert "rules.yaml:3" in grave and "'temp'" in grave and "hihi" in grave
    assert "critical" in grave and "'door-open'" in grave and "low" in grave
    assert "'gone'" in unknown and "nothing-like-this" in unknown and "matches no rule" in unknown


def test_cli_check_warns_and_still_passes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rules = MILD_HIDES_GRAVE.replace("        suppressed_by: [nothing-like-this]\n", "")
    (tmp_path / "rules.yaml").write_text(rules.replace("\n    ", "\n").lstrip("\n"))
    site = write(tmp_path, GOOD_SITE + "rules: [rules.yaml]\n")
    assert main(["check", str(site)]) == 0
    out = capsys.readouterr()
    assert "is valid" in out.out
    lines = [ln for ln in out.err.splitlines() if ln.startswith("warning: ")]
    assert len(lines) == 1, out.err
    assert "hihi" in lines[0] and "critical" in lines[0] and "'door-open'" in lines[0]


# --------------------------------------------------------------------------- alarm book

CAUSE = spec("flame:dev:flame_failure")
EFFECT = spec("temp:dev:p", inhibited_by=("flame:dev:*",))


def book_after(*steps: str) -> tuple[AlarmBook, list[AlarmEvent]]:
    """Apply steps (effect_on/off, cause_on/off, ack) in order; the events of the last."""
    clock = FakeClock()
    book = AlarmBook(AlertingConfig())
    ev: list[AlarmEvent] = []
    for step in steps:
        clock.advance(1)
        now = clock.now_ns()
        if step == "ack":
            ev = book.ack(EFFECT.alarm_id, "wang", now)
        elif step.startswith("effect"):
            ev = book.set_active(EFFECT, step.endswith("on"), 30.0, now)
        else:
            ev = book.set_active(CAUSE, step.endswith("on"), True, now)
    return book, ev


def effect_state(book: AlarmBook) -> AlarmState:
    return book.get(EFFECT.alarm_id).state


def test_an_alarm_standing_before_its_suppressor_stays_in_view() -> None:
    """It is no consequence of a cause that came after it: suppression must not hide it."""
    book, ev = book_after("effect_on", "cause_on")
    assert [e.alarm_id for e in ev] == [CAUSE.alarm_id]
    assert effect_state(book) is S.UNACKED
    book, ev = book_after("effect_on", "cause_on", "effect_off")
    assert [(e.action, e.state) for e in ev] == [("clear", S.RTN_UNACKED)]


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        # an unacknowledged return is neither hidden nor acknowledged for the operator
        (("effect_on", "effect_off", "cause_on"), S.RTN_UNACKED),
        (("effect_on", "effect_off", "cause_on", "cause_off"), S.RTN_UNACKED),
        # an acknowledged standing alarm is not hidden either
        (("effect_on", "ack", "cause_on"), S.ACKED),
        # acknowledged under a standing cause, it comes back as its consequence
        (("effect_on", "effect_off", "cause_on", "ack", "effect_on"), S.SUPPRESSED),
    ],
)
def test_suppression_starts_only_at_normal(steps: tuple[str, ...], expected: AlarmState) -> None:
    book, _ = book_after(*steps)
    assert effect_state(book) is expected


def test_a_consequence_is_suppressed_and_presented_when_its_cause_clears_first() -> None:
    # Known while normal: the cause suppresses it before it ever activates.
    _, ev = book_after("effect_off", "cause_on")
    assert (EFFECT.alarm_id, "suppress") in [(e.alarm_id, e.action) for e in ev]
    _, ev = book_after("effect_off", "cause_on", "effect_on")
    assert [(e.action, e.state) for e in ev] == [("activate", S.SUPPRESSED)]
    # The cause is gone while the effect's condition stands: now it is news.
    _, ev = book_after("effect_off", "cause_on", "effect_on", "cause_off")
    assert (EFFECT.alarm_id, "unsuppress", S.UNACKED) in [
        (e.alarm_id, e.action, e.state) for e in ev
    ]


def test_an_alarm_whose_rule_no_longer_names_the_cause_is_presented() -> None:
    """After an upgrade of the rule files the stored alarm still carries the old suppressor."""
    book, _ = book_after("effect_off", "cause_on")
    assert effect_state(book) is S.SUPPRESSED
    ev = book.set_active(spec(EFFECT.alarm_id), True, 30.0, FakeClock().now_ns())
    assert [(e.action, e.state) for e in ev] == [("activate", S.UNACKED)]
