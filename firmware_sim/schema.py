"""The simulator's part of a site file: ``simulation:`` (scenarios, faults, wire time).

The gateway's schema keeps that section as an opaque mapping; ``simulation_of``
validates it here, with problems that name the site file and the field.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, ValidationError

from gateway.config import Site, Strict
from gateway.errors import ConfigError
from gateway.profiles.schema import SimBehaviour


class FaultSpec(Strict):
    """A fault the simulator injects on one device (see firmware_sim.faults).

    Active from ``after_s`` for ``duration_s`` simulation seconds (for ever
    without a duration). ``exception_code`` is the Modbus exception answered by
    kind ``exception``; ``delay_s`` is how late (real seconds) kind ``slow`` answers.
    """

    kind: Literal["no_answer", "exception", "garbage", "slow"]
    exception_code: Literal[1, 2, 3, 4, 5, 6, 7, 8, 10, 11] = 4  # 9 is not a Modbus code
    delay_s: float = Field(default=2.0, ge=0, le=3600)
    after_s: float = Field(default=0.0, ge=0, le=365 * 86400)
    duration_s: float | None = Field(default=None, ge=0.01, le=365 * 86400)


class ScenarioDevice(Strict):
    points: dict[str, SimBehaviour] = Field(default_factory=dict)
    fault: FaultSpec | None = None


class Scenario(Strict):
    """A named simulator setup: point behaviours and faults per device, serial-line scripts.

    A scenario named ``default`` is applied on every run; the one chosen with
    ``gateway-sim --scenario`` is applied on top of it (firmware_sim.scenarios).
    """

    description: str = ""
    devices: dict[str, ScenarioDevice] = Field(default_factory=dict)
    # Serial-line device id -> its simulator's script (RFID: firmware_sim.rfid.RfidScript,
    # validated by the simulator so the gateway does not depend on it).
    serial: dict[str, Any] = Field(default_factory=dict)


class SimulationConfig(Strict):
    # Delay RTU answers by the time their frames take on the wire at the line's baud rate.
    wire_time: bool = False
    scenarios: dict[str, Scenario] = Field(default_factory=dict)


def simulation_of(site: Site) -> SimulationConfig:
    """The site's ``simulation:`` section, validated (one ConfigError listing every problem)."""
    try:
        return SimulationConfig.model_validate(site.config.simulation)
    except ValidationError as exc:
        problems = [
            f"{site.path}: simulation.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
            for e in exc.errors()
        ]
        raise ConfigError(problems[0], problems) from None
