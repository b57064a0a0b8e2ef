"""Every interval, timeout and delay in the config has a sane range.

``timeout_s: 0.0001`` made ~900 bad samples a second and ``health_interval_s:
1e-6`` a busy loop; ``max_gap_s: 1e-6`` would make the patrol engine count
billions of due times. The table gives each timer its range; the sweep finds
any ``*_s`` field, now or added later, without one.
"""

from __future__ import annotations

import math
import types
import typing
from pathlib import Path
from typing import Any

import annotated_types as at
import pytest
from pydantic import BaseModel, ValidationError

from firmware_sim.schema import FaultSpec
from gateway.alerting import config as alerting
from gateway.alerting import rules
from gateway.alerting.command_config import CommandRates, CommandsConfig
from gateway.config import (
    DeviceConfig,
    InfluxSinkConfig,
    ModbusRtuSource,
    OutboxConfig,
    PipelineConfig,
    SerialLineSource,
    SiteConfig,
)
from gateway.errors import ConfigError
from gateway.loader import load_site
from gateway.local_http_config import LocalHttpConfig
from gateway.patrol import config as patrol
from gateway.plugins.base import DeliverySettings as _DeliverySettings
from gateway.plugins.base import SourceConfig as _SourceBase
from gateway.plugins.mbus.config import MBusSourceConfig
from gateway.plugins.opcua.config import OpcUaSourceConfig
from gateway.profiles.registry import AnyProfile
from gateway.profiles.schema import SimBehaviour
from gateway.reports.config import ReportsConfig
from tests.unit.test_config_errors import GOOD_SITE

DAY = 86400.0
RTU = {"id": "r", "type": "modbus_rtu", "port": "/dev/x"}
LINE = {"id": "l", "type": "serial_line", "port": "/dev/x"}
MBUS = {"id": "m", "type": "mbus", "port": "/dev/x"}
OPCUA = {"id": "o", "type": "opcua", "endpoint": "opc.tcp://127.0.0.1:4840"}
DEVICE = {"id": "d", "profile": "p", "source": "s"}
HOOK = {"name": "h", "type": "webhook", "url": "http://x"}
MAIL = {"name": "m", "type": "email", "host": "h", "sender": "a@b"}
PATROL = {"checkpoints": [{"id": "a"}], "routes": [{"id": "r", "checkpoints": ["a"]}]}
LIMITS = {"limits": {"hi": {"value": 1}}, "points": ["x"]}
RATE = {"id": "r", "kind": "rate", **LIMITS}
DEVIATION = {
    "id": "d",
    "kind": "deviation",
    "a": {"point": "x"},
    "b": {"point": "y"},
    "select": {"devices": ["d"]},
    "limits": {"hi": {"value": 1}},
}

# model, the other fields it needs, field, lowest allowed, highest allowed
BOUNDS: list[tuple[type[BaseModel], dict[str, Any], str, float, float]] = [
    (_SourceBase, {"id": "s", "type": "t"}, "timeout_s", 0.05, 60),
    (ModbusRtuSource, RTU, "timeout_s", 0.05, 60),
    (_SourceBase, {"id": "s", "type": "t", "reconnect_max_s": 60}, "reconnect_min_s", 0.05, 60),
    (_SourceBase, {"id": "s", "type": "t", "reconnect_min_s": 0.05}, "reconnect_max_s", 0.1, 3600),
    (ModbusRtuSource, RTU, "dead_unit_backoff_s", 1, 3600),
    (SerialLineSource, LINE, "silence_s", 1, DAY),
    (MBusSourceConfig, MBUS, "timeout_s", 0.1, 10),
    (ReportsConfig, {}, "ack_late_s", 1, 7 * DAY),
    (MBusSourceConfig, {**MBUS, "reconnect_max_s": 60}, "reconnect_min_s", 0.05, 60),
    (MBusSourceConfig, {**MBUS, "reconnect_min_s": 0.05}, "reconnect_max_s", 0.1, 3600),
    (MBusSourceConfig, MBUS, "dead_meter_backoff_s", 1, 3600),
    (OpcUaSourceConfig, OPCUA, "publishing_interval_s", 0.05, 3600),
    (OpcUaSourceConfig, OPCUA, "sampling_interval_s", 0, 3600),
    (OpcUaSourceConfig, OPCUA, "timeout_s", 0.1, 120),
    (OpcUaSourceConfig, OPCUA, "watchdog_s", 0.1, 60),
    (OpcUaSourceConfig, OPCUA, "session_timeout_s", 1, 86400),
    (OpcUaSourceConfig, {**OPCUA, "reconnect_max_s": 60}, "reconnect_min_s", 0.05, 60),
    (OpcUaSourceConfig, {**OPCUA, "reconnect_min_s": 0.05}, "reconnect_max_s", 0.1, 3600),
    # A rate, not a duration, but a tiny one would drop every tap just the same.
    (SerialLineSource, LINE, "max_lines_per_s", 0.1, 10_000),
    (DeviceConfig, DEVICE, "interval_s", 0.1, DAY),
    (_DeliverySettings, {}, "flush_interval_s", 0, 60),
    (_DeliverySettings, {}, "timeout_s", 0.5, 300),
    (_DeliverySettings, {"retry_max_s": 60}, "retry_min_s", 0.05, 60),
    (_DeliverySettings, {"retry_min_s": 0.05}, "retry_max_s", 0.1, 3600),
    (InfluxSinkConfig, {"bucket": "b"}, "flush_interval_s", 0, 60),
    (OutboxConfig, {}, "flush_interval_s", 0.01, 5),
    (PipelineConfig, {}, "health_interval_s", 1, 3600),
    (PipelineConfig, {}, "max_delivery_age_s", 5, 7 * DAY),
    (FaultSpec, {"kind": "slow"}, "delay_s", 0, 3600),
    (FaultSpec, {"kind": "slow"}, "after_s", 0, 365 * DAY),
    (FaultSpec, {"kind": "slow"}, "duration_s", 0.01, 365 * DAY),
    (SimBehaviour, {}, "period_s", 0.1, 365 * DAY),
    (alerting.WebhookChannel, HOOK, "timeout_s", 1, 120),
    (alerting.EmailChannel, MAIL, "timeout_s", 1, 300),
    (alerting.EscalationLevel, {}, "after_s", 0, 7 * DAY),
    (alerting.Route, {"name": "r", "channels": ["c"]}, "repeat_s", 60, 7 * DAY),
    (alerting.FloodConfig, {}, "window_s", 10, DAY),
    (alerting.ChatterConfig, {}, "window_s", 1, 3600),
    (alerting.RetryConfig, {"max_s": 3600}, "min_s", 1, 3600),
    (alerting.RetryConfig, {"min_s": 1}, "max_s", 1, DAY),
    (alerting.RetryConfig, {}, "give_up_s", 60, 30 * DAY),
    (alerting.AlertingConfig, {}, "group_window_s", 0, 3600),
    (alerting.AlertingConfig, {}, "realarm_s", 60, 7 * DAY),
    (alerting.AlertingConfig, {}, "max_shelve_s", 60, 30 * DAY),
    (alerting.AlertingConfig, {}, "max_out_of_service_s", 60, 365 * DAY),
    (alerting.AlertingConfig, {}, "link_ttl_s", 60, 7 * DAY),
    (LocalHttpConfig, {}, "stall_s", 2, 3600),
    (CommandsConfig, {}, "max_age_s", 1, 3600),
    (CommandsConfig, {}, "max_future_s", 0, 600),
    (CommandRates, {}, "summary_every_s", 1, DAY),
    (patrol.Walk, {"between": ["a", "b"]}, "min_s", 0, DAY),
    (patrol.RouteConfig, {"id": "r", "checkpoints": ["a"]}, "max_duration_s", 60, DAY),
    (patrol.RouteConfig, {"id": "r", "checkpoints": ["a"]}, "default_min_walk_s", 0, DAY),
    (patrol.PatrolConfig, PATROL, "max_gap_s", 60, DAY),
    (patrol.PatrolConfig, PATROL, "duplicate_window_s", 0, 3600),
    (patrol.PatrolConfig, PATROL, "garbage_report_s", 1, DAY),
    (patrol.PatrolConfig, PATROL, "unknown_card_report_s", 1, DAY),
    (rules.Limit, {"value": 1}, "on_delay_s", 0, DAY),
    (rules.Limit, {"value": 1}, "off_delay_s", 0, DAY),
    (rules.RuleBase, {"id": "r", "kind": "k"}, "on_delay_s", 0, DAY),
    (rules.RuleBase, {"id": "r", "kind": "k"}, "off_delay_s", 0, DAY),
    (rules.RateRule, RATE, "window_s", 1, DAY),
    (rules.DeviationRule, DEVIATION, "max_age_s", 1, DAY),
    (rules.NoDataRule, {"id": "n", "kind": "no_data"}, "timeout_s", 1, 7 * DAY),
]


def _ids() -> list[str]:
    return [f"{m.__name__}.{f}" for m, _, f, _, _ in BOUNDS]


@pytest.mark.parametrize(("model", "base", "field", "low", "high"), BOUNDS, ids=_ids())
def test_field_range(
    model: type[BaseModel], base: dict[str, Any], field: str, low: float, high: float
) -> None:
    model.model_validate({**base, field: low})
    model.model_validate({**base, field: high})
    below = low / 2 if low > 0 else -0.001
    for bad in (below, high * 1.5, math.nan, math.inf):
        with pytest.raises(ValidationError) as info:
            model.model_validate({**base, field: bad})
        assert any(field in err["loc"] for err in info.value.errors()), (bad, info.value)


def _models(tp: Any, seen: set[type[BaseModel]]) -> None:
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        if tp not in seen:
            seen.add(tp)
            for f in tp.model_fields.values():
                _models(f.annotation, seen)
        return
    for arg in typing.get_args(tp):
        _models(arg, seen)


def _is_float(tp: Any) -> bool:
    if tp is float:
        return True
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        return any(_is_float(a) for a in typing.get_args(tp))
    return False


def _all_models() -> set[type[BaseModel]]:
    seen: set[type[BaseModel]] = set()
    for root in (SiteConfig, rules.RuleFile, AnyProfile):
        _models(root, seen)
    return seen


def test_every_duration_field_is_in_the_table() -> None:
    """A new ``*_s`` field without a row here (and so without a checked range) fails."""
    table = {(m, f) for m, _, f, _, _ in BOUNDS}
    missing = []
    for model in _all_models():
        for name, info in model.model_fields.items():
            # Durations; rates (``*_per_s``) are token buckets, not timers.
            if not (name.endswith("_s") and _is_float(info.annotation)):
                continue
            if name.endswith("_per_s"):
                continue
            if not any(issubclass(model, m) and name == f for m, f in table):
                missing.append(f"{model.__name__}.{name}")
            lower = [x for x in info.metadata if isinstance(x, at.Ge | at.Gt)]
            upper = [x for x in info.metadata if isinstance(x, at.Le | at.Lt)]
            assert lower and upper, f"{model.__name__}.{name} needs both bounds"
    assert not missing, f"durations without a row in BOUNDS: {sorted(missing)}"


@pytest.mark.parametrize(
    ("old", "new", "expect"),
    [
        (
            "port: 1502}",
            "port: 1502, timeout_s: 0.0001}",
            "site.yaml:4: source 'tcp1': sources[0].timeout_s: Input should be greater than or"
            " equal to 0.05",
        ),
        (
            "    interval_s: 5\n",
            "    interval_s: 5\npipeline: {health_interval_s: 1.0e-6}\n",
            "site.yaml:11: pipeline.health_interval_s: Input should be greater than or equal to 1",
        ),
        (
            "port: 1502}",
            "port: 1502, reconnect_min_s: 5, reconnect_max_s: 1}",
            "site.yaml:4: source 'tcp1': sources[0]: reconnect_min_s must not exceed"
            " reconnect_max_s",
        ),
    ],
)
def test_site_file_names_the_field(tmp_path: Path, old: str, new: str, expect: str) -> None:
    (tmp_path / "profiles").mkdir()
    path = tmp_path / "site.yaml"
    assert old in GOOD_SITE
    path.write_text(GOOD_SITE.replace(old, new))
    with pytest.raises(ConfigError) as info:
        load_site(path)
    assert any(p.endswith(expect) for p in info.value.problems), info.value.problems


def test_alerting_retry_order() -> None:
    with pytest.raises(ValidationError, match="min_s must not exceed max_s"):
        alerting.RetryConfig.model_validate({"min_s": 100, "max_s": 10})
