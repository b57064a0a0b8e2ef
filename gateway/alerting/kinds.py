"""The built-in rule kinds as registrations (gateway.plugins): model and check per ``kind``.

``no_data`` and ``health`` have no sample-driven check: the engine drives
them by time and by the gateway's health signals.
"""

from __future__ import annotations

from collections.abc import Callable

from gateway.alerting.checks import (
    Check,
    DeviationCheck,
    DeviceInfo,
    LimitCheck,
    QualityCheck,
    RateCheck,
    StatusCheck,
)
from gateway.alerting.detector import Detector
from gateway.alerting.rules import (
    DeviationRule,
    HealthRule,
    LimitRule,
    LoadedRule,
    NoDataRule,
    QualityRule,
    RateRule,
    StatusRule,
)
from gateway.plugins.base import RuleKindPlugin

Latest = dict[tuple[str, str], tuple[int, float]]
CheckFactory = Callable[[LoadedRule, DeviceInfo, set[Detector], Latest], Check]


def _simple(cls: Callable[[LoadedRule, DeviceInfo, set[Detector]], Check]) -> CheckFactory:
    def build(
        lr: LoadedRule,
        info: DeviceInfo,
        pending: set[Detector],
        latest: Latest,
    ) -> Check:
        return cls(lr, info, pending)

    return build


def _deviation(
    lr: LoadedRule,
    info: DeviceInfo,
    pending: set[Detector],
    latest: Latest,
) -> Check:
    return DeviationCheck(lr, info, pending, latest)


PLUGINS = [
    RuleKindPlugin("limit", LimitRule, _simple(LimitCheck)),
    RuleKindPlugin("rate", RateRule, _simple(RateCheck)),
    RuleKindPlugin("deviation", DeviationRule, _deviation),
    RuleKindPlugin("status", StatusRule, _simple(StatusCheck)),
    RuleKindPlugin("quality", QualityRule, _simple(QualityCheck)),
    RuleKindPlugin("no_data", NoDataRule),
    RuleKindPlugin("health", HealthRule),
]
