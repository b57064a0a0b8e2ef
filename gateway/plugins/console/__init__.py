"""The console sink plugin: every item as a JSON line on stdout (implementation in ``sink``)."""

from __future__ import annotations

from gateway.plugins.base import SinkPlugin
from gateway.plugins.console.config import ConsoleSink

PLUGIN = SinkPlugin(
    name="console", config=ConsoleSink, factory="gateway.plugins.console.sink:build", live=True
)

__all__ = ["PLUGIN", "ConsoleSink"]
