"""The gas-shortfall plan in alarm messages: the shedding order, as advice.

When gas runs short, non-residential load is shed first, stage by stage,
boiler by boiler and area by area, and residential heat last ("压非保民").
``with_shedding_advice`` appends that order to every message of the rules
named in ``reports.gas_plan.alarm_rules`` (the gas-supply alarms), so the
duty officer reads it in the alarm itself. The gateway only advises: it
never switches a boiler.
"""

from __future__ import annotations

import dataclasses

from gateway.alerting.rules import RuleSet
from gateway.reports.config import GasPlan


def shedding_advice(plan: GasPlan) -> str:
    """'gas short - shed in this order (...): 1. area offices (note); 2. ...', or '' without one."""
    if not plan.shedding:
        return ""
    steps = "; ".join(
        f"{i}. {s.label}" + (f" ({s.note})" if s.note else "")
        for i, s in enumerate(plan.shedding, 1)
    )
    return f"gas short - shed in this order (advice; the gateway switches nothing): {steps}"


def with_shedding_advice(rules: RuleSet, plan: GasPlan) -> RuleSet:
    """The rule set with the shedding order added to the gas-supply rules' messages."""
    advice = shedding_advice(plan)
    if not advice:
        return rules
    return RuleSet([
        dataclasses.replace(lr, advice=advice) if lr.rule.id in plan.alarm_rules else lr
        for lr in rules.rules
    ])


__all__ = ["shedding_advice", "with_shedding_advice"]
