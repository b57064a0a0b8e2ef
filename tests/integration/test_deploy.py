"""Every file in deploy/ parses and is checked; the Mosquitto config and ACL run in the real broker.

The broker test starts Debian's ``mosquitto`` with deploy/mosquitto/mosquitto.conf
changed only where a test must (free loopback port, temporary paths, run as
ourselves) and the committed ACL, then checks with real MQTT clients that the
on-call account cannot publish telemetry or another site's commands but can
publish its site's commands, that the read-only account cannot publish, that the
gateway account cannot publish outside its prefix, and that nobody can take over
the gateway's client id. The systemd unit goes through
``systemd-analyze verify``. The InfluxDB 2 init script runs against a stand-in
``influx`` command (InfluxDB 2's CLI is not installable here; Debian's ``influx``
is the 1.x shell), which records the arguments it was given.
"""

from __future__ import annotations

import configparser
import os
import pwd
import re
import shutil
import stat
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from gateway.loader import load_site
from tests.fixtures.servers import ServerProcess, need, tcp_open
from tests.simproc import bin_path, free_port

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
MOSQ = DEPLOY / "mosquitto"
COMPOSE = DEPLOY / "compose.yaml"
UNIT = DEPLOY / "systemd" / "facility-safety-gateway.service"
CONSOLE_UNIT = DEPLOY / "systemd" / "facility-safety-console.service"

# Every file under deploy/ (but the demo runner, which has its own tests) must
# be named here with the test that checks it, so a new file cannot go unchecked.
CHECKED = {
    "compose.yaml": "test_compose_structure",
    "env.example": "test_compose_structure",
    "Dockerfile": "test_dockerfile",
    "Dockerfile.dockerignore": "test_dockerfile",
    "mosquitto/mosquitto.conf": "test_mosquitto_accepts_the_config",
    "mosquitto/acl": "test_acl_enforced_by_the_real_broker",
    "mosquitto/README.md": "test_docs_name_real_files",
    "influxdb/init/10-dbrp.sh": "test_influx_init_script_maps_the_database",
    "grafana/provisioning/datasources/influxdb.yaml": "test_grafana_provisioning",
    "grafana/provisioning/dashboards/fsg.yaml": "test_grafana_provisioning",
    "systemd/facility-safety-gateway.service": "test_systemd_unit",
    "systemd/facility-safety-console.service": "test_systemd_console_unit",
    "INSTALL.md": "test_docs_name_real_files",
    "site.example.yaml": "test_site_files_pass_gateway_check",
    "sim/site.yaml": "test_site_files_pass_gateway_check",
}


def test_every_deploy_file_is_checked() -> None:
    files = {
        p.relative_to(DEPLOY).as_posix()
        for p in DEPLOY.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.parts[len(DEPLOY.parts)] != "demo"
        and p.name != ".env"
    }
    assert files == set(CHECKED), (
        f"unchecked: {sorted(files - set(CHECKED))}; missing: {sorted(set(CHECKED) - files)}"
    )
    names = {n for n in globals() if n.startswith("test_")}
    assert set(CHECKED.values()) <= names


# --------------------------------------------------------------------------- compose


def _compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict)
    return data


def _bind_source(spec: str) -> str | None:
    """The host side of a ``src:dst[:mode]`` volume if it is a path, else None (named volume)."""
    m = re.match(r"\$\{[A-Z_]+:-([^}]*)\}:", spec)
    src = m.group(1) if m else spec.split(":", 1)[0]
    return src if src.startswith((".", "/")) else None


def test_compose_structure() -> None:
    c = _compose()
    services = c["services"]
    assert {"mosquitto", "influxdb", "grafana", "gateway", "console", "sim"} <= set(services)
    # The gateway is built from this repository with deploy/Dockerfile.
    for name in ("gateway", "console", "sim"):
        build = services[name]["build"]
        context = (DEPLOY / build["context"]).resolve()
        assert context == ROOT
        assert (context / build["dockerfile"]).is_file()
    assert services["sim"]["profiles"] == ["sim"]
    assert all("profiles" not in s for n, s in services.items() if n != "sim")
    # Named volumes are declared; bind mounts point at files that exist.
    declared = set(c.get("volumes") or {})
    for name, svc in services.items():
        for spec in svc.get("volumes", []):
            src = _bind_source(spec)
            if src is None:
                assert spec.split(":", 1)[0] in declared, (name, spec)
            else:
                assert (DEPLOY / src).exists(), (name, spec)
    # Mosquitto: the committed config and ACL at the paths the config names.
    mq = services["mosquitto"]
    targets = {v.split(":")[1] for v in mq["volumes"]}
    conf = (MOSQ / "mosquitto.conf").read_text()
    acl_paths = set(re.findall(r"^acl_file (\S+)", conf, re.M))
    gw_pw, people_pw = re.findall(r"^password_file (\S+)", conf, re.M)
    assert acl_paths and acl_paths <= targets
    assert all(any(p.startswith(t) for t in targets) for p in (gw_pw, people_pw))
    entry = "\n".join(mq["entrypoint"])
    assert f"mosquitto_passwd -c -b {gw_pw} fsg-gateway" in entry
    assert f"mosquitto_passwd -c -b {people_pw} oncall" in entry
    assert f"mosquitto_passwd -b {people_pw} viewer" in entry
    assert f"mosquitto_passwd -b {people_pw} console" in entry
    # The console: its own account on the people's listener, its first admin from .env.
    console = services["console"]
    env = console["environment"]
    assert (env["FSG_CONSOLE_MQTT_USER"], env["FSG_CONSOLE_MQTT_PORT"]) == ("console", "1884")
    assert "1884" in re.findall(r"^listener (\d+)", conf, re.M)
    assert "gateway console /etc/facility-safety-gateway/site.yaml" in "\n".join(
        console["entrypoint"]
    )
    example = (DEPLOY / "env.example").read_text()
    for var in ("MQTT_CONSOLE_PASSWORD", "CONSOLE_ADMIN_PASSWORD"):
        assert f"{var}=" in example and var in str(c), var
    # The gateway's container health is its own /healthz.
    assert "/healthz" in str(services["gateway"]["healthcheck"]["test"])
    listeners = re.findall(r"^listener (\d+)", conf, re.M)
    assert {f":{port}" for port in listeners} <= {p[p.rindex(":"):] for p in mq["ports"]}
    # InfluxDB 2: initial setup and the DBRP init script.
    env = services["influxdb"]["environment"]
    assert env["DOCKER_INFLUXDB_INIT_MODE"] == "setup"
    for key in ("USERNAME", "PASSWORD", "ORG", "BUCKET", "ADMIN_TOKEN"):
        assert f"DOCKER_INFLUXDB_INIT_{key}" in env
    assert "./influxdb/init:/docker-entrypoint-initdb.d:ro" in services["influxdb"]["volumes"]
    # Grafana: provisioning and the dashboards where the provider looks for them.
    gvols = services["grafana"]["volumes"]
    assert "./grafana/provisioning:/etc/grafana/provisioning:ro" in gvols
    provider = yaml.safe_load((DEPLOY / "grafana/provisioning/dashboards/fsg.yaml").read_text())
    dash_path = provider["providers"][0]["options"]["path"]
    assert f"../dashboards:{dash_path}:ro" in gvols
    # Every required variable (${VAR:?...}) has a line in env.example.
    required = set(re.findall(r"\$\{([A-Z_]+):\?", COMPOSE.read_text()))
    example = {
        line.split("=", 1)[0]
        for line in (DEPLOY / "env.example").read_text().splitlines()
        if "=" in line and not line.startswith("#")
    }
    assert required and required <= example, required - example


def test_dockerfile() -> None:
    lines = [
        ln.strip() for ln in (DEPLOY / "Dockerfile").read_text().replace("\\\n", " ").splitlines()
        if ln.strip() and not ln.lstrip().startswith("#")
    ]
    instructions = [ln.split()[0] for ln in lines]
    assert instructions[0] == "FROM" and "python:3.11" in lines[0]
    for ln in lines:
        if ln.startswith("COPY"):
            for src in ln.split()[1:-1]:
                assert (ROOT / src).exists(), ln
    user = [ln.split()[1] for ln in lines if ln.startswith("USER")]
    assert user and user[-1] not in ("root", "0")
    assert any("dialout" in ln for ln in lines if ln.startswith("RUN"))
    assert any(ln.startswith("ENTRYPOINT") and "gateway" in ln for ln in lines)
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().split()
    assert ".venv" in ignore and ".git" in ignore and "deploy/.env" in ignore


# --------------------------------------------------------------------------- grafana provisioning


def test_grafana_provisioning() -> None:
    from dashboards.build import DATASOURCE_UID

    ds = yaml.safe_load((DEPLOY / "grafana/provisioning/datasources/influxdb.yaml").read_text())
    assert ds["apiVersion"] == 1
    (source,) = ds["datasources"]
    assert source["uid"] == DATASOURCE_UID
    assert source["type"] == "influxdb"
    assert source["jsonData"]["version"] == "InfluxQL"
    assert source["jsonData"]["dbName"] == "fsg"
    assert source["url"] == "http://influxdb:8086"
    assert source["jsonData"]["httpHeaderName1"] == "Authorization"
    assert source["secureJsonData"]["httpHeaderValue1"].startswith("Token $INFLUX_TOKEN")

    prov = yaml.safe_load((DEPLOY / "grafana/provisioning/dashboards/fsg.yaml").read_text())
    assert prov["apiVersion"] == 1
    (p,) = prov["providers"]
    assert p["type"] == "file" and p["folderUid"] == "fsg"
    assert p["options"]["path"].startswith("/var/lib/grafana/dashboards")


# --------------------------------------------------------------------------- mosquitto


@dataclass
class Broker:
    port: int  # the gateway's listener
    people_port: int  # on-call and read-only accounts (the same port if the config has one)
    passwords: dict[str, str]
    server: ServerProcess
    log: Path


GATEWAY_USER = ("fsg-gateway", "gw-secret")
USERS = {"oncall": "oncall-secret", "viewer": "viewer-secret", "console": "console-secret"}
# A read-everything account added to the test's copy of the ACL only, so the
# test can see whether a refused publish outside fsg/ reached the broker's clients.
OBSERVER = ("fsg-test-observer", "observer-secret")


def test_config(conf_text: str, work: Path, ports: list[int]) -> str:
    """The committed config with only the test-specific lines changed.

    Listeners get ``ports`` in order; password files move into ``work`` under their own names.
    """
    me = pwd.getpwuid(os.getuid()).pw_name
    out = [f"user {me}"]
    replaced = set()
    free = iter(ports)
    for line in conf_text.splitlines():
        key = line.split(" ", 1)[0]
        if key == "listener":
            line = f"listener {next(free)} 127.0.0.1"
        elif key == "password_file":
            line = f"password_file {work / Path(line.split()[1]).name}"
        elif key == "acl_file":
            line = f"acl_file {work / 'acl'}"
        elif key == "persistence_location":
            line = f"persistence_location {work / 'data'}/"
        elif key == "log_dest":
            line = f"log_dest file {work / 'broker.log'}"
        else:
            out.append(line)
            continue
        replaced.add(key)
        out.append(line)
    assert replaced == {"listener", "password_file", "acl_file", "persistence_location",
                        "log_dest"}, replaced
    return "\n".join(out) + "\n"


test_config.__test__ = False  # type: ignore[attr-defined]  # a helper, not a test


def password_files(conf_text: str) -> list[str]:
    return [Path(p).name for p in re.findall(r"^password_file (\S+)", conf_text, re.M)]


def start_broker(work: Path, conf_text: str | None = None) -> Broker:
    """The committed config and ACL; the gateway's account in the first password file,
    people (and the test's observer) in the last one."""
    binary = need("mosquitto")
    work.mkdir(parents=True, exist_ok=True)
    (work / "data").mkdir(exist_ok=True)
    committed = (MOSQ / "mosquitto.conf").read_text()
    ports = [free_port(), free_port()]
    text = conf_text or test_config(committed, work, ports)
    files = password_files(committed) or ["passwd"]
    people = {**USERS, OBSERVER[0]: OBSERVER[1]}
    for name, users in ((files[0], dict([GATEWAY_USER])), (files[-1], people)):
        pw = work / name
        pw.touch()
        for user, password in users.items():
            subprocess.run([need("mosquitto_passwd"), "-b", str(pw), user, password],
                           check=True, capture_output=True, timeout=30)
        pw.chmod(0o600)
    acl = (MOSQ / "acl").read_text()
    (work / "acl").write_text(acl + f"\n# test only\nuser {OBSERVER[0]}\ntopic read #\n")
    (work / "acl").chmod(0o600)
    conf = work / "mosquitto.conf"
    conf.write_text(text)
    n_listeners = len(re.findall(r"^listener ", text, re.M))
    people_port = ports[1] if n_listeners > 1 else ports[0]
    server = ServerProcess("mosquitto", [binary, "-c", str(conf)], work,
                           lambda: tcp_open("127.0.0.1", ports[0]))
    server.start(timeout=15)
    return Broker(ports[0], people_port, {**dict([GATEWAY_USER]), **people}, server,
                  work / "broker.log")


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    b = start_broker(tmp_path / "mosquitto")
    yield b
    b.server.stop()


def test_mosquitto_accepts_the_config(broker: Broker, tmp_path: Path) -> None:
    assert broker.server.running
    log = broker.log.read_text()
    assert "Error" not in log, log
    # The same harness with one unknown directive fails: "accepted" means something.
    bad = (MOSQ / "mosquitto.conf").read_text() + "\nno_such_directive on\n"
    work = tmp_path / "bad"
    with pytest.raises(RuntimeError, match="exited"):
        start_broker(work, test_config(bad, work, [free_port(), free_port()]))


class Client:
    """A paho client that records what it receives (QoS 1) and whether the broker dropped it.

    The gateway's account connects to the gateway's listener, everyone else to the people's.
    """

    def __init__(
        self, broker: Broker, user: str | None, password: str | None, client_id: str | None = None
    ) -> None:
        self.messages: list[tuple[str, bytes, bool]] = []
        self.lock = threading.Lock()
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self.published = threading.Event()
        self.dropped = threading.Event()
        self.rc: Any = None
        cid = client_id or f"t-{user}-{time.time_ns()}"
        self.c = paho.Client(CallbackAPIVersion.VERSION2, client_id=cid)
        self.c.reconnect_delay_set(60, 60)  # a kicked client must stay off for the test to see it
        if user:
            self.c.username_pw_set(user, password)
        self.c.on_connect = self._on_connect
        self.c.on_message = self._on_message
        self.c.on_subscribe = lambda *_a: self.subscribed.set()
        self.c.on_disconnect = lambda *_a: self.dropped.set()
        port = broker.port if user == GATEWAY_USER[0] else broker.people_port
        self.c.connect("127.0.0.1", port, keepalive=10)
        self.c.loop_start()

    def _on_connect(self, _c: Any, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        self.rc = rc
        self.connected.set()

    def _on_message(self, _c: Any, _u: Any, msg: paho.MQTTMessage) -> None:
        with self.lock:
            self.messages.append((msg.topic, bytes(msg.payload), bool(msg.retain)))

    def wait_connected(self) -> bool:
        assert self.connected.wait(5), "no CONNACK"
        return not self.rc.is_failure

    def subscribe(self, topic: str) -> None:
        self.subscribed.clear()
        self.c.subscribe(topic, qos=1)
        assert self.subscribed.wait(5)

    def publish(self, topic: str, payload: str, retain: bool = False) -> None:
        info = self.c.publish(topic, payload, qos=1, retain=retain)
        info.wait_for_publish(5)

    def topics(self) -> list[str]:
        with self.lock:
            return [t for t, _p, _r in self.messages]

    def wait_for(self, topic: str, timeout: float = 5) -> None:
        deadline = time.monotonic() + timeout
        while topic not in self.topics():
            assert time.monotonic() < deadline, f"{topic} never arrived; got {self.topics()}"
            time.sleep(0.02)

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


@pytest.fixture
def clients(broker: Broker) -> Iterator[Callable[..., Client]]:
    made: list[Client] = []

    def connect(user: str | None, password: str | None = None, **kw: Any) -> Client:
        c = Client(broker, user, password or broker.passwords.get(user or ""), **kw)
        made.append(c)
        return c

    yield connect
    for c in made:
        c.close()


SITE_T = "fsg/riverside-park"


def test_acl_enforced_by_the_real_broker(clients: Callable[..., Client]) -> None:
    observer = clients(*OBSERVER)
    assert observer.wait_connected()
    observer.subscribe("#")
    gateway = clients(GATEWAY_USER[0])
    assert gateway.wait_connected()
    gateway.subscribe("fsg/#")
    oncall = clients("oncall")
    assert oncall.wait_connected()
    oncall.subscribe("fsg/#")
    viewer = clients("viewer")
    assert viewer.wait_connected()

    # On-call: fake telemetry, a forged alarm and another site's command are
    # dropped; its own site's command goes through. The broker handles one
    # connection's publishes in order, so once the command has arrived, the
    # publishes before it were refused.
    oncall.publish(f"{SITE_T}/boiler-1/telemetry", '{"values":{"pressure":9}}')
    oncall.publish(f"{SITE_T}/alarms/x", "forged alarm")
    oncall.publish("fsg/other-site/commands", '{"cmd":"list"}')
    oncall.publish(f"{SITE_T}/commands/x", '{"cmd":"list"}')
    viewer.publish(f"{SITE_T}/commands", '{"cmd":"list","by":"viewer"}')
    oncall.publish(f"{SITE_T}/commands", '{"cmd":"ack","alarm_id":"x"}')
    gateway.wait_for(f"{SITE_T}/commands")
    observer.wait_for(f"{SITE_T}/commands")
    for who in (gateway, observer):
        for refused in (f"{SITE_T}/boiler-1/telemetry", f"{SITE_T}/alarms/x",
                        "fsg/other-site/commands", f"{SITE_T}/commands/x"):  # fmt: skip
            assert refused not in who.topics(), refused
        viewer_says = [p for t, p, _r in who.messages if b'"by":"viewer"' in p]
        assert viewer_says == [], "the read-only account published a command"

    # The gateway: its prefix only; on-call and the viewer read what it publishes.
    gateway.publish("homeassistant/sensor/x/config", "{}")
    gateway.publish("other/telemetry", "{}")
    gateway.publish(f"{SITE_T}/boiler-1/telemetry", '{"values":{"pressure":0.3}}')
    oncall.wait_for(f"{SITE_T}/boiler-1/telemetry")
    observer.wait_for(f"{SITE_T}/boiler-1/telemetry")
    assert "homeassistant/sensor/x/config" not in observer.topics()
    assert "other/telemetry" not in observer.topics()

    # The console: like on-call, its site's commands and nothing else.
    console = clients("console")
    assert console.wait_connected()
    console.publish(f"{SITE_T}/alarms/y", "forged by the console")
    console.publish(f"{SITE_T}/commands", '{"cmd":"ack","alarm_id":"y","by":"console"}')
    observer.wait_for(f"{SITE_T}/commands")
    gateway.wait_for(f"{SITE_T}/commands")
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not any(
        b'"by":"console"' in p for _t, p, _r in observer.messages
    ):
        time.sleep(0.05)
    assert any(b'"by":"console"' in p for _t, p, _r in observer.messages)
    assert f"{SITE_T}/alarms/y" not in observer.topics()

    # Nobody gets in without a password, nor with a wrong one.
    assert not clients(None, None).wait_connected()
    assert not clients("oncall", "wrong").wait_connected()


def test_nobody_takes_over_the_gateways_client_id(
    broker: Broker, clients: Callable[..., Client]
) -> None:
    """The tester's attack: connect as oncall with the gateway's client id to kick it off."""
    gateway = clients(GATEWAY_USER[0], client_id="fsg-riverside-park-cmd")
    assert gateway.wait_connected()
    gateway.subscribe(f"{SITE_T}/commands")
    # On the people's listener the broker renames the client to its user name.
    thief = clients("oncall", client_id="fsg-riverside-park-cmd")
    assert thief.wait_connected()
    # The gateway's listener does not know the on-call account at all.
    gw_port = paho.Client(CallbackAPIVersion.VERSION2, client_id="fsg-riverside-park-cmd")
    gw_port.username_pw_set("oncall", USERS["oncall"])
    refused = threading.Event()
    gw_port.on_connect = lambda _c, _u, _f, rc, _p: refused.set() if rc.is_failure else None
    gw_port.connect("127.0.0.1", broker.port, keepalive=10)
    gw_port.loop_start()
    try:
        assert refused.wait(5), "the gateway's listener let the on-call account in"
    finally:
        gw_port.loop_stop()
    # Still connected: a command published now reaches the gateway.
    thief.publish(f"{SITE_T}/commands", '{"cmd":"list"}')
    gateway.wait_for(f"{SITE_T}/commands")
    assert not gateway.dropped.is_set(), "the gateway was kicked off the broker"


# --------------------------------------------------------------------------- influxdb init


def test_influx_init_script_maps_the_database(tmp_path: Path) -> None:
    script = DEPLOY / "influxdb/init/10-dbrp.sh"
    assert script.stat().st_mode & stat.S_IXUSR, "the init script must be executable"
    subprocess.run(["sh", "-n", str(script)], check=True, timeout=10)
    # Stand-in for InfluxDB 2's `influx` CLI (not installable here): records its arguments.
    fake = tmp_path / "bin" / "influx"
    fake.parent.mkdir()
    calls = tmp_path / "calls"
    fake.write_text(
        "#!/bin/sh\n"
        f'echo "$*" >> {calls}\n'
        'if [ "$1 $2" = "bucket list" ]; then printf "0f1e2d3c4b5a6978\\tfsg\\tinfinite\\n"; fi\n'
    )
    fake.chmod(0o755)
    env = {
        "PATH": f"{fake.parent}:{os.environ['PATH']}",
        "DOCKER_INFLUXDB_INIT_ORG": "fsg",
        "DOCKER_INFLUXDB_INIT_BUCKET": "fsg",
        "DOCKER_INFLUXDB_INIT_ADMIN_TOKEN": "tok",
    }
    for bucket_id in ("aaaa1111bbbb2222", None):
        calls.unlink(missing_ok=True)
        e = dict(env)
        if bucket_id:
            e["DOCKER_INFLUXDB_INIT_BUCKET_ID"] = bucket_id
        res = subprocess.run(["sh", str(script)], env=e, capture_output=True, text=True,
                             timeout=10)
        assert res.returncode == 0, res.stderr
        create = [ln for ln in calls.read_text().splitlines() if ln.startswith("v1 dbrp create")]
        assert len(create) == 1, calls.read_text()
        args = create[0].split()
        want_id = bucket_id or "0f1e2d3c4b5a6978"
        assert args[args.index("--bucket-id") + 1] == want_id
        assert args[args.index("--db") + 1] == "fsg"
        assert args[args.index("--rp") + 1] == "autogen"
        assert "--default" in args


# --------------------------------------------------------------------------- systemd


def test_systemd_unit(tmp_path: Path) -> None:
    text = UNIT.read_text()
    ini = configparser.ConfigParser(strict=False, interpolation=None)
    ini.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    ini.read_string(text)
    svc = ini["Service"]
    assert "gateway run /etc/facility-safety-gateway/site.yaml" in svc["ExecStart"]
    assert svc["Restart"] == "always"
    assert svc["ExecReload"] == "/bin/kill -HUP $MAINPID"  # hot reload (gateway/reloader.py)
    assert svc["ProtectSystem"] == "strict"
    assert svc["StateDirectory"] == "facility-safety-gateway"
    assert svc.get("DynamicUser") == "yes" or svc.get("User")
    assert "dialout" in svc["SupplementaryGroups"]
    assert svc["NoNewPrivileges"] == "yes"
    assert ini["Install"]["WantedBy"] == "multi-user.target"
    systemd_verify(UNIT, tmp_path)


def unit_ini(path: Path) -> configparser.ConfigParser:
    ini = configparser.ConfigParser(strict=False, interpolation=None)
    ini.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    ini.read_string(path.read_text())
    return ini


def systemd_verify(path: Path, tmp_path: Path) -> None:
    """``systemd-analyze verify`` on a unit, where this machine has it."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        return  # the INI checks are all this machine can do
    # verify checks that ExecStart exists: point it at this checkout's gateway.
    unit = tmp_path / path.name
    unit.write_text(path.read_text().replace("/opt/facility-safety-gateway/venv/bin/gateway",
                                             bin_path("gateway")))
    res = subprocess.run([analyze, "verify", "--man=no", str(unit)], capture_output=True,
                         text=True, timeout=60)
    problems = [ln for ln in (res.stdout + res.stderr).splitlines() if path.name in ln]
    assert res.returncode == 0 and not problems, res.stdout + res.stderr


def test_systemd_console_unit(tmp_path: Path) -> None:
    ini = unit_ini(CONSOLE_UNIT)
    svc = ini["Service"]
    assert "gateway console /etc/facility-safety-gateway/site.yaml" in svc["ExecStart"]
    assert "--listen 127.0.0.1:" in svc["ExecStart"]  # behind a TLS proxy, never bare
    assert svc["StateDirectory"] in svc["ExecStart"]  # the database in the state directory
    assert svc["Restart"] == "always" and svc["DynamicUser"] == "yes"
    assert svc["PrivateDevices"] == "yes" and svc["NoNewPrivileges"] == "yes"
    assert ini["Install"]["WantedBy"] == "multi-user.target"
    systemd_verify(CONSOLE_UNIT, tmp_path)


# --------------------------------------------------------------------------- site files and docs


@pytest.mark.parametrize("name", ["site.example.yaml", "sim/site.yaml"])
def test_site_files_pass_gateway_check(name: str) -> None:
    path = DEPLOY / name
    # No secrets in the environment: the ${VAR:-default}s must carry the check.
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("FSG_", "MQTT_", "INFLUX_", "STATE_DIRECTORY"))}
    res = subprocess.run([bin_path("gateway"), "check", str(path)], capture_output=True,
                         text=True, timeout=60, env=env)
    assert res.returncode == 0, res.stderr
    assert "is valid" in res.stdout
    site = load_site(path)
    # The rule files it names exist (relative to the site file).
    for rule in site.config.rules:
        expanded = rule.replace("${FSG_RULES_DIR:-../rules}", "../rules")
        assert (path.parent / expanded).resolve().is_file(), rule
    assert site.config.sinks.mqtt is not None and site.config.sinks.influx is not None
    assert site.config.sinks.mqtt.username == "fsg-gateway"  # the ACL's gateway account


def test_docs_name_real_files() -> None:
    install = (DEPLOY / "INSTALL.md").read_text()
    for rel in re.findall(r"/opt/facility-safety-gateway/src/([\w./-]+)", install):
        assert (ROOT / rel).exists(), rel
    for rel in re.findall(r"`(deploy/[\w./-]+)`", install):
        assert (ROOT / rel).exists(), rel
    readme = (MOSQ / "README.md").read_text()
    acl = (MOSQ / "acl").read_text()
    for user in re.findall(r"^user (\S+)", acl, re.M):
        assert f"`{user}`" in readme, user
