"""Loading a site: read the file, validate it, and check it against profiles, rules and patrol.

``load_site`` reads the site file (``gateway.yamlfile``: bounded YAML,
``${VAR}`` / ``${VAR:-default}`` from the environment), validates it with the
schema (``gateway.config``, with the models the plugins registered), loads
every profile it uses and its rule files and patrol config, and checks them
against the site's devices, once. It raises one ``ConfigError`` listing every
problem, each naming the file, the line where known, the device and the field.

This module sits above the schema, alerting and patrol, so none of them
imports back up to load or check a site.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from gateway.alerting.rules import RuleSet, check_against_devices, load_rules
from gateway.config import DeviceConfig, Site, SiteConfig
from gateway.errors import ConfigError
from gateway.patrol.config import check_against_devices as check_patrol
from gateway.patrol.config import resolve_patrol
from gateway.plugins import registry as plugin_registry
from gateway.profiles.registry import AnyProfile, ProfileRegistry
from gateway.yamlfile import LinedData, explain, load_yaml

__all__ = ["load_site"]


def _describer(data: Any) -> Any:
    def describe(loc: tuple[Any, ...]) -> str | None:
        if len(loc) >= 2 and loc[0] in ("devices", "sources") and isinstance(loc[1], int):
            items = data.get(loc[0]) if isinstance(data, dict) else None
            if isinstance(items, list) and loc[1] < len(items) and isinstance(items[loc[1]], dict):
                what = "device" if loc[0] == "devices" else "source"
                return f"{what} {items[loc[1]].get('id', '?')!r}"
        return None

    return describe


def _cross_check(
    cfg: SiteConfig, doc: LinedData, registry: ProfileRegistry
) -> tuple[dict[str, AnyProfile], list[str]]:
    problems: list[str] = []
    resolved: dict[str, AnyProfile] = {}
    source_ids = {s.id: s for s in cfg.sources}
    units: dict[tuple[str, int], str] = {}
    serial_users: dict[str, str] = {}
    for i, dev in enumerate(cfg.devices):

        def at(field: str, dev: DeviceConfig = dev, i: int = i) -> str:
            line = doc.line_of(("devices", i, field))
            return f"{doc.path}:{line}" if line else str(doc.path)

        src = source_ids.get(dev.source)
        if src is None:
            problems.append(
                f"{at('source')}: device {dev.id!r}: source: unknown source {dev.source!r}"
                f" (known: {', '.join(source_ids) or 'none'})"
            )
        if dev.profile not in registry:
            problems.append(
                f"{at('profile')}: device {dev.id!r}: profile: unknown profile {dev.profile!r}"
                f" (known: {', '.join(registry.names())})"
            )
            continue
        prof = registry.get(dev.profile)
        resolved[dev.id] = prof
        computed = {c.name for c in getattr(prof, "computed", ())}
        for pname in dev.sim:
            if pname in computed:
                problems.append(
                    f"{at('sim')}: device {dev.id!r}: sim: point {pname!r} is computed;"
                    " simulate the points it is computed from"
                )
            elif pname not in prof.point_names():
                problems.append(f"{at('sim')}: device {dev.id!r}: sim: unknown point {pname!r}")
        if src is None:
            continue
        plugin = plugin_registry().source(src.type)
        if prof.protocol not in plugin.profile_protocols:
            problems.append(
                f"{at('profile')}: device {dev.id!r}: profile {prof.name!r} speaks"
                f" {prof.protocol} but source {src.id!r} is {src.type}"
            )
            continue
        problems.extend(f"{at('profile')}: {why}" for why in src.check_profile(dev.id, prof))
        if plugin.one_device:
            if src.id in serial_users:
                problems.append(
                    f"{at('source')}: device {dev.id!r}: serial line {src.id!r} already"
                    f" belongs to device {serial_users[src.id]!r}"
                )
            serial_users[src.id] = dev.id
        if not plugin.unit_addressed:
            continue
        key = (src.id, dev.unit) if src.addresses_by_unit(dev.id) else (src.id, -1 - i)
        if key in units:
            problems.append(
                f"{at('unit')}: device {dev.id!r}: unit {dev.unit} on {src.id!r} is already"
                f" device {units[key]!r}"
            )
        units[key] = dev.id
        worst = src.timeout_s * (src.retries + 1)
        if worst >= dev.interval_s:
            problems.append(
                f"{at('interval_s')}: device {dev.id!r}: interval_s {dev.interval_s} must exceed"
                f" the source's timeout_s x (retries + 1) = {worst:g}"
            )
    for src in cfg.sources:
        problems.extend(src.check_devices({d.id for d in cfg.devices if d.source == src.id}))
    return resolved, problems


def _check_rules_and_patrol(
    cfg: SiteConfig, path: Path, registry: ProfileRegistry
) -> tuple[RuleSet | None, list[str]]:
    """Rule files and the patrol config, checked against the site's devices and profiles."""
    problems: list[str] = []
    ruleset: RuleSet | None = None
    if cfg.rules:
        try:
            ruleset = load_rules([path.parent / r for r in cfg.rules])
        except ConfigError as exc:
            problems.extend(exc.problems)
        else:
            devices: dict[str, tuple[str | None, str | None, dict[str, str]]] = {}
            for d in cfg.devices:
                kind = registry.get(d.profile).kind if d.profile in registry else None
                devices[d.id] = (d.profile, kind, d.tags)
            points: dict[str, set[str]] = {}
            for name in registry.names():
                points[name] = set(registry.get(name).point_names())
            problems.extend(check_against_devices(ruleset, devices, points))
    try:
        patrol = resolve_patrol(cfg.patrol, path)
    except ConfigError as exc:
        problems.extend(exc.problems)
    else:
        if patrol is not None:
            problems.extend(check_patrol(patrol, {d.id for d in cfg.devices}, str(path)))
    return ruleset, problems


def load_site(path: str | Path) -> Site:
    """Load, validate and cross-check a site file and every profile it uses."""
    path = Path(path)
    doc = load_yaml(path)
    if not isinstance(doc.data, dict):
        raise ConfigError(f"{path}: a site file must be a mapping (site, sources, devices, ...)")
    try:
        cfg = SiteConfig.model_validate(doc.data)
    except ValidationError as exc:
        problems = explain(exc, doc, describe=_describer(doc.data))
        raise ConfigError(problems[0], problems) from None
    extra = [(path.parent / d).resolve() for d in cfg.profile_dirs]
    registry, problems = ProfileRegistry.load(extra)
    resolved, more = _cross_check(cfg, doc, registry)
    problems.extend(more)
    ruleset, more = _check_rules_and_patrol(cfg, path, registry)
    problems.extend(more)
    if cfg.reports is not None:
        routes = {r.name for r in cfg.alerting.routes} if cfg.alerting else set()
        problems.extend(cfg.reports.problems({d.id for d in cfg.devices}, routes, str(path)))
    if problems:
        raise ConfigError(problems[0], problems)
    return Site(config=cfg, path=path, profiles=registry, device_profiles=resolved, rules=ruleset)
