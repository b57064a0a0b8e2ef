"""What a config reload changes: the difference between two loaded sites, and the config's hash.

``diff(old, new)`` is pure: two ``Snapshot``s (a site as ``gateway.loader``
loaded it, with its resolved patrol config) in, one ``ConfigChange`` out. It
decides what the applier (gateway/reloader.py) restarts:

- a device is *changed* when its site entry or its resolved profile differs;
- a source is *restarted* when its own config changed or any of its devices
  was added, removed or changed; its id is *added* / *removed* when only one
  side has it. Every other source keeps its task and connection;
- rules are compared by id (the rule model, not where it sits in its file);
- the patrol config is compared as resolved (inline or from its file);
- a changed InfluxDB sink (enabled before and after, and no other sink
  changed) is listed in ``sinks_restarted``: it restarts on its outbox cursor;
- sections the running gateway cannot swap (other sink changes, outbox,
  alerting, commands, local_http, pipeline, reports, the site name) are listed
  in ``restart_needed``: the rest of the reload applies, and the event and the
  log say which sections wait for a restart.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.config import Site, SiteConfig
from gateway.patrol.config import PatrolConfig

__all__ = ["ConfigChange", "Snapshot", "config_hash", "diff"]

# Sinks a reload may restart with their new config. The InfluxDB sink is one
# durable sink: a worker on its own outbox cursor, no alarm lane, no command
# channel, so a new one resumes on that cursor (gateway/delivery.py replace_sink).
# The MQTT sink also carries the alarm lane and the command channel: a restart.
RESTARTABLE_SINKS = frozenset({"influx"})

# SiteConfig fields a reload applies; every other field needs a restart.
RELOADABLE = frozenset(
    {"description", "profile_dirs", "sources", "devices", "rules", "patrol", "simulation",
     "timezone", "console"}
)  # fmt: skip


@dataclass(frozen=True)
class Snapshot:
    """A loaded site and its patrol config, as one reload compares them."""

    site: Site
    patrol: PatrolConfig | None = None


@dataclass
class ConfigChange:
    """What differs between the config in force and a new one (sorted ids throughout)."""

    devices_added: list[str] = field(default_factory=list)
    devices_removed: list[str] = field(default_factory=list)
    devices_changed: list[str] = field(default_factory=list)
    sources_added: list[str] = field(default_factory=list)
    sources_removed: list[str] = field(default_factory=list)
    # Kept, but restarted: their config or one of their devices changed.
    sources_restarted: list[str] = field(default_factory=list)
    rules_added: list[str] = field(default_factory=list)
    rules_removed: list[str] = field(default_factory=list)
    rules_changed: list[str] = field(default_factory=list)
    patrol_changed: bool = False
    # Restarted with their new config, on their outbox cursor (RESTARTABLE_SINKS).
    sinks_restarted: list[str] = field(default_factory=list)
    restart_needed: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not any(self.summary().values())

    @property
    def alerting_rebind(self) -> bool:
        """Rules must be bound again: a rule or a device (its profile, tags) changed."""
        return bool(
            self.rules_added or self.rules_removed or self.rules_changed
            or self.devices_added or self.devices_removed or self.devices_changed
        )  # fmt: skip

    def summary(self) -> dict[str, Any]:
        """The change as the ``config.applied`` event and the log tell it."""
        return {
            "devices_added": self.devices_added,
            "devices_removed": self.devices_removed,
            "devices_changed": self.devices_changed,
            "sources_added": self.sources_added,
            "sources_removed": self.sources_removed,
            "sources_restarted": self.sources_restarted,
            "rules_added": self.rules_added,
            "rules_removed": self.rules_removed,
            "rules_changed": self.rules_changed,
            "patrol_changed": self.patrol_changed,
            "sinks_restarted": self.sinks_restarted,
            "restart_needed": self.restart_needed,
        }

    def describe(self) -> str:
        """One line for the log: only what changed."""
        parts = []
        for key, value in self.summary().items():
            if value is True:
                parts.append(key.replace("_", " "))
            elif value:
                parts.append(f"{key.replace('_', ' ')}: {', '.join(value)}")
        return "; ".join(parts) or "no change"


def _enabled_devices(site: Site) -> dict[str, Any]:
    return {d.id: d for d in site.config.devices if d.enabled}


def _keyed_diff(old: dict[str, Any], new: dict[str, Any]) -> tuple[list[str], ...]:
    """(added, removed, changed) ids of two id -> model maps."""
    added = sorted(new.keys() - old.keys())
    removed = sorted(old.keys() - new.keys())
    changed = sorted(k for k in old.keys() & new.keys() if old[k] != new[k])
    return added, removed, changed


def _rules_of(site: Site) -> dict[str, Any]:
    if site.rules is None:
        return {}
    return {lr.rule.id: (lr.rule, lr.area, lr.advice) for lr in site.rules.rules}


def _sources_in_use(site: Site) -> dict[str, Any]:
    """Sources that have an enabled device (the others are never started)."""
    used = {d.source for d in site.config.devices if d.enabled}
    return {s.id: s for s in site.config.sources if s.id in used}


def diff(old: Snapshot, new: Snapshot) -> ConfigChange:
    """What a reload from ``old`` to ``new`` changes (module docstring)."""
    ch = ConfigChange()
    od, nd = _enabled_devices(old.site), _enabled_devices(new.site)
    ch.devices_added, ch.devices_removed, changed = _keyed_diff(od, nd)
    ch.devices_changed = sorted(
        set(changed)
        | {
            d for d in od.keys() & nd.keys()
            if old.site.device_profiles.get(d) != new.site.device_profiles.get(d)
        }
    )  # fmt: skip
    os_, ns = _sources_in_use(old.site), _sources_in_use(new.site)
    ch.sources_added, ch.sources_removed, restarted = _keyed_diff(os_, ns)
    touched = {
        dev.source
        for ids, side in ((ch.devices_added, nd), (ch.devices_removed, od))
        for dev in (side[i] for i in ids)
    }
    for i in ch.devices_changed:
        touched |= {od[i].source, nd[i].source}
    ch.sources_restarted = sorted(set(restarted) | (touched & os_.keys() & ns.keys()))
    ch.rules_added, ch.rules_removed, ch.rules_changed = _keyed_diff(
        _rules_of(old.site), _rules_of(new.site)
    )
    ch.patrol_changed = old.patrol != new.patrol
    ch.restart_needed = _restart_needed(old.site.config, new.site.config)
    if "sinks" in ch.restart_needed:
        ch.sinks_restarted = _sinks_restartable(old.site.config, new.site.config)
        if ch.sinks_restarted:
            ch.restart_needed.remove("sinks")
    return ch


def _sinks_restartable(old: SiteConfig, new: SiteConfig) -> list[str]:
    """The changed sinks, when every one of them can be restarted alone (enabled before
    and after, so its outbox cursor stays); else none: the whole section waits."""
    before, after = old.sinks.configured(), new.sinks.configured()
    changed = {n for n in before.keys() | after.keys() if before.get(n) != after.get(n)}
    ok = all(n in RESTARTABLE_SINKS and n in before and n in after for n in changed)
    return sorted(changed) if ok else []


def _restart_needed(old: SiteConfig, new: SiteConfig) -> list[str]:
    return sorted(
        name
        for name in SiteConfig.model_fields
        if name not in RELOADABLE and getattr(old, name) != getattr(new, name)
    )


def _files_of(site: Site) -> Iterable[Path]:
    yield site.path
    for r in site.config.rules:
        yield site.path.parent / r
    if isinstance(site.config.patrol, str):
        p = Path(site.config.patrol)
        yield p if p.is_absolute() else site.path.parent / p


def config_hash(site: Site) -> str:
    """sha256 over the files a site was read from (site, rules, patrol) and its devices'
    profiles, so the same files give the same hash on every gateway and after a restart."""
    h = hashlib.sha256()
    for path in _files_of(site):
        h.update(str(path.name).encode())
        try:
            h.update(path.read_bytes())
        except OSError:
            h.update(b"\0unreadable")
    for dev_id in sorted(site.device_profiles):
        h.update(dev_id.encode())
        h.update(repr(site.device_profiles[dev_id]).encode())
    return h.hexdigest()
