"""The console sink plugin: every item as a JSON line on stdout (gateway.sinks.console)."""

from __future__ import annotations

from gateway.plugins.base import SinkContext, SinkPlugin
from gateway.plugins.console.config import ConsoleSink
from gateway.sinks.base import Sink


def build(cfg: ConsoleSink, ctx: SinkContext) -> Sink:
    from gateway.sinks.console import ConsoleSink as Console

    return Console(ctx.stdout, pretty=cfg.pretty)


PLUGIN = SinkPlugin(name="console", config=ConsoleSink, factory=build)

__all__ = ["PLUGIN", "ConsoleSink"]
