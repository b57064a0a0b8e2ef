"""Builds the console sink (gateway.sinks.console) from its config."""

from __future__ import annotations

from gateway.plugins.base import SinkContext
from gateway.plugins.console.config import ConsoleSink
from gateway.sinks.base import Sink
from gateway.sinks.console import ConsoleSink as Console


def build(cfg: ConsoleSink, ctx: SinkContext) -> Sink:
    return Console(ctx.stdout, pretty=cfg.pretty)
