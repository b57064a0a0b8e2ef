"""The contracts a plugin implements: Source, Sink, rule kind, and their registrations.

A plugin is registered by name with its pydantic config model and a factory.
The core builds plugins through these registrations once, when it wires a
site; after that it only calls the protocol methods below, so no lookup sits
on the per-sample path.

- ``Source``: one physical connection and the devices behind it. Entering it
  (``async with``) starts it, ``run()`` reads until cancelled and never raises
  for device or link trouble, leaving it stops it. Every reading goes out as a
  ``Sample`` through the ``emit`` coroutine in its ``SourceContext``.
- ``Sink``: the delivery protocol of ``gateway.sinks.base`` (re-exported here).
- Rule kind: a rule model (``kind: Literal[...]``) and the factory of the
  sample-driven check that evaluates it (``None`` for time-driven kinds).
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING, Annotated, Any, Protocol, TextIO, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, model_validator

from gateway.model import Clock, Sample
from gateway.validators import check_order

if TYPE_CHECKING:
    from gateway.config import DeviceConfig
    from gateway.sinks.base import Sink
    from gateway.sources.device_poll import DeviceCounters

ID = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=64)]
PLUGIN_NAME = r"^[a-z][a-z0-9_]*$"

Emit = Callable[[Sample], Awaitable[None]]


@cache
def resolve(ref: Callable[..., Any] | str) -> Callable[..., Any]:
    """A callable, or a ``"module:attribute"`` reference to one, imported on first use.

    A reference keeps a registration light: validating a site loads the
    plugin's config model only, not its implementation and its libraries.
    """
    if callable(ref):
        return ref
    module, _, attr = ref.partition(":")
    target = getattr(importlib.import_module(module), attr)
    if not callable(target):
        raise TypeError(f"{ref}: not callable")
    return target  # type: ignore[no-any-return]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SourceConfig(Strict):
    """What every source's config has; a plugin's model adds ``type: Literal[name]``."""

    id: ID
    type: str
    # Lower bounds on every timer: below them a dead device or a typo turns
    # into a busy loop or a flood of bad samples.
    timeout_s: float = Field(default=1.0, ge=0.05, le=60)
    retries: int = Field(default=1, ge=0, le=10)
    reconnect_min_s: float = Field(default=0.5, ge=0.05, le=60)
    reconnect_max_s: float = Field(default=30.0, ge=0.1, le=3600)

    @model_validator(mode="after")
    def _reconnect_order(self) -> SourceConfig:
        check_order(self, "reconnect_min_s", "reconnect_max_s")
        return self

    def check_devices(self, device_ids: set[str]) -> list[str]:
        """Problems between this source's settings and its devices (ids), for the loader."""
        return []

    def check_profile(self, device_id: str, profile: Any) -> list[str]:
        """Problems between this source's settings and one device's profile, for the loader."""
        return []

    def secret_warnings(self) -> list[str]:
        """Secrets this source would send in the clear (``gateway check``, start-up log)."""
        return []

    def addresses_by_unit(self, device_id: str) -> bool:
        """Whether the device is addressed by its ``unit`` (unique per source) here."""
        return True


@runtime_checkable
class Source(Protocol):
    """What the gateway needs from a running source (see the module docstring)."""

    @property
    def cfg(self) -> SourceConfig: ...

    # None until the first connection attempt, then whether the link is up.
    link_ok: bool | None
    link_error: str

    async def __aenter__(self) -> Any: ...

    async def __aexit__(self, *exc: object) -> None: ...

    async def run(self) -> None: ...

    def device_counters(self) -> Mapping[str, DeviceCounters]:
        """Health counters of every device behind this source, by device id."""
        ...


@dataclass(frozen=True)
class BoundDevice:
    """A device as a source gets it: its site config and its resolved profile."""

    config: DeviceConfig
    profile: Any


@dataclass(frozen=True)
class SourceContext:
    """What the core hands a source factory besides its config and devices."""

    emit: Emit
    clock: Clock
    site_tags: Mapping[str, str]


@dataclass(frozen=True)
class SimContext:
    """What firmware_sim hands a plugin's simulator: the site, the chosen scenario
    (firmware_sim.scenarios.ResolvedScenario), the simulation clock, the options."""

    site: Any
    scenario: Any
    clock: Any
    wire_time: bool
    seed: int


class SimPart(Protocol):
    """A running simulator: firmware_sim closes it at the end of the run."""

    async def aclose(self) -> None: ...


# (source config, context) -> (the started part, one "serving ..." line), or None
# when the source has no device to simulate.
SimFactory = Callable[[Any, SimContext], Awaitable[tuple[SimPart, str] | None]]


@dataclass(frozen=True)
class SourcePlugin:
    """A source type: ``name`` is the value of ``type:`` in a site's ``sources``.

    ``profile_protocols``: the profile ``protocol`` values its devices may use.
    ``one_device``: the connection belongs to one device (a serial reader line).
    ``unit_addressed``: devices share the connection by ``unit`` and are polled
    (unit ids must be unique, and the poll interval must exceed the timeout).
    ``patrol_reader``: its devices are patrol readers whose frame errors and
    overruns the patrol reports.
    ``describe_device``: one line about a device for ``gateway check``.
    ``simulator``: starts the plugin's simulator (its ``sim.py``) for
    ``gateway-sim``; None: the simulator has none (or, for the built-in
    Modbus and serial-line sources, starts its own).
    """

    name: str
    config: type[SourceConfig]
    # (config, devices, context) -> Source, or its "module:attribute" reference.
    factory: Callable[[Any, Sequence[BoundDevice], SourceContext], Source] | str
    profile_protocols: frozenset[str]
    one_device: bool = False
    unit_addressed: bool = False
    patrol_reader: bool = False
    # One line about a device for ``gateway check`` (e.g. its read plan); None: nothing.
    describe_device: Callable[[DeviceConfig, Any], str] | str | None = None
    simulator: SimFactory | str | None = None

    def make(self, cfg: SourceConfig, devices: Sequence[BoundDevice], ctx: SourceContext) -> Source:
        source: Source = resolve(self.factory)(cfg, devices, ctx)
        return source

    async def start_sim(self, cfg: SourceConfig, ctx: SimContext) -> tuple[SimPart, str] | None:
        if self.simulator is None:
            return None
        started: tuple[SimPart, str] | None = await resolve(self.simulator)(cfg, ctx)
        return started

    def describe(self, device: DeviceConfig, profile: Any) -> str:
        if self.describe_device is None:
            return ""
        text: str = resolve(self.describe_device)(device, profile)
        return text


@dataclass(frozen=True)
class SinkContext:
    """What the core hands a sink factory besides its config."""

    site: str
    clock: Clock
    units: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    stdout: TextIO | None = None


@dataclass(frozen=True)
class CommandContext:
    """What a sink's command channel gets: the site, the gateway's command handler
    (payload, actor) -> reply, and the gate every command passes first."""

    site: str
    handle: Callable[[Any, str], dict[str, Any]]
    gate: CommandGateLike | None


class CommandGateLike(Protocol):
    """The gate of gateway.alerting.command_gate (signatures, freshness, replays, rates),
    as a command channel uses it: injected, so plugins do not import alerting."""

    def answer(
        self, raw: bytes | str, handle: Callable[[Any, str], dict[str, Any]]
    ) -> dict[str, Any] | None: ...

    def close(self) -> None: ...


class LiveView(Protocol):
    """A sink that sees every item as it is appended, before the outbox (the console)."""

    def emit(self, item: Any) -> None: ...


@dataclass(frozen=True)
class SinkPlugin:
    """A sink type: ``name`` is its key under a site's ``sinks``.

    ``factory`` builds a durable ``Sink`` fed from the outbox, or, when
    ``live``, a ``LiveView`` called as each item is appended (no outbox, no
    cursor). ``lane`` builds a second sink that carries alarm transitions only,
    on their own thread, outbox file and connection (gateway.alarm_lane), or
    returns None when the config asks for none. ``commands`` is the sink's
    operator command channel, a coroutine run while the gateway runs (MQTT:
    the command topic), or None.
    """

    name: str
    config: type[BaseModel]
    # (config, context) -> Sink (or LiveView), or its "module:attribute" reference.
    factory: Callable[[Any, SinkContext], Any] | str
    live: bool = False
    lane: Callable[[Any, SinkContext], Sink | None] | str | None = None
    commands: Callable[[Any, CommandContext], Coroutine[Any, Any, None]] | str | None = None

    def make(self, cfg: BaseModel, ctx: SinkContext) -> Sink:
        sink: Sink = resolve(self.factory)(cfg, ctx)
        return sink

    def make_live(self, cfg: BaseModel, ctx: SinkContext) -> LiveView:
        view: LiveView = resolve(self.factory)(cfg, ctx)
        return view

    def make_command_channel(
        self, cfg: BaseModel, ctx: CommandContext
    ) -> Coroutine[Any, Any, None] | None:
        if self.commands is None:
            return None
        channel: Coroutine[Any, Any, None] = resolve(self.commands)(cfg, ctx)
        return channel

    def make_lane(self, cfg: BaseModel, ctx: SinkContext) -> Sink | None:
        if self.lane is None:
            return None
        sink: Sink | None = resolve(self.lane)(cfg, ctx)
        return sink


@dataclass(frozen=True)
class RuleKindPlugin:
    """A rule kind: ``name`` is the value of ``kind:`` in a rule file.

    ``check`` builds the sample-driven check of one rule on one device, with
    the signature of ``gateway.alerting.checks.build_check``; None for kinds the
    engine drives by time (no_data, health).
    """

    name: str
    model: type[BaseModel]
    check: Callable[..., Any] | None = None


class DeviceProfile(Protocol):
    """What the core reads of any device profile (a plugin's profile model adds the rest)."""

    @property
    def name(self) -> str: ...

    @property
    def protocol(self) -> str: ...

    @property
    def kind(self) -> str: ...

    @property
    def description(self) -> str: ...

    def point_names(self) -> list[str]: ...

    def point_units(self) -> dict[str, str]: ...

    def model_dump(self, **kwargs: Any) -> dict[str, Any]: ...


@dataclass(frozen=True)
class ProfileKindPlugin:
    """A kind of device profile: ``name`` is the value of ``protocol:`` in a profile file.

    Its model has ``protocol: Literal[name]`` and gives ``point_names()`` and
    ``point_units()``. A source plugin lists the protocols its devices may use.
    """

    name: str
    model: type[BaseModel]
    # Comment lines ``gateway profiles show`` adds (Modbus: the read plan); None: none.
    explain: Callable[[Any], list[str]] | str | None = None

    def explanation(self, profile: Any) -> list[str]:
        if self.explain is None:
            return []
        lines: list[str] = resolve(self.explain)(profile)
        return lines


Plugin = SourcePlugin | SinkPlugin | RuleKindPlugin | ProfileKindPlugin


class SinkConfig(Strict):
    """What every sink's config has: a sink can be configured and switched off."""

    enabled: bool = True


class DeliverySettings(Strict):
    """How a durable sink's delivery worker batches and retries (gateway/delivery.py)."""

    batch_size: int = Field(default=500, ge=1, le=100_000)
    # How long a partial batch may wait to fill before it is sent.
    flush_interval_s: float = Field(default=0.0, ge=0, le=60)
    timeout_s: float = Field(default=10.0, ge=0.5, le=300)
    retry_min_s: float = Field(default=0.5, ge=0.05, le=60)
    retry_max_s: float = Field(default=30.0, ge=0.1, le=3600)

    @model_validator(mode="after")
    def _retry_order(self) -> DeliverySettings:
        if self.retry_min_s > self.retry_max_s:
            raise ValueError("retry_min_s must not exceed retry_max_s")
        return self
