"""The plugin registries: sources, sinks, profile kinds and rule kinds by name.

Built-in plugins are the modules in ``BUILTIN`` (one line each); third-party
plugins are found through the Python entry-point group ``ENTRY_POINT_GROUP``
(``importlib.metadata``). A plugin module, or an entry point's object, is a
registration (``SourcePlugin``, ``SinkPlugin``, ``ProfileKindPlugin``,
``RuleKindPlugin``) or a sequence of them; a module exports it as ``PLUGIN`` or ``PLUGINS``.

The registry is loaded once, on first use (config validation or wiring), and
consulted only when a site is validated and wired, never per sample.
Registering a config model also makes it valid in the site schema: the
``sources`` union, the ``sinks`` keys, a profile's ``protocol`` and the rule
``kind`` union are looked up here, so a new plugin needs no edit in the core.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, TypeAdapter
from pydantic_core import PydanticCustomError

from gateway.errors import ConfigError
from gateway.plugins.base import (
    BoundDevice,
    DeviceProfile,
    Plugin,
    ProfileKindPlugin,
    RuleKindPlugin,
    SinkContext,
    SinkPlugin,
    Source,
    SourceConfig,
    SourceContext,
    SourcePlugin,
)

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "facility_safety_gateway.plugins"

# The built-in plugins, one module each (its PLUGIN or PLUGINS).
BUILTIN: tuple[str, ...] = (
    "gateway.plugins.modbus",
    "gateway.plugins.serial_line",
    "gateway.plugins.opcua",
    "gateway.plugins.mbus",
    "gateway.plugins.console",
    "gateway.plugins.mqtt",
    "gateway.plugins.influx",
    "gateway.alerting.kinds",
)

__all__ = [
    "BUILTIN",
    "ENTRY_POINT_GROUP",
    "BoundDevice",
    "DeviceProfile",
    "Plugin",
    "ProfileKindPlugin",
    "Registry",
    "RuleKindPlugin",
    "SinkContext",
    "SinkPlugin",
    "Source",
    "SourceConfig",
    "SourceContext",
    "SourcePlugin",
    "register",
    "registry",
    "reload",
    "unregister",
]


@dataclass
class Registry:
    """Registrations by name, one table per extension point."""

    sources: dict[str, SourcePlugin] = field(default_factory=dict)
    sinks: dict[str, SinkPlugin] = field(default_factory=dict)
    rule_kinds: dict[str, RuleKindPlugin] = field(default_factory=dict)
    profile_kinds: dict[str, ProfileKindPlugin] = field(default_factory=dict)

    def _table(self, plugin: object) -> dict[str, Any]:
        if isinstance(plugin, SourcePlugin):
            return self.sources
        if isinstance(plugin, SinkPlugin):
            return self.sinks
        if isinstance(plugin, RuleKindPlugin):
            return self.rule_kinds
        if isinstance(plugin, ProfileKindPlugin):
            return self.profile_kinds
        raise ConfigError(
            f"not a plugin registration: {plugin!r}"
            " (expected SourcePlugin, SinkPlugin, RuleKindPlugin or ProfileKindPlugin)"
        )

    def add(self, plugin: object, origin: str = "") -> None:
        table = self._table(plugin)
        name = plugin.name  # type: ignore[attr-defined]
        if name in table and table[name] is not plugin:
            raise ConfigError(f"plugin {name!r}{origin}: the name is already registered")
        table[name] = plugin

    def remove(self, plugin: Plugin) -> None:
        table = self._table(plugin)
        if table.get(plugin.name) is plugin:
            del table[plugin.name]

    def add_module(self, module: str) -> None:
        mod = importlib.import_module(module)
        found = getattr(mod, "PLUGINS", None) or [getattr(mod, "PLUGIN", None)]
        for plugin in _as_list(found):
            self.add(plugin, f" (module {module})")

    def source(self, name: str) -> SourcePlugin:
        try:
            return self.sources[name]
        except KeyError:
            raise ConfigError(
                f"unknown source type {name!r} (known: {', '.join(sorted(self.sources))})"
            ) from None


def _as_list(obj: object) -> list[object]:
    if isinstance(obj, list | tuple):
        return list(obj)
    return [obj]


def _load_entry_points(reg: Registry) -> None:
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            loaded = ep.load()
        except Exception as exc:  # a broken third-party plugin must not stop the gateway
            log.error("plugin entry point %s (%s) failed to load: %s", ep.name, ep.value, exc)
            continue
        for plugin in _as_list(loaded):
            try:
                reg.add(plugin, f" (entry point {ep.name} = {ep.value})")
            except ConfigError as exc:
                log.error("plugin entry point %s ignored: %s", ep.name, exc)


_registry: Registry | None = None


def _load() -> Registry:
    reg = Registry()
    for module in BUILTIN:
        reg.add_module(module)
    _load_entry_points(reg)
    return reg


def registry() -> Registry:
    """The loaded registry (built-ins and entry points, loaded on the first call)."""
    global _registry
    if _registry is None:
        _registry = _load()
    return _registry


def reload() -> Registry:
    """Scan the built-ins and entry points again (after installing a plugin)."""
    global _registry
    _registry = None
    return registry()


def register(*plugins: Plugin) -> None:
    """Add plugins at run time (an embedding application, a test)."""
    reg = registry()
    for p in plugins:
        reg.add(p)


def unregister(*plugins: Plugin) -> None:
    reg = registry()
    for p in plugins:
        reg.remove(p)


def validate_tagged(
    data: object,
    base: type[BaseModel] | None,
    key: str,
    models: Mapping[str, type[BaseModel]],
    default: str | None = None,
) -> object:
    """One item of a registry-built union: validated by the model ``data[key]`` names.

    Errors read like those of pydantic's own discriminated unions.
    """
    if (base is not None and isinstance(data, base)) or not isinstance(data, dict):
        return data
    tag = data.get(key, default)
    if tag is None:
        raise PydanticCustomError(
            "union_tag_not_found",
            "Unable to extract tag using discriminator {discriminator}",
            {"discriminator": repr(key)},
        )
    if not isinstance(tag, str) or tag not in models:
        raise PydanticCustomError(
            "union_tag_invalid",
            "Input tag {tag} found using {discriminator} does not match any of the"
            " expected tags: {expected_tags}",
            {
                "tag": repr(tag),
                "discriminator": repr(key),
                "expected_tags": ", ".join(repr(t) for t in sorted(models)),
            },
        )
    return models[tag].model_validate(data)


def _profile_item(data: object) -> object:
    kinds = registry().profile_kinds
    # ``protocol`` may be left out of a Modbus profile (the first kind there was).
    return validate_tagged(data, None, "protocol", {n: k.model for n, k in kinds.items()}, "modbus")


_PROFILE: TypeAdapter[Any] = TypeAdapter(Annotated[Any, BeforeValidator(_profile_item)])


def validate_profile(data: dict[str, Any]) -> DeviceProfile:
    """A profile file's mapping, validated by the model registered for its ``protocol``.

    Raises pydantic's ValidationError, as a model's validation does.
    """
    profile: DeviceProfile = _PROFILE.validate_python(data)
    return profile


def validate_source(data: object) -> object:
    """A ``sources`` item: validated by the model registered for its ``type``."""
    sources = registry().sources
    return validate_tagged(data, SourceConfig, "type", {n: p.config for n, p in sources.items()})


def validate_rule(data: object, base: type[BaseModel]) -> object:
    """A rule file's ``rules`` item: validated by the model registered for its ``kind``."""
    kinds = registry().rule_kinds
    return validate_tagged(data, base, "kind", {n: k.model for n, k in kinds.items()})
