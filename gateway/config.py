"""Site configuration: models (pydantic, ``extra="forbid"``) and loading with file:line errors.

A site file names the site, its sources (one per physical connection), its
devices (profile, unit id, source, poll interval, tags), extra profile
folders, the sinks and the outbox. ``${VAR}`` / ``${VAR:-default}`` pull
secrets from the environment. ``load_site`` validates the file and every
profile it uses, and raises one ``ConfigError`` listing every problem, each
naming the file, the line where known, the device and the field.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from gateway.alerting.ack_link import ConsoleSiteConfig
from gateway.alerting.command_config import CommandsConfig
from gateway.alerting.config import AlertingConfig
from gateway.errors import ConfigError
from gateway.local_http import LocalHttpConfig
from gateway.patrol.config import PatrolConfig

# plugin wiring: replaced by the registry (plugin-core)
from gateway.plugins.mbus.config import MBusSourceConfig
from gateway.plugins.mbus.profile import MBusProfile
from gateway.plugins.opcua.config import OpcUaSourceConfig
from gateway.plugins.opcua.profile import OpcUaProfile
from gateway.profiles.registry import AnyProfile, ProfileRegistry
from gateway.profiles.schema import SerialLineProfile, SimBehaviour
from gateway.reports.config import ReportsConfig
from gateway.validators import TimeZoneName, check_order
from gateway.yamlfile import LinedData, explain, load_yaml

ID = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=64)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --------------------------------------------------------------------------- sources


class _SourceBase(Strict):
    id: ID
    # Lower bounds on every timer: below them a dead device or a typo turns
    # into a busy loop or a flood of bad samples.
    timeout_s: float = Field(default=1.0, ge=0.05, le=60)
    retries: int = Field(default=1, ge=0, le=10)
    reconnect_min_s: float = Field(default=0.5, ge=0.05, le=60)
    reconnect_max_s: float = Field(default=30.0, ge=0.1, le=3600)

    @model_validator(mode="after")
    def _reconnect_order(self) -> _SourceBase:
        check_order(self, "reconnect_min_s", "reconnect_max_s")
        return self


class ModbusTcpSource(_SourceBase):
    type: Literal["modbus_tcp"]
    host: str
    port: int = Field(default=502, ge=1, le=65535)


class _SerialSettings(_SourceBase):
    port: str
    baudrate: Literal[1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200] = 9600
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1
    bytesize: Literal[7, 8] = 8

    @property
    def bits_per_char(self) -> int:
        return 1 + self.bytesize + (0 if self.parity == "N" else 1) + self.stopbits


class ModbusRtuSource(_SerialSettings):
    type: Literal["modbus_rtu"]
    timeout_s: float = Field(default=0.3, ge=0.05, le=60)
    # A unit that failed this many polls in a row is polled only once per
    # ``dead_unit_backoff_s`` so it cannot eat the line's time.
    dead_after: int = Field(default=3, ge=1)
    dead_unit_backoff_s: float = Field(default=10.0, ge=1, le=3600)


class SerialLineSource(_SerialSettings):
    type: Literal["serial_line"]
    # No line at all for this long marks the reader offline (points bad).
    # Off by default: a checkpoint reader is silent between taps.
    silence_s: float | None = Field(default=None, ge=1, le=86400)
    # Lines accepted per second (token bucket, bursts up to max_burst_lines); lines over
    # the rate are dropped unread and counted (overruns), so a flooding reader cannot
    # starve the other sources. A person taps a checkpoint every few seconds at most.
    max_lines_per_s: float = Field(default=10.0, ge=0.1, le=10_000)
    max_burst_lines: int = Field(default=30, ge=1, le=100_000)


# plugin wiring: replaced by the registry (plugin-core)
AnySource = (
    ModbusTcpSource | ModbusRtuSource | SerialLineSource | MBusSourceConfig | OpcUaSourceConfig
)
Source = Annotated[AnySource, Field(discriminator="type")]


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


class ConsoleSink(Strict):
    enabled: bool = True
    pretty: bool = False


class _DeliverySettings(Strict):
    # How a delivery worker batches and retries; see gateway/delivery.py.
    batch_size: int = Field(default=500, ge=1, le=100_000)
    # How long a partial batch may wait to fill before it is sent.
    flush_interval_s: float = Field(default=0.0, ge=0, le=60)
    timeout_s: float = Field(default=10.0, ge=0.5, le=300)
    retry_min_s: float = Field(default=0.5, ge=0.05, le=60)
    retry_max_s: float = Field(default=30.0, ge=0.1, le=3600)

    @model_validator(mode="after")
    def _retry_order(self) -> _DeliverySettings:
        if self.retry_min_s > self.retry_max_s:
            raise ValueError("retry_min_s must not exceed retry_max_s")
        return self


class MqttTls(Strict):
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    # Skip the server host name check (the certificate chain is still verified).
    insecure: bool = False

    @model_validator(mode="after")
    def _pair(self) -> MqttTls:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together (client certificate)")
        return self


class MqttSinkConfig(_DeliverySettings):
    enabled: bool = True
    host: str = "localhost"
    port: int = Field(default=1883, ge=1, le=65535)
    # Topics: <prefix>/<site>/... (see docs/delivery.md); no wildcards or empty levels.
    prefix: str = Field(default="fsg", pattern=r"^[^+#/]+(/[^+#/]+)*$")
    client_id: str | None = None  # default: fsg-<site>
    username: str | None = None
    password: str | None = None
    protocol: Literal["3.1.1", "5"] = "3.1.1"
    tls: MqttTls | None = None
    keepalive: int = Field(default=30, ge=5, le=3600)
    # QoS 0 is not offered: the outbox cursor only advances on a PUBACK.
    qos: Literal[1, 2] = 1
    # At least one batch in flight: the worker waits for every PUBACK of a batch
    # (bench: 100 cut MQTT to ~14,000 points/s, 1000 keeps up with the CPU).
    max_inflight: int = Field(default=1000, ge=1, le=65535)
    # Alarm transitions on their own thread, outbox file and connection (client
    # id "<id>-alarms", gateway/alarm_lane.py): never queued behind telemetry.
    alarm_lane: bool = True


class InfluxSinkConfig(_DeliverySettings):
    enabled: bool = True
    # v2: influxdb-client write API (InfluxDB 2.x/3.x, 1.8+ with a v1 token
    # "user:password", VictoriaMetrics). v1: POST /write?db=&rp= for 1.x < 1.8.
    mode: Literal["v2", "v1"] = "v2"
    url: str = "http://localhost:8086"
    token: str | None = None
    org: str | None = None
    bucket: str | None = None
    database: str | None = None
    retention_policy: str | None = None
    username: str | None = None
    password: str | None = None
    gzip: bool = True
    verify_ssl: bool = True
    # v1 only: CREATE DATABASE (idempotent) on every connect, e.g. for the demo.
    create_database: bool = False
    batch_size: int = Field(default=5000, ge=1, le=100_000)
    flush_interval_s: float = Field(default=1.0, ge=0, le=60)

    @model_validator(mode="after")
    def _mode_fields(self) -> InfluxSinkConfig:
        if self.mode == "v2" and not self.bucket:
            raise ValueError("mode v2 needs bucket (and org and token for InfluxDB 2.x)")
        if self.mode == "v1" and not self.database:
            raise ValueError("mode v1 needs database")
        return self


class Sinks(Strict):
    console: ConsoleSink | None = None
    mqtt: MqttSinkConfig | None = None
    influx: InfluxSinkConfig | None = None


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


# --------------------------------------------------------------------------- simulation


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
    simulation: SimulationConfig = Field(default_factory=SimulationConfig)
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

    # plugin wiring: replaced by the registry (plugin-core)
    def source(self, source_id: str) -> AnySource:
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

    def devices_of(self, source_id: str) -> list[DeviceConfig]:
        return [d for d in self.config.devices if d.source == source_id and d.enabled]


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
        for pname in dev.sim:
            names = (
                {f.name for f in prof.fields}
                if isinstance(prof, SerialLineProfile)
                else {p.name for p in prof.points}
            )
            if pname not in names:
                problems.append(f"{at('sim')}: device {dev.id!r}: sim: unknown point {pname!r}")
        if src is None:
            continue
        # plugin wiring: replaced by the registry (plugin-core)
        if isinstance(prof, OpcUaProfile) or isinstance(src, OpcUaSourceConfig):
            if not (isinstance(prof, OpcUaProfile) and isinstance(src, OpcUaSourceConfig)):
                problems.append(
                    f"{at('profile')}: device {dev.id!r}: profile {prof.name!r} speaks"
                    f" {prof.protocol} but source {src.id!r} is {src.type}"
                )
            continue
        if isinstance(prof, SerialLineProfile) != isinstance(src, SerialLineSource) or (
            isinstance(prof, MBusProfile) != isinstance(src, MBusSourceConfig)
        ):
            problems.append(
                f"{at('profile')}: device {dev.id!r}: profile {prof.name!r} speaks"
                f" {prof.protocol} but source {src.id!r} is {src.type}"
            )
            continue
        if isinstance(src, SerialLineSource):
            if src.id in serial_users:
                problems.append(
                    f"{at('source')}: device {dev.id!r}: serial line {src.id!r} already"
                    f" belongs to device {serial_users[src.id]!r}"
                )
            serial_users[src.id] = dev.id
            continue
        key = (src.id, dev.unit)
        # plugin wiring: replaced by the registry (plugin-core)
        if isinstance(src, MBusSourceConfig) and dev.id in src.secondary:
            key = (src.id, -1 - len(units))  # read by secondary address: unit unused
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
    # plugin wiring: replaced by the registry (plugin-core)
    for src in cfg.sources:
        if isinstance(src, MBusSourceConfig):
            problems.extend(src.check_devices({d.id for d in cfg.devices if d.source == src.id}))
    return resolved, problems


def _check_rules_and_patrol(cfg: SiteConfig, path: Path, registry: ProfileRegistry) -> list[str]:
    """Rule files and the patrol config, checked against the site's devices and profiles."""
    # Imported here: both packages build on this module.
    from gateway.alerting.rules import check_against_devices, load_rules
    from gateway.patrol.config import check_against_devices as check_patrol
    from gateway.patrol.config import resolve_patrol

    problems: list[str] = []
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
                prof = registry.get(name)
                points[name] = (
                    {f.name for f in prof.fields}
                    if isinstance(prof, SerialLineProfile)
                    else {p.name for p in prof.points}
                )
            problems.extend(check_against_devices(ruleset, devices, points))
    try:
        patrol = resolve_patrol(cfg.patrol, path)
    except ConfigError as exc:
        problems.extend(exc.problems)
    else:
        if patrol is not None:
            problems.extend(check_patrol(patrol, {d.id for d in cfg.devices}, str(path)))
    return problems


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
    problems.extend(_check_rules_and_patrol(cfg, path, registry))
    if cfg.reports is not None:
        routes = {r.name for r in cfg.alerting.routes} if cfg.alerting else set()
        problems.extend(cfg.reports.problems({d.id for d in cfg.devices}, routes, str(path)))
    if problems:
        raise ConfigError(problems[0], problems)
    return Site(config=cfg, path=path, profiles=registry, device_profiles=resolved)
