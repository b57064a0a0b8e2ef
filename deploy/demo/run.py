"""`make demo`: the demo site, end to end, on this machine.

Starts what the demo needs and is not already there: a local Mosquitto on
1883 and a local InfluxDB 1.x on 8086 (or uses ones already listening on
those ports), then the device simulators (`gateway-sim`) and the gateway
(`gateway run`) on deploy/demo/site.yaml, and the on-call console
(`gateway console`, a demo login printed at start). Ctrl-C stops everything it started,
in reverse order, and removes nothing but its own run folder's sockets.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
RUN_DIR = Path(os.environ.get("FSG_RUN_DIR", "/tmp/fsg-demo"))
BIN = Path(sys.executable).parent
# The demo console's login (a supervisor: acknowledge, shelve, reset). Demo only.
DEMO_USER, DEMO_PASSWORD = "demo", "demo-console"
CONSOLE_PORT = int(os.environ.get("FSG_DEMO_CONSOLE_PORT", "8080"))


def listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.3)
        return s.connect_ex(("127.0.0.1", port)) == 0


def wait_port(port: int, proc: subprocess.Popen[bytes], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if listening(port):
            return
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited with code {proc.returncode}; see {RUN_DIR}/*.log")
        time.sleep(0.2)
    raise SystemExit(f"{what} did not listen on port {port} within {timeout:g} s")


def start_mosquitto(procs: list[tuple[str, subprocess.Popen[bytes]]]) -> None:
    if listening(1883):
        print("demo: using the MQTT broker already listening on 127.0.0.1:1883")
        return
    conf = RUN_DIR / "mosquitto.conf"
    conf.write_text(
        "listener 1883 127.0.0.1\nallow_anonymous true\npersistence true\n"
        f"persistence_location {RUN_DIR}/\n"
    )
    log = open(RUN_DIR / "mosquitto.log", "wb")  # noqa: SIM115 - lives as long as the process
    p = subprocess.Popen(
        [shutil.which("mosquitto") or "mosquitto", "-c", str(conf)],
        stdout=log,
        stderr=log,
        start_new_session=True,
    )
    procs.append(("mosquitto", p))
    wait_port(1883, p, "mosquitto")
    print("demo: started Mosquitto on 127.0.0.1:1883")


def start_influxd(procs: list[tuple[str, subprocess.Popen[bytes]]]) -> None:
    if not listening(8086):
        base = RUN_DIR / "influxdb"
        conf = RUN_DIR / "influxdb.conf"
        conf.write_text(
            'reporting-disabled = true\nbind-address = "127.0.0.1:18088"\n'
            f'[meta]\n  dir = "{base}/meta"\n'
            f'[data]\n  dir = "{base}/data"\n  wal-dir = "{base}/wal"\n'
            "  query-log-enabled = false\n"
            '[http]\n  bind-address = "127.0.0.1:8086"\n  log-enabled = false\n'
        )
        log = open(RUN_DIR / "influxd.log", "wb")  # noqa: SIM115
        p = subprocess.Popen(
            [shutil.which("influxd") or "influxd", "-config", str(conf)],
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        procs.append(("influxd", p))
        wait_port(8086, p, "influxd")
        print("demo: started InfluxDB 1.x on 127.0.0.1:8086")
    else:
        print("demo: using the InfluxDB already listening on 127.0.0.1:8086")
    q = urllib.parse.urlencode({"q": "CREATE DATABASE fsg"}).encode()
    for _ in range(50):
        try:
            urllib.request.urlopen("http://127.0.0.1:8086/query", data=q, timeout=2).read()
            return
        except OSError:
            time.sleep(0.2)
    print("demo: warning: could not create database fsg on 127.0.0.1:8086", file=sys.stderr)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_console(procs: list[tuple[str, subprocess.Popen[bytes]]], site: str) -> str:
    """The console on the demo site, with the demo login; returns its URL."""
    db = RUN_DIR / "console.sqlite"
    gateway = str(BIN / "gateway")
    if not db.exists():
        subprocess.run(
            [
                gateway,
                "console",
                "users",
                "add",
                DEMO_USER,
                "--role",
                "supervisor",
                "--db",
                str(db),
            ],
            input=f"{DEMO_PASSWORD}\n".encode(),
            check=True,
            capture_output=True,
            timeout=60,
        )
    port = CONSOLE_PORT if not listening(CONSOLE_PORT) else free_port()
    log = open(RUN_DIR / "console.log", "wb")  # noqa: SIM115 - lives as long as the process
    p = subprocess.Popen(
        [gateway, "console", site, "--listen", f"127.0.0.1:{port}", "--db", str(db)],
        stdout=log,
        stderr=log,
        start_new_session=True,
    )
    procs.append(("gateway-console", p))
    wait_port(port, p, "the console")
    url = f"http://127.0.0.1:{port}/"
    print(f"demo: console on {url} (log in as {DEMO_USER} / {DEMO_PASSWORD})", flush=True)
    return url


def main() -> int:
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    os.environ["FSG_RUN_DIR"] = str(RUN_DIR)
    site = str(ROOT / "deploy" / "demo" / "site.yaml")
    procs: list[tuple[str, subprocess.Popen[bytes]]] = []
    stop: list[int] = []
    # Children run in their own sessions, so Ctrl-C reaches only us and we
    # stop them in order: gateway first (it flushes), then simulators, then servers.
    signal.signal(signal.SIGINT, lambda sig, _f: stop.append(sig))
    signal.signal(signal.SIGTERM, lambda sig, _f: stop.append(sig))
    try:
        start_mosquitto(procs)
        start_influxd(procs)
        sim = subprocess.Popen(
            [str(BIN / "gateway-sim"), site, *sys.argv[1:]],
            stdout=subprocess.PIPE,
            start_new_session=True,
        )
        procs.append(("gateway-sim", sim))
        assert sim.stdout is not None
        for raw in sim.stdout:
            line = raw.decode(errors="replace").rstrip()
            print(f"sim: {line}", flush=True)
            if line == "ready":
                break
        else:
            raise SystemExit("gateway-sim stopped before it was ready")
        gw = subprocess.Popen([str(BIN / "gateway"), "run", site], start_new_session=True)
        procs.append(("gateway", gw))
        start_console(procs, site)
        print("demo: gateway running; Ctrl-C stops everything", flush=True)
        while not stop and gw.poll() is None and sim.poll() is None:
            time.sleep(0.3)
    finally:
        for name, p in reversed(procs):
            if p.poll() is None:
                p.send_signal(signal.SIGINT if name.startswith("gateway") else signal.SIGTERM)
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
            print(f"demo: stopped {name}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
