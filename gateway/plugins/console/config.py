"""Config model of the console sink (``sinks.console``): JSON lines on stdout."""

from __future__ import annotations

from gateway.plugins.base import SinkConfig


class ConsoleSink(SinkConfig):
    pretty: bool = False
