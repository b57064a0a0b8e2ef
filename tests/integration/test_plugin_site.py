"""A source and a sink defined only here run in a site, with no change to the core.

The toy plugins are registered twice over: through ``gateway.plugins.register``
and through the ``facility_safety_gateway.plugins`` entry-point group, from a
distribution's metadata (a ``dist-info`` folder) put on ``sys.path`` by the test.
The site runs the real Gateway: registry-built config, the real outbox and the
delivery worker feeding the toy sink.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Literal, Self

import pytest
from pydantic import BaseModel, ConfigDict, Field

from firmware_sim.runner import Simulator
from firmware_sim.scenarios import resolve as resolve_scenario
from gateway import plugins
from gateway.app import Gateway
from gateway.errors import ConfigError
from gateway.loader import load_site
from gateway.model import Quality, Sample
from gateway.outbox import Record
from gateway.plugins.base import (
    BoundDevice,
    ProfileKindPlugin,
    SimContext,
    SinkConfig,
    SinkContext,
    SinkPlugin,
    SourceConfig,
    SourceContext,
    SourcePlugin,
)
from gateway.profiles.registry import ProfileRegistry
from gateway.sources.device_poll import DeviceCounters

WAIT_S = 30.0


class ToyPoint(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    unit: str = ""


class ToyProfile(BaseModel):
    """A device profile of a protocol the core has never heard of."""

    model_config = ConfigDict(extra="forbid")
    name: str
    protocol: Literal["toy"]
    kind: str
    description: str = ""
    points: list[ToyPoint] = Field(min_length=1)

    def point_names(self) -> list[str]:
        return [p.name for p in self.points]

    def point_units(self) -> dict[str, str]:
        return {p.name: p.unit for p in self.points if p.unit}


class ToySourceConfig(SourceConfig):
    type: Literal["toy"]
    samples: int = Field(default=3, ge=1, le=100)


class ToySource:
    """Emits ``samples`` readings per device, then idles until cancelled."""

    def __init__(self, cfg: ToySourceConfig, devices: Sequence[BoundDevice], ctx: SourceContext):
        self.cfg = cfg
        self.devices = list(devices)
        self.ctx = ctx
        self.link_ok: bool | None = None
        self.link_error = ""
        self.counters = {d.config.id: DeviceCounters() for d in devices}

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    def device_counters(self) -> Mapping[str, DeviceCounters]:
        return self.counters

    async def run(self) -> None:
        self.link_ok = True
        for i in range(self.cfg.samples):
            for d in self.devices:
                self.counters[d.config.id].polls += 1
                await self.ctx.emit(
                    Sample(
                        device=d.config.id,
                        kind=d.profile.kind,
                        ts_ns=self.ctx.clock.now_ns(),
                        values={"level": float(i)},
                        quality={"flow": Quality.BAD},
                        tags={**self.ctx.site_tags, **d.config.tags},
                    )
                )
        await asyncio.Event().wait()


class ToySinkConfig(SinkConfig):
    label: str


class ToySink:
    """Keeps every record it is sent; ``got`` is set once ``want`` samples arrived."""

    batch_size = 100
    flush_interval_s = 0.0
    retry_min_s = 0.1
    retry_max_s = 1.0

    def __init__(self, cfg: ToySinkConfig, ctx: SinkContext) -> None:
        self.name = f"toy-{cfg.label}"
        self.site = ctx.site
        self.records: list[Record] = []
        self.got = asyncio.Event()
        self.want = 0
        SINKS.append(self)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def aclose(self) -> None:
        return None

    async def send(self, records: Sequence[Record]) -> None:
        self.records.extend(records)
        if (
            sum(
                isinstance(r.item, Sample) and r.item.kind != "gateway_health" for r in self.records
            )
            >= self.want
        ):
            self.got.set()


class ToySim:
    """The toy's simulator: it only says where it would serve, and whether it was closed."""

    def __init__(self, devices: list[str]) -> None:
        self.devices = devices
        self.closed = False

    async def aclose(self) -> None:
        self.closed = True


SIMS: list[ToySim] = []


async def start_toy_sim(cfg: ToySourceConfig, ctx: SimContext) -> tuple[ToySim, str] | None:
    devices = [d.id for d in ctx.site.devices_of(cfg.id)]
    if not devices:
        return None
    sim = ToySim(devices)
    SIMS.append(sim)
    return sim, f"serving {cfg.id}: toy devices {', '.join(devices)}"


SINKS: list[ToySink] = []
TOY_SOURCE = SourcePlugin(
    name="toy",
    config=ToySourceConfig,
    factory=ToySource,
    profile_protocols=frozenset({"toy"}),
    simulator=start_toy_sim,
)
TOY_PROFILE = ProfileKindPlugin(name="toy", model=ToyProfile)
TOY_SINK = SinkPlugin(name="toy_sink", config=ToySinkConfig, factory=ToySink)
# What the entry point names.
TOY_PLUGINS = [TOY_SOURCE, TOY_SINK, TOY_PROFILE]

PROFILE = """\
name: toy-tank
protocol: toy
kind: tank
points:
  - {name: level, unit: m}
  - {name: flow}
"""

SITE = """\
site: toy-site
profile_dirs: [profiles]
sources:
  - {id: toy-1, type: toy, samples: 4}
devices:
  - {id: tank-1, profile: toy-tank, source: toy-1, tags: {area: yard}}
  - {id: tank-2, profile: toy-tank, source: toy-1}
sinks:
  toy_sink: {label: here}
outbox: {path: OUTBOX}
"""


def write_site(tmp_path: Path) -> Path:
    (tmp_path / "profiles").mkdir(exist_ok=True)
    (tmp_path / "profiles" / "toy-tank.yaml").write_text(PROFILE)
    path = tmp_path / "site.yaml"
    path.write_text(SITE.replace("OUTBOX", str(tmp_path / "outbox.sqlite")))
    return path


async def run_until_delivered(site_path: Path, want: int) -> ToySink:
    SINKS.clear()
    gw = Gateway(load_site(site_path), out=io.StringIO())
    (sink,) = SINKS
    sink.want = want
    stop = asyncio.Event()
    task = asyncio.create_task(gw.run(stop))
    try:
        await asyncio.wait_for(sink.got.wait(), WAIT_S)
    finally:
        stop.set()
        await asyncio.wait_for(task, WAIT_S)
    return sink


def check_delivered(sink: ToySink) -> None:
    samples = [r.item for r in sink.records if isinstance(r.item, Sample)]
    readings = [s for s in samples if s.kind == "tank"]
    assert sink.name == "toy-here" and sink.site == "toy-site"
    assert sorted((s.device, s.values["level"]) for s in readings) == sorted(
        (d, float(i)) for d in ("tank-1", "tank-2") for i in range(4)
    )
    assert all(s.tags["site"] == "toy-site" for s in readings)
    assert {s.tags.get("area") for s in readings if s.device == "tank-1"} == {"yard"}


@pytest.fixture
def registered() -> Iterator[None]:
    plugins.register(*TOY_PLUGINS)
    try:
        yield
    finally:
        plugins.unregister(*TOY_PLUGINS)


@contextlib.contextmanager
def distribution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *points: str) -> Iterator[None]:
    """A distribution ``fsg-toy`` on sys.path whose only content is its entry points."""
    dist = tmp_path / "dist" / "fsg_toy-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: fsg-toy\nVersion: 0.1\n")
    lines = "".join(f"{p}\n" for p in points)
    (dist / "entry_points.txt").write_text(f"[{plugins.ENTRY_POINT_GROUP}]\n{lines}")
    monkeypatch.syspath_prepend(str(dist.parent))
    plugins.reload()
    try:
        yield
    finally:
        monkeypatch.undo()
        plugins.reload()


@pytest.fixture
def entry_point(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    with distribution(
        tmp_path, monkeypatch, "toy = tests.integration.test_plugin_site:TOY_PLUGINS"
    ):
        yield


@pytest.mark.usefixtures("registered")
async def test_registered_plugins_run_in_a_site(tmp_path: Path) -> None:
    sink = await run_until_delivered(write_site(tmp_path), want=8)
    check_delivered(sink)


@pytest.mark.usefixtures("entry_point")
async def test_entry_point_plugins_run_in_a_site(tmp_path: Path) -> None:
    assert plugins.registry().sources["toy"] is TOY_SOURCE
    assert plugins.registry().sinks["toy_sink"] is TOY_SINK
    assert plugins.registry().profile_kinds["toy"] is TOY_PROFILE
    sink = await run_until_delivered(write_site(tmp_path), want=8)
    check_delivered(sink)


def test_an_unregistered_type_is_a_config_error(tmp_path: Path) -> None:
    assert "toy" not in plugins.registry().sources
    with pytest.raises(ConfigError) as info:
        load_site(write_site(tmp_path))
    text = "\n".join(info.value.problems)
    assert "'toy'" in text and "'modbus_tcp'" in text  # names the bad tag and the known ones
    assert "unknown sink 'toy_sink'" in text
    _, problems = ProfileRegistry.load([tmp_path / "profiles"])
    assert any("toy-tank.yaml" in p and "'serial_line'" in p for p in problems), problems


@pytest.mark.usefixtures("registered")
def test_a_plugin_config_is_validated_by_its_model(tmp_path: Path) -> None:
    path = write_site(tmp_path)
    path.write_text(path.read_text().replace("samples: 4", "samples: 0"))
    with pytest.raises(ConfigError) as info:
        load_site(path)
    assert any("samples" in p and "toy-1" in p for p in info.value.problems), info.value.problems


def test_a_name_taken_twice_is_refused() -> None:
    twin = SourcePlugin(
        name="modbus_tcp", config=ToySourceConfig, factory=ToySource, profile_protocols=frozenset()
    )
    with pytest.raises(ConfigError, match="already registered"):
        plugins.register(twin)


@pytest.mark.usefixtures("registered")
async def test_the_simulator_starts_a_plugins_simulator(tmp_path: Path) -> None:
    site = load_site(write_site(tmp_path))
    SIMS.clear()
    sim = Simulator(site, resolve_scenario(site, None))
    lines = await sim.start()
    assert lines == ["serving toy-1: toy devices tank-1, tank-2"]
    await sim.aclose()
    (part,) = SIMS
    assert part.closed


def test_a_broken_entry_point_is_logged_and_the_rest_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    with distribution(
        tmp_path,
        monkeypatch,
        "gone = fsg_no_such_module:PLUGIN",
        "junk = tests.integration.test_plugin_site:SITE",
        "toy = tests.integration.test_plugin_site:TOY_PLUGINS",
    ):
        reg = plugins.registry()
        assert reg.sources["toy"] is TOY_SOURCE and "modbus_tcp" in reg.sources
    text = caplog.text
    assert "gone" in text and "fsg_no_such_module" in text
    assert "junk ignored: not a plugin registration" in text
