"""`gateway-sim` as a real process: readiness line, serving the demo site, clean stop, errors."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient

from gateway.codecs import decode
from gateway.profiles.registry import ProfileRegistry
from gateway.profiles.schema import ModbusProfile
from tests.simproc import DEMO_SITE, bin_path, free_port

REG, _ = ProfileRegistry.load()


def sim_env(tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "FSG_RUN_DIR": str(tmp_path / "run"),
        "FSG_SIM_TCP_PORT": str(free_port()),
        "FSG_SIM_OPCUA_PORT": str(free_port()),
    }


def start(args: list[str], env: dict[str, str]) -> tuple[subprocess.Popen[str], list[str]]:
    proc = subprocess.Popen(
        [bin_path("gateway-sim"), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip())
        if line.strip() == "ready":
            return proc, lines
    proc.kill()
    raise AssertionError(f"not ready: {lines} {proc.stderr.read() if proc.stderr else ''}")


def stop(proc: subprocess.Popen[str]) -> tuple[int, str]:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    return proc.returncode, proc.stderr.read() if proc.stderr else ""


async def _read_demo(port: int, rtu_path: str) -> tuple[object, object]:
    boiler = REG.get("boiler-controller")
    flow = REG.get("ultrasonic-flow-meter")
    assert isinstance(boiler, ModbusProfile) and isinstance(flow, ModbusProfile)
    tcp = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=1, retries=0)
    assert await asyncio.wait_for(tcp.connect(), 5)
    try:
        rr = await asyncio.wait_for(tcp.read_holding_registers(120, count=1, device_id=1), 5)
        setpoint = decode(
            next(p for p in boiler.points if p.name == "supply_setpoint"), rr.registers
        )
    finally:
        tcp.close()
    rtu = AsyncModbusSerialClient(port=rtu_path, baudrate=9600, timeout=1, retries=0)
    assert await asyncio.wait_for(rtu.connect(), 5)
    try:
        rr = await asyncio.wait_for(rtu.read_holding_registers(24, count=2, device_id=3), 5)
        total = decode(next(p for p in flow.points if p.name == "totaliser"), rr.registers)
    finally:
        rtu.close()
    return setpoint, total


async def test_serves_the_demo_site_and_stops_cleanly(tmp_path: Path) -> None:
    env = sim_env(tmp_path)
    proc, lines = start([str(DEMO_SITE), "--no-wire-time"], env)
    run = tmp_path / "run"
    try:
        port = env["FSG_SIM_TCP_PORT"]
        assert f"serving plant-tcp on tcp 127.0.0.1:{port} units 1,2,3,4,5,6,7,8" in lines
        rtu_line = next(line for line in lines if line.startswith("serving rs485-park on "))
        assert f"{run}/rs485-park -> /dev/pts/" in rtu_line and rtu_line.endswith("units 1,2,3")
        assert any(line.startswith(f"serving rfid-gate on {run}/rfid-gate -> ") for line in lines)
        opcua = f"opc.tcp://127.0.0.1:{env['FSG_SIM_OPCUA_PORT']}/fsg/sim"
        assert f"serving plc-opcua on {opcua} (OPC UA, no security)" in lines
        assert (run / "rs485-park").is_symlink() and (run / "rfid-gate").is_symlink()
        setpoint, total = await _read_demo(int(port), str(run / "rs485-park"))
        assert setpoint == 75.0
        assert 1_250_000 <= int(total) < 1_260_000  # type: ignore[call-overload]
    finally:
        rc, err = stop(proc)
    assert rc == 0, err
    assert "Traceback" not in err
    assert not (run / "rs485-park").exists() and not (run / "rfid-gate").exists()


def test_duration_stops_by_itself(tmp_path: Path) -> None:
    t0 = time.monotonic()
    res = subprocess.run(
        [bin_path("gateway-sim"), str(DEMO_SITE), "--duration", "0.5", "--scenario", "unit-dead"],
        capture_output=True,
        text=True,
        timeout=30,
        env=sim_env(tmp_path),
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines()[0].startswith("scenario unit-dead: ")
    assert res.stdout.splitlines()[-1] == "ready"
    assert time.monotonic() - t0 < 15


def test_list_scenarios(tmp_path: Path) -> None:
    res = subprocess.run(
        [bin_path("gateway-sim"), "--list-scenarios", str(DEMO_SITE)],
        capture_output=True,
        text=True,
        timeout=30,
        env=sim_env(tmp_path),
    )
    assert res.returncode == 0
    names = [line.split()[0] for line in res.stdout.splitlines()]
    assert {"leak-fault", "unit-dead", "patrol-faked-round"} <= set(names)


@pytest.mark.parametrize(
    ("args", "expect"),
    [
        (["--scenario", "no-such"], "unknown scenario 'no-such' (known: "),
        (["--speed", "0"], "--speed must be > 0"),
    ],
)
def test_bad_arguments_exit_2(tmp_path: Path, args: list[str], expect: str) -> None:
    res = subprocess.run(
        [bin_path("gateway-sim"), str(DEMO_SITE), *args],
        capture_output=True,
        text=True,
        timeout=30,
        env=sim_env(tmp_path),
    )
    assert res.returncode == 2
    assert expect in res.stderr
    assert "Traceback" not in res.stderr and "ready" not in res.stdout


def test_bad_site_file_exit_2_naming_file_and_field(tmp_path: Path) -> None:
    site = tmp_path / "site.yaml"
    site.write_text(
        "site: t\nsources:\n  - {id: a, type: modbus_tcp, host: 127.0.0.1, port: 70000}\n"
        "devices:\n  - {id: d, profile: boiler-controller, source: a, interval_s: 5}\n"
    )
    res = subprocess.run(
        [bin_path("gateway-sim"), str(site)], capture_output=True, text=True, timeout=30
    )
    assert res.returncode == 2
    assert f"{site}:3" in res.stderr and "port" in res.stderr
    assert "Traceback" not in res.stderr


def test_port_in_use_exit_1(tmp_path: Path) -> None:
    env = sim_env(tmp_path)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", int(env["FSG_SIM_TCP_PORT"])))
        busy.listen()
        res = subprocess.run(
            [bin_path("gateway-sim"), str(DEMO_SITE)],
            capture_output=True,
            text=True,
            timeout=30,
            env=env,
        )
    assert res.returncode == 1
    assert "cannot serve" in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "run" / "rs485-park").exists()
