"""LinkRetry: capped, doubling back-off between failed opens, one warning per outage."""

from __future__ import annotations

import logging

import pytest

from gateway.errors import ConnectError
from gateway.plugins.modbus.config import ModbusTcpSource
from gateway.plugins.reconnect import LinkRetry


async def test_back_off_doubles_to_its_cap_and_resets_on_open(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cfg = ModbusTcpSource(
        id="plc",
        type="modbus_tcp",
        host="127.0.0.1",
        port=502,
        reconnect_min_s=1,
        reconnect_max_s=4,
    )
    retry = LinkRetry(cfg, logging.getLogger("test.reconnect"))
    up = False
    tried: list[float] = []
    now = 0.0

    async def open_link() -> None:
        tried.append(now)
        if not up:
            raise ConnectError("plc: cannot connect")

    caplog.set_level(logging.WARNING, "test.reconnect")
    for now in [x * 0.5 for x in range(40)]:  # 0 .. 19.5 s, a poll every 0.5 s
        await retry.open(open_link, now, "plc: connected again")
    # Tried at 0, then after 1, 2, 4, 4, 4 ... seconds.
    assert tried == [0.0, 1.0, 3.0, 7.0, 11.0, 15.0, 19.0]
    up = True
    now = 23.0
    assert await retry.open(open_link, now, "plc: connected again") is True
    up = False
    now = 23.5
    assert isinstance(await retry.open(open_link, now, "plc: connected again"), ConnectError)
    assert await retry.open(open_link, 24.0, "plc: connected again") is False  # 1 s again, not 4
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        "plc: cannot connect; retrying with back-off up to 4 s",
        "plc: connected again",
        "plc: cannot connect; retrying with back-off up to 4 s",
    ]


async def test_a_link_lost_mid_use_is_one_outage_with_its_reopen() -> None:
    cfg = ModbusTcpSource(id="plc", type="modbus_tcp", host="127.0.0.1", port=502)
    retry = LinkRetry(cfg, logging.getLogger("test.reconnect"))

    async def fails() -> None:
        raise ConnectError("plc: cannot connect")

    async def opens() -> None:
        return None

    retry.lost()
    assert isinstance(await retry.open(fails, 0.0, "again"), ConnectError)
    assert retry.down  # still the same outage: not logged twice
    assert await retry.open(opens, 100.0, "again") is True
    assert not retry.down
