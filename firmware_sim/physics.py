"""Device logic that is more than one point's behaviour: the boiler and the leakage monitor.

``BoilerModel``: a gas boiler's burner cycling on/off with hysteresis around the
supply set-point (off → purge → ignition → firing), supply temperature rising
while firing and falling under the load otherwise, return temperature lagging
supply minus the network's ΔT, pressure following temperature (thermal
expansion in a closed system), gas flow while the burner is lit and a gas
totaliser integrating it, and the controller's burner-start and firing-hour
counters. Crossing the over-temperature or over-pressure
limit locks the burner out (latched, like a real safety chain).

``LeakageLogic``: a residual-current monitor's own decisions, per channel
``N``: pre-alarm bit while leakage >= 80 % of ``alarm_threshold``; alarm bit
latched once leakage stayed >= the threshold for ``alarm_delay`` seconds; a
channel whose ``fault_chN`` bit is set (CT loop open, set by a scenario)
reads 0 mA and raises neither. Applied to profiles of kind ``leakage`` by
point name (``leak_chN``, ``prealarm_chN``, ``alarm_chN``, ``fault_chN``).

Both take simulation time from the caller; nothing here sleeps or reads a clock.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

OFF, PURGE, IGNITION, FIRING, LOCKOUT = 0, 1, 2, 3, 4
# Model outputs a point may name with ``sim: {kind: boiler, field: ...}``.
BOILER_FIELDS = (
    "supply_temp",
    "return_temp",
    "pressure",
    "gas_flow",
    "gas_total",
    "burner_state",
    "flame",
    "over_temp",
    "over_pressure",
    "flame_failure",
    "burner_starts",
    "burner_hours",
)
# Interlock bits of the boiler profile the model drives although they carry no sim block.
BOILER_INTERLOCK_POINTS = ("over_temp", "over_pressure", "flame_failure")


@dataclass
class BoilerParams:
    # Burner starts below set-point - band_low and stops above set-point + band_high.
    band_low_c: float = 3.0
    band_high_c: float = 3.0
    heat_rate_c_per_s: float = 0.25
    load_rate_c_per_s: float = 0.06
    purge_s: float = 10.0
    ignition_s: float = 3.0
    return_delta_c: float = 22.0
    return_lag_s: float = 60.0
    static_pressure_mpa: float = 0.25
    pressure_per_c_mpa: float = 0.004
    firing_gas_m3h: float = 48.0
    ignition_gas_m3h: float = 12.0
    over_temp_c: float = 95.0
    over_pressure_mpa: float = 0.6
    ambient_c: float = 10.0
    # Integrate in steps no longer than this so fast-forwarded time stays stable.
    max_step_s: float = 0.5


@dataclass
class BoilerModel:
    params: BoilerParams = field(default_factory=BoilerParams)
    supply_temp: float = 70.0
    return_temp: float = 48.0
    gas_total: float = 125_000.0
    burner_state: int = OFF
    over_temp: bool = False
    over_pressure: bool = False
    flame_failure: bool = False
    # The controller's own counters: ignitions that reached firing, and hours fired.
    burner_starts: int = 1_200
    burner_hours: float = 3_400.0
    _phase_s: float = 0.0
    _t: float | None = None

    @property
    def pressure(self) -> float:
        p = self.params
        return p.static_pressure_mpa + p.pressure_per_c_mpa * (self.supply_temp - 20.0)

    @property
    def gas_flow(self) -> float:
        if self.burner_state == FIRING:
            return self.params.firing_gas_m3h
        if self.burner_state == IGNITION:
            return self.params.ignition_gas_m3h
        return 0.0

    @property
    def flame(self) -> bool:
        return self.burner_state == FIRING

    def advance(self, t: float, setpoint_c: float) -> None:
        """Run the model forward to simulation time ``t``."""
        if self._t is None:
            self._t = t
            return
        while self._t < t:
            dt = min(self.params.max_step_s, t - self._t)
            self._step(dt, setpoint_c)
            self._t += dt

    def _step(self, dt: float, setpoint: float) -> None:
        p = self.params
        self._phase_s += dt
        if self.burner_state == OFF and self.supply_temp < setpoint - p.band_low_c:
            self.burner_state, self._phase_s = PURGE, 0.0
        elif self.burner_state == PURGE and self._phase_s >= p.purge_s:
            self.burner_state, self._phase_s = IGNITION, 0.0
        elif self.burner_state == IGNITION and self._phase_s >= p.ignition_s:
            self.burner_state, self._phase_s = FIRING, 0.0
            self.burner_starts += 1
        elif self.burner_state == FIRING and self.supply_temp > setpoint + p.band_high_c:
            self.burner_state, self._phase_s = OFF, 0.0

        self.gas_total += self.gas_flow * dt / 3600.0
        if self.burner_state == FIRING:
            self.burner_hours += dt / 3600.0
        rate = p.heat_rate_c_per_s if self.burner_state == FIRING else -p.load_rate_c_per_s
        self.supply_temp = max(p.ambient_c, self.supply_temp + rate * dt)
        target_return = max(p.ambient_c, self.supply_temp - p.return_delta_c)
        self.return_temp += (target_return - self.return_temp) * min(1.0, dt / p.return_lag_s)

        if self.supply_temp > p.over_temp_c:
            self.over_temp = True
        if self.pressure > p.over_pressure_mpa:
            self.over_pressure = True
        if self.over_temp or self.over_pressure:
            # The safety chain cuts the burner and stays locked out until a manual reset.
            self.burner_state = LOCKOUT

    def reset(self) -> None:
        """Manual reset of the safety chain (the operator's button)."""
        self.over_temp = self.over_pressure = self.flame_failure = False
        if self.burner_state == LOCKOUT:
            self.burner_state, self._phase_s = OFF, 0.0

    def output(self, name: str) -> float:
        if name not in BOILER_FIELDS:
            raise KeyError(name)
        value = getattr(self, name)
        return float(value)


_CHANNEL_RE = re.compile(r"^leak_ch(\d+)$")


class LeakageLogic:
    """Pre-alarm, latched alarm and fault per channel of a residual-current monitor."""

    DEFAULT_THRESHOLD_MA = 300.0
    DEFAULT_DELAY_S = 5.0
    PREALARM_FRACTION = 0.8

    def __init__(self, point_names: set[str]) -> None:
        self.channels = sorted(
            int(m.group(1)) for n in point_names if (m := _CHANNEL_RE.match(n)) is not None
        )
        self._above_since: dict[int, float | None] = {c: None for c in self.channels}
        self._latched: dict[int, bool] = dict.fromkeys(self.channels, False)

    def apply(self, t: float, values: dict[str, float]) -> None:
        """Set leak/pre-alarm/alarm values in ``values`` (engineering units) for time ``t``."""
        threshold = values.get("alarm_threshold", self.DEFAULT_THRESHOLD_MA) or (
            self.DEFAULT_THRESHOLD_MA
        )
        delay = values.get("alarm_delay", self.DEFAULT_DELAY_S)
        for c in self.channels:
            leak_key = f"leak_ch{c}"
            if values.get(f"fault_ch{c}", 0.0):
                # An open CT loop measures nothing; the fault bit tells the gateway why.
                values[leak_key] = 0.0
                self._above_since[c] = None
            leak = values.get(leak_key, 0.0)
            values[f"prealarm_ch{c}"] = float(leak >= self.PREALARM_FRACTION * threshold)
            if leak >= threshold:
                since = self._above_since[c]
                if since is None:
                    self._above_since[c] = since = t
                if t - since >= delay:
                    self._latched[c] = True
            else:
                self._above_since[c] = None
            values[f"alarm_ch{c}"] = float(self._latched[c])

    def reset(self) -> None:
        """The reset button: clears latched alarms (they re-latch if leakage persists)."""
        for c in self.channels:
            self._latched[c] = False
            self._above_since[c] = None
