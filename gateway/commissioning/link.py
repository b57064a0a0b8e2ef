"""The ad-hoc connection options of ``gateway probe`` and ``gateway scan`` (``--tcp``/``--serial``).

The options become the config models a site file holds (``modbus_tcp``,
``modbus_rtu``), so probe and scan talk through the gateway's own Modbus
client (``gateway.plugins.modbus.source.ModbusClient``): the same pymodbus
settings, the same translation of its errors into ``SourceError``s, and
nothing here imports pymodbus. Every bad option is a ``CommandError`` with
one line saying which option and why.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import get_args

from pydantic import ValidationError

from gateway.errors import CommandError, ConnectError
from gateway.plugins.modbus.config import ModbusRtuSource, ModbusTcpSource
from gateway.plugins.modbus.source import ModbusClient
from gateway.plugins.serial_port import SerialSettings

LinkConfig = ModbusTcpSource | ModbusRtuSource

BAUDS: tuple[int, ...] = get_args(SerialSettings.model_fields["baudrate"].annotation)
PARITIES: tuple[str, ...] = get_args(SerialSettings.model_fields["parity"].annotation)
TIMEOUT_MIN_S, TIMEOUT_MAX_S = 0.05, 60.0
TCP_TIMEOUT_S = 1.0
# One FC3 exchange of one register is ~25 ms at 9600 baud; 0.3 s leaves room
# for a slow slave's turnaround. Lower rates get proportionally longer.
RTU_TIMEOUT_AT_9600_S = 0.3
# Connecting is bounded too: a host that drops SYNs must not hang the command.
CONNECT_SLACK_S = 5.0


def add_link_args(p: argparse.ArgumentParser, *, lists: bool) -> None:
    """``--tcp``/``--serial`` and the line settings; ``lists``: baud and parity take lists."""
    g = p.add_mutually_exclusive_group()
    g.add_argument("--tcp", metavar="HOST:PORT", help="a Modbus TCP device or gateway")
    g.add_argument("--serial", metavar="PORT", help="a serial port (RS-485 adapter), Modbus RTU")
    many = "comma-separated list to try each, " if lists else ""
    p.add_argument("--baud", default="9600", help=f"serial baud rate ({many}default 9600)")
    p.add_argument("--parity", default="N", help=f"serial parity N, E or O ({many}default N)")
    p.add_argument("--stopbits", default="1", choices=("1", "2"), help="serial stop bits")
    p.add_argument(
        "--timeout",
        metavar="SECONDS",
        help=f"answer timeout (default {RTU_TIMEOUT_AT_9600_S:g} s at 9600 baud and longer"
        f" at lower rates, {TCP_TIMEOUT_S:g} s over TCP)",
    )


def parse_hostport(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT``; the port defaults to 502)."""
    host, sep, port_text = text.rpartition(":")
    if not sep or (host.count(":") and not host.startswith("[")):
        host, port_text = text, "502"
    host = host.strip("[]")
    try:
        port = int(port_text)
    except ValueError:
        raise CommandError(f"--tcp {text!r}: the port must be a number (HOST:PORT)") from None
    if not host or not 1 <= port <= 65535:
        raise CommandError(f"--tcp {text!r}: expected HOST:PORT with a port 1..65535")
    return host, port


def _items(option: str, text: str) -> list[str]:
    items = [t.strip() for t in text.split(",")]
    if not all(items):
        raise CommandError(f"{option} {text!r}: an empty item in the list")
    return list(dict.fromkeys(items))


def parse_bauds(text: str) -> list[int]:
    out = []
    for item in _items("--baud", text):
        if not item.isdigit() or int(item) not in BAUDS:
            known = ", ".join(str(b) for b in BAUDS)
            raise CommandError(f"--baud {text!r}: {item!r} is not one of {known}")
        out.append(int(item))
    return out


def parse_parities(text: str) -> list[str]:
    out = [p.upper() for p in _items("--parity", text)]
    for p in out:
        if p not in PARITIES:
            raise CommandError(f"--parity {text!r}: {p!r} is not one of N, E, O")
    return out


def parse_timeout(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        raise CommandError(f"--timeout {text!r}: not a number of seconds") from None
    if not TIMEOUT_MIN_S <= value <= TIMEOUT_MAX_S:
        raise CommandError(f"--timeout {text!r}: between {TIMEOUT_MIN_S:g} and {TIMEOUT_MAX_S:g} s")
    return value


def default_rtu_timeout(baud: int) -> float:
    return RTU_TIMEOUT_AT_9600_S * max(1.0, 9600 / baud)


def tcp_config(host: str, port: int, timeout_s: float | None, cid: str) -> ModbusTcpSource:
    return ModbusTcpSource(
        id=cid,
        type="modbus_tcp",
        host=host,
        port=port,
        timeout_s=timeout_s or TCP_TIMEOUT_S,
        retries=0,
    )


def rtu_config(
    port: str, baud: int, parity: str, stopbits: int, timeout_s: float | None, cid: str
) -> ModbusRtuSource:
    try:
        return ModbusRtuSource.model_validate(
            {
                "id": cid,
                "type": "modbus_rtu",
                "port": port,
                "baudrate": baud,
                "parity": parity,
                "stopbits": stopbits,
                "timeout_s": timeout_s or default_rtu_timeout(baud),
                "retries": 0,
            }
        )
    except ValidationError as exc:
        raise CommandError(f"--serial {port}: {exc.errors()[0]['msg']}") from None


def describe(cfg: LinkConfig) -> str:
    if isinstance(cfg, ModbusTcpSource):
        return f"tcp {cfg.host}:{cfg.port}"
    return f"serial {cfg.port} {cfg.baudrate} {cfg.bytesize}{cfg.parity}{cfg.stopbits}"


def check_port(cfg: LinkConfig) -> None:
    """Refuse a serial port that does not exist, before anything starts (ConnectError)."""
    if isinstance(cfg, ModbusRtuSource) and not os.path.exists(cfg.port):
        raise ConnectError(f"serial port {cfg.port} does not exist")


@asynccontextmanager
async def connected(cfg: LinkConfig) -> AsyncIterator[ModbusClient]:
    """The gateway's Modbus client on ``cfg``, connected; closed on exit. Raises ConnectError."""
    client = ModbusClient(cfg)
    try:
        try:
            async with asyncio.timeout(cfg.timeout_s + CONNECT_SLACK_S):
                await client.connect()
        except TimeoutError:
            raise ConnectError(f"cannot connect to {describe(cfg)}: no answer") from None
        except ConnectError as exc:
            why = f": {exc.__cause__}" if exc.__cause__ is not None else ""
            raise ConnectError(f"cannot connect to {describe(cfg)}{why}") from exc
        yield client
    finally:
        client.close()
