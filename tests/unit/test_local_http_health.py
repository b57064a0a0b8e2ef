"""The /healthz verdict (gateway.local_http.HealthWatch) on a gateway that is built (in an
event loop) but not run, its monotonic clock moved by hand: polling that stops for stall_s
is unhealthy, polling that goes on (even failing) is healthy, a gateway whose outbox is not
open cannot be "not committing"; the poll stall limit follows a reload; a disabled endpoint
starts nothing."""

from __future__ import annotations

import asyncio
from pathlib import Path

import yaml

from gateway.app import Gateway
from gateway.config import Site, SiteConfig
from gateway.loader import load_site
from gateway.local_http import GatewayCollector, HealthWatch, serve_local_http
from gateway.model import FakeClock
from gateway.plugins.modbus.source import ModbusSource
from gateway.profiles.registry import ProfileRegistry


def gateway(tmp_path: Path, **extra: object) -> Gateway:
    reg, _problems = ProfileRegistry.load([])
    cfg = SiteConfig.model_validate({
        "site": "p", "sources": [{"id": "t", "type": "modbus_tcp", "host": "127.0.0.1"}],
        "devices": [{"id": "blr-1", "profile": "boiler-controller", "source": "t",
                     "interval_s": 2}],
        "outbox": {"path": str(tmp_path / "o.sqlite")}, **extra,
    })  # fmt: skip
    site = Site(cfg, tmp_path / "site.yaml", reg, {"blr-1": reg.get("boiler-controller")})
    return Gateway(site, FakeClock(), state_dir=tmp_path)


async def test_polling_that_stops_is_unhealthy_and_polling_that_fails_is_not(
    tmp_path: Path,
) -> None:
    gw = gateway(tmp_path)
    now = [100.0]
    watch = HealthWatch(gw, stall_s=10, monotonic=lambda: now[0])
    assert watch.poll_stall_s == 10  # three 2 s intervals are less than stall_s
    (src,) = gw.sources
    assert isinstance(src, ModbusSource)
    counters = src.devices[0].counters
    assert watch.problems() == []
    for _ in range(5):  # a poll every 5 s, every one a timeout: still polling
        now[0] += 5
        counters.polls += 1
        counters.timeouts += 1
        assert watch.problems() == []
    now[0] += 11  # no poll for longer than stall_s
    assert watch.problems() == ["polling stalled: no poll for 11 s"]
    counters.polls += 1
    assert watch.problems() == []


async def test_a_slow_device_gets_three_of_its_intervals(tmp_path: Path) -> None:
    gw = gateway(tmp_path)
    gw.sources[0].devices[0].config.interval_s = 30  # type: ignore[union-attr]
    assert HealthWatch(gw, stall_s=10).poll_stall_s == 90


async def test_a_disabled_endpoint_starts_nothing(tmp_path: Path) -> None:
    gw = gateway(tmp_path, local_http={"enabled": False})
    await asyncio.wait_for(serve_local_http(gw), 5)  # returns at once


async def test_learned_splits_are_a_counter_per_device(tmp_path: Path) -> None:
    gw = gateway(tmp_path)
    gw.sources[0].devices[0].counters.learned_splits = 2  # type: ignore[union-attr]
    (family,) = (
        m
        for m in GatewayCollector(gw, HealthWatch(gw, stall_s=10)).collect()
        if m.name == "fsg_poll_learned_splits"
    )
    assert [(s.labels, s.value) for s in family.samples if s.name.endswith("_total")] == [
        ({"device": "blr-1"}, 2)
    ]


async def test_the_poll_stall_limit_follows_a_reload(tmp_path: Path) -> None:
    def write(interval_s: float) -> Path:
        doc = {
            "site": "p",
            "sources": [{"id": "t", "type": "modbus_tcp", "host": "127.0.0.1", "port": 1,
                         "timeout_s": 0.5}],
            "devices": [{"id": "blr-1", "profile": "boiler-controller", "source": "t",
                         "interval_s": interval_s}],
            "outbox": {"path": str(tmp_path / "o.sqlite")},
        }  # fmt: skip
        (tmp_path / "site.yaml").write_text(yaml.safe_dump(doc))
        return tmp_path / "site.yaml"

    gw = Gateway(load_site(write(2)), FakeClock(), state_dir=tmp_path)
    now = [100.0]
    watch = HealthWatch(gw, stall_s=10, monotonic=lambda: now[0])
    assert watch.poll_stall_s == 10
    write(30)  # a slow device now: three of its intervals, 90 s, before polling is stalled
    try:
        assert (await gw.reloader.reload()).outcome == "applied"
        assert watch.poll_stall_s == 90
        assert watch.problems() == []
        now[0] += 60  # no poll for longer than the old limit, within the new one
        assert watch.problems() == []
        now[0] += 31
        assert watch.problems() == ["polling stalled: no poll for 91 s"]
    finally:
        await gw.source_set.stop()
