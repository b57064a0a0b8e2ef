"""Fixtures of the OPC UA plugin's tests: the simulator on a free loopback port, certificates.

The server fixtures of tests/fixtures/servers.py (Mosquitto, InfluxDB) are
registered here as a plugin, as tests/conftest.py does, because this folder
lies outside tests/.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from types import MappingProxyType

import pytest

from gateway.config import DeviceConfig
from gateway.model import Sample, SystemClock
from gateway.plugins.opcua.config import OpcUaSourceConfig
from gateway.plugins.opcua.profile import OpcUaProfile
from gateway.plugins.opcua.sim import OpcUaSimServer, SimDevice, make_certificates
from gateway.plugins.opcua.source import OpcUaDevice, OpcUaSource
from gateway.profiles.registry import ProfileRegistry

SERVERS = "tests.fixtures.servers"


def pytest_configure(config: pytest.Config) -> None:
    # Once per run, whichever of tests/ and this folder is collected first.
    if not config.pluginmanager.has_plugin(SERVERS):
        config.pluginmanager.import_plugin(SERVERS)


PROFILE = "boiler-plc-opcua"
DEVICE = "boiler-plc-1"


def boiler_profile() -> OpcUaProfile:
    registry, problems = ProfileRegistry.load()
    assert not problems
    prof = registry.get(PROFILE)
    assert isinstance(prof, OpcUaProfile)
    return prof


def secure_plc(certs: dict[str, Path]) -> OpcUaSimServer:
    """The boiler PLC simulator with Basic256Sha256 and the user ``operator``/``s3cret``."""
    from tests.fixtures.servers import free_port

    return OpcUaSimServer(
        "127.0.0.1",
        free_port(),
        [SimDevice(DEVICE, boiler_profile())],
        secure=True,
        certificates=certs,
        users={"operator": "s3cret"},
    )


@pytest.fixture
def certs(tmp_path: Path) -> dict[str, Path]:
    return make_certificates(tmp_path / "pki")


@pytest.fixture
async def plc() -> AsyncIterator[OpcUaSimServer]:
    """The boiler PLC simulator, no security, anonymous."""
    from tests.fixtures.servers import free_port

    prof = boiler_profile()
    server = OpcUaSimServer("127.0.0.1", free_port(), [SimDevice(DEVICE, prof)])
    await server.start()
    yield server
    await server.stop()


class Samples:
    """What a source emitted, awaitable: ``wait_for`` returns the first sample that matches."""

    def __init__(self) -> None:
        self.all: list[Sample] = []
        self._new = asyncio.Event()

    async def emit(self, sample: Sample) -> None:
        self.all.append(sample)
        self._new.set()

    async def wait_for(
        self, pred: Callable[[Sample], bool], what: str = "", limit_s: float = 15.0
    ) -> Sample:
        seen = 0
        try:
            async with asyncio.timeout(limit_s):
                while True:
                    for s in self.all[seen:]:
                        if pred(s):
                            return s
                    seen = len(self.all)
                    self._new.clear()
                    await self._new.wait()
        except TimeoutError:
            last = self.all[-1] if self.all else None
            raise AssertionError(f"timed out waiting for {what}; last sample {last}") from None


def make_source(
    endpoint: str,
    samples: Samples,
    extra: Mapping[str, object] = MappingProxyType({}),
    **cfg: object,
) -> OpcUaSource:
    """The source under test, fast timers; ``extra`` and ``cfg`` override its settings."""
    source_cfg = OpcUaSourceConfig.model_validate(
        {
            "type": "opcua",
            "id": "plc",
            "endpoint": endpoint,
            "publishing_interval_s": 0.1,
            "sampling_interval_s": 0.05,
            "timeout_s": 2.0,
            "watchdog_s": 0.5,
            "reconnect_min_s": 0.2,
            "reconnect_max_s": 1.0,
            **extra,
            **cfg,
        }
    )
    dev = DeviceConfig(id=DEVICE, profile=PROFILE, source="plc", interval_s=0.3)
    prof = boiler_profile()
    return OpcUaSource(source_cfg, [OpcUaDevice(dev, prof)], samples.emit, SystemClock())


def all_good(s: Sample) -> bool:
    return not s.quality and len(s.values) == 5
