"""The operator command channels of a site's sinks (MQTT's command topic), wired to a handler.

A sink plugin may offer a command channel (``SinkPlugin.commands``); this
builds one per configured sink that does, behind one ``CommandGate`` (the
signatures, the replay window and the rate limits of ``commands:``), so the
gateway only hands over its command handler.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from gateway.config import SiteConfig
from gateway.model import SystemClock
from gateway.plugins import registry
from gateway.plugins.base import CommandContext

Handler = Callable[[bytes | str | dict[str, Any], str], dict[str, Any]]


def command_channels(config: SiteConfig, state_dir: Path, handle: Handler) -> list[Any]:
    """The channels' long-lived coroutines (none when ``commands: false`` or no sink has one)."""
    commands = config.commands
    if not commands.enabled:
        return []
    sinks = registry().sinks
    channels = [
        (sinks[name], cfg)
        for name, cfg in config.sinks.configured().items()
        if sinks[name].commands is not None
    ]
    if not channels:
        return []
    from gateway.alerting.command_gate import CommandGate

    # Senders stamp commands with real time: freshness is judged on the real clock,
    # also when the gateway runs on simulated time (--sim-clock-start).
    gate = CommandGate(commands, SystemClock(), state_dir / "command-replay.sqlite", config.site)
    ctx = CommandContext(config.site, handle, gate)
    return [p.make_command_channel(cfg, ctx) for p, cfg in channels]
