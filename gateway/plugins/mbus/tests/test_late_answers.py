"""A meter that answers after its timeout must not shift the line by one answer (EN 13757).

Taking the first frame that arrives made the late E5 of one meter the next exchange's
answer, and every later read failed (heat-2 "expected RSP_UD, got Ack()", heat-1
"expected E5, got LongFrame", for good). ``MBusSource`` now takes only an answer that
fits the request and skips the rest (``stale_frames``). The first test is the defect as
found (a timer, so where the late E5 lands depends on the machine's speed); the others
put a late RSP_UD inside the neighbour's exchange deterministically: the simulator holds
it back and sends it just before the answer to the next REQ_UD2.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from gateway.model import Sample, SystemClock
from gateway.plugins.mbus.codec import C_REQ_UD2, C_SND_NKE, FCB, ShortFrame
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


async def test_one_late_answer_does_not_shift_the_line(tmp_path: Path) -> None:
    cfg = source_cfg(tmp_path, retries=0, timeout_s=0.5, dead_after=100)
    got = Samples()
    meters = [SimMeter(1, 10000001, PROFILE), SimMeter(2, 10000002, PROFILE)]
    line = SlowOnce(cfg, meters)
    async with line:
        src = MBusSource(
            cfg, [meter("heat-1", 1, cfg), meter("heat-2", 2, cfg)], got, SystemClock()
        )
        line.delay_s = 0.6  # heat-1's SND_NKE is answered after its timeout
        await three_rounds(src, got)


async def three_rounds(src: MBusSource, got: Samples) -> list[Sample]:
    """Reads both meters three times: only the first read (heat-1's) may fail, with no
    answer. Returns the samples after the first."""
    async with src:
        for _ in range(3):
            for m in src.devices:
                await src.poll_meter(m)
    first, *rest = got.items
    assert first.device == "heat-1" and "no answer" in str(first.error)
    assert [(s.device, s.error) for s in rest if s.error] == []
    return rest


class LateOnce(MBusLineSim):
    """With ``hold`` set to a request's C field, keeps the next answer to such a request
    back and sends it just before the answer to the following REQ_UD2: a meter answering
    after the master's timeout, inside the neighbour's exchange."""

    hold: int | None = None
    _held = b""

    def _answer(self, frame: object) -> bytes | None:
        answer = super()._answer(frame)
        if answer is None or not isinstance(frame, ShortFrame):
            return answer
        if frame.c & ~FCB == self.hold:
            self.hold, self._held = None, answer
            return None
        if frame.c & ~FCB != C_REQ_UD2:
            return answer
        held, self._held = self._held, b""
        return held + answer


@pytest.mark.parametrize(
    ("late", "secondary"),
    [(C_SND_NKE, False), (C_REQ_UD2, False), (C_REQ_UD2, True)],
    ids=["E5-in-REQ_UD2", "RSP_UD-primary", "RSP_UD-secondary"],
)
async def test_a_late_answer_is_skipped_by_the_neighbour(
    tmp_path: Path, late: int, secondary: bool
) -> None:
    """heat-1's answer comes in heat-2's REQ_UD2 exchange, before heat-2's RSP_UD: an E5,
    a RSP_UD from address 1, or (secondary addressing, both meters answering from primary
    address 0) a RSP_UD whose header id is heat-1's. It is skipped, heat-2's taken."""
    common = {"retries": 0, "timeout_s": 0.3, "dead_after": 100}
    if secondary:
        ids = {"heat-1": "10000001", "heat-2": "10000002-GWY-01-04"}
        cfg = source_cfg(tmp_path, secondary=ids, **common)
        sims = [SimMeter(0, 10000001, PROFILE), SimMeter(0, 10000002, PROFILE)]
    else:
        cfg = source_cfg(tmp_path, **common)
        sims = [SimMeter(1, 10000001, PROFILE), SimMeter(2, 10000002, PROFILE)]
    got = Samples()
    line = LateOnce(cfg, sims)
    async with line:
        src = MBusSource(
            cfg, [meter("heat-1", 1, cfg), meter("heat-2", 2, cfg)], got, SystemClock()
        )
        line.hold = late
        rest = await three_rounds(src, got)
    assert [s.device for s in rest] == ["heat-2", "heat-1", "heat-2", "heat-1", "heat-2"]
    assert src.stale_frames == 1
    assert sum(m.counters.frame_errors for m in src.devices) == 0
