"""The real gateway as a subprocess (``gateway run``) on a copy of the demo site.

Used by the disk and damaged-file tests: they need the process itself (exit
codes, SIGTERM, restarts) with its outbox and state files where the test says.
``demo_site`` writes the demo site with the outbox, alarm state and patrol
state in ``state_dir`` (the simulators' ptys stay in ``run_dir``); stderr is
read by a thread so a test can wait for a log line without blocking.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from tests.simproc import DEMO_SITE, bin_path, free_port


def demo_site(tmp: Path, state_dir: Path, mqtt_port: int, **outbox: Any) -> Path:
    """The demo site, MQTT on ``mqtt_port``, InfluxDB off, state files in ``state_dir``."""
    data = yaml.safe_load(DEMO_SITE.read_text())
    base = DEMO_SITE.parent
    data["rules"] = [str((base / r).resolve()) for r in data["rules"]]
    data["patrol"] = str((base / data["patrol"]).resolve())
    data["sinks"]["console"] = {"enabled": False}
    data["sinks"]["influx"]["enabled"] = False
    data["sinks"]["mqtt"].update(port=mqtt_port, retry_min_s=0.2, retry_max_s=1.0)
    data["outbox"] = {"path": str(state_dir / "outbox.sqlite"), **outbox}
    data["alerting"]["state_db"] = str(state_dir / "alarms.sqlite")
    path = tmp / "site.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def outbox_rows(path: Path) -> int:
    """Rows in the outbox file, read-only; 0 while it is not there yet."""
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            return int(db.execute("SELECT COUNT(*) FROM records").fetchone()[0])
        finally:
            db.close()
    except sqlite3.Error:
        return 0


def demo_env(tmp: Path) -> dict[str, str]:
    return {
        "FSG_RUN_DIR": str(tmp / "run"),
        "FSG_SIM_TCP_PORT": str(free_port()),
        "FSG_SIM_OPCUA_PORT": str(free_port()),
    }


class GatewayProcess:
    """``gateway run SITE``; stderr collected line by line."""

    def __init__(self, site: Path, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [bin_path("gateway"), "run", str(site)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **env},
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line.rstrip())

    @property
    def log(self) -> str:
        return "\n".join(self.lines)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait_for(self, pred: Callable[[], bool], within_s: float, what: str) -> None:
        """Wait for ``pred``; fail at once if the gateway exits meanwhile."""
        deadline = time.monotonic() + within_s
        while not pred():
            if not self.alive():
                self._reader.join(5)
                rc, tail = self.proc.returncode, self.log[-3000:]
                raise AssertionError(f"gateway exited ({rc}) waiting for {what}:\n{tail}")
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"timed out after {within_s} s waiting for {what}:\n{self.log[-3000:]}"
                )
            time.sleep(0.05)

    def wait_log(self, text: str, within_s: float) -> None:
        self.wait_for(lambda: any(text in ln for ln in self.lines), within_s, repr(text))

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM and wait; the exit code."""
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            raise AssertionError(f"gateway did not stop on SIGTERM:\n{self.log[-3000:]}") from None
        self._reader.join(5)
        return self.proc.returncode
