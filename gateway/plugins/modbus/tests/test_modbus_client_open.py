"""Opening a serial line the port refuses is a ConnectError, whatever layer refuses it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gateway.errors import ConnectError
from gateway.plugins.modbus.config import ModbusRtuSource
from gateway.plugins.modbus.source import ModbusClient


async def test_a_pty_refusing_the_line_settings_is_a_connect_error(tmp_path: Path) -> None:
    # A Linux pty refuses even parity (tcsetattr: EINVAL); pyserial lets that
    # termios.error escape, and it is no OSError.
    master, slave = os.openpty()
    try:
        cfg = ModbusRtuSource(
            id="bus", type="modbus_rtu", port=os.ttyname(slave), parity="E", timeout_s=0.3
        )
        client = ModbusClient(cfg)
        with pytest.raises(ConnectError, match="bus: cannot connect"):
            await client.connect()
        client.close()
    finally:
        os.close(master)
        os.close(slave)
