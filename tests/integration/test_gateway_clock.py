"""The running gateway against clock trouble: a wall-clock step, and a replay run 600x fast.

The gateway runs in-process with its real pipeline, alert engine, outbox and
(for the replay) a real InfluxDB. Its one Modbus TCP device points at a port
nobody listens on, so it stays silent: the no-data rule has something to time.

- A wall clock stepped an hour forward or back (the clock is the system
  clock plus an offset the test sets, as NTP would) neither fires the 3 s
  no-data alarm early nor holds it back; the step is logged once, counted
  in the gateway_health sample and raised as a medium health alarm.
- With the site's clock 600x fast (``ScaledClock``, as ``--sim-clock-speed
  600``), InfluxDB's 1 s batching is 1 s of backlog, not 10 minutes: no
  outbox backlog alarm while delivery is healthy.
"""

from __future__ import annotations

import asyncio
import io
import logging
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.app import Gateway
from gateway.loader import load_site
from gateway.model import AlarmEvent, Clock, FakeClock, Sample, ScaledClock, SystemClock, Value
from gateway.outbox import Event
from gateway.patrol import Finding, PatrolOutput
from gateway.patrol.mixin import NS
from tests.fixtures.servers import InfluxDB1
from tests.integration.delivery_support import wait_until
from tests.simproc import ROOT, free_port

NO_DATA_S = 3.0


class SteppedClock(SystemClock):
    """The system clock, whose wall time the test can step as NTP or an operator would."""

    def __init__(self) -> None:
        self.step_ns = 0

    def now_ns(self) -> int:
        return super().now_ns() + self.step_ns


class Recorder(Gateway):
    """The real gateway, noting when (real monotonic time) each alarm event and sample left it."""

    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.events: list[tuple[float, AlarmEvent]] = []
        self.health: list[Sample] = []

    def _append_alarms(self, events: list[AlarmEvent]) -> None:
        now = time.monotonic()
        self.events.extend((now, ev) for ev in events)
        super()._append_alarms(events)

    def _output(self, sample: Sample) -> None:
        if sample.kind == "gateway_health":
            self.health.append(sample)
        super()._output(sample)

    def activations(self, alarm_id: str) -> list[tuple[float, AlarmEvent]]:
        return [(t, e) for t, e in self.events if e.alarm_id == alarm_id and e.action == "activate"]


def write_site(tmp: Path, sinks: dict[str, Any]) -> Path:
    (tmp / "rules.yaml").write_text(
        yaml.safe_dump(
            {
                "rules": [
                    {"id": "silent", "kind": "no_data", "timeout_s": NO_DATA_S},
                ]
            }
        )
    )
    site = {
        "site": "clock-test",
        "sources": [
            {
                "id": "tcp-1",
                "type": "modbus_tcp",
                "host": "127.0.0.1",
                "port": free_port(),
                "timeout_s": 0.1,
                "retries": 0,
            }
        ],
        "devices": [
            {"id": "lk-1", "profile": "leakage-monitor", "source": "tcp-1", "interval_s": 0.5}
        ],
        "sinks": sinks,
        "outbox": {"path": str(tmp / "outbox.sqlite")},
        "pipeline": {"health_interval_s": 1.0},  # the schema's lowest
        "rules": ["rules.yaml"],
        "alerting": {"state_db": str(tmp / "alarms.sqlite")},
    }
    path = tmp / "site.yaml"
    path.write_text(yaml.safe_dump(site, sort_keys=False))
    return path


async def start(site: Path, clock: Clock) -> tuple[Recorder, asyncio.Event, asyncio.Task[None]]:
    gw = Recorder(load_site(site), clock, out=io.StringIO())
    stop = asyncio.Event()
    task = asyncio.create_task(gw.run(stop))
    return gw, stop, task


async def finish(stop: asyncio.Event, task: asyncio.Task[None]) -> None:
    stop.set()
    await asyncio.wait_for(task, 30)


@pytest.mark.parametrize("step_s", [3600.0, -3600.0], ids=["+1h", "-1h"])
async def test_no_data_alarm_times_elapsed_time_across_a_wall_step(
    tmp_path: Path, step_s: float, caplog: pytest.LogCaptureFixture
) -> None:
    clock = SteppedClock()
    site = write_site(tmp_path, {})
    before = time.monotonic()  # before the engine opens and starts the silence timer
    gw, stop, task = await start(site, clock)
    try:
        await wait_until(lambda: gw.alerts is not None and gw.alerts.store is not None, 10, "open")
        with caplog.at_level(logging.WARNING, logger="gateway.clockwatch"):
            clock.step_ns = int(step_s * 1e9)
            await wait_until(lambda: bool(gw.activations("silent:lk-1")), 30, "no-data alarm")
            at, ev = gw.activations("silent:lk-1")[0]
            # Not before the timeout has really passed (a lower bound: a loaded machine is late).
            assert at - before >= NO_DATA_S
            # The event carries the stepped wall time.
            assert abs(ev.ts_ns - clock.now_ns()) < 60e9
            await wait_until(
                lambda: any(s.values.get("clock_steps") == 1 for s in gw.health), 10, "health"
            )
            await wait_until(lambda: bool(gw.activations("gateway:clock:wall_step")), 10, "alarm")
    finally:
        await finish(stop, task)
    health = next(s for s in gw.health if s.values.get("clock_steps") == 1)
    assert health.values["clock_step_last_s"] == pytest.approx(step_s, abs=1.0)
    (_, step_alarm), *_ = gw.activations("gateway:clock:wall_step")
    assert step_alarm.severity == "medium" and f"{step_s:+.0f}" in step_alarm.message
    steps = [r for r in caplog.records if r.getMessage().startswith("wall clock stepped")]
    assert len(steps) == 1


async def test_replay_at_600x_raises_no_backlog_alarm_while_delivery_is_healthy(
    tmp_path: Path, influxdb1: InfluxDB1
) -> None:
    clock = ScaledClock(time.time_ns(), 600)
    # The sink batches for 1 s (the default): 600 s of the replay's time.
    site = write_site(tmp_path, {"influx": influxdb1.sink_config(flush_interval_s=1.0)})
    gw, stop, task = await start(site, clock)
    try:
        # Several ticks while the sink lingers over its batches: enough to see the backlog.
        await wait_until(
            lambda: sum(1 for s in gw.health if s.values.get("oldest_age_s_influx")) >= 3,
            30,
            "three health samples with an undelivered backlog",
        )
        await wait_until(lambda: gw.delivery.stats().sinks["influx"].delivered > 0, 30, "delivery")
    finally:
        await finish(stop, task)
    assert gw.delivery.stats().sinks["influx"].connected
    assert gw.activations("gateway:outbox:backlog") == []
    # The backlog age is real seconds: about the sink's batching, not 600 times that.
    ages = [float(s.values["oldest_age_s_influx"]) for s in gw.health]
    assert max(ages) < 120, ages


class PatrolRecorder(Recorder):
    """Also keeps what the patrol check returned."""

    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.patrol_out: list[PatrolOutput] = []

    def _patrol_outputs(self, outputs: list[PatrolOutput]) -> None:
        self.patrol_out.extend(outputs)
        super()._patrol_outputs(outputs)


@pytest.mark.parametrize("step_s", [3600.0, -3600.0], ids=["+1h", "-1h"])
def test_a_round_in_progress_keeps_its_elapsed_time_across_a_wall_step(
    tmp_path: Path, step_s: float
) -> None:
    """The gateway hands a step to the patrol: no timeout, no 'too fast' leg, one complete round."""
    site = {
        "site": "patrol-clock",
        "sources": [{"id": "rfid-gate", "type": "serial_line", "port": str(tmp_path / "none")}],
        "devices": [
            {"id": "rfid-gate", "profile": "rfid-checkpoint-reader", "source": "rfid-gate"}
        ],
        "outbox": {"path": str(tmp_path / "outbox.sqlite")},
        "alerting": {"state_db": str(tmp_path / "alarms.sqlite")},
        "patrol": str(ROOT / "rules" / "patrol.yaml"),
    }
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(site, sort_keys=False))
    # 22:30 in Asia/Shanghai: inside the night window.
    clock = FakeClock(int(datetime.fromisoformat("2026-11-26T22:30:00+08:00").timestamp()) * NS)
    gw = PatrolRecorder(load_site(path), clock, out=io.StringIO())
    route = ["gate-north", "lakeside", "playground", "boiler-house", "east-gate"]
    for i, cp in enumerate(route):
        if i == 3:
            clock.step_wall(step_s)
            gw.tick()
        values: dict[str, Value] = {"reader": cp, "card": "04A1B2C3D4", "seq": i}
        gw._process(Sample("rfid-gate", "patrol_tap", clock.now_ns(), values))
        clock.advance(300)
    assert [f.type for f in gw.patrol_out if isinstance(f, Finding)] == []
    rounds = [e for e in gw.patrol_out if isinstance(e, Event) and e.tags["record"] == "round"]
    assert [(r.tags["status"], r.data["duration_s"]) for r in rounds] == [("complete", 1200.0)]
    assert gw.clock_watch.steps == 1
