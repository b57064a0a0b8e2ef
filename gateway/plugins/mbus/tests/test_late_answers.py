"""A meter that answers after its timeout must not shift the line by one answer (EN 13757).

Known defect, left for the owner of mbus/source.py (the scheduler work is under way there):
``_transact`` returns the first frame that arrives, so the late E5 of one meter is taken
as the next exchange's answer and every later read fails (heat-2 gets "expected RSP_UD,
got Ack()", heat-1 "expected E5, got LongFrame", for good). The CJ/T 188 source skips
answers that do not match the request and keeps waiting
(test_cjt188_source.py::test_a_late_answer_is_not_taken_for_the_next_meters); the same in
``MBusSource._transact`` would mend this; then the marker goes. Not strict: the shift
needs the late answer to land inside a later exchange, which a loaded machine could miss.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from gateway.model import SystemClock
from gateway.plugins.mbus.sim import MBusLineSim, SimMeter
from gateway.plugins.mbus.source import MBusSource
from gateway.plugins.mbus.tests.test_source import PROFILE, Samples, meter, source_cfg

pytestmark = pytest.mark.timeout(60)


class SlowOnce(MBusLineSim):
    """Handles the next request ``delay_s`` late (a meter busy once), then in time again."""

    delay_s = 0.0

    def _handle(self, data: bytes) -> None:
        delay, self.delay_s = self.delay_s, 0.0
        if delay:
            asyncio.get_running_loop().call_later(delay, super()._handle, data)
        else:
            super()._handle(data)


@pytest.mark.xfail(strict=False, reason="MBusSource takes a late answer for the next exchange's")
async def test_one_late_answer_does_not_shift_the_line(tmp_path: Path) -> None:
    cfg = source_cfg(tmp_path, retries=0, timeout_s=0.5, dead_after=100)
    got = Samples()
    meters = [SimMeter(1, 10000001, PROFILE), SimMeter(2, 10000002, PROFILE)]
    line = SlowOnce(cfg, meters)
    async with line:
        ms = [meter("heat-1", 1, cfg), meter("heat-2", 2, cfg)]
        src = MBusSource(cfg, ms, got, SystemClock())
        async with src:
            line.delay_s = 0.6  # heat-1's SND_NKE is answered after its timeout
            for _ in range(3):
                for m in ms:
                    await src.poll_meter(m)
    first, *rest = got.items
    assert first.device == "heat-1" and "no answer" in str(first.error)
    assert [(s.device, s.error) for s in rest if s.error] == []
