"""The console sink: one JSON line per sample on stdout, for humans and pipes.

It is a live view, not a durable sink: ``Delivery`` calls ``emit`` as each
item is appended (no outbox, no cursor), so ``gateway run`` with only the
console configured prints every sample at once and creates no outbox file.
It also follows the ``Sink`` protocol, so it can be put behind the outbox
when a test wants to see exactly what a durable sink would get.

Line schema (one object per line, keys in this order)::

    {"device": "boiler-1", "kind": "boiler", "ts": "2026-01-01T00:00:00.000000Z",
     "ts_ns": 1767225600000000000, "values": {"supply_c": 71.5},
     "quality": {"flame": "bad"}, "tags": {"area": "boiler-room"}}

``quality`` lists only points that are not good; ``error`` is added when the
poll failed. Alarm events and generic events are printed too, with a
``"type": "alarm"`` / ``"type": "event"`` key, so they stand out in a pipe.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any, Self, TextIO

from gateway.model import AlarmEvent, Sample
from gateway.outbox import Event, Item, Record
from gateway.plugins.base import SinkContext
from gateway.plugins.console.config import ConsoleSink as ConsoleSinkConfig
from gateway.sinks.base import Sink, iso_utc


def sample_line(sample: Sample) -> dict[str, Any]:
    d: dict[str, Any] = {
        "device": sample.device,
        "kind": sample.kind,
        "ts": iso_utc(sample.ts_ns),
        "ts_ns": sample.ts_ns,
        "values": sample.values,
        "quality": {k: str(v) for k, v in sample.quality.items()},
    }
    if sample.tags:
        d["tags"] = sample.tags
    if sample.error is not None:
        d["error"] = sample.error
    return d


class ConsoleSink:
    """Print items as JSON lines on a text stream (stdout by default)."""

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        pretty: bool = False,
        name: str = "console",
        samples_only: bool = False,
    ) -> None:
        self._stream = stream
        self._indent = 2 if pretty else None
        self._samples_only = samples_only
        self.name = name
        self.batch_size = 1000
        self.flush_interval_s = 0.0
        self.retry_min_s = 0.5
        self.retry_max_s = 5.0

    @property
    def stream(self) -> TextIO:
        # Looked up late so pytest's capsys and redirect_stdout see the lines.
        return self._stream if self._stream is not None else sys.stdout

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def emit(self, item: Item) -> None:
        """Write one item now (synchronous: stdout writes are short)."""
        if isinstance(item, Sample):
            d = sample_line(item)
        elif self._samples_only:
            return
        elif isinstance(item, AlarmEvent):
            d = {"type": "alarm", "ts": iso_utc(item.ts_ns), **item.to_json_dict()}
        else:
            assert isinstance(item, Event)
            d = {"type": "event", "ts": iso_utc(item.ts_ns), **item.to_json_dict()}
        self.stream.write(json.dumps(d, indent=self._indent, ensure_ascii=False) + "\n")
        # Flush per line: a reader on a pipe (tests, `| jq`) must see it now.
        self.stream.flush()

    async def send(self, records: Sequence[Record]) -> None:
        for r in records:
            self.emit(r.item)

    async def aclose(self) -> None:
        self.stream.flush()


# --------------------------------------------------------------------------- plugin factory


def build(cfg: ConsoleSinkConfig, ctx: SinkContext) -> Sink:
    return ConsoleSink(ctx.stdout, pretty=cfg.pretty)
