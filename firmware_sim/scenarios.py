"""Named scenarios: resolving what the simulator does for one run, with clear errors.

A site's ``simulation.scenarios`` maps names to ``Scenario`` (firmware_sim.schema).
The scenario named ``default``, when the site has one, applies to every run
(the demo's patrol, for instance); the scenario chosen on the command line
applies on top of it: per device, its point behaviours are added to the
default's and its fault replaces the default's; per serial device, its script
replaces the default's. ``resolve`` checks that every point and serial script
a scenario names exists and is valid, and raises one ``ConfigError`` listing
every problem. A device id the site does not have is a warning, not an
error, so a site trimmed down from a larger one (a test's single RS-485 line)
keeps its scenarios.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import ValidationError

from firmware_sim.rfid import LineBuilder, RfidScript
from firmware_sim.schema import FaultSpec, Scenario, simulation_of
from gateway.config import Site
from gateway.errors import ConfigError
from gateway.profiles.schema import ModbusProfile, SerialLineProfile, SimBehaviour

DEFAULT = "default"


@dataclass
class DevicePlan:
    points: dict[str, SimBehaviour] = field(default_factory=dict)
    fault: FaultSpec | None = None


@dataclass
class ResolvedScenario:
    name: str | None
    description: str
    devices: dict[str, DevicePlan]
    serial: dict[str, RfidScript]
    warnings: list[str] = field(default_factory=list)

    def plan(self, device_id: str) -> DevicePlan:
        return self.devices.get(device_id, DevicePlan())


def scenario_names(site: Site) -> list[str]:
    return sorted(simulation_of(site).scenarios)


def describe(site: Site) -> list[str]:
    """One line per scenario: name and description."""
    scenarios = simulation_of(site).scenarios
    if not scenarios:
        return [f"{site.path}: no scenarios defined"]
    width = max(len(n) for n in scenarios)
    return [f"{n:<{width}}  {scenarios[n].description}".rstrip() for n in sorted(scenarios)]


def _check(
    site: Site, name: str, sc: Scenario, problems: list[str], warnings: list[str]
) -> dict[str, RfidScript]:
    where = f"{site.path}: simulation.scenarios.{name}"
    devices = {d.id: d for d in site.config.devices}
    for dev_id, sd in sc.devices.items():
        prof = site.device_profiles.get(dev_id)
        if dev_id not in devices or prof is None:
            warnings.append(f"{where}.devices: no device {dev_id!r} in this site; ignored")
            continue
        if not isinstance(prof, ModbusProfile):
            problems.append(
                f"{where}.devices.{dev_id}: device {dev_id!r} is a serial-line device;"
                " script it under 'serial'"
            )
            continue
        names = {p.name for p in prof.points}
        for pname in sd.points:
            if pname not in names:
                problems.append(
                    f"{where}.devices.{dev_id}.points: device {dev_id!r} (profile"
                    f" {prof.name!r}) has no point {pname!r}"
                )
    scripts: dict[str, RfidScript] = {}
    for dev_id, raw in sc.serial.items():
        prof = site.device_profiles.get(dev_id)
        if dev_id not in devices or prof is None:
            warnings.append(f"{where}.serial: no device {dev_id!r} in this site; ignored")
            continue
        if not isinstance(prof, SerialLineProfile):
            problems.append(f"{where}.serial: {dev_id!r} is not a serial-line device")
            continue
        try:
            script = RfidScript.model_validate(raw)
        except ValidationError as exc:
            for err in exc.errors():
                loc = ".".join(str(p) for p in err["loc"])
                msg = err["msg"].removeprefix("Value error, ")
                problems.append(f"{where}.serial.{dev_id}{'.' + loc if loc else ''}: {msg}")
            continue
        for p in LineBuilder(prof).check(script):
            problems.append(f"{where}.serial.{dev_id}: {p}")
        scripts[dev_id] = script
    return scripts


def resolve(site: Site, name: str | None) -> ResolvedScenario:
    """The default scenario plus ``name`` (if given), checked against the site."""
    scenarios = simulation_of(site).scenarios
    if name is not None and name not in scenarios:
        known = ", ".join(sorted(scenarios)) or "none defined"
        raise ConfigError(f"{site.path}: unknown scenario {name!r} (known: {known})")
    problems: list[str] = []
    warnings: list[str] = []
    devices: dict[str, DevicePlan] = {}
    serial: dict[str, RfidScript] = {}
    layers = [n for n in (DEFAULT, name) if n is not None and n in scenarios]
    for layer in dict.fromkeys(layers):
        sc = scenarios[layer]
        serial.update(_check(site, layer, sc, problems, warnings))
        for dev_id, sd in sc.devices.items():
            if dev_id not in site.device_profiles:
                continue
            plan = devices.setdefault(dev_id, DevicePlan())
            plan.points.update(sd.points)
            if sd.fault is not None:
                plan.fault = sd.fault
    if problems:
        raise ConfigError(problems[0], problems)
    chosen = scenarios.get(name) if name is not None else scenarios.get(DEFAULT)
    return ResolvedScenario(
        name=name,
        description=chosen.description if chosen is not None else "",
        devices=devices,
        serial=serial,
        warnings=warnings,
    )
