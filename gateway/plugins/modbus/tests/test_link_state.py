"""A Modbus source's link state: down with the reason, then up again with the reason gone."""

from __future__ import annotations

import asyncio

from gateway.model import FakeClock, Sample
from gateway.plugins.modbus.config import ModbusTcpSource
from gateway.plugins.modbus.source import ModbusSource
from tests.fixtures.servers import free_port


async def test_a_link_that_comes_back_drops_its_old_error() -> None:
    # The health signal source:<id> shows link_error, or "link up" when it is empty:
    # a stale "cannot connect" on a link that is up would mislead the on-call engineer.
    port = free_port()
    cfg = ModbusTcpSource(id="plc", type="modbus_tcp", host="127.0.0.1", port=port, timeout_s=0.5)
    clock = FakeClock()
    seen: list[Sample] = []

    async def emit(sample: Sample) -> None:
        seen.append(sample)

    src = ModbusSource(cfg, [], emit, clock)
    assert not await src._ensure_connected()
    assert src.link_ok is False and "cannot connect" in src.link_error

    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", port)
    try:
        clock.advance(cfg.reconnect_max_s + 1)
        assert await src._ensure_connected()
        assert src.link_ok is True
        assert src.link_error == ""
    finally:
        await src.aclose()
        server.close()
        await server.wait_closed()
