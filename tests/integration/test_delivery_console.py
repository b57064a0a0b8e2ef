"""Delivery without servers: the console view, and a sink that crashes."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Self

from gateway.config import ConsoleSink, OutboxConfig, Sinks
from gateway.delivery import Delivery
from gateway.model import Quality, Sample
from gateway.outbox import Record
from tests.integration.delivery_support import make_sample, running, wait_until


async def test_console_only_prints_every_sample_and_creates_no_outbox(tmp_path: Path) -> None:
    out = io.StringIO()
    path = tmp_path / "ob.sqlite"
    d = Delivery("park", Sinks(console=ConsoleSink()), OutboxConfig(path=str(path)), stdout=out)
    async with running(d):
        for i in range(5):
            d.append_sample(make_sample(i, 1_767_225_600_000_000_000))
        d.append_sample(
            Sample(
                "m", "meter", 1_767_225_600_000_000_000, {}, {"flow": Quality.BAD}, error="timeout"
            )
        )
    lines = [json.loads(ln) for ln in out.getvalue().splitlines()]
    assert [ln["values"].get("seq") for ln in lines] == [0, 1, 2, 3, 4, None]
    assert lines[0]["ts"] == "2026-01-01T00:00:00.000000Z"
    assert lines[1]["ts"] == "2026-01-01T00:00:00.001000Z"
    assert lines[0]["quality"] == {"sensor2": "fault"} and lines[1]["quality"] == {}
    assert lines[5]["error"] == "timeout" and lines[5]["quality"] == {"flow": "bad"}
    assert not path.exists()
    assert d.stats().outbox is None


class BrokenSink:
    """A sink with a bug (raises a non-gateway error): stands in for a coding error."""

    name = "broken"
    batch_size = 100
    flush_interval_s = 0.0
    retry_min_s = 0.05
    retry_max_s = 0.1

    def __init__(self) -> None:
        self.calls = 0

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def send(self, records: Sequence[Record]) -> None:
        self.calls += 1
        raise RuntimeError("bug in sink")

    async def aclose(self) -> None:
        return None


class ListSink(BrokenSink):
    name = "list"

    def __init__(self) -> None:
        super().__init__()
        self.got: list[Record] = []

    async def send(self, records: Sequence[Record]) -> None:
        self.got.extend(records)


async def test_a_crashing_sink_does_not_stop_delivery_or_the_other_sink(tmp_path: Path) -> None:
    broken, good = BrokenSink(), ListSink()
    d = Delivery(
        "park", Sinks(), OutboxConfig(path=str(tmp_path / "ob.sqlite")), extra_sinks=[broken, good]
    )
    async with running(d):
        for i in range(50):
            d.append_sample(make_sample(i, 0))
        await wait_until(lambda: len(good.got) == 50 and broken.calls >= 3, 10, "delivery")
        await asyncio.sleep(0.1)
        st = d.stats()
        assert st.sinks["broken"].last_error == "RuntimeError: bug in sink"
        assert st.outbox is not None and st.outbox.sinks["broken"].backlog == 50
        assert st.outbox.sinks["list"].backlog == 0
