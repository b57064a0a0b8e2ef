"""The gateway's own health as figures: one device_health sample per device, and the
delivery and alarm figures of the gateway_health sample.

Pure functions of counters the gateway already keeps (``Gateway.iter_health_samples``
gathers them on the health interval); nothing here runs per reading.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gateway.delivery import DeliveryStats
from gateway.model import Sample
from gateway.sources.device_poll import DeviceCounters

Figures = dict[str, float | int | bool | str]


def device_health(dev_id: str, c: DeviceCounters, ts_ns: int, tags: dict[str, str]) -> Sample:
    """One device's poll counters as a ``device_health`` sample."""
    return Sample(
        device=dev_id,
        kind="device_health",
        ts_ns=ts_ns,
        values={
            "polls": c.polls,
            "good_polls": c.good_polls,
            "timeouts": c.timeouts,
            "exceptions": c.exceptions,
            "frame_errors": c.frame_errors,
            "connect_errors": c.connect_errors,
            "decode_errors": c.decode_errors,
            "overruns": c.overruns,
            "consecutive_failures": c.consecutive_failures,
            "latency_ms": round(c.last_latency_s * 1000, 3),
            "online": c.consecutive_failures == 0 and c.polls > 0,
        },
        tags=tags,
    )


def delivery_values(stats: DeliveryStats) -> Figures:
    """The outbox's size, evictions and per-sink backlog, and each sink's connection."""
    values: Figures = {}
    if stats.outbox is not None:
        values["outbox_rows"] = stats.outbox.rows
        values["outbox_bytes"] = stats.outbox.bytes
        values["evictions"] = stats.outbox.evicted
        values["outbox_quarantined"] = stats.outbox.quarantined
        values["outbox_disk_full"] = stats.outbox.disk_full is not None
        for name, b in stats.outbox.sinks.items():
            values[f"backlog_{name}"] = b.backlog
            values[f"oldest_age_s_{name}"] = round(b.oldest_age_s, 3)
    for name, st in stats.sinks.items():
        values[f"connected_{name}"] = st.connected
    return values


def alarm_values(counters: Mapping[str, Any]) -> Figures:
    """The alert engine's scalar counters, each as ``alarm_<name>``."""
    return {f"alarm_{k}": v for k, v in counters.items() if isinstance(v, int | float | bool)}
