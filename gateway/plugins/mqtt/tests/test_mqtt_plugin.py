"""The MQTT plugin: its README sample, and the alarm lane it asks Delivery for."""

from __future__ import annotations

from pathlib import Path

from gateway.model import SystemClock
from gateway.plugins import registry
from gateway.plugins.base import SinkContext
from tests.plugin_support import sample_sinks

HERE = Path(__file__).resolve().parents[1]


def test_the_readme_sample_builds_a_sink_and_its_alarm_lane() -> None:
    cfg = sample_sinks(HERE).configured()["mqtt"]
    plugin = registry().sinks["mqtt"]
    ctx = SinkContext(site="park", clock=SystemClock())
    assert plugin.make(cfg, ctx).name == "mqtt"
    lane = plugin.make_lane(cfg, ctx)
    assert lane is not None and lane.name == "mqtt-alarms"
    assert plugin.make_lane(cfg.model_copy(update={"alarm_lane": False}), ctx) is None
