"""The gateway killed with SIGKILL mid-stream and restarted: nothing committed is lost.

A producer process (tests/integration/delivery_producer.py: Delivery with the
real MQTT and InfluxDB sinks) is killed with SIGKILL while it appends and
delivers. Every sample it reported committed before the kill must reach
InfluxDB exactly once as a point (a replay rewrites the same point) and
MQTT at least once, after a restart that resumes from the outbox cursors.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.fixtures.servers import InfluxDB1, Mosquitto, MqttCollector
from tests.integration.delivery_support import SITE

ROOT = Path(__file__).resolve().parents[2]


class ProducerProcess:
    def __init__(self, *args: object) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.integration.delivery_producer", *map(str, args)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.strip())

    @property
    def committed(self) -> int:
        return max(
            (int(ln.split()[1]) for ln in self.lines if ln.startswith("committed")), default=0
        )

    def wait_for(self, pred: Callable[[], bool], within_s: float, what: str) -> None:
        deadline = time.monotonic() + within_s
        while not pred():
            if self.proc.poll() is not None:
                err = self.proc.stderr.read() if self.proc.stderr else ""
                raise AssertionError(f"producer exited ({self.proc.returncode}): {err}")
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {within_s} s waiting for {what}")
            time.sleep(0.02)

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        self._reader.join(10)  # every line it printed before dying is read
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()


@pytest.mark.timeout(120)
def test_sigkill_mid_stream_loses_nothing_committed(
    tmp_path: Path,
    mosquitto: Mosquitto,
    influxdb1: InfluxDB1,
    mqtt_collector: Callable[..., MqttCollector],
) -> None:
    col = mqtt_collector(mosquitto, f"fsg/{SITE}/+/telemetry")
    outbox = tmp_path / "outbox.sqlite"
    base = time.time_ns() - 600_000_000_000
    common = (outbox, mosquitto.port, influxdb1.url, base)

    first = ProducerProcess(*common, 0, 1_000_000)
    try:
        # Kill it mid-stream: appending, committing and delivering all at once.
        first.wait_for(lambda: first.committed >= 1500, 60, "1500 committed samples")
        delivered_before = len(col.snapshot())
    finally:
        first.kill()
    k = first.committed
    assert first.proc.returncode == -signal.SIGKILL
    assert delivered_before > 0, "the sinks were delivering when it was killed"

    second = ProducerProcess(*common, 10_000_000, 100)
    try:
        second.wait_for(lambda: "drained" in second.lines, 60, "the restarted producer to drain")
    finally:
        second.kill()

    rows = influxdb1.rows("SELECT seq FROM testdev")
    seqs = [r["seq"] for r in rows]
    assert len(seqs) == len(set(seqs)), "a replay must rewrite points, not add them"
    before_kill = {s for s in seqs if s < 10_000_000}
    assert set(range(k)) <= before_kill, f"missing: {sorted(set(range(k)) - before_kill)[:10]}"
    assert {s for s in seqs if s >= 10_000_000} == set(range(10_000_000, 10_000_100))

    want = set(range(k)) | set(range(10_000_000, 10_000_100))
    msgs = col.wait_for(
        lambda ms: want <= {m.json()["values"]["seq"] for m in ms},
        10,
        "every committed sample on MQTT",
    )
    assert len(msgs) >= len(want)
