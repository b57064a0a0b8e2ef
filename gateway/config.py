"""The site schema: pydantic models (``extra="forbid"``) of a site file, and ``Site``.

A site file names the site, its sources (one per physical connection), its
devices (profile, unit id, source, poll interval, tags), extra profile
folders, the sinks and the outbox. A source's model, and a plugin sink's, is
the one its plugin registered (gateway.plugins). Reading a file, ``${VAR}``
expansion and the checks across files (profiles, rules, patrol) are
``gateway.loader``'s: this module imports nothing above the schema.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from gateway.alerting.ack_link import ConsoleSiteConfig
from gateway.alerting.command_config import CommandsConfig
from gateway.alerting.config import AlertingConfig
from gateway.local_http_config import LocalHttpConfig
from gateway.patrol.config import PatrolConfig
from gateway.plugins import registry as plugin_registry
from gateway.plugins import validate_source
from gateway.plugins.base import ID, SourceConfig, Strict

# The built-in sinks' models, and the built-in sources' models under their old names.
from gateway.plugins.console.config import ConsoleSink
from gateway.plugins.influx.config import InfluxSinkConfig
from gateway.plugins.modbus.config import ModbusRtuSource, ModbusTcpSource
from gateway.plugins.mqtt.config import MqttSinkConfig, MqttTls
from gateway.plugins.serial_line.config import SerialLineSource
from gateway.profiles.registry import AnyProfile, ProfileRegistry
from gateway.profiles.schema import SimBehaviour
from gateway.reports.config import ReportsConfig
from gateway.validators import TimeZoneName

if TYPE_CHECKING:
    from gateway.alerting.rules import RuleSet

__all__ = [
    "ID",
    "ConsoleSink",
    "DeviceConfig",
    "InfluxSinkConfig",
    "ModbusRtuSource",
    "ModbusTcpSource",
    "MqttSinkConfig",
    "MqttTls",
    "SerialLineSource",
    "Sinks",
    "Site",
    "SiteConfig",
    "Source",
    "SourceConfig",
    "Strict",
]


# --------------------------------------------------------------------------- sources


# A source's model is the one registered for its ``type`` (gateway.plugins).
Source = Annotated[SourceConfig, BeforeValidator(validate_source)]


# --------------------------------------------------------------------------- devices


class DeviceConfig(Strict):
    id: ID
    profile: str
    source: str
    unit: int = Field(default=1, ge=0, le=247)
    interval_s: float = Field(default=1.0, ge=0.1, le=86400)
    tags: dict[str, str] = Field(default_factory=dict)
    max_gap: int | None = Field(default=None, ge=0, le=124)
    enabled: bool = True
    # Simulator-only: override point behaviours for this device (see firmware_sim).
    sim: dict[str, SimBehaviour] = Field(default_factory=dict)

    @property
    def area(self) -> str:
        return self.tags.get("area", "")


# --------------------------------------------------------------------------- sinks


class Sinks(Strict):
    console: ConsoleSink | None = None
    mqtt: MqttSinkConfig | None = None
    influx: InfluxSinkConfig | None = None
    # Every other key names a registered sink plugin (gateway.plugins); its
    # config, validated by the plugin's model, lands here by name.
    plugins: dict[str, BaseModel] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _gather_plugins(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        known = set(cls.model_fields)
        others = {k: v for k, v in data.items() if k not in known}
        if not others:
            return data
        return {
            **{k: v for k, v in data.items() if k in known},
            "plugins": {**data.get("plugins", {}), **others},
        }

    def configured(self) -> dict[str, BaseModel]:
        """Every enabled sink's config by its registered name, built-in and plugin."""
        named: dict[str, BaseModel | None] = {
            name: getattr(self, name) for name in type(self).model_fields if name != "plugins"
        }
        named.update(self.plugins)
        return {
            name: cfg
            for name, cfg in named.items()
            if cfg is not None and getattr(cfg, "enabled", True)
        }

    @field_validator("plugins", mode="before")
    @classmethod
    def _validate_plugins(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        sinks = plugin_registry().sinks
        out: dict[str, Any] = {}
        for name, value in data.items():
            if name not in sinks or name in cls.model_fields:
                known = sorted(set(sinks) | (set(cls.model_fields) - {"plugins"}))
                raise ValueError(f"unknown sink {name!r} (known: {', '.join(known)})")
            try:
                out[name] = sinks[name].config.model_validate(value or {})
            except ValidationError as exc:
                problems = [
                    f"{'.'.join(str(p) for p in e['loc']) or name}: {e['msg']}"
                    for e in exc.errors()
                ]
                raise ValueError(f"sink {name!r}: {'; '.join(problems)}") from None
        return out


class OutboxConfig(Strict):
    path: str = "gateway-outbox.sqlite"
    # Live rows past this size evict the oldest telemetry; alarm events are kept.
    # Unset: 256 MB, or half the free space at start if less (gateway/disk_space.py).
    max_bytes: int = Field(default=256 * 1024 * 1024, gt=0)
    # full: fsync per commit, survives power loss; normal: survives kill -9 only.
    synchronous: Literal["normal", "full"] = "full"
    # Appends are committed in one transaction per interval.
    flush_interval_s: float = Field(default=0.05, ge=0.01, le=5)
    # Appends waiting for the commit; past it the oldest telemetry is dropped and counted.
    max_pending: int = Field(default=100_000, ge=100)


class PipelineConfig(Strict):
    # Samples waiting between the sources and the pipeline. When full, the
    # source waits (back-pressure), so a slow consumer delays polls instead
    # of silently dropping readings; the delay shows as data age.
    queue_size: int = Field(default=10_000, ge=10)
    # The gateway reports its own health (per-device poll counters, queue
    # depth, data age, delivery backlog) as samples this often.
    health_interval_s: float = Field(default=10.0, ge=1, le=3600)
    # A reading still undelivered to some sink after this long raises the
    # gateway's "outbox:backlog" alarm: falling behind is an alarm, not a silence.
    max_delivery_age_s: float = Field(default=120.0, ge=5, le=7 * 86400)


# --------------------------------------------------------------------------- site


class SiteConfig(Strict):
    site: ID
    description: str = ""
    # Where local times are shown (``gateway alarms list``); unset: the on-call
    # roster's time zone (alerting.roster.timezone), else UTC.
    timezone: TimeZoneName | None = None
    profile_dirs: list[str] = Field(default_factory=list)
    sources: list[Source] = Field(min_length=1)
    devices: list[DeviceConfig] = Field(min_length=1)
    sinks: Sinks = Field(default_factory=Sinks)
    outbox: OutboxConfig = Field(default_factory=OutboxConfig)
    pipeline: PipelineConfig = Field(default_factory=PipelineConfig)
    # The gateway's own /healthz and /metrics (gateway/local_http.py).
    local_http: LocalHttpConfig = Field(default_factory=LocalHttpConfig)
    # What `gateway console` allows for this site (one-tap acknowledgement links).
    console: ConsoleSiteConfig = Field(default_factory=ConsoleSiteConfig)
    # The simulator's section (scenarios, wire time): firmware_sim.schema validates it;
    # the gateway does not read it.
    simulation: dict[str, Any] = Field(default_factory=dict)
    # Alert rule files (rules/*.yaml), relative to the site file.
    rules: list[str] = Field(default_factory=list)
    alerting: AlertingConfig | None = None
    # The MQTT command channel (gateway/alerting/command_config.py); ``commands: false`` closes it.
    commands: CommandsConfig = Field(default_factory=CommandsConfig)
    # Night patrol: inline, or the path of its YAML file relative to the site
    # file (rules/patrol.yaml); gateway.patrol.resolve_patrol reads either.
    patrol: str | PatrolConfig | None = None
    # Daily reports (gateway/reports/config.py): schedule, gas plan, shedding order.
    reports: ReportsConfig | None = None

    @model_validator(mode="after")
    def _unique_ids(self) -> SiteConfig:
        seen: set[str] = set()
        for s in self.sources:
            if s.id in seen:
                raise ValueError(f"source id {s.id!r} is used twice")
            seen.add(s.id)
        seen = set()
        for d in self.devices:
            if d.id in seen:
                raise ValueError(f"device id {d.id!r} is used twice")
            seen.add(d.id)
        return self

    def source(self, source_id: str) -> SourceConfig:
        for s in self.sources:
            if s.id == source_id:
                return s
        raise KeyError(source_id)


@dataclass(frozen=True)
class Site:
    """A validated site: the config, where it came from, and the resolved profiles."""

    config: SiteConfig
    path: Path
    profiles: ProfileRegistry
    device_profiles: dict[str, AnyProfile]
    # The site's rule files, loaded and checked against its devices (gateway.loader).
    rules: RuleSet | None = None

    def devices_of(self, source_id: str) -> list[DeviceConfig]:
        return [d for d in self.config.devices if d.source == source_id and d.enabled]
