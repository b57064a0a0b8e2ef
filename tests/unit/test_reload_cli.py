"""``gateway reload``: what it refuses before signalling anything (the happy path runs in
tests/integration/test_reload.py against a real gateway)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from gateway.cli import main

SITE = {
    "site": "cli",
    "sources": [{"id": "tcp", "type": "modbus_tcp", "host": "127.0.0.1", "port": 1502}],
    "devices": [{"id": "d", "profile": "leakage-monitor", "source": "tcp", "unit": 1,
                 "interval_s": 5}],
    "sinks": {"console": {"enabled": True}},
}  # fmt: skip


def site_file(tmp: Path, **extra: object) -> Path:
    path = tmp / "site.yaml"
    path.write_text(yaml.safe_dump({**SITE, "outbox": {"path": str(tmp / "o.sqlite")}, **extra}))
    return path


def test_an_invalid_site_is_reported_with_its_line_and_nothing_is_signalled(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = site_file(tmp_path, pipeline={"nope": 1})
    (tmp_path / "gateway.pid").write_text("1\n")  # would be init: must never be signalled
    assert main(["reload", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}:" in err and "nope" in err


def test_no_running_gateway(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["reload", str(site_file(tmp_path))]) == 2
    assert "no running gateway found" in capsys.readouterr().err


def test_a_stale_pid_file_naming_another_process_is_not_signalled(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = subprocess.Popen(["sleep", "60"])
    try:
        (tmp_path / "gateway.pid").write_text(f"{other.pid}\n")
        assert main(["reload", str(site_file(tmp_path))]) == 2
        assert "is not a running gateway" in capsys.readouterr().err
        assert other.poll() is None  # SIGHUP would have ended it
    finally:
        other.kill()
        other.wait(10)
