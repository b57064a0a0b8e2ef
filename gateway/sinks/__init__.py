"""Sinks: where the gateway delivers what the outbox holds.

The sinks themselves are plugins (gateway/plugins/<name>/sink.py), each
exposing one async class that follows the small protocol in ``base``. Only
the sink plugins import paho-mqtt, influxdb_client or httpx; everything above
sees ``Sink`` and ``SinkError``.
"""

from gateway.sinks.base import Sink, SinkRejected, iso_utc

__all__ = ["Sink", "SinkRejected", "iso_utc"]
