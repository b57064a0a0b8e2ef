"""The sink protocol every delivery target follows, and small helpers they share.

A sink is an async context manager: entering connects (and raises
``SinkError``/``SinkAuthError`` if it cannot), ``send(records)`` delivers one
batch and returns only after the far side acknowledged all of it (MQTT
PUBACK, HTTP 204), ``aclose`` disconnects. A sink is reusable but not
reentrant: the delivery worker enters it again after every outage.

``send`` raises ``SinkError`` when the batch may not have been delivered (the
worker retries the same batch, so delivery is at-least-once), and
``SinkRejected`` when the far side answered but refused the data for good
(e.g. InfluxDB 400: a field type conflict); retrying such a batch would stall
the sink forever, so the worker logs it, counts it and moves on.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Protocol, Self, runtime_checkable

from gateway.errors import SinkError
from gateway.outbox import Record


class SinkRejected(SinkError):
    """The far side answered and refused this batch for good; do not retry it."""


@runtime_checkable
class Sink(Protocol):
    """What the delivery worker needs from a sink.

    ``name`` keys the sink's outbox cursor, so it must be stable across
    restarts. ``batch_size`` caps one ``send``; ``flush_interval_s`` is how
    long the worker lets a partial batch fill before sending it (0 for
    MQTT, about a second for InfluxDB). ``retry_min_s``/``retry_max_s``
    bound the exponential back-off after a failure.
    """

    name: str
    batch_size: int
    flush_interval_s: float
    retry_min_s: float
    retry_max_s: float

    async def __aenter__(self) -> Self: ...

    async def __aexit__(self, *exc: object) -> None: ...

    async def send(self, records: Sequence[Record]) -> None: ...

    async def aclose(self) -> None: ...


_last_second: list[tuple[int, str]] = [(-1, "")]


def iso_utc(ts_ns: int) -> str:
    """ISO 8601 UTC with microseconds and ``Z`` (``ts_ns`` keeps full precision)."""
    sec = ts_ns // 1_000_000_000
    # Every message of a batch falls in the same few seconds: format each second once.
    last, text = _last_second[0]
    if sec != last:
        text = f"{datetime.fromtimestamp(sec, UTC):%Y-%m-%dT%H:%M:%S}"
        _last_second[0] = (sec, text)
    return f"{text}.{(ts_ns % 1_000_000_000) // 1000:06d}Z"
