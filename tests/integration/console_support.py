"""Helpers for the console tests: site files, a gateway and a console as real subprocesses,
and an HTTP client that logs in like a browser (session cookie + CSRF token)."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from tests.fixtures.servers import InfluxDB1, Mosquitto
from tests.integration.test_alerting_e2e import stop
from tests.simproc import bin_path, free_port
from tests.sitebuilder import Doc, leak_monitor_site, write_site

ROOT = Path(__file__).resolve().parents[2]
CONSOLE_KEY = "console-" + "k" * 40
PASSWORD = "correct horse battery"
ALARM = "leakage:leak-1:leak_ch1:hihi"


def site_doc(tmp: Path, site: str, mq: Mosquitto, influx: InfluxDB1 | None = None) -> Doc:
    """A site with one leakage monitor whose channel 1 stands at 450 mA (latched 300 mA alarm)."""
    users = {"console": {"key": CONSOLE_KEY, "on_behalf": True}}
    return leak_monitor_site(site, tmp / site, mq, influx, **users)


def site_yaml(tmp: Path, site: str, mq: Mosquitto, influx: InfluxDB1 | None = None) -> Path:
    return write_site(tmp / site, site_doc(tmp, site, mq, influx))


@contextmanager
def running_gateway(site: Path) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(
        [bin_path("gateway"), "run", str(site)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield proc
    finally:
        stop(proc)


def add_user(db: Path, name: str, role: str, password: str = PASSWORD) -> None:
    """``gateway console users add`` with the password on stdin, as a script would."""
    out = subprocess.run(
        [bin_path("gateway"), "console", "users", "add", name, "--role", role, "--db", str(db)],
        input=password + "\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr


@contextmanager
def running_console(site: Path, db: Path, *args: str, port: int | None = None) -> Iterator[str]:
    """Start ``gateway console SITE`` on ``port`` (else a free one); yield its base URL."""
    port = port or free_port()
    proc = subprocess.Popen(
        [bin_path("gateway"), "console", str(site), "--listen", f"127.0.0.1:{port}",
         "--db", str(db), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "FSG_CONSOLE_KEY": CONSOLE_KEY},
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # "console ready on ..." or EOF when it failed
        if "console ready" not in line:
            raise AssertionError(f"console did not start: {line!r} {stop(proc)}")
        yield f"http://127.0.0.1:{port}"
    finally:
        err = stop(proc)
        assert "Traceback" not in err, err


def login(base: str, name: str, password: str = PASSWORD) -> httpx.Client:
    """A client logged in through the form, holding the session cookie; ``.csrf`` set."""
    client = httpx.Client(base_url=base, timeout=30)
    r = client.post("/login", data={"username": name, "password": password, "next": "/"})
    assert r.status_code == 303, (r.status_code, r.text)
    me = client.get("/api/me").json()
    client.headers["X-CSRF-Token"] = me["csrf"]
    return client


def wait(cond: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = cond()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s: {what}")
        time.sleep(0.2)


def console_alarm(client: httpx.Client, site: str, alarm_id: str = ALARM) -> dict[str, Any] | None:
    for a in client.get("/api/alarms").json():
        if a["site"] == site and a["alarm_id"] == alarm_id:
            return dict(a)
    return None
