"""`make demo`'s console (deploy/demo/run.py start_console) against a real Mosquitto: it
creates the demo login, starts `gateway console` on the demo site, prints its URL and the
login, and that login works over a real socket."""

from __future__ import annotations

import importlib.util
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.servers import Mosquitto
from tests.integration.console_support import login, wait

ROOT = Path(__file__).resolve().parents[2]


def demo_runner(run_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    spec = importlib.util.spec_from_file_location("demo_run", ROOT / "deploy" / "demo" / "run.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    monkeypatch.setattr(mod, "RUN_DIR", run_dir)
    return mod


@pytest.mark.timeout(120)
def test_demo_starts_the_console_and_prints_a_working_login(
    tmp_path: Path, mosquitto: Mosquitto, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    monkeypatch.setenv("FSG_RUN_DIR", str(tmp_path))
    monkeypatch.setenv("FSG_MQTT_PORT", str(mosquitto.port))  # the demo site's broker port
    demo = demo_runner(tmp_path, monkeypatch)
    procs: list[tuple[str, subprocess.Popen[bytes]]] = []
    try:
        url = demo.start_console(procs, str(ROOT / "deploy" / "demo" / "site.yaml"))
        out = capsys.readouterr().out
        assert f"console on {url} (log in as {demo.DEMO_USER} / {demo.DEMO_PASSWORD})" in out
        client = login(url.rstrip("/"), demo.DEMO_USER, demo.DEMO_PASSWORD)
        me = client.get("/api/me").json()
        assert (me["name"], me["role"]) == ("demo", "supervisor")
        wait(lambda: client.get("/api/status").json()["broker_connected"], 30, "the broker")
    finally:
        for _name, p in procs:
            p.send_signal(signal.SIGINT)
            p.wait(timeout=20)
    log = (tmp_path / "console.log").read_text()
    assert "Traceback" not in log, log
