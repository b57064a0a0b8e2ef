"""The gateway against the simulators, over real sockets and pseudo-terminals.

The simulators run as a separate process (`gateway-sim`), exactly as in the
demo; the gateway runs in-process so the test can count its samples.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import itertools
import json
import os
import signal
import subprocess
import threading
from collections import defaultdict
from pathlib import Path
from statistics import mean

import yaml

from gateway.app import Gateway
from gateway.loader import load_site
from gateway.model import Sample
from tests.simproc import DEMO_SITE, bin_path, free_port, running_sim


def demo_env(tmp_path: Path) -> dict[str, str]:
    # The foundation tests need no broker or database: the durable sinks are off.
    return {
        "FSG_RUN_DIR": str(tmp_path / "run"),
        "FSG_SIM_TCP_PORT": str(free_port()),
        "FSG_SIM_OPCUA_PORT": str(free_port()),
        "FSG_MQTT": "false",
        "FSG_INFLUX": "false",
    }


class Collector(Gateway):
    """The real gateway, with its outputs captured instead of printed."""

    def __init__(self, *a: object, **kw: object) -> None:
        super().__init__(*a, **kw)  # type: ignore[arg-type]
        self.samples: list[Sample] = []

    def _output(self, sample: Sample) -> None:
        self.samples.append(sample)


async def run_gateway(site_path: Path, env: dict[str, str], seconds: float) -> list[Sample]:
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        site = load_site(site_path)
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    gw = Collector(site, out=io.StringIO())
    await gw.run(asyncio.Event(), duration=seconds)
    return [s for s in gw.samples if s.kind not in ("device_health", "gateway_health")]


async def test_every_demo_device_over_tcp_and_rtu(tmp_path: Path) -> None:
    env = demo_env(tmp_path)
    with running_sim(DEMO_SITE, env):
        samples = await run_gateway(DEMO_SITE, env, 7.0)
    by_dev: dict[str, list[Sample]] = defaultdict(list)
    for s in samples:
        by_dev[s.device].append(s)
    modbus_devices = {"boiler-1", "pipe-1", "cold-1", "leak-north", "leak-lake", "flow-main"}
    assert modbus_devices <= set(by_dev), set(by_dev)
    for dev in modbus_devices:
        good = [s for s in by_dev[dev] if not s.quality and s.error is None]
        assert good, (dev, by_dev[dev][:2])
    last = {d: by_dev[d][-1].values for d in modbus_devices}
    # Values the simulator holds constant prove the codecs end to end.
    assert last["leak-north"]["alarm_threshold"] == 300
    assert last["leak-north"]["alarm_delay"] == 5.0
    assert last["boiler-1"]["supply_setpoint"] == 75.0
    assert last["flow-main"]["error_code"] == 0
    # Counters and floats with per-point word order decode to plausible values.
    assert 1_200_000 < float(last["flow-main"]["totaliser"]) < 1_300_000
    assert 100 < float(last["flow-main"]["flow_rate"]) < 140
    assert 0.25 < float(last["pipe-1"]["return_pressure"]) < 0.35
    assert isinstance(last["boiler-1"]["flame"], bool)
    # Samples are stamped when the read completes, in order per device.
    for dev in modbus_devices:
        ts = [s.ts_ns for s in by_dev[dev]]
        assert ts == sorted(ts)


def _intervals(samples: list[Sample], device: str) -> float:
    ts = [s.ts_ns / 1e9 for s in samples if s.device == device and not s.quality]
    assert len(ts) >= 4, (device, len(ts))
    return mean(b - a for a, b in itertools.pairwise(ts))


def _rtu_site(tmp_path: Path) -> Path:
    """The demo's RS-485 line alone, polled every second, with the unit-dead scenario."""
    data = yaml.safe_load(DEMO_SITE.read_text())
    data["sources"] = [s for s in data["sources"] if s["id"] == "rs485-park"]
    data["devices"] = [d for d in data["devices"] if d["source"] == "rs485-park"]
    for d in data["devices"]:
        d["interval_s"] = 1.0
    data["sinks"] = {}
    for key in ("rules", "alerting", "patrol"):
        data.pop(key, None)
    path = tmp_path / "rtu-site.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


async def test_dead_unit_does_not_slow_the_others(tmp_path: Path) -> None:
    site = _rtu_site(tmp_path)
    env = demo_env(tmp_path)
    with running_sim(site, env):
        healthy = await run_gateway(site, env, 8.0)
    with running_sim(site, env, "--scenario", "unit-dead"):
        degraded = await run_gateway(site, env, 8.0)
    # The dead unit's points are bad, with the error named, and it never answers.
    dead = [s for s in degraded if s.device == "flow-main"]
    assert dead and all(s.values == {} and s.error for s in dead)
    assert all(s.quality.get("flow_rate") == "bad" for s in dead)
    for dev in ("leak-north", "leak-lake"):
        base, now = _intervals(healthy, dev), _intervals(degraded, dev)
        assert abs(now - base) / base < 0.10, (dev, base, now)


def test_cli_run_prints_every_demo_device(tmp_path: Path) -> None:
    env = demo_env(tmp_path)
    with running_sim(DEMO_SITE, env):
        res = subprocess.run(
            [bin_path("gateway"), "run", str(DEMO_SITE), "--duration", "10"],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, **env},
        )
    assert res.returncode == 0, res.stderr
    records = [json.loads(line) for line in res.stdout.splitlines() if line.startswith("{")]
    samples = [r for r in records if "type" not in r]  # alarms and events carry a "type"
    seen = {r["device"] for r in samples}
    expected = {d["id"] for d in yaml.safe_load(DEMO_SITE.read_text())["devices"]}
    # Every demo device, the RFID reader included: the demo patrol taps 8 s after start.
    assert expected <= seen, (seen, res.stderr[-3000:])
    for rec in samples:
        assert {"device", "ts", "values"} <= set(rec)


def test_cli_run_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    env = demo_env(tmp_path)
    proc = subprocess.Popen(
        [bin_path("gateway"), "run", str(DEMO_SITE)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **env},
    )
    lines: list[str] = []
    started = threading.Event()

    def read_stderr() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line)
            if "gateway for site" in line:
                started.set()

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    try:
        # Nothing to talk to: the gateway must keep running, then stop on SIGTERM. Wait
        # for it to be up (on a loaded machine its imports alone can take seconds).
        assert started.wait(60), "".join(lines)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=2)
        assert proc.poll() is None, "".join(lines)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15)
        assert proc.returncode == 0, "".join(lines)
        reader.join(5)
        err = "".join(lines)
        assert "Traceback" not in err
        assert "cannot connect" in err  # the outage is logged...
        assert err.count("cannot connect") <= 3  # ...once per source, not once per poll
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
