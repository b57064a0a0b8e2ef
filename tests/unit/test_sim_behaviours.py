"""Simulator value behaviours and device physics, evaluated at chosen instants (no sleeping)."""

from __future__ import annotations

import math
import random

import pytest

from firmware_sim.behaviours import Constant, Counter, Ramp, RandomWalk, Sine, make_behaviour
from firmware_sim.physics import FIRING, IGNITION, LOCKOUT, OFF, PURGE, BoilerModel, LeakageLogic
from gateway.profiles.schema import SimBehaviour


def test_constant_ramp_sine_counter() -> None:
    assert Constant(300).value(12345) == 300
    ramp = Ramp(150, 450, 60)
    assert ramp.value(0) == 150
    assert ramp.value(30) == pytest.approx(300)
    assert ramp.value(59.999) == pytest.approx(450, abs=0.01)
    assert ramp.value(60) == 150  # wraps
    sine = Sine(120, 10, 300)
    assert sine.value(75) == pytest.approx(130)
    assert sine.value(225) == pytest.approx(110)
    assert Counter(1000, 0.5).value(3600) == pytest.approx(2800)


def test_random_walk_stays_in_bounds_and_steps_per_second() -> None:
    walk = RandomWalk(120, 80, 180, 3, random.Random(1))
    prev = walk.value(0)
    for t in range(1, 5000):
        x = walk.value(t)
        assert 80 <= x <= 180
        assert abs(x - prev) <= 3 + 1e-9
        prev = x


def test_random_walk_does_not_depend_on_poll_rate() -> None:
    fast, slow = (
        RandomWalk(0, -20, 20, 1, random.Random(7)),
        RandomWalk(0, -20, 20, 1, random.Random(7)),
    )
    for i in range(1000):
        fast.value(i / 10)
    assert fast.value(100) == slow.value(100)


def test_make_behaviour_from_profile_block() -> None:
    rng = random.Random(0)
    beh = make_behaviour(SimBehaviour(kind="sine", value=18, amplitude=4, period_s=600), rng)
    assert beh.value(150) == pytest.approx(22)
    with pytest.raises(ValueError, match="model output"):
        make_behaviour(SimBehaviour(kind="boiler", field="supply_temp"), rng)


# ------------------------------------------------------------------ boiler


def _run(model: BoilerModel, until: float, setpoint: float = 75.0, step: float = 1.0) -> list[int]:
    states = []
    t = model._t or 0.0
    while t < until:
        t += step
        model.advance(t, setpoint)
        states.append(model.burner_state)
    return states


def test_boiler_cycles_with_hysteresis() -> None:
    m = BoilerModel()
    m.advance(0, 75)
    states = _run(m, 1200)
    # Starts cold (70 °C < 72): purge, ignition, then firing; later off again.
    assert states[0] == PURGE
    assert IGNITION in states and FIRING in states and OFF in states
    firing = [i for i, s in enumerate(states) if s == FIRING]
    assert firing[0] >= 12  # 10 s purge + 3 s ignition first
    temps = []
    for _ in range(600):
        m.advance((m._t or 0) + 1, 75)
        temps.append(m.supply_temp)
    # Controlled around the set-point within the band; it keeps cooling while
    # the burner purges and ignites, and overshoots by at most one step.
    p = m.params
    undershoot = (p.purge_s + p.ignition_s + 1) * p.load_rate_c_per_s
    assert 75 - p.band_low_c - undershoot < min(temps) < 75 - p.band_low_c
    assert 75 + p.band_high_c < max(temps) < 75 + p.band_high_c + p.heat_rate_c_per_s
    assert m.return_temp < m.supply_temp


def test_boiler_gas_totaliser_integrates_flow_and_pressure_follows_temperature() -> None:
    m = BoilerModel()
    m.advance(0, 75)
    total0, fired = m.gas_total, 0.0
    t = 0.0
    while t < 3600:
        t += 0.5
        m.advance(t, 75)
        fired += m.gas_flow * 0.5 / 3600
    assert fired > 0
    assert m.gas_total - total0 == pytest.approx(fired, rel=0.02)
    p_at = {m.supply_temp: m.pressure}
    m.supply_temp += 10
    assert m.pressure - next(iter(p_at.values())) == pytest.approx(0.04)
    assert m.flame == (m.burner_state == FIRING)


def test_boiler_over_temperature_locks_out_until_reset() -> None:
    m = BoilerModel()
    m.advance(0, 98)
    _run(m, 600, setpoint=98)
    assert m.over_temp and m.burner_state == LOCKOUT and m.gas_flow == 0
    _run(m, 900, setpoint=98)
    assert m.burner_state == LOCKOUT  # latched even after cooling down
    m.reset()
    assert not m.over_temp and m.burner_state == OFF


# ------------------------------------------------------------------ leakage monitor

NAMES = {f"{k}_ch{c}" for k in ("leak", "prealarm", "alarm", "fault") for c in (1, 2)}


def test_leakage_prealarm_then_latched_alarm_after_delay() -> None:
    logic = LeakageLogic(NAMES | {"alarm_threshold", "alarm_delay"})
    assert logic.channels == [1, 2]
    base = {"alarm_threshold": 300.0, "alarm_delay": 5.0, "leak_ch2": 50.0}
    v = {**base, "leak_ch1": 239.0}
    logic.apply(0, v)
    assert v["prealarm_ch1"] == 0 and v["alarm_ch1"] == 0
    v = {**base, "leak_ch1": 240.0}  # 80 % of 300
    logic.apply(1, v)
    assert v["prealarm_ch1"] == 1 and v["alarm_ch1"] == 0
    for t in (2, 4, 6.9):
        v = {**base, "leak_ch1": 320.0}
        logic.apply(t, v)
        assert v["alarm_ch1"] == 0, t  # above since t=2, delay 5 s
    v = {**base, "leak_ch1": 320.0}
    logic.apply(7, v)
    assert v["alarm_ch1"] == 1
    v = {**base, "leak_ch1": 100.0}
    logic.apply(8, v)
    assert v["alarm_ch1"] == 1 and v["prealarm_ch1"] == 0  # latched until reset
    assert v["alarm_ch2"] == 0
    logic.reset()
    logic.apply(9, v)
    assert v["alarm_ch1"] == 0


def test_leakage_dip_below_threshold_restarts_the_delay() -> None:
    logic = LeakageLogic(NAMES)
    for t, leak in ((0, 310), (4, 310), (4.5, 290), (5, 310), (9, 310)):
        v = {"leak_ch1": float(leak)}
        logic.apply(t, v)
    assert v["alarm_ch1"] == 0
    logic.apply(10, v)
    assert v["alarm_ch1"] == 1


def test_leakage_fault_reads_zero_and_never_alarms() -> None:
    logic = LeakageLogic(NAMES)
    for t in range(20):
        v = {"leak_ch1": 900.0, "fault_ch1": 1.0}
        logic.apply(t, v)
        assert v["leak_ch1"] == 0 and v["prealarm_ch1"] == 0 and v["alarm_ch1"] == 0
    assert math.isclose(v["fault_ch1"], 1.0)


def test_boiler_counts_burner_starts_and_firing_hours() -> None:
    """The controller's own counters: starts (ignition to firing) and firing hours."""
    m = BoilerModel()
    m.advance(0, 75)
    starts0, hours0 = m.burner_starts, m.burner_hours
    starts, firing_s, prev, t = 0, 0.0, m.burner_state, 0.0
    while t < 7200:
        t += 0.5
        m.advance(t, 75)
        if m.burner_state == FIRING:
            firing_s += 0.5
            starts += prev != FIRING
        prev = m.burner_state
    assert starts >= 2
    assert m.output("burner_starts") - starts0 == starts
    assert m.output("burner_hours") - hours0 == pytest.approx(firing_s / 3600, abs=0.5 / 3600)
