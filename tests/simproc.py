"""Test helpers: free ports, temporary site files, and the simulator as a real subprocess."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEMO_SITE = ROOT / "deploy" / "demo" / "site.yaml"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def bin_path(name: str) -> str:
    return str(Path(sys.executable).parent / name)


@contextmanager
def running_sim(
    site: Path, env: dict[str, str], *args: str, timeout: float = 30
) -> Iterator[subprocess.Popen[str]]:
    """Start ``gateway-sim SITE`` and wait for its ``ready`` line; stop it afterwards."""
    proc = subprocess.Popen(
        [bin_path("gateway-sim"), str(site), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **env},
    )
    try:
        deadline = time.monotonic() + timeout
        assert proc.stdout is not None
        lines: list[str] = []
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                err = proc.stderr.read() if proc.stderr else ""
                raise AssertionError(f"gateway-sim exited early: {lines} {err}")
            lines.append(line.rstrip())
            if line.strip() == "ready":
                break
        else:
            raise AssertionError(f"gateway-sim not ready within {timeout} s: {lines}")
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def wait_gateway_online(mqtt_port: int, site: str, timeout: float = 60) -> None:
    """Block until the gateway of ``site`` has published its retained online status.

    A reader simulator started earlier may tap before the gateway has its port
    open, and opening a serial port flushes what arrived before (pyserial).
    """
    subprocess.run(
        ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(mqtt_port), "-C", "1",
         "-W", str(int(timeout)), "-t", f"fsg/{site}/gateway/status"],
        check=True, capture_output=True, timeout=timeout + 10,
    )  # fmt: skip
